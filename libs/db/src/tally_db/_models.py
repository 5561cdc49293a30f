"""The model registry's records, one definition read and written by the upload service (a new
version), the gateway (listing, deleting), the registry's Triton controller (validation, what to
keep loaded) and the operator's `tally admin models`.

A tenant sees its own models and the shared ones (tenant_id NULL); another tenant's answer as
if they did not exist. A reference `name` or `name:version` resolves to the tenant's own model of
that name first, then a shared one; without a version, to the newest ready version.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import asyncpg

from tally_db._migrate import Connection
from tally_db._store import ConflictError, NotFoundError, Session
from tally_db._usage import Reader

ModelStatus = Literal["validating", "ready", "failed"]
# NOTIFY'd with a model id when a version waits for its dry run on Triton.
MODELS_CHANNEL: Final = "tally_models"
DEFAULT_MODEL_ID: Final = uuid.UUID("00000000-0000-0000-0000-00000000a001")
# A model's name: what a session's `params.model` names it by (`name` or `name:version`).
NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# Visible to tenant $1: its own and the shared ones, not deleted.
_VISIBLE: Final = "(tenant_id = $1 OR tenant_id IS NULL) AND deleted_at IS NULL"
_ORDER: Final = "is_default DESC, tenant_id IS NOT NULL, name, version DESC"


@dataclass(frozen=True, slots=True)
class Model:
    id: uuid.UUID
    tenant_id: uuid.UUID | None
    name: str
    version: int
    format: str
    labels: tuple[str, ...]
    input_size: int | None
    batched: bool
    input_name: str
    output_name: str
    triton_name: str
    object_key: str | None
    bytes: int
    sha256: str
    status: ModelStatus
    error: str | None
    is_default: bool
    created_at: datetime
    validated_at: datetime | None

    @property
    def shared(self) -> bool:
        return self.tenant_id is None

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class NewModel:
    """A version to record, as its static checks found it (tally_inference.ModelGraph)."""

    name: str
    format: str
    labels: Sequence[str]
    input_size: int | None
    batched: bool
    input_name: str
    output_name: str
    bytes: int
    sha256: str


def model_from_row(row: asyncpg.Record) -> Model:
    return Model(
        **{
            name: row[name]
            for name in Model.__dataclass_fields__
            if name not in ("labels", "tenant_id", "status")
        },
        tenant_id=row["tenant_id"],
        labels=tuple(json.loads(row["labels"])),
        status=row["status"],
    )


def parse_reference(reference: str) -> tuple[str, int | None]:
    """`name` or `name:version` → (name, version or None); ValueError saying what is wrong."""
    name, _, version = reference.strip().partition(":")
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"{reference!r} is not a model name: lower-case letters, digits, '.', '_' and '-', "
            "up to 63 characters, optionally ':' and a version number"
        )
    if not version:
        return name, None
    if not version.isascii() or not version.isdigit() or int(version) < 1:
        raise ValueError(f"{reference!r}: the version after ':' is a number from 1")
    return name, int(version)


async def create_model(
    connection: Connection,
    tenant_id: uuid.UUID | None,
    model_id: uuid.UUID,
    new: NewModel,
    object_key: str,
) -> Model:
    """Record the next version of `new.name` in the tenant's scope (shared when None), status
    `validating`; the caller's transaction serialises versions of one name."""
    scope = str(tenant_id) if tenant_id is not None else "shared"
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 17))", f"model:{scope}:{new.name}"
    )
    version = await connection.fetchval(
        """SELECT coalesce(max(version), 0) + 1 FROM models
           WHERE tenant_id IS NOT DISTINCT FROM $1 AND name = $2""",
        tenant_id,
        new.name,
    )
    row = await connection.fetchrow(
        """INSERT INTO models (id, tenant_id, name, version, format, labels, input_size, batched,
                               input_name, output_name, triton_name, object_key, bytes, sha256,
                               status)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14,
                   'validating')
           RETURNING *""",
        model_id,
        tenant_id,
        new.name,
        version,
        new.format,
        json.dumps(list(new.labels)),
        new.input_size,
        new.batched,
        new.input_name,
        new.output_name,
        f"m_{model_id.hex}",
        object_key,
        new.bytes,
        new.sha256,
    )
    assert row is not None
    return model_from_row(row)


async def get_model(reader: Reader, tenant_id: uuid.UUID, model_id: uuid.UUID) -> Model | None:
    """The model if the tenant may see it (its own or a shared one)."""
    row = await reader.fetchrow(
        f"SELECT * FROM models WHERE id = $2 AND {_VISIBLE}", tenant_id, model_id
    )
    return None if row is None else model_from_row(row)


async def list_models(reader: Reader, tenant_id: uuid.UUID) -> list[Model]:
    """The default first, then the other shared models, then the tenant's own; by name, the
    newest version first."""
    rows = await reader.fetch(f"SELECT * FROM models WHERE {_VISIBLE} ORDER BY {_ORDER}", tenant_id)
    return [model_from_row(row) for row in rows]


async def default_model(reader: Reader) -> Model:
    row = await reader.fetchrow(
        "SELECT * FROM models WHERE is_default AND deleted_at IS NULL ORDER BY created_at LIMIT 1"
    )
    if row is None:
        raise NotFoundError("no default model is recorded (migration 0005 adds the built-in)")
    return model_from_row(row)


async def resolve_model(reader: Reader, tenant_id: uuid.UUID, reference: str) -> Model:
    """The model `reference` names for the tenant: NotFoundError when there is none it may see,
    ConflictError when it exists but is not ready (validating, or failed); ValueError when the
    reference is not one."""
    name, version = parse_reference(reference)
    rows = await reader.fetch(
        f"""SELECT * FROM models WHERE {_VISIBLE} AND name = $2
            AND ($3::int IS NULL OR version = $3)
            ORDER BY tenant_id IS NULL, version DESC""",
        tenant_id,
        name,
        version,
    )
    if not rows:
        raise NotFoundError(f"no model {reference!r}")
    # The tenant's own name hides a shared one of the same name.
    scope = rows[0]["tenant_id"]
    candidates = [model_from_row(row) for row in rows if row["tenant_id"] == scope]
    ready = [model for model in candidates if model.status == "ready"]
    if ready:
        return ready[0]
    newest = candidates[0]
    if newest.status == "validating":
        raise ConflictError(f"model {newest.reference} is still being validated")
    raise ConflictError(f"model {newest.reference} failed its validation: {newest.error}")


async def delete_model(
    connection: Connection, tenant_id: uuid.UUID | None, model_id: uuid.UUID
) -> Model:
    """Mark one of the scope's models deleted (its file is the caller's to remove):
    NotFoundError when the scope has no such model, ConflictError while a session with work
    left uses it, or for the default."""
    row = await connection.fetchrow(
        """SELECT * FROM models WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2
           AND deleted_at IS NULL FOR UPDATE""",
        model_id,
        tenant_id,
    )
    if row is None:
        raise NotFoundError(f"no model {model_id}")
    model = model_from_row(row)
    if model.is_default:
        raise ConflictError("the default model cannot be deleted")
    in_use = await connection.fetchval(
        """SELECT count(*) FROM sessions s WHERE s.model_id = $1 AND EXISTS (
               SELECT 1 FROM jobs j WHERE j.tenant_id = s.tenant_id AND j.session_id = s.id
               AND j.status IN ('queued', 'processing'))""",
        model_id,
    )
    if in_use:
        raise ConflictError(
            f"model {model.reference} is in use by {in_use} session(s) with work left; delete it "
            "once they finish (or cancel them)"
        )
    await connection.execute("UPDATE models SET deleted_at = now() WHERE id = $1", model_id)
    return model


async def set_model_status(
    connection: Connection, model_id: uuid.UUID, status: ModelStatus, error: str | None = None
) -> None:
    await connection.execute(
        """UPDATE models SET status = $2, error = $3, validated_at = now()
           WHERE id = $1 AND deleted_at IS NULL""",
        model_id,
        status,
        error,
    )


async def models_to_validate(reader: Reader, limit: int = 10) -> list[Model]:
    rows = await reader.fetch(
        """SELECT * FROM models WHERE status = 'validating' AND deleted_at IS NULL
           ORDER BY created_at LIMIT $1""",
        limit,
    )
    return [model_from_row(row) for row in rows]


async def models_in_use(reader: Reader) -> list[Model]:
    """The ready models that sessions with work left run, and the default: what every Triton
    must serve."""
    rows = await reader.fetch(
        """SELECT * FROM models m WHERE m.status = 'ready' AND m.deleted_at IS NULL AND (
               m.is_default OR EXISTS (
                   SELECT 1 FROM sessions s JOIN jobs j
                     ON j.tenant_id = s.tenant_id AND j.session_id = s.id
                   WHERE s.model_id = m.id AND j.status IN ('queued', 'processing')))
           ORDER BY m.is_default DESC, m.created_at"""
    )
    return [model_from_row(row) for row in rows]


async def deleted_models(reader: Reader, triton_names: Sequence[str]) -> list[str]:
    """Which of `triton_names` belong to deleted models (for unloading)."""
    rows = await reader.fetch(
        "SELECT triton_name FROM models WHERE triton_name = ANY($1) AND deleted_at IS NOT NULL",
        list(triton_names),
    )
    return [row["triton_name"] for row in rows]


async def session_model(reader: Reader, session: Session) -> Model | None:
    """The model `session` was made on, deleted or not (None: a session from before the
    registry, which runs the built-in default)."""
    if session.model_id is None:
        return None
    row = await reader.fetchrow("SELECT * FROM models WHERE id = $1", session.model_id)
    return None if row is None else model_from_row(row)
