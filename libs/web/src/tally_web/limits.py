"""What one tenant may use of a shared service: request rates, open streams and queued work.

Every limit has a name, a default for every tenant (`TALLY_LIMIT_<NAME>`, read by each service
at start) and, where an operator set one (`tally admin set-limits`), the tenant's own value
(tenants.limits in the record store). Rates are requests per second, refilling a bucket of
`…_burst` requests; a key and its tenant each have a bucket, and a request needs room in both.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tally_db import Tenant


class Limits(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_LIMIT_", extra="forbid", frozen=True)

    # Reads (status, lists, results, downloads), per key and per tenant.
    read_rate: float = Field(default=50.0, gt=0)
    read_burst: float = Field(default=200.0, ge=1)
    tenant_read_rate: float = Field(default=100.0, gt=0)
    tenant_read_burst: float = Field(default=400.0, ge=1)
    # Writes: sessions, uploads (one upload request costs one), cancels, deletes.
    write_rate: float = Field(default=5.0, gt=0)
    write_burst: float = Field(default=50.0, ge=1)
    tenant_write_rate: float = Field(default=10.0, gt=0)
    tenant_write_burst: float = Field(default=100.0, ge=1)
    # Opening Server-Sent Event streams (and minting tokens for them).
    stream_rate: float = Field(default=2.0, gt=0)
    stream_burst: float = Field(default=30.0, ge=1)
    tenant_stream_rate: float = Field(default=5.0, gt=0)
    tenant_stream_burst: float = Field(default=100.0, ge=1)
    # Streams open at once.
    streams_per_key: int = Field(default=50, ge=1)
    streams_per_tenant: int = Field(default=200, ge=1)
    # Work: what is queued and not yet processed, what a day and a month may plan, and what one
    # photo and one upload request may be.
    queued_slices: int = Field(default=200_000, ge=1)
    queued_photos: int = Field(default=10_000, ge=1)
    daily_slices: int = Field(default=2_000_000, ge=1)
    monthly_slices: int = Field(default=30_000_000, ge=1)
    max_slices_per_photo: int = Field(default=2_000, ge=1)
    max_pixels_per_request: int = Field(default=1_000_000_000, ge=1)

    def for_tenant(self, tenant: Tenant) -> Limits:
        """These defaults with the tenant's own values over them (names this version does not
        know are ignored: a newer service may have set them)."""
        own = {k: v for k, v in tenant.limits.items() if k in type(self).model_fields}
        return self.model_copy(update=own) if own else self


# The limits on work (what GET /v1/usage and `tally admin usage` show beside the usage).
QUOTAS: tuple[str, ...] = (
    "queued_slices",
    "queued_photos",
    "daily_slices",
    "monthly_slices",
    "max_slices_per_photo",
    "max_pixels_per_request",
)


def checked(values: Mapping[str, float | None]) -> dict[str, float | None]:
    """`values` if every name is a limit and every number valid for it (None clears one);
    ValueError naming the first that is not."""
    fields = Limits.model_fields
    for name in values:
        if name not in fields:
            raise ValueError(f"no limit named {name!r}; limits: {', '.join(fields)}")
    try:
        Limits.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{first['loc'][0]}: {first['msg']}") from None
    return dict(values)
