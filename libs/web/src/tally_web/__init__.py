"""What Tally's HTTP services share: the error envelope, API-key auth, health routes and request
metrics."""

from tally_web.auth import (
    CallerCache,
    CurrentCaller,
    CurrentTenant,
    WritingTenant,
    bearer_key,
    caller_of,
)
from tally_web.errors import ApiError, envelope, install_error_handlers
from tally_web.health import health_router
from tally_web.metrics import RequestMetrics

__all__ = [
    "ApiError",
    "CallerCache",
    "CurrentCaller",
    "CurrentTenant",
    "RequestMetrics",
    "WritingTenant",
    "bearer_key",
    "caller_of",
    "envelope",
    "health_router",
    "install_error_handlers",
]
