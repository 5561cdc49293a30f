"""Which webhook URLs may be registered and called (tally_contracts.webhooks.AddressPolicy)."""

from __future__ import annotations

import base64
import ipaddress
import re

import pytest

from tally_contracts.webhooks import (
    SECRET_PREFIX,
    AddressPolicy,
    UnsafeUrlError,
    new_secret,
    secret_key,
)

OPEN = AddressPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fc00::1",
        "fe80::1",
        "fd00:ec2::254",  # AWS's IPv6 metadata
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "192.0.2.1",  # documentation
    ],
)
def test_internal_addresses_are_not_permitted(address: str) -> None:
    assert not OPEN.permits("host.example", ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::6810:85e5"])
def test_public_addresses_are_permitted(address: str) -> None:
    assert OPEN.permits("host.example", ipaddress.ip_address(address))


def test_the_setting_allows_hosts_by_name_and_networks_by_cidr() -> None:
    policy = AddressPolicy.parse(
        ["localhost", " 127.0.0.0/8", "", "10.1.2.3", "Receiver.Local."], require_https=False
    )
    loopback = ipaddress.ip_address("127.0.0.5")
    assert policy.permits("anything", loopback)
    assert policy.permits("localhost", ipaddress.ip_address("::1"))
    assert policy.permits("receiver.local", ipaddress.ip_address("192.168.0.9"))
    assert policy.permits("x", ipaddress.ip_address("10.1.2.3"))
    assert not policy.permits("x", ipaddress.ip_address("10.1.2.4"))
    assert policy.permits("x", ipaddress.ip_address("::ffff:127.0.0.1"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "must start with"),
        ("http:///x", "no host"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://example.com:0/", "port"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com/#top", "fragment"),
        ("https://example.com/" + "a" * 2100, "longer than"),
        ("https://[::1/", "not a valid URL"),
    ],
)
def test_urls_of_the_wrong_form_are_refused_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrlError, match=why):
        OPEN.check_url(url)


def test_production_refuses_plain_http() -> None:
    production = AddressPolicy(require_https=True)
    with pytest.raises(UnsafeUrlError, match="https://"):
        production.check_url("http://example.com/hook")
    assert production.check_url("https://example.com/hook").hostname == "example.com"


async def test_literal_addresses_are_checked_without_a_lookup() -> None:
    with pytest.raises(UnsafeUrlError, match=re.escape("169.254.169.254")):
        await OPEN.resolve(OPEN.check_url("http://169.254.169.254/latest/meta-data/"))
    assert await OPEN.resolve(OPEN.check_url("https://93.184.216.34/")) == [
        ipaddress.ip_address("93.184.216.34")
    ]


async def test_a_name_that_resolves_to_loopback_is_refused_unless_allowed() -> None:
    with pytest.raises(UnsafeUrlError, match="resolves to"):
        await OPEN.resolve(OPEN.check_url("http://localhost:8080/hook"))
    allowed = AddressPolicy.parse(["localhost"], require_https=False)
    found = await allowed.resolve(allowed.check_url("http://localhost:8080/hook"))
    assert all(a.is_loopback for a in found)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UnsafeUrlError, match="does not resolve"):
        await OPEN.resolve(OPEN.check_url("https://no-such-host.invalid/hook"))


def test_secrets_are_whsec_and_base64_of_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith(SECRET_PREFIX)
    assert len(secret_key(secret)) == 32
    assert secret_key(secret) == base64.b64decode(secret[len(SECRET_PREFIX) :])
    assert new_secret() != secret
