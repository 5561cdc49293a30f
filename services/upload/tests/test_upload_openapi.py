"""The upload service's /openapi.json describes every route: what each answers and the errors it
gives. (tests/integration/test_upload_service.py checks every answer against it.)"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Route

from tally_upload.app import create_app
from tally_upload.config import Settings

APP = create_app(Settings())
SPEC = APP.openapi()
OPERATIONS = {
    (method.upper(), path): operation
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
}


def _schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The named schemas a response's schema is, or is one of."""
    references = schema.get("anyOf", [schema])
    names = [r["$ref"].removeprefix("#/components/schemas/") for r in references]
    return [SPEC["components"]["schemas"][name] for name in names]


def test_every_route_of_the_contract_is_documented() -> None:
    assert set(OPERATIONS) == {
        ("POST", "/v1/sessions"),
        ("POST", "/v1/sessions/{session_id}/photos"),
        ("POST", "/v1/models"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
    plain = {r.path for r in APP.routes if isinstance(r, Route) and not isinstance(r, APIRoute)}
    assert plain == {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def test_every_route_declares_what_it_answers_and_its_errors_as_the_envelope() -> None:
    for (method, path), operation in OPERATIONS.items():
        responses = operation["responses"]
        where = f"{method} {path}"
        successes = [r for status, r in responses.items() if status.startswith("2")]
        assert len(successes) == 1, where
        content = successes[0]["content"]
        if "application/json" in content:  # a named model, not a bare object
            assert "$ref" in content["application/json"]["schema"], where
        if path.startswith("/v1/"):
            assert {"401", "422"} <= set(responses), where
        if "{" in path:
            assert "404" in responses, where
        for status, response in responses.items():
            if status[0] in "45" and path != "/readyz":  # its 503 is the readiness report
                for schema in _schemas(response["content"]["application/json"]["schema"]):
                    assert schema["properties"]["error"] == {
                        "$ref": "#/components/schemas/ErrorBody"
                    }, where
    # FastAPI's own 422 body, documented on routes that declare none: never what Tally answers.
    assert "HTTPValidationError" not in SPEC["components"]["schemas"]


def test_refused_photos_are_documented_with_the_envelope_and_their_reasons() -> None:
    responses = OPERATIONS["POST", "/v1/sessions/{session_id}/photos"]["responses"]
    for status in ("413", "415", "422"):
        refused = _schemas(responses[status]["content"]["application/json"]["schema"])[0]
        assert {"error", "jobs", "rejected"} <= set(refused["required"]), status
    accepted = _schemas(responses["202"]["content"]["application/json"]["schema"])[0]
    assert set(accepted["required"]) == {"session_id", "jobs", "planned_slices", "rejected"}
    job = SPEC["components"]["schemas"]["JobQueued"]
    assert "planned_slices" in job["required"]
    assert "Retry-After" in responses["429"]["headers"]  # quota_exceeded
    assert (
        "multipart/form-data"
        in OPERATIONS["POST", "/v1/sessions/{session_id}/photos"]["requestBody"]["content"]
    )
