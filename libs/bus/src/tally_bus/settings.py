"""The bus's part of a service's settings (TALLY_ENVIRONMENT, TALLY_AMQP_URL, TALLY_BUS_PREFIX)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

from tally_bus._bus import Bus
from tally_bus.topology import Topology

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


class BusFields(BaseSettings):
    """Mixed into each bus-using service's Settings."""

    environment: Literal["development", "production"] = "development"
    amqp_url: SecretStr = SecretStr(LOCAL_AMQP)
    bus_prefix: str = "tally"
    # A connection silent this long (both ways, in seconds) is dead: RabbitMQ then returns its
    # unacknowledged messages to their queues and the service reconnects.
    bus_heartbeat_s: int = Field(default=30, ge=1, le=600)
    # A publish not confirmed by then raises (it never hangs).
    bus_publish_timeout_s: float = Field(default=10.0, gt=0)

    @property
    def topology(self) -> Topology:
        return Topology(self.bus_prefix)

    async def connect_bus(self) -> Bus:
        """A robust connection with these settings (it reconnects by itself)."""
        return await Bus.connect(
            self.amqp_url.get_secret_value(),
            self.topology,
            heartbeat_s=self.bus_heartbeat_s,
            publish_timeout_s=self.bus_publish_timeout_s,
        )

    @model_validator(mode="after")
    def _no_local_defaults_in_production(self) -> BusFields:
        if self.environment == "production" and self.amqp_url.get_secret_value() == LOCAL_AMQP:
            raise ValueError("TALLY_AMQP_URL must be set in production (not guest@localhost)")
        return self
