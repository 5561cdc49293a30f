"""`tally`'s commands from other packages (`tally admin` from tally-admin): found through the
`tally.commands` entry points, handed their arguments untouched, and asked for by name when the
package is missing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tally_client import cli


class _EntryPoint:
    def __init__(self, command: Callable[[list[str]], int]) -> None:
        self.command = command

    def load(self) -> Callable[[list[str]], int]:
        return self.command


def _installed(
    monkeypatch: pytest.MonkeyPatch, commands: dict[str, Callable[[list[str]], int]]
) -> None:
    def entry_points(*, group: str, name: str) -> list[_EntryPoint]:
        assert group == "tally.commands"
        return [_EntryPoint(commands[name])] if name in commands else []

    monkeypatch.setattr(cli, "entry_points", entry_points)


@pytest.mark.parametrize(
    ("argv", "forwarded"),
    [
        (["admin", "create-tenant", "a", "--json"], ["create-tenant", "a", "--json"]),
        (["admin", "--help"], ["--help"]),
        (
            ["admin", "dlq", "replay", "--limit", "5", "--queue", "q"],
            ["dlq", "replay", "--limit", "5", "--queue", "q"],
        ),
        (
            ["--database-url", "postgresql://db/x", "admin", "create-key", "t"],
            ["--database-url", "postgresql://db/x", "create-key", "t"],
        ),
        (
            ["admin", "--database-url", "postgresql://db/y", "create-key", "t"],
            ["--database-url", "postgresql://db/y", "create-key", "t"],
        ),
    ],
)
def test_admin_gets_every_argument_after_its_name_in_order(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], forwarded: list[str]
) -> None:
    received: list[list[str]] = []

    def admin(args: list[str]) -> int:
        received.append(args)
        return 7

    _installed(monkeypatch, {"admin": admin})
    assert cli.main(argv) == 7  # its exit status is tally's
    assert received == [forwarded]


def test_without_tally_admin_the_command_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _installed(monkeypatch, {})
    assert cli.main(["admin", "create-tenant", "a"]) == 2
    err = capsys.readouterr().err
    assert "pip install tally-admin" in err


def test_user_commands_still_refuse_arguments_they_do_not_know(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["status", "some-session", "--bogus"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
