"""The gateway's settings, from TALLY_* environment variables."""

from __future__ import annotations

import hashlib
from typing import Final

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tally_bus import BusFields
from tally_contracts.webhooks import AddressPolicy
from tally_storage import S3Fields
from tally_web.schemas import SESSION_PAGE, SESSION_PAGE_MAX

# Good for a laptop only: production must set TALLY_STREAM_TOKEN_SECRET (the same on every
# gateway replica, so a token one issues another accepts).
LOCAL_STREAM_TOKEN_SECRET = "tally-local-stream-token-secret"
PAGE_SIZE: Final = SESSION_PAGE  # a page of a session's jobs unless `limit` says otherwise
PAGE_MAX: Final = SESSION_PAGE_MAX  # the largest `limit`


class Settings(S3Fields, BusFields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8002
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tally")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # What the gateway tells pollers: the default, shorter while a job is processing, longer when
    # every job of the session has finished.
    poll_interval_ms: int = Field(default=5000, ge=2000, le=60000)
    poll_interval_active_ms: int = Field(default=2000, ge=2000, le=60000)
    poll_interval_idle_ms: int = Field(default=30000, ge=2000, le=60000)
    # Server-Sent Events: a heartbeat comment at least this often, the reconnect delay told to
    # EventSource, and how many events a slow client may fall behind before it gets a snapshot.
    sse_heartbeat_s: float = Field(default=15.0, gt=0, le=15.0)
    sse_retry_ms: int = Field(default=3000, ge=100, le=60000)
    sse_buffer: int = Field(default=256, ge=1)
    # A stream's snapshot holds the summary and this many jobs, the first page (`next_cursor`
    # says where the rest start): a subscriber to a big session costs a page, not the session.
    sse_snapshot_jobs: int = Field(default=PAGE_SIZE, ge=1, le=PAGE_MAX)
    # Open streams: how often each process re-checks the keys of its open streams (one query
    # for all of them; a revoked key's streams end within this), and how long a stream's lease
    # (its place under the per-key and per-tenant caps, kept in Redis for every replica) lasts
    # unless refreshed, which each process does for its streams every third of it.
    stream_key_check_s: float = Field(default=30.0, gt=0, le=300)
    stream_lease_s: float = Field(default=90.0, ge=1, le=3600)
    stream_token_secret: SecretStr = SecretStr(LOCAL_STREAM_TOKEN_SECRET)
    stream_token_ttl_s: int = Field(default=60, ge=1, le=60)
    # How long this process trusts an API key it has looked up (a revoked key works here for
    # at most this long); 0 looks every request up.
    api_key_cache_s: float = Field(default=10.0, ge=0, le=60)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    # Connections: the listen backlog (every EventSource reconnects at once after a restart of
    # the edge or a replica) and, if set, the most this process serves at once (open streams
    # included): beyond it uvicorn answers 503 rather than running out of file descriptors.
    listen_backlog: int = Field(default=4096, ge=64)
    max_connections: int | None = Field(default=None, ge=1)
    relay_interval_s: float = Field(default=1.0, gt=0)  # the outbox relay (job deletions)
    # Webhooks: hosts (names) and networks (CIDRs) an endpoint may point at although they are
    # not public (the local stack and tests: loopback; tally-webhooks reads the same setting),
    # how many endpoints a tenant may have, and how long a rotated secret still signs.
    webhook_allow_hosts: str = ""
    webhook_max_endpoints: int = Field(default=20, ge=1, le=1000)
    webhook_rotation_grace_s: float = Field(default=86400.0, ge=0, le=30 * 86400)

    def webhook_policy(self) -> AddressPolicy:
        return AddressPolicy.parse(
            self.webhook_allow_hosts.split(","), require_https=self.environment == "production"
        )

    def stream_token_key(self) -> bytes:
        return hashlib.sha256(self.stream_token_secret.get_secret_value().encode()).digest()

    @model_validator(mode="after")
    def _no_local_secret_in_production(self) -> Settings:
        local = self.stream_token_secret.get_secret_value() == LOCAL_STREAM_TOKEN_SECRET
        if self.environment == "production" and local:
            raise ValueError("TALLY_STREAM_TOKEN_SECRET must be set in production")
        return self
