"""`TallyClient.export` and `tally export`: a session's export streamed into a file."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tally_client import cli
from tally_client.sdk import TallyClient, TallyError

PIECES = [b"job_id,status\r\n", b"j1,completed\r\n", b"j2,failed\r\n"]


class _Pieces(httpx.SyncByteStream):
    def __init__(self, pieces: list[bytes], cut: bool = False) -> None:
        self.pieces = pieces
        self.cut = cut

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.cut:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def _serve(request: httpx.Request) -> httpx.Response:
    if request.url.path != "/v1/sessions/s1/export":
        body = {"error": {"code": "not_found", "message": "no session"}}
        return httpx.Response(404, json=body)
    if request.url.params["format"] not in {"csv", "json", "coco"}:
        body = {"error": {"code": "invalid_request", "message": "format: bad"}}
        return httpx.Response(422, json=body)
    cut = request.url.params["format"] == "coco"
    return httpx.Response(200, stream=_Pieces(PIECES, cut=cut))


def _client() -> TallyClient:
    client = TallyClient("http://tally", "tly_test")
    client._http.close()  # the same client, its requests answered here
    client._http = httpx.Client(base_url="http://tally", transport=httpx.MockTransport(_serve))
    return client


def test_the_export_streams_into_the_file_and_counts_its_bytes() -> None:
    out = io.BytesIO()
    with _client() as client:
        written = client.export("s1", "csv", out)
    assert out.getvalue() == b"".join(PIECES)
    assert written == len(out.getvalue())


@pytest.mark.parametrize(
    ("session", "fmt", "code"), [("nope", "csv", "not_found"), ("s1", "xml", "invalid_request")]
)
def test_an_error_answer_is_a_tally_error_and_writes_nothing(
    session: str, fmt: str, code: str
) -> None:
    out = io.BytesIO()
    with _client() as client, pytest.raises(TallyError) as raised:
        client.export(session, fmt, out)
    assert raised.value.code == code
    assert out.getvalue() == b""


def test_a_cut_off_export_raises_after_what_came() -> None:
    out = io.BytesIO()
    with _client() as client, pytest.raises(httpx.RemoteProtocolError):
        client.export("s1", "coco", out)
    assert out.getvalue() == b"".join(PIECES)


def test_tally_export_writes_the_file_or_leaves_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "TallyClient", _client)
    whole = tmp_path / "s1.csv"
    assert cli.main(["export", "s1", "--format", "csv", "-o", str(whole)]) == 0
    assert whole.read_bytes() == b"".join(PIECES)
    assert f"bytes to {whole}" in capsys.readouterr().err
    cut = tmp_path / "s1.coco.json"
    assert cli.main(["export", "s1", "--format", "coco", "-o", str(cut)]) == 1
    assert not cut.exists()
    assert "tally:" in capsys.readouterr().err
    missing = tmp_path / "nope.csv"
    assert cli.main(["export", "nope", "--format", "csv", "-o", str(missing)]) == 1
    assert not missing.exists()


def test_tally_export_refuses_a_format_it_does_not_know(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["export", "s1", "--format", "xml"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
