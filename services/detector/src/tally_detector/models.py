"""`tally-models`: the model registry's hand on one Triton, until SIGTERM.

Its own process (the detector's package: it speaks to Triton as the detectors do) beside each
Triton: it validates new versions there, and keeps Triton serving what sessions need,
reconciling after every Triton start. Readiness says whether that Triton serves every model in
use, so a restarted Triton is routed to only once it does.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from tally_db import Store
from tally_detector._model_control import ControlSettings, ModelControl
from tally_detector.config import ModelControlSettings
from tally_storage import ObjectStore
from tally_worker import run_worker, set_readiness

log = logging.getLogger("tally_detector.models")


def control_settings(settings: ModelControlSettings) -> ControlSettings:
    return ControlSettings(
        triton_url=settings.triton_url,
        backend=settings.triton_backend,
        python_model_file=settings.triton_python_model,
        idle_unload_s=settings.model_idle_unload_s,
        max_loaded=settings.model_max_loaded,
        poll_s=settings.model_poll_s,
    )


async def run(settings: ModelControlSettings, stop: asyncio.Event) -> None:
    dsn = settings.database_url.get_secret_value()
    async with Store.open(dsn, max_size=2) as store, ObjectStore.open(settings.s3) as objects:
        control = ModelControl(store, objects, control_settings(settings))

        async def readiness() -> dict[str, bool]:
            return {"database": await store.ping(), "triton_reconciled": control.reconciled}

        set_readiness(readiness)
        log.info("models ready (Triton at %s)", settings.triton_url)
        try:
            await control.run(stop, dsn)
        finally:
            await control.close()


def main() -> None:
    settings = ModelControlSettings()
    run_worker("tally-models", functools.partial(run, settings))


if __name__ == "__main__":
    main()
