"""What installing the SDK brings: the HTTP client, the typed models and the terminal output,
not the database or the bus drivers (those come with tally-admin, the operator's commands)."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SERVER_SIDE = {"asyncpg", "aio-pika", "tally-db", "tally-bus"}


def _installed_closure(distribution: str) -> set[str]:
    """Every distribution that installing `distribution` pulls in (markers of this machine, no
    extras), from the installed packages' metadata."""
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            specs = requires(name) or []
        except PackageNotFoundError:
            continue
        for spec in specs:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_the_sdk_declares_neither_the_database_nor_the_bus() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    names = {canonicalize_name(Requirement(spec).name) for spec in declared}
    assert names == {"httpx", "pydantic", "rich"}
    assert not names & SERVER_SIDE


def test_nothing_it_pulls_in_brings_them_either() -> None:
    closure = _installed_closure("tally-client")
    assert {"tally-client", "httpx", "pydantic", "rich"} <= closure
    assert not closure & SERVER_SIDE, closure & SERVER_SIDE
