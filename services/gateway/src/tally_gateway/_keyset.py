"""Keyset cursors of the gateway's lists: a page's last (created_at, id), opaque to clients."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Final

from tally_web import ApiError

CURSOR_MAX: Final = 200  # ours are about 110 characters


def cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def after(value: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor of ours holds; 422 for anything else: too long, not
    base64 of a JSON pair of strings (JSON nested deep enough raised RecursionError: a 500), a
    time without its UTC offset (it was read as some other time), or not an id."""
    invalid = ApiError(422, "invalid_cursor", "the cursor is not one this API gave")
    if len(value) > CURSOR_MAX:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        pair = json.loads(raw)
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise invalid
        created_at = datetime.fromisoformat(pair[0])
        row_id = uuid.UUID(pair[1])
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise invalid from None
    if created_at.utcoffset() is None:
        raise invalid
    return created_at, row_id
