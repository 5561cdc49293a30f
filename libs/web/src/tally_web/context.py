"""The request id: one per request (an incoming `X-Request-ID` when it is a sane token, else
ours), answered in `X-Request-ID` and written in each log line of that request."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any, Final

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# An incoming id is kept when it is a sane token (the edge's, or a client's to correlate with);
# anything else could forge log lines or fill them, and gets an id of ours instead.
_SANE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's id: its X-Request-ID if sane, else a fresh one."""
    for name, value in headers:
        if name == b"x-request-id":
            sent = value.decode("latin-1")
            if _SANE.fullmatch(sent):
                return sent
    return uuid.uuid4().hex


def configure_logging(level: int = logging.INFO) -> None:
    """The services' logging: LOG_FORMAT on stderr, each line with the id of the request it
    was written for ("-" outside any request)."""
    factory = logging.getLogRecordFactory()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        out = factory(*args, **kwargs)
        out.request_id = REQUEST_ID.get() or "-"
        return out

    logging.setLogRecordFactory(record)
    logging.basicConfig(level=level, format=LOG_FORMAT)
