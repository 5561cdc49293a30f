"""`tally`: Tally's command line.

    tally upload DIR [--watch]                  a session of the folder's photos; live progress
                                                (the session's event stream, resumed after
                                                cuts; polling where there is no stream)
    tally status SESSION                        the session's jobs and results
    tally webhooks ...                          webhook endpoints and their deliveries (the
                                                HTTP API too: _webhooks_cli)
    tally models ...                            detectors: upload ONNX models, list, delete
                                                (_models_cli); `upload --model` picks one
    tally export SESSION [--format csv|json|coco] [-o FILE]
                                                the session's results, streamed to FILE or
                                                stdout (json: JSON Lines, the default)
    tally admin ...                             operator commands: tenants, API keys, dead
                                                letters (the tally-admin package)

`upload`, `status` and `export` talk to the HTTP API at TALLY_URL with TALLY_API_KEY. `admin`
talks to the record store and the bus directly, so it is not part of the SDK: the tally-admin
package adds it through the `tally.commands` entry point group, and `tally` says so when it is
missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import httpx
from rich.console import Console

from tally_client import _models_cli, _webhooks_cli
from tally_client._watch import results_table, upload, watch
from tally_client.sdk import TallyClient, TallyError

# Commands other packages add to `tally`: an entry point `name = "module:main"` in this group,
# where main takes the arguments after the command's name and returns the exit status.
COMMANDS_GROUP = "tally.commands"
EXPORT_FORMATS = ("csv", "json", "coco")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tally", description="Tally's command line.")
    parser.add_argument(
        "--database-url", help="the record store, for `tally admin` (default: TALLY_DATABASE_URL)"
    )
    groups = parser.add_subparsers(dest="group", required=True)
    upload_cmd = groups.add_parser("upload", help="upload a folder of photos as one session")
    upload_cmd.add_argument("directory", type=Path)
    upload_cmd.add_argument("--watch", action="store_true", help="live progress, then results")
    upload_cmd.add_argument("--name", default="", help="session name (default: the folder's)")
    upload_cmd.add_argument("--batch", type=int, default=8, help="photos per upload request")
    upload_cmd.add_argument(
        "--model", default=None, help="the detector, NAME or NAME:VERSION (tally models list)"
    )
    upload_cmd.add_argument(
        "--interval",
        type=float,
        help="poll every this many seconds instead of following the event stream",
    )
    status_cmd = groups.add_parser("status", help="a session's jobs and results")
    status_cmd.add_argument("session_id")
    _webhooks_cli.add_parser(groups)
    _models_cli.add_parser(groups)
    export_cmd = groups.add_parser("export", help="a session's results as CSV, JSON Lines or COCO")
    export_cmd.add_argument("session_id")
    export_cmd.add_argument(
        "--format", choices=EXPORT_FORMATS, default="json", help="json: JSON Lines (the default)"
    )
    export_cmd.add_argument("-o", "--output", type=Path, help="the file to write (default: stdout)")
    # Its arguments, --help included, are the admin command's own: they pass through unparsed.
    groups.add_parser(
        "admin",
        add_help=False,
        help="operator commands: tenants, API keys, dead letters (the tally-admin package)",
    )
    return parser


def _added_command(name: str) -> Callable[[list[str]], int] | None:
    found = entry_points(group=COMMANDS_GROUP, name=name)
    if not found:
        return None
    command: Callable[[list[str]], int] = next(iter(found)).load()
    return command


def _admin_command(database_url: str | None, argv: list[str]) -> int:
    admin = _added_command("admin")
    if admin is None:
        print(
            "tally: `tally admin` comes with the tally-admin package (it needs direct access to"
            " PostgreSQL and RabbitMQ, which the SDK leaves out): pip install tally-admin",
            file=sys.stderr,
        )
        return 2
    return admin(["--database-url", database_url, *argv] if database_url else argv)


def _export(client: TallyClient, session_id: str, fmt: str, output: Path | None) -> None:
    if output is None:
        client.export(session_id, fmt, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    try:
        with output.open("wb") as out:
            written = client.export(session_id, fmt, out)
    except BaseException:
        output.unlink(missing_ok=True)  # no cut-off file to be taken for the whole export
        raise
    print(f"{written:,} bytes to {output}", file=sys.stderr)


def _user_command(args: argparse.Namespace) -> int:
    console = Console()
    try:
        with TallyClient() as client:
            if args.group == "webhooks":
                return _webhooks_cli.run(client, args, console)
            if args.group == "models":
                return _models_cli.run(client, args, console)
            if args.group == "export":
                _export(client, args.session_id, args.format, args.output)
                return 0
            if args.group == "upload":
                session_id = upload(
                    client, args.directory, args.name, args.batch, console, args.model
                )
                if not args.watch:
                    console.print(f"follow it with: tally status {session_id}")
                    return 0
                state = watch(client, session_id, args.interval, console)
            else:
                state = client.jobs(args.session_id)
            console.print(results_table(client, state))
    except (TallyError, ValueError, httpx.HTTPError) as exc:
        print(f"tally: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.group == "admin":
        return _admin_command(args.database_url, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return _user_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
