"""Verifying Tally's webhooks as the Standard Webhooks specification v1 says
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
HMAC-SHA256 with the webhook's secret over `{webhook-id}.{webhook-timestamp}.{body}`, each
signature in `webhook-signature` as `v1,<base64>`, space separated (two while a rotated secret's
grace period lasts), and the attempt's timestamp within a tolerance of now, both ways, so an
old delivery cannot be replayed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(ValueError):
    """A webhook that is not Tally's as sent: missing headers, a bad or stale signature, a
    body that is not the signed JSON object."""


def _key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (a bare base64 one is read the same)."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError(
            "the secret is not a webhook secret (whsec_ followed by base64)"
        ) from None
    if not key:
        raise WebhookVerificationError("the secret is empty")
    return key


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The payload of a genuine webhook, parsed from `body` (the raw bytes received: parsing
    and serialising JSON again changes what was signed). `headers` are the request's, in any
    case; `now` (unix seconds) is the clock to check the timestamp against. Raises
    WebhookVerificationError, saying why, on any failure."""
    key = _key(secret)
    given = {name.lower(): value for name, value in headers.items()}
    names = ("webhook-id", "webhook-timestamp", "webhook-signature")
    missing = [name for name in names if not given.get(name)]
    if missing:
        raise WebhookVerificationError(f"missing header: {', '.join(missing)}")
    msg_id, timestamp, signatures = (given[name].strip() for name in names)
    if not timestamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not a whole number of seconds")
    skew = (time.time() if now is None else now) - int(timestamp)
    if skew > tolerance_s:
        raise WebhookVerificationError(f"the webhook is too old ({skew:.0f} s; a replay?)")
    if -skew > tolerance_s:
        raise WebhookVerificationError(f"the webhook's timestamp is {-skew:.0f} s in the future")
    raw = body.encode() if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + raw
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    candidates = [
        sig.encode()
        for version, _, sig in (entry.partition(",") for entry in signatures.split())
        if version == "v1"
    ]
    if not candidates:
        raise WebhookVerificationError("webhook-signature has no v1 signature")
    # Every candidate is compared (in constant time), so the time taken tells nothing of which.
    matches = [hmac.compare_digest(expected, candidate) for candidate in candidates]
    if not any(matches):
        raise WebhookVerificationError("no signature matches: a wrong secret or an altered body")
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WebhookVerificationError("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookVerificationError("the body is not a JSON object")
    return payload
