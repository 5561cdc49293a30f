"""`tally admin` (the tally command, with tally-admin installed) against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import tally_admin.cli
from tally_client.cli import main
from tally_db import Store
from tally_model.layouts import wrapped_bytes
from tally_stack import free_port
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY

pytestmark = pytest.mark.integration


def _run(capsys: pytest.CaptureFixture[str], database: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", database, "admin", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _tenant_of(database: str, key: str) -> str | None:
    async def lookup() -> str | None:
        async with Store.open(database) as store:
            caller = await store.caller_for_api_key(key)
            return None if caller is None else str(caller.tenant.id)

    return asyncio.run(lookup())


def test_create_tenant_prints_a_working_key_once(
    capsys: pytest.CaptureFixture[str], database: str
) -> None:
    code, out, err = _run(capsys, database, "create-tenant", "greenhouse-a", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["name"] == "greenhouse-a"
    assert created["api_key"].startswith("tly_")
    assert _tenant_of(database, created["api_key"]) == created["tenant_id"]

    code, out, err = _run(capsys, database, "create-tenant", "greenhouse-a")
    assert code == 1
    assert "exists" in err


def test_keys_can_be_added_and_revoked(capsys: pytest.CaptureFixture[str], database: str) -> None:
    _, out, _ = _run(capsys, database, "create-tenant", "b", "--json")
    tenant = json.loads(out)["tenant_id"]
    code, out, err = _run(capsys, database, "create-key", tenant)
    assert code == 0
    assert "shown only once" in err
    fields = dict(line.split(maxsplit=1) for line in out.strip().splitlines())
    assert _tenant_of(database, fields["api_key"]) == tenant

    assert _run(capsys, database, "revoke-key", tenant, fields["key_id"])[0] == 0
    assert _tenant_of(database, fields["api_key"]) is None
    assert _run(capsys, database, "revoke-key", tenant, fields["key_id"])[0] == 1


def test_a_read_only_key_says_its_scope(capsys: pytest.CaptureFixture[str], database: str) -> None:
    _, out, _ = _run(capsys, database, "create-tenant", "c", "--json")
    tenant = json.loads(out)["tenant_id"]
    code, out, _ = _run(capsys, database, "create-key", tenant, "--scope", "read", "--json")
    assert code == 0
    assert json.loads(out)["scope"] == "read"


def test_a_tenants_limits_are_set_shown_and_cleared_by_name(
    capsys: pytest.CaptureFixture[str], database: str
) -> None:
    _, out, _ = _run(capsys, database, "create-tenant", "d", "--json")
    tenant = json.loads(out)["tenant_id"]
    code, out, _ = _run(capsys, database, "set-limits", tenant, "read_rate=5", "--json")
    assert code == 0
    assert json.loads(out)["read_rate"] == "5 (own)"
    code, out, _ = _run(capsys, database, "set-limits", tenant, "read_rate=", "--json")
    shown = json.loads(out)
    assert shown["read_rate"] == "50"
    assert shown["queued_slices"] == "200000"

    code, _, err = _run(capsys, database, "set-limits", tenant, "reed_rate=5")
    assert code == 1
    assert "no limit named 'reed_rate'" in err
    code, _, err = _run(capsys, database, "set-limits", tenant, "read_rate=-1")
    assert code == 1
    assert "read_rate" in err
    code, _, err = _run(capsys, database, "set-limits", str(uuid.uuid4()), "read_rate=1")
    assert code == 1
    assert "no tenant" in err


def test_usage_shows_a_tenants_days_totals_queued_work_and_quotas(
    capsys: pytest.CaptureFixture[str], database: str
) -> None:
    _, out, _ = _run(capsys, database, "create-tenant", "e", "--json")
    tenant = json.loads(out)["tenant_id"]

    async def used() -> str:
        async with Store.open(database) as store:
            session = await store.create_session(uuid.UUID(tenant))
            await store.pool.execute(
                """INSERT INTO jobs (id, tenant_id, session_id, image_id, filename, object_key,
                                     width, height, planned_slices)
                   VALUES (gen_random_uuid(), $1, $2, gen_random_uuid(), 'a.jpg', 'k', 800,
                           600, 4)""",
                uuid.UUID(tenant),
                session.id,
            )
            today: datetime.date = await store.pool.fetchval(
                "SELECT (now() AT TIME ZONE 'UTC')::date"
            )
            await store.pool.execute(
                """INSERT INTO usage_daily (tenant_id, day, photos, slices, bytes)
                   VALUES ($1, $2, 1, 4, 1000), ($1, $3, 2, 30, 5000)""",
                uuid.UUID(tenant),
                today,
                today - datetime.timedelta(days=1),
            )
            return today.isoformat()

    today = asyncio.run(used())
    code, out, _ = _run(capsys, database, "usage", tenant, "--days", "3", "--json")
    assert code == 0
    usage = json.loads(out)
    assert [(d["photos"], d["slices"], d["bytes"]) for d in usage["days"]] == [
        (0, 0, 0),
        (2, 30, 5000),
        (1, 4, 1000),
    ]
    assert (usage["to"], usage["totals"]) == (today, {"photos": 3, "slices": 34, "bytes": 6000})
    assert usage["queued"] == {"photos": 1, "slices": 4}
    assert usage["limits"]["daily_slices"] == 2_000_000

    code, out, _ = _run(capsys, database, "usage", tenant, "--days", "2")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["day", "photos", "slices", "bytes"]
    assert lines[2].split() == [today, "1", "4", "1000"]
    assert lines[3].split() == ["total", "3", "34", "6000"]
    assert lines[4].startswith("queued: 1 of 10000 photos, 4 of 200000 slices; today 4 of")

    code, _, err = _run(capsys, database, "usage", str(uuid.uuid4()))
    assert code == 1
    assert "no tenant" in err
    with pytest.raises(SystemExit):
        _run(capsys, database, "usage", tenant, "--days", "0")


def test_a_key_for_an_unknown_tenant_is_an_error(
    capsys: pytest.CaptureFixture[str], database: str
) -> None:
    code, _, err = _run(capsys, database, "create-key", str(uuid.uuid4()))
    assert code == 1
    assert "no tenant" in err


def test_dead_letters_with_the_broker_unreachable_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALLY_AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    assert main(["admin", "dlq", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tally: cannot reach RabbitMQ"), err
    assert "guest" not in err  # no credentials in the message


def test_tally_admin_is_what_the_tally_command_runs_as_admin() -> None:
    (entry,) = entry_points(group="tally.commands", name="admin")
    assert entry.load() is tally_admin.cli.main


def test_an_operator_adds_lists_and_deletes_a_shared_model(
    capsys: pytest.CaptureFixture[str],
    database: str,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name, value in {
        "TALLY_S3_ENDPOINT_URL": s3_endpoint,
        "TALLY_S3_BUCKET": f"shared-{uuid.uuid4().hex[:8]}",
        "TALLY_S3_ACCESS_KEY_ID": MOTO_ACCESS_KEY,
        "TALLY_S3_SECRET_ACCESS_KEY": MOTO_SECRET_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    onnx = tmp_path / "traps.onnx"
    onnx.write_bytes(wrapped_bytes("yolov5"))
    args = ["models", "add", str(onnx), "--name", "traps", "--format", "yolov5"]
    code, out, _ = _run(capsys, database, *args, "--labels", "whitefly,thrips", "--json")
    assert code == 0
    added = json.loads(out)
    assert (added["model"], added["format"], added["labels"], added["status"]) == (
        "traps:1",
        "yolov5",
        "whitefly,thrips",
        "validating",
    )
    # Checked like a tenant's upload: a wrong declared format stores nothing.
    wrong = ["models", "add", str(onnx), "--name", "traps", "--format", "yolov8"]
    code, _, err = _run(capsys, database, *wrong, "--labels", "whitefly,thrips")
    assert code == 1
    assert "model_format_mismatch" in err

    code, out, _ = _run(capsys, database, "models", "list", "--json")
    assert [m["model"] for m in json.loads(out)] == ["seedlings:1", "traps:1"]
    code, out, _ = _run(capsys, database, "models", "delete", added["model_id"], "--json")
    assert (code, json.loads(out)) == (0, {"deleted": "traps:1"})
    code, out, _ = _run(capsys, database, "models", "list", "--json")
    assert [m["model"] for m in json.loads(out)] == ["seedlings:1"]
