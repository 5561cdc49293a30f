"""Stream tokens: what an `EventSource` (which cannot send headers) shows instead of an API key.

A token names one tenant, one session and the API key that minted it, and expires within a
minute: it is good for starting a stream of that session only, and only while that key is live
(the route asks; a stream it opened is re-checked like one opened with the key). It is signed
(HMAC-SHA256 with the gateway's secret), so every gateway replica verifies it without shared
state. Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass

PREFIX = "st2."  # st1 tokens named no key: refused


@dataclass(frozen=True, slots=True)
class StreamGrant:
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    key_id: uuid.UUID  # the API key that minted it
    expires_at: int  # epoch seconds


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def issue(secret: bytes, grant: StreamGrant) -> str:
    fields = (grant.tenant_id, grant.session_id, grant.key_id, grant.expires_at)
    payload = _b64(".".join(str(f) for f in fields).encode())
    return f"{PREFIX}{payload}.{_sign(secret, payload)}"


def verify(secret: bytes, token: str, now: float) -> StreamGrant | None:
    """The grant of a genuine, unexpired token; None otherwise (forged, altered, expired or not
    a token at all)."""
    payload, _, signature = token.removeprefix(PREFIX).partition(".")
    if not token.startswith(PREFIX) or not hmac.compare_digest(
        signature.encode(), _sign(secret, payload).encode()
    ):
        return None
    try:
        tenant, session, key, expires = _unb64(payload).decode().split(".")
        grant = StreamGrant(uuid.UUID(tenant), uuid.UUID(session), uuid.UUID(key), int(expires))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return grant if grant.expires_at > now else None
