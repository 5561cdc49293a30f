"""Fair dispatch's rule: which held chunks go to the detectors next. Pure functions; the records
(`_records.Records.dispatch`) read what they need from PostgreSQL and write what they chose."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DispatchLimits:
    """How much work may be out with the detectors at once: `window` chunks in all, and per
    tenant `per_tenant` (or its entry in `tenants`)."""

    window: int
    per_tenant: int
    tenants: Mapping[uuid.UUID, int] = field(default_factory=dict)

    def of(self, tenant_id: uuid.UUID) -> int:
        return self.tenants.get(tenant_id, self.per_tenant)

    def free(self, out: Mapping[uuid.UUID, int]) -> int:
        """Slots left in the window while `out` (per tenant, every tenant) are out."""
        return self.window - sum(out.values())


def allowances(
    turns: Sequence[uuid.UUID], out: Mapping[uuid.UUID, int], limits: DispatchLimits
) -> dict[uuid.UUID, int]:
    """The most each waiting tenant may take this round, in turn order (`turns`: the tenants
    with chunks waiting, the one served longest ago first): the window's free slots, within its
    own limit. A tenant at its limit is left out, and so is every tenant after the first `free`
    ones: each of those takes a chunk before them, so they would get nothing."""
    free = limits.free(out)
    allowed: dict[uuid.UUID, int] = {}
    for tenant_id in turns:
        if len(allowed) >= free:
            break
        allowance = min(free, limits.of(tenant_id) - out.get(tenant_id, 0))
        if allowance > 0:
            allowed[tenant_id] = allowance
    return allowed


def take_turns(
    turns: Sequence[uuid.UUID],
    out: Mapping[uuid.UUID, int],
    limits: DispatchLimits,
    waiting: Mapping[uuid.UUID, Sequence[T]],
) -> list[tuple[uuid.UUID, T]]:
    """Which chunks go, in order, each with its tenant: tenants take turns one chunk at a time
    in `turns` order, each within its allowance, until the window is full or nothing is left.
    `waiting` holds each tenant's chunks in upload order (it may stop at the tenant's allowance:
    no chunk beyond it is taken)."""
    free = limits.free(out)
    queues = [
        (tenant_id, deque(waiting.get(tenant_id, ())[:allowed]))
        for tenant_id, allowed in allowances(turns, out, limits).items()
    ]
    chosen: list[tuple[uuid.UUID, T]] = []
    while len(chosen) < free and any(queue for _, queue in queues):
        for tenant_id, queue in queues:
            if queue and len(chosen) < free:
                chosen.append((tenant_id, queue.popleft()))
    return chosen
