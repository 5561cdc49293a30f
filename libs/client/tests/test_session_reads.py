"""The SDK's reads of a big session: every page once, then deltas, merged by revision. Against a
small fake of the gateway's paging and delta contract (the real one is in tests/integration)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tally_client.sdk import TallyClient, keep_newer


def _job(n: int, status: str = "queued", revision: int = 1) -> dict[str, Any]:
    return {
        "job_id": f"j{n:02}",
        "filename": f"{n:02}.jpg",
        "status": status,
        "created_at": f"2026-12-01T10:00:{n:02}+00:00",
        "revision": revision,
    }


def _summary(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {s: sum(j["status"] == s for j in jobs) for s in ("queued", "processing", "completed")}
    return {"total": len(jobs), **counts}


class FakeGateway:
    """Pages of `limit` jobs by cursor, and deltas since a version (epoch 1, rev = changes)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = [_job(n) for n in range(jobs)]
        self.rev = 1
        self.changed: dict[str, int] = {j["job_id"]: 1 for j in self.jobs}
        self.deleted: dict[str, int] = {}
        self.asked: list[dict[str, str]] = []
        self.epoch = "1"

    def change(self, n: int, status: str) -> None:
        self.rev += 1
        self.jobs[n] = _job(n, status, self.rev)
        self.changed[self.jobs[n]["job_id"]] = self.rev

    def delete(self, n: int) -> None:
        self.rev += 1
        gone = self.jobs.pop(n)
        self.deleted[gone["job_id"]] = self.rev

    def serve(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        self.asked.append(query)
        limit = int(query.get("limit", "3"))
        version = f"{self.epoch}.{self.rev}"
        common = {"version": version, "summary": _summary(self.jobs), "poll_interval_ms": 2000}
        since = query.get("since")
        if since is not None and since.split(".")[0] == self.epoch:
            after = int(since.split(".")[1])
            moved = [j for j in self.jobs if self.changed[j["job_id"]] > after]
            gone = [job_id for job_id, rev in self.deleted.items() if rev > after]
            body = common | {"jobs": moved, "deleted": gone, "more": False, "since": since}
            return httpx.Response(200, json=body)
        cursor = query.get("cursor", "")
        rest = [j for j in self.jobs if j["job_id"] > cursor]
        page = rest[:limit]
        body = common | {
            "jobs": page,
            "next_cursor": page[-1]["job_id"] if len(rest) > limit else None,
        }
        if since is not None:
            body |= {"reload": True, "since": since}
        return httpx.Response(200, json=body)


def _client(gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> TallyClient:
    monkeypatch.setattr("tally_client.sdk.time.sleep", lambda _: None)
    client = TallyClient("http://tally", "tly_test")
    client._http.close()
    client._http = httpx.Client(
        base_url="http://tally", transport=httpx.MockTransport(gateway.serve)
    )
    return client


def test_jobs_reads_every_page_once_with_the_first_pages_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = FakeGateway(8)
    with _client(gateway, monkeypatch) as client:
        state = client.jobs("s")
    assert [j["filename"] for j in state["jobs"]] == [f"{n:02}.jpg" for n in range(8)]
    assert state["version"] == "1.1"
    assert [q.get("cursor") for q in gateway.asked] == [None, "j02", "j05"]


def test_polling_reads_the_pages_once_then_only_the_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = FakeGateway(7)
    with _client(gateway, monkeypatch) as client:
        states = client.poll("s")
        first = next(states)
        assert len(first["jobs"]) == 7
        gateway.change(4, "processing")
        gateway.delete(6)
        second = next(states)
        assert [q.get("since") for q in gateway.asked[-1:]] == ["1.1"]
        assert [j["status"] for j in second["jobs"]] == ["queued"] * 4 + ["processing", "queued"]
        for n in range(6):
            gateway.change(n, "completed")
        last = next(states)
        assert all(j["status"] == "completed" for j in last["jobs"])
        assert list(states) == []  # every job final: polling ends
    # After the 3 pages, one delta per poll: no page was read again.
    assert [q.get("cursor") for q in gateway.asked if "since" not in q] == [None, "j02", "j05"]


def test_a_version_too_old_makes_the_poller_read_every_page_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = FakeGateway(5)
    with _client(gateway, monkeypatch) as client:
        states = client.poll("s")
        next(states)
        gateway.epoch = "2"  # Redis lost the projection and it was rebuilt
        gateway.delete(0)
        reloaded = next(states)
    assert [j["filename"] for j in reloaded["jobs"]] == ["01.jpg", "02.jpg", "03.jpg", "04.jpg"]
    assert gateway.asked[-1] == {"cursor": "j03"}  # the reload's second page


def test_the_higher_revision_of_a_job_is_kept_whatever_the_order() -> None:
    jobs: dict[str, dict[str, Any]] = {}
    keep_newer(jobs, _job(1, "processing", 5))
    keep_newer(jobs, _job(1, "queued", 3))  # a page read before the change, arriving after
    assert jobs["j01"]["status"] == "processing"
    keep_newer(jobs, _job(1, "completed", 9))
    assert jobs["j01"]["status"] == "completed"
    keep_newer(jobs, _job(1, "completed", 9) | {"revision": None})  # from the system of record
    assert jobs["j01"]["revision"] is None


def _stream(*events: tuple[str, str, dict[str, Any]]) -> bytes:
    return b"".join(
        f"id: {i}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode() for i, kind, data in events
    )


def test_following_reads_the_pages_after_the_snapshot_and_applies_deletions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = FakeGateway(5)
    first = [_job(0), _job(1), _job(2)]
    summary = _summary(gateway.jobs)
    done = _summary([_job(n, "completed") for n in range(4)])
    body = _stream(
        ("1-0", "snapshot", {"jobs": first, "next_cursor": "j02", "summary": summary}),
        ("2-0", "deleted", {"session_id": "s", "job_id": "j04"}),
        ("3-0", "job", _job(3, "completed", 7)),
        ("4-0", "done", {"summary": done}),
    )

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=body)
        return gateway.serve(request)

    monkeypatch.setattr("tally_client.sdk.time.sleep", lambda _: None)
    with TallyClient("http://tally", "tly_test") as client:
        client._http.close()
        client._http = httpx.Client(base_url="http://tally", transport=httpx.MockTransport(serve))
        states = list(client.follow("s"))
    snapshot, deleted, changed, last = states
    assert [j["filename"] for j in snapshot["jobs"]] == [f"{n:02}.jpg" for n in range(5)]
    assert [j["job_id"] for j in deleted["jobs"]] == ["j00", "j01", "j02", "j03"]
    assert changed["jobs"][3]["status"] == "completed"
    assert last["summary"] == done
