"""`tally admin`: the operator's commands, straight to the record store and the bus.

    tally admin create-tenant NAME [--json]     a tenant and its first API key
    tally admin create-key TENANT_ID [--scope read|write] [--json]
                                                another API key for a tenant (read: sees
                                                everything, changes nothing)
    tally admin set-limits TENANT_ID NAME=VALUE…   the tenant's own limits (NAME= clears one);
                                                `tally admin set-limits TENANT_ID` shows them
    tally admin dlq list [--queue Q] [--json]   what waits in the dead-letter queues, and why
    tally admin dlq replay [--queue Q] [--limit N]   send it back for fresh attempts
    tally admin revoke-key TENANT_ID KEY_ID     a key stops working (within the gateway's
                                                key cache time, 10 s by default)
    tally admin usage TENANT_ID [--days N] [--json]   photos, slices and bytes by UTC day (the
                                                last N days, 30 by default), queued work, quotas
    tally admin models add FILE --name N --format F --labels a,b [--input-size S]
                                                a shared model every tenant may use (checked,
                                                stored; validated on Triton by tally-models)
    tally admin models list [--json]            the shared models
    tally admin models delete MODEL_ID          a shared version (refused while in use)

Tenant and key commands talk to PostgreSQL (TALLY_DATABASE_URL, or --database-url), `dlq` to
RabbitMQ (TALLY_AMQP_URL, names under TALLY_BUS_PREFIX), `models` to PostgreSQL and the object
store (TALLY_S3_*, as the services): they are for operators, not for tenants,
which is why they live apart from the SDK. An API key is printed once and never stored; only its
digest is. The `tally` command runs these through its `tally.commands` entry point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic_settings import SettingsConfigDict

from tally_bus import Bus, BusUnreachableError, Topology, parked, replay
from tally_db import (
    NAME_PATTERN,
    SCOPES,
    ConflictError,
    Model,
    NotFoundError,
    Store,
    delete_model,
    model_from_row,
    usage_days,
    usage_now,
    usage_totals,
)
from tally_inference import FORMATS, ModelCheckError
from tally_storage import ObjectStore, S3Fields
from tally_upload._models import register_model
from tally_web.limits import QUOTAS, Limits, checked

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/tally"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# An operator's model: larger than a tenant's upload may be (the file is read from disk here).
MAX_SHARED_MODEL_BYTES = 1 << 30


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id") from None


async def _create_tenant(store: Store, args: argparse.Namespace) -> dict[str, str]:
    tenant = await store.create_tenant(args.name)
    created = await store.create_api_key(tenant.id)
    return {
        "tenant_id": str(tenant.id),
        "name": tenant.name,
        "key_id": str(created.api_key.id),
        "api_key": created.key,
    }


async def _create_key(store: Store, args: argparse.Namespace) -> dict[str, str]:
    created = await store.create_api_key(args.tenant_id, args.scope)
    return {
        "tenant_id": str(args.tenant_id),
        "key_id": str(created.api_key.id),
        "scope": created.api_key.scope,
        "api_key": created.key,
    }


def _limit(text: str) -> tuple[str, float | None]:
    name, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=VALUE (NAME= clears it)")
    try:
        return name, float(value) if value else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None


async def _set_limits(store: Store, args: argparse.Namespace) -> dict[str, str]:
    changes = checked(dict(args.limits))
    tenant = (
        await store.set_tenant_limits(args.tenant_id, changes)
        if changes
        else await store.get_tenant(args.tenant_id)
    )
    if tenant is None:
        raise NotFoundError(f"no tenant {args.tenant_id}")
    effective = Limits().for_tenant(tenant)
    return {"tenant_id": str(tenant.id)} | {
        name: f"{getattr(effective, name):g}" + (" (own)" if name in tenant.limits else "")
        for name in type(effective).model_fields
    }


async def _revoke_key(store: Store, args: argparse.Namespace) -> dict[str, str]:
    if not await store.revoke_api_key(args.tenant_id, args.key_id):
        raise NotFoundError(f"tenant {args.tenant_id} has no live key {args.key_id}")
    return {"tenant_id": str(args.tenant_id), "key_id": str(args.key_id), "revoked": "true"}


Command = Callable[[Store, argparse.Namespace], Awaitable[dict[str, str]]]


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 1 <= days <= 366:
        raise argparse.ArgumentTypeError("--days is from 1 to 366")
    return days


async def _usage(database_url: str, tenant_id: uuid.UUID, days: int) -> dict[str, Any]:
    """The tenant's usage as GET /v1/usage answers it, for the last `days` UTC days."""
    async with Store.open(database_url, max_size=1) as store:
        tenant = await store.get_tenant(tenant_id)
        if tenant is None:
            raise NotFoundError(f"no tenant {tenant_id}")
        now = await usage_now(store.pool, tenant_id)
        first = now.today - timedelta(days=days - 1)
        by_day = await usage_days(store.pool, tenant_id, first, now.today)
    limits = Limits().for_tenant(tenant)
    return {
        "tenant_id": str(tenant_id),
        "from": first.isoformat(),
        "to": now.today.isoformat(),
        "days": [
            {"day": d.day.isoformat(), "photos": d.photos, "slices": d.slices, "bytes": d.bytes}
            for d in by_day
        ],
        "totals": usage_totals(by_day),
        "queued": {"photos": now.queued_photos, "slices": now.queued_slices},
        "today": {"slices": now.daily_slices},
        "month": {"slices": now.monthly_slices},
        "limits": {name: getattr(limits, name) for name in QUOTAS},
    }


def _usage_command(args: argparse.Namespace) -> int:
    try:
        usage = asyncio.run(_usage(args.database_url, args.tenant_id, args.days))
    except NotFoundError as exc:
        print(f"tally: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(usage))
        return 0
    print(f"{'day':10}  {'photos':>8}  {'slices':>12}  {'bytes':>15}")
    for day in usage["days"]:
        print(f"{day['day']:10}  {day['photos']:8}  {day['slices']:12}  {day['bytes']:15}")
    totals, queued, limits = usage["totals"], usage["queued"], usage["limits"]
    print(f"{'total':10}  {totals['photos']:8}  {totals['slices']:12}  {totals['bytes']:15}")
    print(
        f"queued: {queued['photos']} of {limits['queued_photos']} photos, "
        f"{queued['slices']} of {limits['queued_slices']} slices; "
        f"today {usage['today']['slices']} of {limits['daily_slices']} slices, "
        f"this month {usage['month']['slices']} of {limits['monthly_slices']}"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tally admin", description="Operator commands (record store and bus access)."
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("TALLY_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create_tenant = commands.add_parser("create-tenant", help="a tenant and its first API key")
    create_tenant.add_argument("name")
    create_tenant.set_defaults(run=_create_tenant)
    create_key = commands.add_parser("create-key", help="another API key for a tenant")
    create_key.add_argument("tenant_id", type=_uuid)
    create_key.add_argument("--scope", choices=SCOPES, default="write")
    create_key.set_defaults(run=_create_key)
    set_limits = commands.add_parser(
        "set-limits", help="a tenant's own limits (rates, streams, quotas); none: show them"
    )
    set_limits.add_argument("tenant_id", type=_uuid)
    set_limits.add_argument("limits", nargs="*", type=_limit, metavar="NAME=VALUE")
    set_limits.set_defaults(run=_set_limits)
    revoke_key = commands.add_parser("revoke-key", help="revoke an API key")
    revoke_key.add_argument("tenant_id", type=_uuid)
    revoke_key.add_argument("key_id", type=_uuid)
    revoke_key.set_defaults(run=_revoke_key)
    usage = commands.add_parser(
        "usage", help="a tenant's photos, slices and bytes by UTC day, queued work and quotas"
    )
    usage.add_argument("tenant_id", type=_uuid)
    usage.add_argument("--days", type=_days, default=30, help="the last N days (default 30)")
    for sub in (create_tenant, create_key, revoke_key, set_limits, usage):
        sub.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    models = commands.add_parser("models", help="the shared models of the model registry")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    add = model_commands.add_parser("add", help="a new version of a shared model (ONNX)")
    add.add_argument("file", type=Path)
    add.add_argument("--name", required=True)
    add.add_argument("--format", dest="model_format", required=True, choices=FORMATS)
    add.add_argument("--labels", required=True, help="the class names in order, comma-separated")
    add.add_argument("--input-size", type=int, default=None)
    add.set_defaults(run=_add_model)
    model_list = model_commands.add_parser("list", help="the shared models")
    delete = model_commands.add_parser("delete", help="a shared version (not while in use)")
    delete.add_argument("model_id", type=_uuid)
    delete.set_defaults(run=_delete_model)
    for sub in (add, delete):
        sub.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    model_list.add_argument("--json", action="store_true", help="JSON, for scripts")
    dlq = commands.add_parser(
        "dlq", help="dead-letter queues (RabbitMQ at TALLY_AMQP_URL, names under TALLY_BUS_PREFIX)"
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_commands.add_parser("list", help="what is parked, and why (left in place)")
    dlq_replay = dlq_commands.add_parser("replay", help="send parked messages back to work")
    dlq_replay.add_argument("--limit", type=int, default=1000)
    for sub in (dlq_list, dlq_replay):
        sub.add_argument("--queue", help="one work queue (default: all)")
        sub.add_argument("--json", action="store_true", help="JSON, for scripts")
    return parser


class _ObjectStoreSettings(S3Fields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")


def _model_row(model: Model) -> dict[str, str]:
    return {
        "model_id": str(model.id),
        "model": model.reference,
        "format": model.format,
        "labels": ",".join(model.labels),
        "status": model.status if model.error is None else f"{model.status}: {model.error}",
    }


async def _add_model(store: Store, args: argparse.Namespace) -> dict[str, str]:
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    if not NAME_PATTERN.match(args.name):
        raise ValueError(f"{args.name!r} is not a model name (lower-case letters, digits, .-_)")
    data = args.file.read_bytes()
    async with ObjectStore.open(_ObjectStoreSettings().s3, create_bucket=True) as objects:
        try:
            model = await register_model(
                store,
                objects,
                None,
                data,
                name=args.name,
                model_format=args.model_format,
                labels=labels,
                input_size=args.input_size,
                max_bytes=MAX_SHARED_MODEL_BYTES,
            )
        except ModelCheckError as exc:
            raise ValueError(f"{exc.code}: {exc.message}") from None
    return _model_row(model)


async def _shared_models(database_url: str) -> list[dict[str, str]]:
    async with Store.open(database_url, max_size=1) as store:
        rows = await store.pool.fetch(
            "SELECT * FROM models WHERE tenant_id IS NULL AND deleted_at IS NULL "
            "ORDER BY is_default DESC, name, version DESC"
        )
    return [_model_row(model_from_row(row)) for row in rows]


async def _delete_model(store: Store, args: argparse.Namespace) -> dict[str, str]:
    async with store.transaction() as connection:
        model = await delete_model(connection, None, args.model_id)
    if model.object_key is not None:
        async with ObjectStore.open(_ObjectStoreSettings().s3) as objects:
            await objects.delete(model.object_key)
    return {"deleted": model.reference}


async def _dead_letters(args: argparse.Namespace) -> list[dict[str, str]]:
    url = os.environ.get("TALLY_AMQP_URL", DEFAULT_AMQP_URL)
    topology = Topology(os.environ.get("TALLY_BUS_PREFIX", "tally"))
    async with await Bus.connect(url, topology, declare=False) as bus:
        if args.dlq_command == "replay":
            return [{"replayed": str(await replay(bus, args.queue, args.limit))}]
        return [
            {
                "queue": p.queue,
                "job_id": p.job_id,
                "type": p.message_type,
                "parked_at": p.parked_at.isoformat() if p.parked_at else "",
                "reason": p.reason,
            }
            for p in await parked(bus, args.queue)
        ]


def _dlq_command(args: argparse.Namespace) -> int:
    try:
        rows = asyncio.run(_dead_letters(args))
    except (ValueError, BusUnreachableError) as exc:
        print(f"tally: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows if args.dlq_command == "list" else rows[0]))
    elif args.dlq_command == "replay":
        print(f"replayed {rows[0]['replayed']} messages")
    else:
        for row in rows:
            print(f"{row['parked_at']:32} {row['queue']:34} job {row['job_id']}  {row['reason']}")
        print(f"{len(rows)} parked")
    return 0


async def _run(database_url: str, command: Command, args: argparse.Namespace) -> dict[str, str]:
    async with Store.open(database_url, max_size=1) as store:
        return await command(store, args)


def _models_list_command(args: argparse.Namespace) -> int:
    models = asyncio.run(_shared_models(args.database_url))
    if args.json:
        print(json.dumps(models))
        return 0
    for model in models:
        print(
            f"{model['model_id']}  {model['model']:28} {model['format']:7} {model['status']:10} "
            f"{model['labels']}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dlq":
        return _dlq_command(args)
    if args.command == "usage":
        return _usage_command(args)
    if args.command == "models" and args.models_command == "list":
        return _models_list_command(args)
    try:
        result = asyncio.run(_run(args.database_url, args.run, args))
    except (ConflictError, NotFoundError, ValueError) as exc:
        print(f"tally: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:10} {value}")
        if "api_key" in result:
            print("keep the API key now: it is shown only once", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
