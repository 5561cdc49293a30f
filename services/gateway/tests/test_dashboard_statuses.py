"""The dashboard's job statuses (statuses.js) are tally_contracts.statuses', in the same order."""

from __future__ import annotations

import json
import re

from tally_contracts.statuses import FINAL, STATUSES
from tally_gateway.routes.dashboard import FOLDER

SOURCE = (FOLDER / "statuses.js").read_text()


def _list(name: str) -> list[str]:
    """The strings of `export const NAME = …[…]…;` in statuses.js."""
    match = re.search(rf"export const {name} = [^\[]*(\[[^\]]*\])", SOURCE)
    assert match is not None, f"statuses.js has no {name}"
    values: list[str] = json.loads(match[1])
    return values


def test_the_dashboard_lists_the_statuses_in_their_order() -> None:
    assert _list("STATUSES") == list(STATUSES)


def test_the_dashboard_knows_which_statuses_are_final() -> None:
    assert sorted(_list("FINAL")) == sorted(FINAL)
