"""The sender of webhook deliveries: claims what is due from PostgreSQL, signs it per Standard
Webhooks v1, posts it to the receiver, records the attempt and when to try again.

Every state is in PostgreSQL, so a sender that dies loses nothing: what it held (a lease) is due
again once the lease runs out, and any replica may take it (at least once; receivers dedupe on
`webhook-id`). One slow receiver holds at most `endpoint_concurrency` of the process's
`concurrency` attempts; the others go on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final

import asyncpg
import httpx
from prometheus_client import Counter, Histogram

from tally_contracts.webhooks import (
    NOTIFY_CHANNEL,
    AddressPolicy,
    IPAddress,
    UnsafeUrlError,
    secret_key,
)
from tally_db import Store
from tally_orchestrator.config import WebhookSettings

log = logging.getLogger("tally_orchestrator.webhooks")
USER_AGENT: Final = "Tally-Webhooks/1"
ERROR_MAX: Final = 300  # characters of an error (or of the receiver's answer) kept per attempt
RETENTION_EVERY_S: Final = 3600.0
LISTEN_CHECK_S: Final = 5.0  # how soon a dropped LISTEN connection is noticed

ATTEMPTS = Counter(
    "tally_webhook_attempts",
    "Webhook delivery attempts by outcome (succeeded, failed, gone, refused)",
    ["outcome"],
)
LATENCY = Histogram("tally_webhook_attempt_seconds", "Duration of webhook delivery attempts")

# What is due, at most `$2` more per endpoint than it has in flight, the longest waiting first.
_CLAIM = """
    WITH busy AS (
        SELECT endpoint_id, count(*) AS n FROM webhook_deliveries
        WHERE status = 'pending' AND lease_until > now() GROUP BY endpoint_id),
    due AS (
        SELECT d.id, d.next_attempt_at, row_number() OVER (PARTITION BY d.endpoint_id
                                        ORDER BY d.next_attempt_at, d.id) + coalesce(b.n, 0)
                                        AS place
        FROM webhook_deliveries d
        JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
        LEFT JOIN busy b ON b.endpoint_id = d.endpoint_id
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until <= now()))
    UPDATE webhook_deliveries d SET lease_until = now() + $3 * interval '1 second'
    FROM (SELECT id FROM due WHERE place <= $2 ORDER BY next_attempt_at, id LIMIT $1) c,
         webhook_endpoints e, webhook_events v
    WHERE d.id = c.id AND e.id = d.endpoint_id AND v.id = d.event_id
      AND d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until <= now())
    RETURNING d.id, d.endpoint_id, d.event_id, d.attempts, d.schedule_from, d.lease_until,
              e.url, v.body"""
_SECRETS = """SELECT endpoint_id, array_agg(secret ORDER BY created_at DESC) AS secrets
              FROM webhook_secrets
              WHERE endpoint_id = ANY($1::uuid[]) AND (expires_at IS NULL OR expires_at > now())
              GROUP BY endpoint_id"""
_ATTEMPT = """INSERT INTO webhook_attempts
                  (delivery_id, attempt, at, status_code, latency_ms, error)
              VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"""
# Only while it still holds the lease: a sender that took too long lost the delivery to another.
_UPDATE = """UPDATE webhook_deliveries
             SET status = $3, attempts = $4, next_attempt_at = $5, lease_until = NULL
             WHERE id = $1 AND lease_until = $2"""
_SUCCEEDED = """UPDATE webhook_endpoints SET failing_since = NULL
                WHERE id = $1 AND failing_since IS NOT NULL"""
_FAILING = """UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $2)
              WHERE id = $1 RETURNING failing_since"""
_DISABLE = """UPDATE webhook_endpoints
              SET enabled = false, disabled_reason = $2, updated_at = now()
              WHERE id = $1 AND enabled"""
_FORGET = """DELETE FROM webhook_events v WHERE v.created_at < now() - $1 * interval '1 day'
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                             WHERE d.event_id = v.id AND d.status = 'pending')"""


def signature(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` with each
    secret, space-separated (during a rotation both the new secret and the old one sign)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(s), content, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header in seconds: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    return None


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery claimed for one attempt."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: str
    attempts: int  # made before this one
    schedule_from: int
    lease_until: datetime
    url: str
    body: bytes
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt got: a status code (None when no answer came) or an error."""

    at: datetime
    latency_s: float
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


@dataclass(frozen=True, slots=True)
class Schedule:
    delays_s: tuple[float, ...]
    jitter: float

    def next_delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds until the attempt after `attempt` failed ones (counted from the schedule's
        start), or None when the schedule is spent. A receiver's Retry-After is honoured (never
        sooner), up to the schedule's longest delay."""
        if attempt >= len(self.delays_s):
            return None
        delay = self.delays_s[attempt] * (1 + self.jitter * random.uniform(-1, 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, max(self.delays_s)))
        return delay


def _target(url: httpx.URL, address: IPAddress) -> httpx.URL:
    """`url` aimed at the address that was checked (the name is not looked up again)."""
    return url.copy_with(host=str(address))


class Sender:
    def __init__(self, store: Store, settings: WebhookSettings, client: httpx.AsyncClient) -> None:
        self._store = store
        self._settings = settings
        self._client = client
        self._policy = AddressPolicy.parse(
            settings.allow(), require_https=settings.environment == "production"
        )
        self._schedule = Schedule(settings.schedule(), settings.webhook_jitter)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def notify(self) -> None:
        self._wake.set()

    async def claim(self, limit: int) -> list[Due]:
        """Up to `limit` due deliveries, leased to this sender for one attempt."""
        lease_s = 2 * self._settings.webhook_timeout_s + 5  # an attempt, and then some
        rows = await self._store.pool.fetch(
            _CLAIM, limit, self._settings.webhook_endpoint_concurrency, lease_s
        )
        if not rows:
            return []
        found = await self._store.pool.fetch(_SECRETS, list({r["endpoint_id"] for r in rows}))
        secrets = {r["endpoint_id"]: tuple(r["secrets"]) for r in found}
        return [
            Due(
                r["id"],
                r["endpoint_id"],
                r["event_id"],
                r["attempts"],
                r["schedule_from"],
                r["lease_until"],
                r["url"],
                bytes(r["body"]),
                secrets.get(r["endpoint_id"], ()),
            )
            for r in rows
        ]

    async def send(self, due: Due) -> Outcome:
        """One attempt: the URL checked again (its name may resolve elsewhere by now), the
        request to the address checked, no redirect followed, at most `response_cap` bytes of
        the answer read, all within `timeout_s`."""
        started = time.monotonic()
        at = datetime.now(UTC)

        def outcome(**fields: object) -> Outcome:
            return Outcome(at, time.monotonic() - started, **fields)  # type: ignore[arg-type]

        try:
            parts = self._policy.check_url(due.url)
            async with asyncio.timeout(self._settings.webhook_timeout_s):
                addresses = await self._policy.resolve(parts)
        except UnsafeUrlError as exc:
            return outcome(error=f"refused: {exc}")
        except TimeoutError:
            return outcome(error="timed out resolving the host")
        url = httpx.URL(due.url)
        timestamp = int(at.timestamp())
        headers = {
            "host": url.netloc.decode(),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": due.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(due.secrets, due.event_id, timestamp, due.body),
        }
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        try:
            async with asyncio.timeout(self._settings.webhook_timeout_s):
                status, retry_after, answer = await self._post(
                    url, addresses, due.body, headers, extensions
                )
        except TimeoutError:
            return outcome(error=f"timed out after {self._settings.webhook_timeout_s:g} s")
        except httpx.HTTPError as exc:
            return outcome(error=f"{type(exc).__name__}: {exc}"[:ERROR_MAX] or type(exc).__name__)
        error = None
        if not 200 <= status < 300:
            text = answer[: self._settings.webhook_response_cap].decode("utf-8", "replace")
            error = f"HTTP {status}: {text.strip()}"[:ERROR_MAX]
        return outcome(
            status_code=status,
            error=error,
            retry_after_s=retry_after_s(retry_after, at) if status in (429, 503) else None,
        )

    async def _post(
        self,
        url: httpx.URL,
        addresses: Sequence[IPAddress],
        body: bytes,
        headers: dict[str, str],
        extensions: dict[str, str],
    ) -> tuple[int, str | None, bytes]:
        """The POST to the first of the checked addresses that takes the connection (a name
        may have several: ::1 and 127.0.0.1, say); its status, Retry-After and the start of
        its answer."""
        for address in addresses[:-1]:
            with contextlib.suppress(httpx.ConnectError):
                return await self._post_to(_target(url, address), body, headers, extensions)
        return await self._post_to(_target(url, addresses[-1]), body, headers, extensions)

    async def _post_to(
        self, target: httpx.URL, body: bytes, headers: dict[str, str], extensions: dict[str, str]
    ) -> tuple[int, str | None, bytes]:
        async with self._client.stream(
            "POST", target, content=body, headers=headers, extensions=extensions
        ) as response:
            answer = bytearray()
            async for chunk in response.aiter_raw():
                answer += chunk
                if len(answer) >= self._settings.webhook_response_cap:
                    break
            return response.status_code, response.headers.get("retry-after"), bytes(answer)

    async def record(self, due: Due, result: Outcome) -> None:
        """The attempt in the delivery's log, and what follows: done, given up, or the next
        attempt's time; the endpoint disabled on 410 Gone or when it has failed too long."""
        attempt = due.attempts + 1
        status, next_at, disable = "pending", None, None
        if result.succeeded:
            status = "succeeded"
        elif result.gone:
            status = "failed"
            disable = f"the receiver answered 410 Gone at {result.at.isoformat()}"
        else:
            delay = self._schedule.next_delay(attempt - due.schedule_from, result.retry_after_s)
            if delay is None:
                status = "failed"
            else:
                next_at = result.at + timedelta(seconds=delay)
        async with self._store.transaction() as connection:
            updated = await connection.execute(
                _UPDATE, due.id, due.lease_until, status, attempt, next_at
            )
            if updated != "UPDATE 1":
                return  # another sender took it after this one's lease ran out
            await connection.execute(
                _ATTEMPT,
                due.id,
                attempt,
                result.at,
                result.status_code,
                round(result.latency_s * 1000),
                result.error,
            )
            if result.succeeded:
                await connection.execute(_SUCCEEDED, due.endpoint_id)
            else:
                since: datetime = await connection.fetchval(_FAILING, due.endpoint_id, result.at)
                failing_s = (result.at - since).total_seconds()
                if disable is None and failing_s >= self._settings.webhook_disable_after_s:
                    disable = (
                        f"every attempt failed from {since.isoformat()} to "
                        f"{result.at.isoformat()}; the last: {result.error}"
                    )
            if disable is not None:
                await connection.execute(_DISABLE, due.endpoint_id, disable[:1000])
        outcome = (
            "succeeded"
            if result.succeeded
            else "gone"
            if result.gone
            else "refused"
            if (result.error or "").startswith("refused")
            else "failed"
        )
        ATTEMPTS.labels(outcome).inc()
        LATENCY.observe(result.latency_s)
        if disable is not None:
            log.warning("webhook endpoint %s disabled: %s", due.endpoint_id, disable)

    async def attempt(self, due: Due) -> None:
        try:
            await self.record(due, await self.send(due))
        except Exception:  # the database is away: the lease runs out, the delivery is due again
            log.exception("webhook delivery %s: attempt not recorded", due.id)

    async def pump(self) -> int:
        """Start an attempt of each due delivery there is a free slot for; how many started."""
        free = self._settings.webhook_concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        claimed = await self.claim(free)
        for due in claimed:
            task = asyncio.create_task(self.attempt(due), name=f"webhook-{due.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._finished)
        return len(claimed)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # a slot is free

    async def forget_old(self) -> int:
        """Delete events older than the retention that have nothing left to deliver."""
        status = await self._store.pool.execute(_FORGET, self._settings.webhook_retention_days)
        return int(status.split()[-1])

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop`, then let the attempts in flight finish (up to the grace)."""
        listener = asyncio.create_task(self._listen(stop), name="webhook-listen")
        stopping = asyncio.create_task(self._wake_on(stop), name="webhook-stop")
        forgotten_at = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.pump()
                    if time.monotonic() - forgotten_at > RETENTION_EVERY_S:
                        forgotten_at = time.monotonic()
                        await self.forget_old()
                except Exception as exc:  # the database is away: keep trying
                    log.warning("webhook sender: %s; retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.webhook_poll_s)
        finally:
            listener.cancel()
            stopping.cancel()
            if self._in_flight:
                await asyncio.wait(set(self._in_flight), timeout=self._settings.shutdown_grace_s)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake on every NOTIFY of new events (between polls); reconnect when it drops."""
        dsn = self._settings.database_url.get_secret_value()
        while not stop.is_set():
            connection = None
            try:
                connection = await asyncpg.connect(dsn)
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self.notify())
                while not connection.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), LISTEN_CHECK_S)
                    if stop.is_set():
                        return
            except Exception as exc:  # polling goes on meanwhile
                log.info("webhook sender: not listening (%s)", exc)
                await asyncio.sleep(self._settings.webhook_poll_s)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()
