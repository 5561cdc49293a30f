"""`tally upload` and `tally status`: upload a folder, watch its jobs, print the results."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from tally_client.eta import eta_text
from tally_client.sdk import FINAL, TallyClient

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


def photos_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def upload(
    client: TallyClient,
    directory: Path,
    name: str,
    batch: int,
    console: Console,
    model: str | None = None,
) -> str:
    photos = photos_in(directory)
    if not photos:
        raise SystemExit(f"no photos in {directory}")
    params = {"model": model} if model else None
    session_id = client.create_session(name or directory.name, params)
    console.print(f"session [bold]{session_id}[/] - uploading {len(photos)} photos")
    for start in range(0, len(photos), batch):
        answer = client.upload(session_id, photos[start : start + batch])
        for refused in answer["rejected"]:
            console.print(
                f"[red]refused[/] {refused['filename']}: {refused['code']} ({refused['message']})"
            )
    return session_id


def watch(
    client: TallyClient, session_id: str, interval_s: float | None, console: Console
) -> dict[str, Any]:
    """Progress bars (overall and per photo), until every job is final: from the session's
    event stream (resumed after cuts; polling when there is none), or from polling every
    `interval_s` when that is given."""
    bars: dict[str, TaskID] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f} %"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("[bold]all photos", total=100.0, status="")
        states = (
            client.follow(session_id) if interval_s is None else client.poll(session_id, interval_s)
        )
        for state in states:
            for job in state["jobs"]:
                bar = bars.get(job["job_id"])
                if bar is None:
                    bar = bars[job["job_id"]] = progress.add_task(
                        job["filename"], total=100.0, status=""
                    )
                percent = job["progress_percent"] or 0.0
                progress.update(bar, completed=percent, status=job["status"])
            summary = state["summary"]
            if not summary:
                continue
            done = sum(summary[s] for s in FINAL)
            eta = eta_text(summary)
            progress.update(
                overall,
                completed=summary["overall_progress_percent"] or 0.0,
                status=f"{done} of {summary['total']} photos done" + (f", {eta}" if eta else ""),
            )
    # The record as the polling endpoint gives it, results included.
    return client.jobs(session_id)


def results_table(client: TallyClient, state: dict[str, Any]) -> Table:
    table = Table(title=f"session {state['session_id']}")
    for column in ("photo", "status", "seedling", "weed", "s after upload", "note"):
        table.add_column(
            column, justify="right" if column in ("seedling", "weed", "s after upload") else "left"
        )
    for job in state["jobs"]:
        counts = (job.get("result") or {}).get("counts") or {}
        seconds = ""
        if job.get("created_at") and job.get("completed_at"):
            took = datetime.fromisoformat(job["completed_at"]) - datetime.fromisoformat(
                job["created_at"]
            )
            seconds = f"{took.total_seconds():.1f}"
        table.add_row(
            job["filename"],
            job["status"],
            str(counts.get("seedling", "")),
            str(counts.get("weed", "")),
            seconds,
            job.get("error_message") or "",
        )
    return table
