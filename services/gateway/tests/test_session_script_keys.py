"""The gateway's session read (_session.lua) takes its KEYS in the order
tally_contracts.projection.session_read_keys gives them, and reads no key it did not declare
(job hashes are read after it, in a pipeline)."""

from __future__ import annotations

import re
from importlib import resources

from tally_contracts import projection

SCRIPT = resources.files("tally_gateway").joinpath("_session.lua").read_text()
CODE = "\n".join(line.split("--", 1)[0] for line in SCRIPT.splitlines())


def test_the_session_read_takes_its_keys_in_the_documented_order() -> None:
    found = re.findall(r"^-- KEYS\[(\d+)\]: (\w+)", SCRIPT, re.MULTILINE)
    assert [int(n) for n, _ in found] == [1, 2, 3, 4]
    named = {
        "ready": projection.READY_KEY,
        "session": projection.session_key("s1"),
        "session_order": projection.session_order_key("s1"),
        "session_changes": projection.session_changes_key("s1"),
    }
    assert [named[name] for _, name in found] == projection.session_read_keys("s1")
    assert {int(n) for n in re.findall(r"KEYS\[(\d+)\]", CODE)} == {1, 2, 3, 4}


def test_the_session_read_builds_no_key_of_its_own() -> None:
    assert not re.search(r"'(job|session|tenant|projection):", CODE)
    assert ".." not in CODE.replace("'(' ..", "").replace(".. '.' ..", "")
