"""verify_webhook: a receiver accepts what Tally signed (Standard Webhooks v1) and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from tally_client import WebhookEvent, WebhookVerificationError, verify_webhook

# The test vector of the Standard Webhooks reference libraries (standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py, test_sign_function): this secret, id, timestamp and
# body sign to this signature.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(b"tally's webhook secret, 32 bytes").decode()
OTHER = "whsec_" + base64.b64encode(b"another webhook's secret, 32 by.").decode()
NOW = 1_764_600_000
BODY = (
    b'{"type":"job.completed","timestamp":"2026-12-01T14:40:00+00:00","data":{"job_id":"j1",'
    b'"session_id":"s1","status":"completed","counts":{"seedling":3},"detections":3}}'
)


def _signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """A v1 signature, computed here from the specification's definition."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _headers(
    secret: str = SECRET, timestamp: int = NOW, body: bytes = BODY, msg_id: str = "msg_1"
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": _signature(secret, msg_id, timestamp, body),
    }


def test_the_specifications_test_vector_verifies() -> None:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert _signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    payload = verify_webhook(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)
    assert payload == {"test": 2432232314}
    # A bare base64 secret (without whsec_) is the same key; a str body the same bytes.
    bare = VECTOR_SECRET.removeprefix("whsec_")
    assert verify_webhook(bare, headers, VECTOR_BODY.decode(), now=VECTOR_TIMESTAMP) == payload


def test_a_genuine_webhook_gives_its_payload_and_headers_may_be_in_any_case() -> None:
    headers = {name.title(): value for name, value in _headers().items()}  # Webhook-Id, …
    payload = verify_webhook(SECRET, headers, BODY, now=NOW)
    event = WebhookEvent.model_validate(payload)
    assert event.type == "job.completed"
    assert event.job().counts == {"seedling": 3}


def test_an_altered_body_is_refused() -> None:
    altered = BODY.replace(b'"seedling":3', b'"seedling":4')
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_webhook(SECRET, _headers(), altered, now=NOW)


def test_a_body_parsed_and_serialised_again_no_longer_verifies() -> None:
    """What was signed is the bytes sent: a receiver must verify the raw body."""
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_webhook(SECRET, _headers(), BODY.replace(b",", b", "), now=NOW)


def test_another_secret_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_webhook(OTHER, _headers(), BODY, now=NOW)


def test_an_altered_id_or_timestamp_is_refused() -> None:
    for name, value in (("webhook-id", "msg_2"), ("webhook-timestamp", str(NOW + 1))):
        with pytest.raises(WebhookVerificationError, match="no signature matches"):
            verify_webhook(SECRET, _headers() | {name: value}, BODY, now=NOW)


def test_a_timestamp_beyond_the_tolerance_either_way_is_refused() -> None:
    stale, future = _headers(timestamp=NOW - 301), _headers(timestamp=NOW + 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(SECRET, stale, BODY, now=NOW)
    with pytest.raises(WebhookVerificationError, match="in the future"):
        verify_webhook(SECRET, future, BODY, now=NOW)
    # At the tolerance itself both pass; a wider tolerance takes the stale one.
    for timestamp in (NOW - 300, NOW + 300):
        verify_webhook(SECRET, _headers(timestamp=timestamp), BODY, now=NOW)
    verify_webhook(SECRET, stale, BODY, now=NOW, tolerance_s=600)


def test_the_clock_is_the_machines_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tally_client.webhooks.time.time", lambda: float(NOW + 1000))
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(SECRET, _headers(), BODY)
    assert verify_webhook(SECRET, _headers(timestamp=NOW + 1000), BODY)["type"] == "job.completed"


def test_one_valid_signature_among_several_passes() -> None:
    """During a secret's rotation both secrets sign: either one verifies."""
    valid = _headers()["webhook-signature"]
    stale = _signature(OTHER, "msg_1", NOW, BODY)
    junk = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    headers = _headers() | {"webhook-signature": f"{stale} {junk}  {valid}"}
    assert verify_webhook(SECRET, headers, BODY, now=NOW)["type"] == "job.completed"
    assert verify_webhook(OTHER, headers, BODY, now=NOW)["type"] == "job.completed"


def test_signatures_of_other_versions_are_ignored() -> None:
    valid = _headers()["webhook-signature"]
    digest = valid.removeprefix("v1,")
    # The right digest under another version's name counts for nothing.
    only_others = _headers() | {"webhook-signature": f"v1a,{digest} v2,{digest} {digest}"}
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify_webhook(SECRET, only_others, BODY, now=NOW)
    mixed = _headers() | {"webhook-signature": f"v1a,{digest} {valid}"}
    assert verify_webhook(SECRET, mixed, BODY, now=NOW)["type"] == "job.completed"


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_or_empty_header_is_named(name: str) -> None:
    headers = _headers()
    del headers[name]
    with pytest.raises(WebhookVerificationError, match=f"missing header: {name}"):
        verify_webhook(SECRET, headers, BODY, now=NOW)
    with pytest.raises(WebhookVerificationError, match=f"missing header: {name}"):
        verify_webhook(SECRET, headers | {name: ""}, BODY, now=NOW)


def test_a_timestamp_that_is_not_whole_seconds_is_refused() -> None:
    for value in ("hello", "1764600000.5", "-1"):
        with pytest.raises(WebhookVerificationError, match="not a whole number"):
            verify_webhook(SECRET, _headers() | {"webhook-timestamp": value}, BODY, now=NOW)


def test_a_signed_body_that_is_not_a_json_object_is_refused() -> None:
    for body, reason in ((b"not json", "not JSON"), (b"[1, 2]", "not a JSON object")):
        with pytest.raises(WebhookVerificationError, match=reason):
            verify_webhook(SECRET, _headers(body=body), body, now=NOW)


def test_a_secret_that_is_not_one_is_refused() -> None:
    for secret in ("whsec_not base64!", "whsec_", ""):
        with pytest.raises(WebhookVerificationError, match="secret"):
            verify_webhook(secret, _headers(), BODY, now=NOW)
