"""`tally-webhooks`: send the webhook deliveries the orchestrator records, until SIGTERM.

Its own process (the orchestrator's package: it delivers what the orchestrator's transactions
record) so that it alone reaches out of the cluster: it needs PostgreSQL and the receivers,
nothing else, and a receiver that is slow or hostile touches no part of the job path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl

import httpx

from tally_db import Store
from tally_orchestrator._webhook_sender import USER_AGENT, Sender
from tally_orchestrator.config import WebhookSettings
from tally_worker import run_worker, set_readiness

log = logging.getLogger("tally_orchestrator.webhooks")


def client(verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """The receivers' client: no redirect followed, no proxy or netrc from the environment,
    connections kept per receiver; certificates checked against the system's authorities
    (`verify`: others, for tests)."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        verify=verify,
        headers={"user-agent": USER_AGENT},
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
    )


async def run(settings: WebhookSettings, stop: asyncio.Event) -> None:
    async with Store.open(settings.database_url.get_secret_value()) as store, client() as http:

        async def readiness() -> dict[str, bool]:
            return {"database": await store.ping()}

        set_readiness(readiness)
        sender = Sender(store, settings, http)
        log.info("webhooks ready")
        await sender.run(stop)


def main() -> None:
    settings = WebhookSettings()
    run_worker("tally-webhooks", functools.partial(run, settings))


if __name__ == "__main__":
    main()
