"""The projector's Lua scripts take their KEYS in the order tally_contracts.projection gives
them: each script's header names its keys (`-- KEYS[n]: name`), and its body uses those."""

from __future__ import annotations

import re
from importlib import resources

from tally_contracts import projection

TENANT, SESSION, JOB = "t1", "s1", "j1"
# A header's name for each key, and the key it names.
NAMED = {
    "job": projection.job_key(JOB),
    "session": projection.session_key(SESSION),
    "session_order": projection.session_order_key(SESSION),
    "session_changes": projection.session_changes_key(SESSION),
    "session_events": projection.session_events_key(SESSION),
    "tenant_jobs": projection.tenant_jobs_key(TENANT),
    "job_log": projection.job_log_key(JOB),
    "ready": projection.READY_KEY,
    "tombstone": projection.tombstone_key(JOB),
}


def _script(name: str) -> str:
    return resources.files("tally_projector").joinpath(name).read_text()


def documented_keys(script: str) -> list[str]:
    """The names the header gives KEYS[1], KEYS[2], ... (`KEYS[n...]` names all the rest)."""
    found = re.findall(r"^-- KEYS\[(\d+)(?:\.\.\.)?\]: (\w+)", script, re.MULTILINE)
    assert [int(n) for n, _ in found] == list(range(1, len(found) + 1)), found
    return [name for _, name in found]


def used_keys(script: str) -> set[int]:
    """The KEYS[n] the script's code (not its comments) uses."""
    code = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    return {int(n) for n in re.findall(r"KEYS\[(\d+)\]", code)}


def test_fold_and_forget_take_the_fold_keys_in_their_order() -> None:
    for name in ("_fold.lua", "_forget.lua"):
        script = _script(name)
        names = documented_keys(script)
        assert [NAMED[n] for n in names] == projection.fold_keys(TENANT, SESSION, JOB), name
        assert used_keys(script) == set(range(1, len(names) + 1)), name


def test_announce_takes_the_session_its_stream_then_the_jobs() -> None:
    script = _script("_announce.lua")
    names = documented_keys(script)
    keys = projection.announce_keys(SESSION, [JOB, "j2"])
    assert names == ["session", "session_events", "job"]
    assert keys[:2] == [NAMED["session"], NAMED["session_events"]]
    assert keys[2:] == [projection.job_key(JOB), projection.job_key("j2")]
    assert used_keys(script) == {1, 2}
    assert "for i = 3, #KEYS do" in script  # and every key after them is a job's


def test_the_scripts_build_no_key_of_their_own() -> None:
    for name in ("_fold.lua", "_forget.lua", "_announce.lua"):
        code = "\n".join(line.split("--", 1)[0] for line in _script(name).splitlines())
        assert not re.search(r"'(job|session|tenant|projection):", code), name
