"""The model registry through the SDKs: the requests of the contract (a multipart form with the
ONNX file and its fields), and AsyncTally's typed answers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tally_client import AsyncTally, RegisteredModel, TallyClient

MODEL = {
    "model_id": "m1",
    "name": "traps",
    "version": 2,
    "format": "yolov8",
    "labels": ["whitefly", "thrips"],
    "input_size": 640,
    "status": "validating",
    "error": None,
    "shared": False,
    "default": False,
    "created_at": "2026-12-01T10:00:00+00:00",
}


def _answer(n: int) -> httpx.Response:
    """The server's n-th answer (0-based), in the order of SENT."""
    return [
        lambda: httpx.Response(201, json=MODEL),
        lambda: httpx.Response(200, json={"models": [MODEL]}),
        lambda: httpx.Response(200, json=MODEL | {"status": "ready"}),
        lambda: httpx.Response(204),
    ][n]()


SENT = [
    ("POST", "/v1/models"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/m1"),
    ("DELETE", "/v1/models/m1"),
]


def _form(request: httpx.Request) -> dict[str, str]:
    """The text fields of a multipart body (the file part's bytes are checked apart)."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    fields = {}
    for part in request.content.split(b"--" + boundary):
        head, _, body = part.partition(b"\r\n\r\n")
        if b'name="' in head and b"filename=" not in head:
            name = head.split(b'name="')[1].split(b'"')[0].decode()
            fields[name] = body.removesuffix(b"\r\n").decode()
    return fields


def test_the_sync_client_uploads_a_model_as_a_form_and_reads_the_registry(tmp_path: Path) -> None:
    onnx = tmp_path / "traps.onnx"
    onnx.write_bytes(b"\x08\x07onnx-bytes")
    sent: list[httpx.Request] = []

    def serve(request: httpx.Request) -> httpx.Response:
        request.read()
        sent.append(request)
        return _answer(len(sent) - 1)

    with TallyClient("http://tally", "tly_test") as client:
        client._http.close()
        client._http = httpx.Client(base_url="http://tally", transport=httpx.MockTransport(serve))
        created = client.upload_model(onnx, "traps", "yolov8", ["whitefly", "thrips"], 640)
        assert created["status"] == "validating"
        assert client.list_models() == [MODEL]
        assert client.model("m1")["status"] == "ready"
        client.delete_model("m1")
    assert [(r.method, r.url.path) for r in sent] == SENT
    assert _form(sent[0]) == {
        "name": "traps",
        "format": "yolov8",
        "labels": json.dumps(["whitefly", "thrips"]),
        "input_size": "640",
    }
    assert b'filename="traps.onnx"' in sent[0].content
    assert b"\x08\x07onnx-bytes" in sent[0].content


async def test_the_async_client_answers_registered_models(tmp_path: Path) -> None:
    onnx = tmp_path / "traps.onnx"
    onnx.write_bytes(b"onnx")
    sent: list[httpx.Request] = []

    def serve(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return _answer(len(sent) - 1)

    async with AsyncTally(
        "http://tally", "tly_test", transport=httpx.MockTransport(serve)
    ) as client:
        created = await client.upload_model(onnx, "traps", "yolov8", ["whitefly", "thrips"])
        assert isinstance(created, RegisteredModel)
        assert (created.reference, created.input_size) == ("traps:2", 640)
        assert [m.model_id for m in await client.list_models()] == ["m1"]
        assert (await client.model("m1")).status == "ready"
        await client.delete_model("m1")
    assert [(r.method, r.url.path) for r in sent] == SENT
    assert "input_size" not in _form(sent[0])
