"""What Tally's HTTP services share: the error envelope, API-key auth, rate limits, health routes,
request ids and request metrics."""

from tally_web.auth import (
    CallerCache,
    CurrentCaller,
    CurrentTenant,
    WritingTenant,
    bearer_key,
    caller_of,
    known_caller,
)
from tally_web.context import configure_logging
from tally_web.errors import ApiError, envelope, install_error_handlers
from tally_web.health import health_router
from tally_web.metrics import RequestMetrics
from tally_web.ratelimit import RateLimiter, install_rate_limits

__all__ = [
    "ApiError",
    "CallerCache",
    "CurrentCaller",
    "CurrentTenant",
    "RateLimiter",
    "RequestMetrics",
    "WritingTenant",
    "bearer_key",
    "caller_of",
    "configure_logging",
    "envelope",
    "health_router",
    "install_error_handlers",
    "install_rate_limits",
    "known_caller",
]
