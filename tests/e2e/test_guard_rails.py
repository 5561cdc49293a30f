"""Hostile and careless requests through the real edge (nginx as `make up` runs it) to the real
services: each is answered in the JSON envelope, never a 5xx, and costs no other request
anything. (No detectors or Triton: nothing here needs a photo to be counted.)"""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.harness import Stack, local_stack

pytestmark = pytest.mark.e2e
KEY_CHECK_S = 0.5  # how often open streams re-check their keys, here


@dataclass(frozen=True)
class Tenant:
    id: str
    key_id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _admin(stack: Stack, *args: str) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "tally_client.cli", "admin", *args, "--json"],
        env=stack.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    parsed: dict[str, str] = json.loads(out)
    return parsed


def _tenant(stack: Stack) -> Tenant:
    made = _admin(stack, "create-tenant", f"guard-{uuid.uuid4().hex[:8]}")
    return Tenant(made["tenant_id"], made["key_id"], made["api_key"])


@pytest.fixture(scope="module")
def stack(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir: Path = tmp_path_factory.mktemp("guard") / "stack"
    with local_stack(
        module_database,
        run_dir,
        TALLY_STACK_DETECTORS="0",
        TALLY_STACK_EXTERNAL="triton",
        TALLY_STREAM_KEY_CHECK_S=str(KEY_CHECK_S),
        TALLY_API_KEY_CACHE_S="0.5",
    ) as stack:
        yield stack


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((320, 240), 40).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


def _multipart(filename: bytes, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: image/jpeg\r\n\r\n'
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _waiting_session(http: httpx.Client) -> str:
    """A session whose one photo stays queued (no detectors here): its stream stays open."""
    session = str(http.post("/v1/sessions", json={}).json()["session_id"])
    files = [("file", ("tray.jpg", _jpeg(), "image/jpeg"))]
    assert http.post(f"/v1/sessions/{session}/photos", files=files).status_code == 202
    return session


def _edge(stack: Stack) -> http.client.HTTPConnection:
    host, port = stack.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def _answer(connection: http.client.HTTPConnection) -> tuple[int, dict[str, str], bytes]:
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_a_nul_in_a_filename_is_cleaned_and_the_next_request_on_that_connection_is_served(
    stack: Stack,
) -> None:
    a, b = _tenant(stack), _tenant(stack)
    edge = _edge(stack)
    json_type = {"Content-Type": "application/json"}
    edge.request("POST", "/v1/sessions", body=b"{}", headers=a.auth | json_type)
    status, _, raw = _answer(edge)
    assert status == 201, raw
    session = json.loads(raw)["session_id"]
    body, content_type = _multipart(b"tray\x00<b>.jpg", _jpeg())
    edge.request(
        "POST",
        f"/v1/sessions/{session}/photos",
        body=body,
        headers=a.auth | {"Content-Type": content_type},
    )
    status, _, raw = _answer(edge)
    assert status == 202, raw
    assert json.loads(raw)["jobs"][0]["filename"] == "tray<b>.jpg"
    # The same client connection, and the edge's pooled connections to the upload service:
    # another tenant's requests right after are served.
    for _ in range(3):
        edge.request("POST", "/v1/sessions", body=b"{}", headers=b.auth | json_type)
        status, _, raw = _answer(edge)
        assert status == 201, raw
    edge.close()


def test_a_huge_json_body_is_refused_by_its_length_before_it_is_sent(stack: Stack) -> None:
    a = _tenant(stack)
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            b"POST /v1/sessions HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {a.key}\r\n".encode()
            + f"Content-Length: {200 * 1024 * 1024}\r\n\r\n".encode()
            + b'{"name": "'
        )
        started = time.monotonic()
        answer = raw.recv(65536).decode(errors="replace")
        waited = time.monotonic() - started
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413"), head
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert waited < 5  # answered on the headers: the 200 MB were never sent


def test_trailing_slashes_and_inside_routes_are_not_served_to_the_outside(stack: Stack) -> None:
    a = _tenant(stack)
    with httpx.Client(base_url=stack.url, headers=a.auth, follow_redirects=False) as http:
        for method, path in (
            ("POST", "/v1/sessions/"),
            ("GET", "/v1/jobs/"),
            ("GET", "/metrics"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
            ("GET", "/readyz"),
        ):
            response = http.request(method, path, json={} if method == "POST" else None)
            assert response.status_code in (404, 405), (method, path, response.status_code)
            assert "location" not in response.headers
            assert response.json()["error"]["code"] in ("not_found", "method_not_allowed")
            assert "nginx/" not in response.headers.get("server", "")
        assert http.get("/healthz").status_code == 200


def test_answers_carry_a_request_id_and_json_is_never_cached(stack: Stack) -> None:
    a = _tenant(stack)
    with httpx.Client(base_url=stack.url, headers=a.auth) as http:
        sessions = http.get("/v1/sessions")
        assert sessions.status_code == 200
        assert sessions.headers["x-request-id"]
        assert "no-store" in sessions.headers["cache-control"]
        sent = http.get("/v1/jobs", headers={"X-Request-ID": "trace-me-1"})
        assert sent.headers["x-request-id"] == "trace-me-1"


def test_a_tenant_over_its_read_rate_gets_429_with_when_to_come_back(stack: Stack) -> None:
    noisy, quiet = _tenant(stack), _tenant(stack)
    _admin(stack, "set-limits", noisy.id, "read_rate=1", "read_burst=3")
    time.sleep(1)  # the services' key caches (0.5 s here) pick up the tenant's own limits
    with httpx.Client(base_url=stack.url) as http:
        answers = [http.get("/v1/jobs", headers=noisy.auth) for _ in range(10)]
        limited = [r for r in answers if r.status_code == 429]
        assert limited, [r.status_code for r in answers]
        assert all(r.status_code in (200, 429) for r in answers)
        first = limited[0]
        assert first.json()["error"]["code"] == "rate_limited"
        assert int(first.headers["retry-after"]) >= 1
        assert "ratelimit-policy" in first.headers
        assert "ratelimit" in first.headers
        # The other tenant is not limited by the first one's flood.
        assert [http.get("/v1/jobs", headers=quiet.auth).status_code for _ in range(3)] == [200] * 3


def test_a_revoked_keys_open_stream_ends_within_its_recheck(stack: Stack) -> None:
    a = _tenant(stack)
    with httpx.Client(base_url=stack.url, headers=a.auth, timeout=30) as http:
        session = _waiting_session(http)
        with http.stream("GET", f"/v1/sessions/{session}/events") as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert any(line.startswith("event: snapshot") for line in _first(lines, 6))
            _admin(stack, "revoke-key", a.id, a.key_id)
            revoked = time.monotonic()
            for _ in lines:  # until the gateway ends it
                assert time.monotonic() - revoked < 30
        assert time.monotonic() - revoked < 10 * KEY_CHECK_S + 5
        assert http.get(f"/v1/sessions/{session}/events").status_code == 401


def test_a_last_event_id_no_stream_can_hold_resumes_from_a_snapshot(stack: Stack) -> None:
    a = _tenant(stack)
    with httpx.Client(base_url=stack.url, headers=a.auth, timeout=30) as http:
        session = _waiting_session(http)
        for sent in ("9" * 5000, "١٢٣-٤", str(2**64) + "-0", "x-y"):
            headers = {b"Last-Event-ID": sent.encode()}
            with http.stream("GET", f"/v1/sessions/{session}/events", headers=headers) as stream:
                assert stream.status_code == 200, sent
                assert any(
                    line.startswith("event: snapshot") for line in _first(stream.iter_lines(), 6)
                ), sent


def _first(lines: Iterator[str], count: int) -> list[str]:
    out = []
    for line in lines:
        out.append(line)
        if len(out) == count:
            break
    return out
