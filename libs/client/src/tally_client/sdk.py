"""A small synchronous client of Tally's HTTP API."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


class TallyError(RuntimeError):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.body = body


class TallyClient:
    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout_s: float = 120.0
    ) -> None:
        key = api_key or os.environ.get("TALLY_API_KEY")
        if not key:
            raise ValueError("no API key: set TALLY_API_KEY (tally admin create-tenant makes one)")
        self._http = httpx.Client(
            base_url=url or os.environ.get("TALLY_URL", DEFAULT_URL),
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _json(self, response: httpx.Response, *accepted: int) -> dict[str, Any]:
        body: dict[str, Any] = response.json() if response.content else {}
        if response.status_code not in accepted:
            error = body.get("error", {})
            raise TallyError(
                response.status_code,
                error.get("code", "http_error"),
                error.get("message", response.text),
                body,
            )
        return body

    def create_session(self, name: str = "", params: dict[str, Any] | None = None) -> str:
        body = self._json(
            self._http.post("/v1/sessions", json={"name": name, "params": params or {}}), 201
        )
        return str(body["session_id"])

    def upload(self, session_id: str, photos: Iterable[Path]) -> dict[str, Any]:
        """Upload photos in one request: accepted jobs and per-file refusals."""
        files = [
            ("file", (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "image/jpeg"))
            for p in photos
        ]
        response = self._http.post(f"/v1/sessions/{session_id}/photos", files=files)
        if 400 <= response.status_code < 500 and "rejected" in response.json():
            return {"jobs": [], "rejected": response.json()["rejected"]}
        return self._json(response, 202)

    def jobs(self, session_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/sessions/{session_id}/jobs"), 200)

    def result(self, job_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/jobs/{job_id}/result"), 200)
