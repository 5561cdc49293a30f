"""TallyClient's webhook API: the requests of the contract, the answers as the server gives
them (AsyncTally's typed ones are test_async_client's)."""

from __future__ import annotations

import json

import httpx

from tally_client import TallyClient, _api

URL = "https://example.org/tally"
HOOK = {"webhook_id": "wh1", "url": URL, "events": ["job.failed"]}


def test_the_webhook_api_sends_the_contracts_requests() -> None:
    sent: list[httpx.Request] = []
    answers = [
        httpx.Response(201, json=HOOK | {"secret": "whsec_c2VjcmV0"}),
        httpx.Response(200, json={"webhooks": [HOOK]}),
        httpx.Response(200, json=HOOK),
        httpx.Response(200, json=HOOK | {"description": "importer"}),
        httpx.Response(200, json={"webhook_id": "wh1", "secret": "whsec_bmV3"}),
        httpx.Response(200, json={"deliveries": [], "next_cursor": None}),
        httpx.Response(202, json={"delivery_id": "d1", "status": "pending"}),
        httpx.Response(204),
    ]

    def serve(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers[len(sent) - 1]

    with TallyClient("http://tally", "tly_test") as client:
        client._http.close()
        client._http = httpx.Client(base_url="http://tally", transport=httpx.MockTransport(serve))
        assert client.create_webhook(URL, ["job.failed"], "importer")["secret"]
        assert client.list_webhooks() == [HOOK]
        assert client.webhook("wh1") == HOOK
        assert client.update_webhook("wh1", description="importer")["description"] == "importer"
        assert client.rotate_webhook_secret("wh1")["secret"] == "whsec_bmV3"
        assert client.deliveries("wh1", limit=10)["deliveries"] == []
        client.replay("wh1", "d1")
        client.delete_webhook("wh1")
    assert [(r.method, r.url.path, r.url.query.decode()) for r in sent] == [
        ("POST", "/v1/webhooks", ""),
        ("GET", "/v1/webhooks", ""),
        ("GET", "/v1/webhooks/wh1", ""),
        ("PATCH", "/v1/webhooks/wh1", ""),
        ("POST", "/v1/webhooks/wh1/rotate-secret", ""),
        ("GET", "/v1/webhooks/wh1/deliveries", "limit=10"),
        ("POST", "/v1/webhooks/wh1/deliveries/d1/replay", ""),
        ("DELETE", "/v1/webhooks/wh1", ""),
    ]
    assert json.loads(sent[0].content) == {
        "url": URL,
        "events": ["job.failed"],
        "description": "importer",
    }
    assert json.loads(sent[3].content) == {"description": "importer"}


def test_ids_go_into_paths_as_one_segment() -> None:
    request = _api.webhook("../jobs").request(httpx.Client(base_url="http://t"))
    assert request.url.raw_path == b"/v1/webhooks/..%2Fjobs"  # sent as such, not normalised
