"""What Tally's HTTP services share: the error envelope, API-key auth, health routes."""

from tally_web.auth import CurrentTenant, TenantCache, bearer_key, tenant_of
from tally_web.errors import ApiError, envelope, install_error_handlers
from tally_web.health import health_router

__all__ = [
    "ApiError",
    "CurrentTenant",
    "TenantCache",
    "bearer_key",
    "envelope",
    "health_router",
    "install_error_handlers",
    "tenant_of",
]
