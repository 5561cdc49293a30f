"""The SDK waits out a 429 or 503 that says when to come back, and only a short one."""

from __future__ import annotations

import httpx

from tally_client.sdk import RetryAfter


def _client(answers: list[httpx.Response], waits: list[float], retries: int = 3) -> httpx.Client:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers[len(sent) - 1]

    transport = RetryAfter(httpx.MockTransport(answer), retries=retries, sleep=waits.append)
    return httpx.Client(transport=transport, base_url="http://tally")


def test_a_rate_limited_request_is_sent_again_after_its_retry_after() -> None:
    waits: list[float] = []
    answers = [
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(503, headers={"Retry-After": "1"}, json={"error": {"code": "busy"}}),
        httpx.Response(202, json={"jobs": []}),
    ]
    with _client(answers, waits) as http:
        response = http.post("/v1/sessions/s/photos", files=[("file", ("a.jpg", b"x"))])
    assert response.status_code == 202
    assert waits == [2.0, 1.0]


def test_a_long_wait_or_no_retry_after_is_the_callers_answer() -> None:
    waits: list[float] = []
    answers = [httpx.Response(429, headers={"Retry-After": "3600"})]  # a quota: until midnight
    with _client(answers, waits) as http:
        assert http.get("/v1/jobs").status_code == 429
    answers = [httpx.Response(503)]
    with _client(answers, waits) as http:
        assert http.get("/v1/jobs").status_code == 503
    assert waits == []


def test_an_edge_503_to_a_post_is_not_sent_again_since_the_service_may_have_acted() -> None:
    waits: list[float] = []
    unavailable = {"error": {"code": "unavailable", "message": "not reachable"}}
    answers = [httpx.Response(503, headers={"Retry-After": "5"}, json=unavailable)]
    with _client(answers, waits) as http:
        assert http.post("/v1/sessions", json={}).status_code == 503
    answers = [httpx.Response(503, headers={"Retry-After": "5"}), httpx.Response(200)]
    with _client(answers, waits) as http:
        assert http.get("/v1/jobs").status_code == 200
    assert waits == [5.0]


def test_the_retries_are_bounded() -> None:
    waits: list[float] = []
    answers = [httpx.Response(429, headers={"Retry-After": "1"}) for _ in range(5)]
    with _client(answers, waits, retries=2) as http:
        assert http.get("/v1/jobs").status_code == 429
    assert waits == [1.0, 1.0]
