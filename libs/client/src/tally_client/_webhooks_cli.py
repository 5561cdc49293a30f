"""`tally webhooks …`: the tenant's webhook endpoints and their deliveries, through the SDK.

    tally webhooks list
    tally webhooks add URL --event job.completed [--event …] [--description D]
    tally webhooks show ID
    tally webhooks enable ID | disable ID | delete ID
    tally webhooks rotate-secret ID
    tally webhooks deliveries ID [--limit N] [--cursor C]
    tally webhooks replay ID DELIVERY_ID

`add` and `rotate-secret` print the signing secret: the API shows it in that answer only.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from tally_client.sdk import TallyClient

# The events an endpoint can subscribe to: tally_contracts.webhooks.EVENT_TYPES, which the SDK
# does not import (a test keeps the two the same).
EVENTS = ("job.completed", "job.failed", "job.cancelled", "session.completed")


def add_parser(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`webhooks` and its commands, on `tally`'s subparsers (`groups`)."""
    webhooks = groups.add_parser("webhooks", help="webhook endpoints and their deliveries")
    commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    commands.add_parser("list", help="the endpoints, newest first")
    add = commands.add_parser("add", help="a new endpoint; prints its signing secret once")
    add.add_argument("url")
    add.add_argument(
        "--event",
        dest="events",
        action="append",
        required=True,
        choices=EVENTS,
        help="an event to send it (repeat for more)",
    )
    add.add_argument("--description", default=None)
    for name, about in (
        ("show", "one endpoint"),
        ("enable", "send events to it again"),
        ("disable", "stop sending events to it"),
        ("delete", "remove it and its deliveries"),
        ("rotate-secret", "a new signing secret (the old one works a while longer)"),
    ):
        commands.add_parser(name, help=about).add_argument("webhook_id")
    deliveries = commands.add_parser("deliveries", help="an endpoint's deliveries, newest first")
    deliveries.add_argument("webhook_id")
    deliveries.add_argument("--limit", type=int, default=20)
    deliveries.add_argument("--cursor", default=None, help="the next page (from the last one)")
    replay = commands.add_parser("replay", help="send a delivery again")
    replay.add_argument("webhook_id")
    replay.add_argument("delivery_id")


def run(client: TallyClient, args: argparse.Namespace, console: Console) -> int:
    command: str = args.webhooks_command
    if command == "list":
        endpoints = client.list_webhooks()
        if endpoints:
            console.print(_endpoints_table(endpoints))
        else:
            console.print("no webhook endpoints: add one with tally webhooks add URL --event EVENT")
    elif command == "add":
        # Each event once, in the order given.
        created = client.create_webhook(args.url, dict.fromkeys(args.events), args.description)
        console.print(_endpoint_table(created))
        _print_secret(console, created["secret"])
    elif command == "show":
        console.print(_endpoint_table(client.webhook(args.webhook_id)))
    elif command in ("enable", "disable"):
        changed = client.update_webhook(args.webhook_id, enabled=command == "enable")
        console.print(f"webhook {changed['webhook_id']}: {_state(changed)}", highlight=False)
    elif command == "delete":
        client.delete_webhook(args.webhook_id)
        console.print(f"webhook {args.webhook_id} deleted", highlight=False)
    elif command == "rotate-secret":
        rotated = client.rotate_webhook_secret(args.webhook_id)
        _print_secret(
            console,
            rotated["secret"],
            f"The previous secret still signs until {rotated['previous_secret_expires_at']}.",
        )
    elif command == "deliveries":
        page = client.deliveries(args.webhook_id, args.cursor, args.limit)
        console.print(_deliveries_table(args.webhook_id, page["deliveries"]))
        if page.get("next_cursor"):
            older = f"tally webhooks deliveries {args.webhook_id} --cursor {page['next_cursor']}"
            console.print(f"older: {older}", highlight=False, soft_wrap=True)
    else:  # replay
        client.replay(args.webhook_id, args.delivery_id)
        console.print(f"delivery {args.delivery_id} is sent again now", highlight=False)
    return 0


def _print_secret(console: Console, secret: str, after: str = "") -> None:
    console.print("Signing secret (shown only now: store it safely):", style="bold")
    # Alone on its line, unstyled and unwrapped, so that it copies whole.
    console.print(secret, markup=False, highlight=False, soft_wrap=True)
    if after:
        console.print(after, highlight=False)


def _state(endpoint: dict[str, Any]) -> str:
    if endpoint["enabled"]:
        return "enabled"
    reason = endpoint.get("disabled_reason")
    return f"disabled ({reason})" if reason else "disabled"


def _endpoints_table(endpoints: list[dict[str, Any]]) -> Table:
    table = Table(title="webhooks")
    table.add_column("id", no_wrap=True)  # whole, to copy into the other commands
    for column in ("url", "events", "state", "description", "created"):
        table.add_column(column, overflow="fold")
    for endpoint in endpoints:
        table.add_row(
            endpoint["webhook_id"],
            endpoint["url"],
            ", ".join(endpoint["events"]),
            _state(endpoint),
            endpoint.get("description") or "",
            endpoint.get("created_at") or "",
        )
    return table


def _endpoint_table(endpoint: dict[str, Any]) -> Table:
    table = Table(title=f"webhook {endpoint['webhook_id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("url", endpoint["url"])
    table.add_row("events", ", ".join(endpoint["events"]))
    table.add_row("state", _state(endpoint))
    if endpoint.get("failing_since"):
        table.add_row("failing since", endpoint["failing_since"])
    table.add_row("description", endpoint.get("description") or "")
    table.add_row("created", endpoint.get("created_at") or "")
    table.add_row("updated", endpoint.get("updated_at") or "")
    return table


def _attempt(attempt: dict[str, Any]) -> str:
    """One attempt in a line: `#2 HTTP 503, 120 ms, server error`, `#1 no answer, refused`."""
    code = attempt.get("status_code")
    parts = [f"#{attempt['attempt']} " + ("no answer" if code is None else f"HTTP {code}")]
    if attempt.get("latency_ms") is not None:
        parts.append(f"{attempt['latency_ms']:.0f} ms")
    if attempt.get("error"):
        parts.append(str(attempt["error"]))
    return ", ".join(parts)


def _deliveries_table(webhook_id: str, deliveries: list[dict[str, Any]]) -> Table:
    table = Table(title=f"deliveries of webhook {webhook_id}")
    table.add_column("delivery", no_wrap=True)
    for column in ("event", "status", "attempts", "next attempt", "created"):
        table.add_column(column, overflow="fold")
    for delivery in deliveries:
        attempts = sorted(delivery.get("attempts") or [], key=lambda a: int(a["attempt"]))
        table.add_row(
            delivery["delivery_id"],
            delivery["event_type"],
            delivery["status"],
            "\n".join(_attempt(a) for a in attempts) or "not attempted yet",
            (delivery.get("next_attempt_at") or "") if delivery["status"] == "pending" else "",
            delivery.get("created_at") or "",
        )
    return table
