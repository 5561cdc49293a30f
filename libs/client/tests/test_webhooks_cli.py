"""`tally webhooks …` against a small fake of the gateway's webhook routes (the routes
themselves are tested in the gateway's and the integration tests): what each command asks, what
it prints, and that the API's refusals come out as one line and exit status 1."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tally_client import _webhooks_cli, cli
from tally_client.sdk import TallyClient
from tally_contracts.webhooks import EVENT_TYPES

SECRET = "whsec_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
HOOK = "wh_1"


def _endpoint(**changes: Any) -> dict[str, Any]:
    return {
        "webhook_id": HOOK,
        "url": "https://hooks.example.com/tally",
        "events": ["job.completed", "session.completed"],
        "description": "ops",
        "enabled": True,
        "disabled_reason": None,
        "failing_since": None,
        "created_at": "2026-12-01T20:00:00+00:00",
        "updated_at": "2026-12-01T20:00:00+00:00",
        **changes,
    }


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


class FakeGateway:
    """Answers as the contract says and records each request (method, path, query, body)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, dict[str, str], Any]] = []
        self.answers: dict[tuple[str, str], httpx.Response] = {}

    def answer(self, method: str, path: str, response: httpx.Response) -> None:
        self.answers[(method, path)] = response

    def serve(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.raw_path.decode().split("?")[0]
        self.asked.append((request.method, path, dict(request.url.params), body))
        assert request.headers["authorization"] == "Bearer tly_test"
        found = self.answers.get((request.method, path))
        return found if found is not None else _error(404, "not_found", "no such route")


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    fake = FakeGateway()

    def client() -> TallyClient:
        made = TallyClient("http://tally", "tly_test")
        made._http.close()
        made._http = httpx.Client(
            base_url="http://tally",
            headers={"Authorization": "Bearer tly_test"},
            transport=httpx.MockTransport(fake.serve),
        )
        return made

    monkeypatch.setattr(cli, "TallyClient", client)
    monkeypatch.setenv("COLUMNS", "200")  # rich's tables, unfolded
    return fake


def test_list_shows_each_endpoint_its_events_and_why_one_is_disabled(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer(
        "GET",
        "/v1/webhooks",
        httpx.Response(
            200,
            json={
                "webhooks": [
                    _endpoint(),
                    _endpoint(
                        webhook_id="wh_2",
                        url="https://other.example/h",
                        events=["job.failed"],
                        enabled=False,
                        disabled_reason="too_many_failures",
                    ),
                ]
            },
        ),
    )
    assert cli.main(["webhooks", "list"]) == 0
    out = capsys.readouterr().out
    assert "https://hooks.example.com/tally" in out
    assert "job.completed, session.completed" in out
    assert "disabled (too_many_failures)" in out
    assert out.index(HOOK) < out.index("wh_2")  # the API's order, newest first
    assert SECRET not in out


def test_list_without_endpoints_says_how_to_add_one(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer("GET", "/v1/webhooks", httpx.Response(200, json={"webhooks": []}))
    assert cli.main(["webhooks", "list"]) == 0
    assert "no webhook endpoints: add one with tally webhooks add" in capsys.readouterr().out


def test_add_sends_the_url_events_and_description_and_prints_the_secret_whole_on_its_own_line(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer("POST", "/v1/webhooks", httpx.Response(201, json=_endpoint(secret=SECRET)))
    argv = ["webhooks", "add", "https://hooks.example.com/tally", "--event", "job.completed"]
    argv += ["--event", "session.completed", "--event", "job.completed", "--description", "ops"]
    assert cli.main(argv) == 0
    assert gateway.asked == [
        (
            "POST",
            "/v1/webhooks",
            {},
            {
                "url": "https://hooks.example.com/tally",
                "events": ["job.completed", "session.completed"],
                "description": "ops",
            },
        )
    ]
    lines = capsys.readouterr().out.splitlines()
    assert SECRET in lines  # copyable: nothing else on its line
    assert any("shown only now" in line for line in lines)


def test_add_without_a_description_sends_none(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer("POST", "/v1/webhooks", httpx.Response(201, json=_endpoint(secret=SECRET)))
    assert cli.main(["webhooks", "add", "https://a.example/h", "--event", "job.failed"]) == 0
    assert gateway.asked[0][3] == {"url": "https://a.example/h", "events": ["job.failed"]}


@pytest.mark.parametrize(
    "events",
    [[], ["--event", "job.exploded"]],
    ids=["no event", "an unknown event"],
)
def test_add_refuses_no_event_or_an_unknown_one_before_asking_the_api(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str], events: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["webhooks", "add", "https://a.example/h", *events])
    assert exited.value.code == 2
    assert "--event" in capsys.readouterr().err
    assert gateway.asked == []


def test_a_refused_url_is_the_apis_code_and_message_and_exit_status_1(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer(
        "POST",
        "/v1/webhooks",
        _error(422, "invalid_webhook_url", "the URL's host is a private address"),
    )
    assert cli.main(["webhooks", "add", "http://10.0.0.1/h", "--event", "job.completed"]) == 1
    captured = capsys.readouterr()
    assert "422 invalid_webhook_url: the URL's host is a private address" in captured.err
    assert "Traceback" not in captured.err
    assert "whsec_" not in captured.out


def test_a_read_only_key_is_refused_with_the_apis_message(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer(
        "DELETE", f"/v1/webhooks/{HOOK}", _error(403, "forbidden", "this key is read-only")
    )
    assert cli.main(["webhooks", "delete", HOOK]) == 1
    assert "403 forbidden: this key is read-only" in capsys.readouterr().err


def test_show_prints_one_endpoint_and_since_when_it_has_been_failing(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = _endpoint(failing_since="2026-12-01T21:00:00+00:00")
    gateway.answer("GET", f"/v1/webhooks/{HOOK}", httpx.Response(200, json=failing))
    assert cli.main(["webhooks", "show", HOOK]) == 0
    out = capsys.readouterr().out
    assert f"webhook {HOOK}" in out
    assert "https://hooks.example.com/tally" in out
    assert "enabled" in out
    assert "failing since" in out
    assert "2026-12-01T21:00:00+00:00" in out


def test_show_of_an_unknown_endpoint_says_not_found(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer(
        "GET", "/v1/webhooks/wh_gone", _error(404, "not_found", "no such webhook endpoint")
    )
    assert cli.main(["webhooks", "show", "wh_gone"]) == 1
    assert "404 not_found" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "enabled"), [("enable", True), ("disable", False)])
def test_enable_and_disable_patch_enabled_only(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str], command: str, enabled: bool
) -> None:
    gateway.answer(
        "PATCH",
        f"/v1/webhooks/{HOOK}",
        httpx.Response(200, json=_endpoint(enabled=enabled)),
    )
    assert cli.main(["webhooks", command, HOOK]) == 0
    assert gateway.asked == [("PATCH", f"/v1/webhooks/{HOOK}", {}, {"enabled": enabled})]
    assert f"webhook {HOOK}: {'enabled' if enabled else 'disabled'}" in capsys.readouterr().out


def test_delete_says_it_is_gone(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    gateway.answer("DELETE", f"/v1/webhooks/{HOOK}", httpx.Response(204))
    assert cli.main(["webhooks", "delete", HOOK]) == 0
    assert f"webhook {HOOK} deleted" in capsys.readouterr().out


def test_rotate_secret_prints_the_new_secret_and_until_when_the_old_one_works(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer(
        "POST",
        f"/v1/webhooks/{HOOK}/rotate-secret",
        httpx.Response(
            200,
            json={
                "webhook_id": HOOK,
                "secret": SECRET,
                "previous_secret_expires_at": "2026-12-02T20:00:00+00:00",
            },
        ),
    )
    assert cli.main(["webhooks", "rotate-secret", HOOK]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert SECRET in lines
    assert any("still signs until 2026-12-02T20:00:00+00:00" in line for line in lines)


def test_deliveries_show_each_attempts_code_latency_and_error_and_the_next_page(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer(
        "GET",
        f"/v1/webhooks/{HOOK}/deliveries",
        httpx.Response(
            200,
            json={
                "deliveries": [
                    {
                        "delivery_id": "dl_2",
                        "webhook_id": HOOK,
                        "event_id": "ev_2",
                        "event_type": "job.failed",
                        "status": "pending",
                        "attempts": [
                            {
                                "attempt": 2,
                                "at": "2026-12-01T20:01:00+00:00",
                                "status_code": 503,
                                "latency_ms": 120.4,
                                "error": "server error",
                            },
                            {
                                "attempt": 1,
                                "at": "2026-12-01T20:00:00+00:00",
                                "status_code": None,
                                "latency_ms": None,
                                "error": "connection refused",
                            },
                        ],
                        "next_attempt_at": "2026-12-01T20:05:00+00:00",
                        "created_at": "2026-12-01T20:00:00+00:00",
                    },
                    {
                        "delivery_id": "dl_1",
                        "webhook_id": HOOK,
                        "event_id": "ev_1",
                        "event_type": "job.completed",
                        "status": "succeeded",
                        "attempts": [
                            {
                                "attempt": 1,
                                "at": "2026-12-01T19:00:00+00:00",
                                "status_code": 200,
                                "latency_ms": 35,
                                "error": None,
                            }
                        ],
                        "next_attempt_at": None,
                        "created_at": "2026-12-01T19:00:00+00:00",
                    },
                ],
                "next_cursor": "c_older",
            },
        ),
    )
    assert cli.main(["webhooks", "deliveries", HOOK, "--limit", "2"]) == 0
    assert gateway.asked[0][2] == {"limit": "2"}
    out = capsys.readouterr().out
    assert out.index("#1 no answer, connection refused") < out.index("#2 HTTP 503, 120 ms")
    assert "server error" in out
    assert "2026-12-01T20:05:00+00:00" in out
    assert "#1 HTTP 200, 35 ms" in out
    assert f"tally webhooks deliveries {HOOK} --cursor c_older" in out


def test_deliveries_ask_for_the_page_after_a_cursor(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.answer(
        "GET",
        f"/v1/webhooks/{HOOK}/deliveries",
        httpx.Response(200, json={"deliveries": [], "next_cursor": None}),
    )
    assert cli.main(["webhooks", "deliveries", HOOK, "--cursor", "c_older"]) == 0
    assert gateway.asked[0][2] == {"limit": "20", "cursor": "c_older"}
    assert "--cursor" not in capsys.readouterr().out  # no page after the last


def test_replay_posts_to_the_delivery_and_says_it_was_sent_again(
    gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery = {
        "delivery_id": "dl_1",
        "webhook_id": HOOK,
        "event_id": "ev_1",
        "event_type": "job.completed",
        "status": "pending",
        "attempts": [],
        "next_attempt_at": "2026-12-01T20:00:00+00:00",
        "created_at": "2026-12-01T20:00:00+00:00",
    }
    gateway.answer(
        "POST",
        f"/v1/webhooks/{HOOK}/deliveries/dl_1/replay",
        httpx.Response(202, json=delivery),
    )
    assert cli.main(["webhooks", "replay", HOOK, "dl_1"]) == 0
    assert gateway.asked == [("POST", f"/v1/webhooks/{HOOK}/deliveries/dl_1/replay", {}, None)]
    assert "delivery dl_1 is sent again now" in capsys.readouterr().out


def test_the_events_offered_are_the_contracts() -> None:
    assert tuple(str(e) for e in EVENT_TYPES) == _webhooks_cli.EVENTS
