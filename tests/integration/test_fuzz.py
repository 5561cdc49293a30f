"""Schemathesis against both HTTP services as they run (real processes on real PostgreSQL,
Redis, RabbitMQ and S3): whatever it sends, valid or not, no answer is a server error and every
answer is what the service's OpenAPI says (status, content type, headers, body)."""

from __future__ import annotations

import asyncio
import collections
import io
import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import numpy as np
import pytest
import schemathesis
from PIL import Image
from redis import Redis
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.e2e.harness import BIN, delete_topology

from tally_db import Store
from tally_stack import free_port, launcher
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/12"
AMQP_URL = os.environ.get("TALLY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
EXAMPLES = 150  # per operation at most (each one request; ~20 operations)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,  # what the schema forbids is refused (4xx)
]


@dataclass(frozen=True)
class Services:
    upload: str
    gateway: str
    key: str
    session_id: str
    job_id: str


def _photo() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


async def _tenant_key(database: str) -> str:
    async with Store.open(database) as store:
        tenant = await store.create_tenant(f"fuzz-{uuid.uuid4().hex[:8]}")
        return (await store.create_api_key(tenant.id)).key


@pytest.fixture(scope="module")
def services(
    module_database: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """The upload service and the gateway as processes, and one tenant with a session and a
    photo in it, so that some of the generated requests reach real records."""
    Redis.from_url(REDIS_URL).flushdb()
    prefix = f"fuzz-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "TALLY_DATABASE_URL": module_database,
        "TALLY_REDIS_URL": REDIS_URL,
        "TALLY_AMQP_URL": AMQP_URL,
        "TALLY_BUS_PREFIX": prefix,
        "TALLY_S3_ENDPOINT_URL": s3_endpoint,
        "TALLY_S3_BUCKET": f"fuzz-{uuid.uuid4().hex[:8]}",
        "TALLY_S3_ACCESS_KEY_ID": MOTO_ACCESS_KEY,
        "TALLY_S3_SECRET_ACCESS_KEY": MOTO_SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    logs: Path = tmp_path_factory.mktemp("fuzz")
    ports = {"upload": free_port(), "gateway": free_port()}
    processes = [
        launcher.start(
            name,
            [BIN / f"tally-{name}"],
            env=env | {"TALLY_PORT": str(port)},
            log_path=logs / f"{name}.log",
        )
        for name, port in ports.items()
    ]
    try:
        for process, port in zip(processes, ports.values(), strict=True):
            process.wait_until(launcher.http_ok(f"http://127.0.0.1:{port}/readyz"), timeout_s=60)
        key = asyncio.run(_tenant_key(module_database))
        upload = f"http://127.0.0.1:{ports['upload']}"
        auth = {"Authorization": f"Bearer {key}"}
        session = httpx.post(f"{upload}/v1/sessions", json={"name": "fuzz"}, headers=auth)
        session_id = session.json()["session_id"]
        accepted = httpx.post(
            f"{upload}/v1/sessions/{session_id}/photos",
            files=[("file", ("tray.jpg", _photo(), "image/jpeg"))],
            headers=auth,
        )
        yield Services(
            upload,
            f"http://127.0.0.1:{ports['gateway']}",
            key,
            session_id,
            accepted.json()["jobs"][0]["job_id"],
        )
    finally:
        for process in processes:
            process.stop()
        asyncio.run(delete_topology(prefix))


_cases = itertools.count()


def _aim_at_real_records(case: Case[Any], services: Services) -> None:
    """Every other case that names a session or a job names the tenant's real one (random ids
    only ever reach the 404), except for the event stream: a live stream of the real session
    runs until the session ends, and the fuzzer's cases for it are the refusals."""
    params = dict(case.path_parameters or {})
    if next(_cases) % 2 or (case.path.endswith("/events") and case.method == "GET"):
        return
    real = {"session_id": services.session_id, "job_id": services.job_id}
    case.path_parameters = {name: real.get(name, value) for name, value in params.items()}


def _fuzz(url: str, services: Services) -> None:
    """Every operation of the service at `url`, EXAMPLES cases each (valid and invalid ones),
    each case one real request checked by CHECKS; all failures reported together."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    operations = 0
    sent: collections.Counter[int] = collections.Counter()
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the service's own schema does not load: a failure
            raise result.err()
        operation = result.ok()
        operations += 1

        @FUZZ
        @hypothesis.given(case=operation.as_strategy())
        def run(case: Case[Any]) -> None:
            _aim_at_real_records(case, services)
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {services.key}"}, checks=CHECKS, timeout=30
            )
            sent[response.status_code] += 1

        try:
            run()
        # A failed check (schemathesis raises a FailureGroup, a BaseExceptionGroup): go on,
        # and report every operation's failures together.
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}")
    print(f"{url}: {operations} operations, answers by status: {dict(sorted(sent.items()))}")
    assert operations > 3, "the schema lists no operations"
    assert not failures, "\n\n".join(failures)


FUZZ = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,  # the same cases every run: a failure is one to reproduce, not luck
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # report, don't shrink
)


def test_the_upload_service_answers_every_request_as_its_schema_says(services: Services) -> None:
    _fuzz(services.upload, services)


def test_the_gateway_answers_every_request_as_its_schema_says(services: Services) -> None:
    _fuzz(services.gateway, services)
