"""The gateway's /openapi.json describes every route: what each answers and the errors it
gives. (tests/integration/test_gateway.py checks every answer against it.)"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from tally_gateway.app import create_app
from tally_gateway.config import Settings

APP = create_app(Settings())
SPEC = APP.openapi()
OPERATIONS = {
    (method.upper(), path): operation
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
}


def _schema(reference: dict[str, Any]) -> dict[str, Any]:
    name = reference["$ref"].removeprefix("#/components/schemas/")
    schema: dict[str, Any] = SPEC["components"]["schemas"][name]
    return schema


def test_every_route_of_the_contract_is_documented() -> None:
    assert set(OPERATIONS) == {
        ("GET", "/v1/sessions"),
        ("GET", "/v1/sessions/{session_id}"),
        ("GET", "/v1/sessions/{session_id}/jobs"),
        ("POST", "/v1/sessions/{session_id}/cancel"),
        ("GET", "/v1/sessions/{session_id}/events"),
        ("GET", "/v1/sessions/{session_id}/export"),
        ("POST", "/v1/stream-tokens"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{job_id}"),
        ("DELETE", "/v1/jobs/{job_id}"),
        ("GET", "/v1/jobs/{job_id}/result"),
        ("GET", "/v1/jobs/{job_id}/thumbnail"),
        ("GET", "/v1/jobs/{job_id}/photo"),
        ("POST", "/v1/jobs/{job_id}/cancel"),
        ("GET", "/v1/usage"),
        ("POST", "/v1/webhooks"),
        ("GET", "/v1/webhooks"),
        ("GET", "/v1/webhooks/{webhook_id}"),
        ("PATCH", "/v1/webhooks/{webhook_id}"),
        ("DELETE", "/v1/webhooks/{webhook_id}"),
        ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"),
        ("GET", "/v1/webhooks/{webhook_id}/deliveries"),
        ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model_id}"),
        ("DELETE", "/v1/models/{model_id}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
    # Nothing of the API is served beside OpenAPI: only its own pages and the dashboard's.
    plain = {r.path for r in APP.routes if isinstance(r, Route) and not isinstance(r, APIRoute)}
    assert plain == {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/"}
    assert {r.path for r in APP.routes if isinstance(r, Mount)} == {"/dashboard"}


def test_every_route_declares_what_it_answers_and_its_errors_as_the_envelope() -> None:
    for (method, path), operation in OPERATIONS.items():
        responses = operation["responses"]
        where = f"{method} {path}"
        successes = {status: r for status, r in responses.items() if status.startswith("2")}
        assert successes, where
        for status, response in successes.items():
            content = response.get("content")
            if status == "204":
                assert not content, where
                continue
            assert content, where
            if "application/json" in content:  # a named model, not a bare object
                assert "$ref" in content["application/json"]["schema"], where
        if path.startswith("/v1/"):
            assert "401" in responses, where
        if "{" in path:
            assert "404" in responses, where
        for status, response in responses.items():
            if status[0] in "45" and path != "/readyz":  # its 503 is the readiness report
                schema = _schema(response["content"]["application/json"]["schema"])
                assert schema["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    # FastAPI documents its own 422 body on any route with parameters that does not declare
    # one; the gateway never answers it (its 422 is the envelope), so no route may lack one.
    assert "HTTPValidationError" not in SPEC["components"]["schemas"]


def test_the_polling_answer_is_documented_though_serialised_by_hand() -> None:
    responses = OPERATIONS["GET", "/v1/sessions/{session_id}/jobs"]["responses"]
    body = _schema(responses["200"]["content"]["application/json"]["schema"])
    assert set(body["required"]) == {
        "session_id",
        "version",
        "jobs",
        "summary",
        "last_updated",
        "poll_interval_ms",
    }
    # A page's and a delta's own fields, present on those answers only.
    assert {"next_cursor", "since", "deleted", "more", "reload"} <= set(body["properties"])
    query = {p["name"] for p in OPERATIONS["GET", "/v1/sessions/{session_id}/jobs"]["parameters"]}
    assert {"limit", "cursor", "since"} <= query
    assert body["properties"]["jobs"]["items"] == {"$ref": "#/components/schemas/JobPublic"}
    assert "304" in responses
