"""The gateway's session read (_session.lua) takes its KEYS in the order
tally_contracts.projection.session_read_keys gives them, and builds job keys from the prefix it
is given, not one of its own."""

from __future__ import annotations

import re
from importlib import resources

from tally_contracts import projection

SCRIPT = resources.files("tally_gateway").joinpath("_session.lua").read_text()
CODE = "\n".join(line.split("--", 1)[0] for line in SCRIPT.splitlines())


def test_the_session_read_takes_its_keys_in_the_documented_order() -> None:
    found = re.findall(r"^-- KEYS\[(\d+)\]: (\w+)", SCRIPT, re.MULTILINE)
    assert [int(n) for n, _ in found] == [1, 2, 3]
    named = {
        "ready": projection.READY_KEY,
        "session": projection.session_key("s1"),
        "session_jobs": projection.session_jobs_key("s1"),
    }
    assert [named[name] for _, name in found] == projection.session_read_keys("s1")
    assert {int(n) for n in re.findall(r"KEYS\[(\d+)\]", CODE)} == {1, 2, 3}


def test_job_keys_are_built_from_the_prefix_argument() -> None:
    assert "ARGV[3] .. id" in CODE
    assert not re.search(r"'(job|session|tenant|projection):", CODE)
