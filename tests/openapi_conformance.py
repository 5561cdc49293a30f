"""Every answer of an app checked against what its /openapi.json declares for that route: the
status is one the route declares, the content type one it declares for that status, and a JSON
body validates against the declared schema, with every object closed (a field the schema does
not describe fails, as does a missing or mistyped one).

Hooked into a test's httpx client (`event_hooks={"response": [conformance.check]}`), it checks
every request the tests make. Paths the API does not describe (the dashboard's files, unknown
paths) are left alone."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import httpx
from fastapi import FastAPI
from jsonschema import Draft202012Validator, FormatChecker


def _closed(schema: Any) -> Any:
    """The schema with `additionalProperties: false` on every object that lists its properties
    and says nothing about others."""
    if isinstance(schema, dict):
        out = {key: _closed(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile(
        "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts if p) + "$"
    )


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class Conformance:
    def __init__(self, app: FastAPI) -> None:
        spec = app.openapi()
        self._components = _closed(copy.deepcopy(spec.get("components", {})))
        self._routes = [
            (_pattern(template), template, item) for template, item in spec["paths"].items()
        ]

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for pattern, template, item in self._routes:
            if pattern.match(path) and method.lower() in item:
                return template, item[method.lower()]
        return None

    def validate(
        self, method: str, path: str, status: int, content_type: str, body: bytes | None
    ) -> None:
        """Raise AssertionError unless this answer is one the route declares (`body` None: a
        stream, not read)."""
        found = self.operation(method, path)
        if found is None:
            return
        template, operation = found
        where = f"{method} {path} answered {status}"
        declared = operation["responses"].get(str(status))
        assert declared is not None, f"{where}, a status its route ({template}) does not declare"
        content: dict[str, Any] = declared.get("content") or {}
        media = _media(content_type)
        if not content:
            assert not body, f"{where} with a body, where its route declares none"
            return
        if media != "application/json":
            kinds = {_media(kind) for kind in content}
            family = media.split("/", 1)[0] + "/*"
            assert media in kinds or family in kinds, f"{where} as {media}, not {sorted(kinds)}"
            return
        schema = content.get("application/json", {}).get("schema")
        assert schema, f"{where} with JSON, for which its route declares no schema"
        assert body is not None
        validator = Draft202012Validator(
            {**_closed(schema), "components": self._components}, format_checker=FormatChecker()
        )
        errors = sorted(validator.iter_errors(json.loads(body)), key=lambda e: e.json_path)
        assert not errors, f"{where} with a body its schema does not describe: " + "; ".join(
            f"{e.json_path}: {e.message}" for e in errors[:5]
        )

    async def check(self, response: httpx.Response) -> None:
        """An httpx response hook."""
        request = response.request
        content_type = response.headers.get("content-type", "")
        body = None
        if _media(content_type) != "text/event-stream":  # a stream's body ends with the stream
            body = await response.aread()
        self.validate(request.method, request.url.path, response.status_code, content_type, body)
