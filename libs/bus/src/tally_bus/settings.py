"""The bus's part of a service's settings (TALLY_ENVIRONMENT, TALLY_AMQP_URL, TALLY_BUS_PREFIX)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings

from tally_bus.topology import Topology

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


class BusFields(BaseSettings):
    """Mixed into each bus-using service's Settings."""

    environment: Literal["development", "production"] = "development"
    amqp_url: SecretStr = SecretStr(LOCAL_AMQP)
    bus_prefix: str = "tally"

    @property
    def topology(self) -> Topology:
        return Topology(self.bus_prefix)

    @model_validator(mode="after")
    def _no_local_defaults_in_production(self) -> BusFields:
        if self.environment == "production" and self.amqp_url.get_secret_value() == LOCAL_AMQP:
            raise ValueError("TALLY_AMQP_URL must be set in production (not guest@localhost)")
        return self
