"""A new version of a model in the registry, checked and recorded: one definition for the
upload service's POST /v1/models (a tenant's) and the operator's `tally admin models add` (a
shared one)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence

from tally_db import MODELS_CHANNEL, Model, NewModel, Store, create_model
from tally_inference import check_model
from tally_storage import ObjectStore, keys

# Models parsed at once in this process: a check holds the whole file and its parsed graph.
_checking = asyncio.Semaphore(2)


async def register_model(
    store: Store,
    objects: ObjectStore,
    tenant_id: uuid.UUID | None,
    data: bytes,
    *,
    name: str,
    model_format: str,
    labels: Sequence[str],
    input_size: int | None,
    max_bytes: int,
) -> Model:
    """Check the file (tally_inference.ModelCheckError, and nothing stored, when it fails),
    store it and record the next version of `name` in the tenant's scope (shared: None),
    `validating`; `tally-models` is woken to load and dry-run it on Triton."""
    async with _checking:
        graph = await asyncio.to_thread(
            check_model, data, model_format, labels, max_bytes=max_bytes, input_size=input_size
        )
    model_id = uuid.uuid4()
    object_key = keys.model_file(tenant_id, model_id)
    await objects.put_bytes(object_key, data, "application/octet-stream")
    new = NewModel(
        name=name,
        format=model_format,
        labels=labels,
        input_size=graph.input_size,
        batched=graph.batched,
        input_name=graph.input_name,
        output_name=graph.output_name,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    try:
        async with store.transaction() as connection:
            model = await create_model(connection, tenant_id, model_id, new, object_key)
            await connection.execute("SELECT pg_notify($1, $2)", MODELS_CHANNEL, str(model.id))
    except BaseException:
        await asyncio.shield(objects.delete(object_key))
        raise
    return model
