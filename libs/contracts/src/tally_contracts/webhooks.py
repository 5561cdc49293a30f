"""Webhooks' shared rules: the event types, the secrets' form, and which addresses a webhook may
reach (the gateway checks a URL when it is registered, the sender again before every attempt,
since a name may resolve elsewhere by then: DNS rebinding).

Per the Standard Webhooks specification (v1): https://www.standardwebhooks.com/.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import ipaddress
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32  # the spec asks for 24 to 64 random bytes
URL_MAX: Final = 2048
RESOLVE_TIMEOUT_S: Final = 5.0
# PostgreSQL's NOTIFY channel on which senders (LISTEN) are told that deliveries became due
# (recorded, replayed), so they send at once instead of at their next poll.
NOTIFY_CHANNEL: Final = "tally_webhooks"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EventType(enum.StrEnum):
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"
    SESSION_COMPLETED = "session.completed"


EVENT_TYPES: Final = tuple(EventType)
# The job event type of each final job status.
JOB_EVENT: Final = {
    "completed": EventType.JOB_COMPLETED,
    "failed": EventType.JOB_FAILED,
    "cancelled": EventType.JOB_CANCELLED,
}


def new_secret() -> str:
    """A signing secret as the spec serializes it: `whsec_` and base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret: its base64-decoded part."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


class UnsafeUrlError(ValueError):
    """A webhook URL Tally will not call: its message says why, for the tenant to read."""


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which webhook URLs may be called. Only public (globally routable) addresses, unless the
    operator allows hosts by name or networks by CIDR (`TALLY_WEBHOOK_ALLOW_HOSTS`: the local
    stack and tests allow loopback); `https` only when `require_https` (production)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    require_https: bool = False

    @classmethod
    def parse(cls, allow: Iterable[str], *, require_https: bool) -> AddressPolicy:
        """From the setting's entries: each a CIDR or an address (a network) or a host name."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (e.strip() for e in allow):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks), require_https)

    def check_url(self, url: str) -> SplitResult:
        """The URL parsed, if its form may be registered; UnsafeUrlError otherwise. (Its addresses
        are checked by `resolve`.)"""
        if len(url) > URL_MAX:
            raise UnsafeUrlError(f"the URL is longer than {URL_MAX} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UnsafeUrlError(f"not a valid URL: {exc}") from None
        schemes = ("https",) if self.require_https else ("https", "http")
        if parts.scheme not in schemes:
            raise UnsafeUrlError(
                f"the URL must start with {' or '.join(s + '://' for s in schemes)}"
            )
        if not parts.hostname:
            raise UnsafeUrlError("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise UnsafeUrlError("the URL must not hold a user name or password")
        if port == 0:
            raise UnsafeUrlError("the URL's port must not be 0")
        if parts.fragment:
            raise UnsafeUrlError("the URL must not have a fragment")
        return parts

    def permits(self, host: str, address: IPAddress) -> bool:
        if host.lower().rstrip(".") in self.hosts:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(address in network for network in self.networks):
            return True
        # Not global: loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
        # (169.254/16: cloud metadata), shared (100.64/10), reserved, documentation, unspecified.
        return address.is_global and not address.is_multicast

    async def resolve(self, url: SplitResult) -> list[IPAddress]:
        """The URL's host's addresses, every one of them permitted; UnsafeUrlError if it does not
        resolve or any address is not permitted (a name with one private address among public
        ones could be answered either way on the next lookup)."""
        host = url.hostname or ""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            found = [literal]
        else:
            port = url.port or (443 if url.scheme == "https" else 80)
            loop = asyncio.get_running_loop()
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
                )
            except (OSError, TimeoutError) as exc:
                raise UnsafeUrlError(f"the host {host} does not resolve ({exc})") from None
            found = list(
                dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
            )
        refused = [a for a in found if not self.permits(host, a)]
        if refused or not found:
            raise UnsafeUrlError(
                f"the host {host} resolves to {', '.join(map(str, refused or found))}: "
                "private, loopback, link-local and other internal addresses are not allowed"
            )
        return found
