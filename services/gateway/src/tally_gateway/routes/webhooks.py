"""Webhook endpoints (Standard Webhooks v1): register, list, change, delete, rotate the secret;
the deliveries' log and replays. What is sent is recorded by the orchestrator with the jobs'
final transitions and sent by `tally-webhooks`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from tally_contracts.webhooks import UnsafeUrlError
from tally_gateway import _keyset, _webhooks
from tally_gateway.deps import Deps, DepsDep
from tally_gateway.schemas import (
    Delivery,
    DeliveryPage,
    SecretRotated,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookPublic,
    WebhookUpdate,
)
from tally_web import ApiError, CurrentTenant, WritingTenant
from tally_web.schemas import error_responses

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


async def _checked_url(deps: Deps, url: str) -> str:
    """422 `invalid_webhook_url` for a URL Tally will not call: not https in production, or
    a host that is (or resolves to) a private, loopback, link-local or other internal address
    (the sender checks again before every attempt: names may resolve elsewhere later)."""
    policy = deps.settings.webhook_policy()
    try:
        await policy.resolve(policy.check_url(url))
    except UnsafeUrlError as exc:
        raise ApiError(422, "invalid_webhook_url", str(exc)) from None
    return url


def _not_found(webhook_id: uuid.UUID) -> ApiError:
    return ApiError(404, "not_found", f"no webhook {webhook_id}")


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    responses=error_responses(401, 403, 409, 422),
)
async def create_webhook(
    body: WebhookCreate, deps: DepsDep, tenant: WritingTenant
) -> dict[str, Any]:
    """Register an endpoint for some event types; the answer holds its signing secret, which
    is never shown again (rotate it to get a new one)."""
    url = await _checked_url(deps, body.url)
    try:
        row, secret = await _webhooks.create(
            deps.store,
            tenant.id,
            url,
            body.events,
            body.description,
            deps.settings.webhook_max_endpoints,
        )
    except _webhooks.TooManyEndpointsError as exc:
        raise ApiError(409, "too_many_webhooks", str(exc)) from None
    return _webhooks.endpoint_view(row) | {"secret": secret}


@router.get("", response_model=WebhookList, responses=error_responses(401))
async def list_webhooks(deps: DepsDep, tenant: CurrentTenant) -> dict[str, Any]:
    """The tenant's endpoints, newest first (without their secrets)."""
    rows = await _webhooks.endpoints(deps.store, tenant.id)
    return {"webhooks": [_webhooks.endpoint_view(r) for r in rows]}


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=error_responses(401, 404, 422))
async def get_webhook(webhook_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> Any:
    row = await _webhooks.endpoint(deps.store, tenant.id, webhook_id)
    if row is None:
        raise _not_found(webhook_id)
    return _webhooks.endpoint_view(row)


@router.patch(
    "/{webhook_id}",
    response_model=WebhookPublic,
    responses=error_responses(401, 403, 404, 422),
)
async def update_webhook(
    webhook_id: uuid.UUID, body: WebhookUpdate, deps: DepsDep, tenant: WritingTenant
) -> Any:
    """Change the URL, the event types, the description; `enabled: true` turns a disabled
    endpoint back on (its pending deliveries go on), `false` pauses it."""
    url = None if body.url is None else await _checked_url(deps, body.url)
    row = await _webhooks.update(
        deps.store,
        tenant.id,
        webhook_id,
        url=url,
        events=body.events,
        description=body.description,
        enabled=body.enabled,
    )
    if row is None:
        raise _not_found(webhook_id)
    return _webhooks.endpoint_view(row)


@router.delete("/{webhook_id}", status_code=204, responses=error_responses(401, 403, 404, 422))
async def delete_webhook(webhook_id: uuid.UUID, deps: DepsDep, tenant: WritingTenant) -> Response:
    """The endpoint, its secrets and its deliveries: nothing more is sent to it."""
    if not await _webhooks.delete(deps.store, tenant.id, webhook_id):
        raise _not_found(webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=SecretRotated,
    responses=error_responses(401, 403, 404, 422),
)
async def rotate_secret(
    webhook_id: uuid.UUID, deps: DepsDep, tenant: WritingTenant
) -> dict[str, Any]:
    """A new signing secret. The one before it stays valid for the grace period
    (TALLY_WEBHOOK_ROTATION_GRACE_S): meanwhile every delivery carries both signatures."""
    rotated = await _webhooks.rotate_secret(
        deps.store, tenant.id, webhook_id, deps.settings.webhook_rotation_grace_s
    )
    if rotated is None:
        raise _not_found(webhook_id)
    secret, expires = rotated
    return {
        "webhook_id": str(webhook_id),
        "secret": secret,
        "previous_secret_expires_at": expires,
    }


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    responses=error_responses(401, 404, 422),
)
async def list_deliveries(
    webhook_id: uuid.UUID,
    deps: DepsDep,
    tenant: CurrentTenant,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first: each event sent, every attempt (status code,
    latency, error) and when the next one is due."""
    if await _webhooks.endpoint(deps.store, tenant.id, webhook_id) is None:
        raise _not_found(webhook_id)
    rows = await _webhooks.deliveries(
        deps.store,
        tenant.id,
        webhook_id,
        _keyset.after(cursor) if cursor else None,
        limit + 1,  # one more tells whether there is a next page
    )
    page, more = rows[:limit], len(rows) > limit
    return {
        "deliveries": [_webhooks.delivery_view(r) for r in page],
        "next_cursor": _keyset.cursor(page[-1]["created_at"], page[-1]["id"])
        if more and page
        else None,
    }


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=Delivery,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def replay_delivery(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, deps: DepsDep, tenant: WritingTenant
) -> dict[str, Any]:
    """Send the delivery's event again, now, with the same `webhook-id` (receivers that have
    it already can tell); 409 while the endpoint is disabled (enable it first)."""
    endpoint = await _webhooks.endpoint(deps.store, tenant.id, webhook_id)
    if endpoint is None:
        raise _not_found(webhook_id)
    if not endpoint["enabled"]:
        raise ApiError(
            409, "webhook_disabled", f"webhook {webhook_id} is disabled; enable it first"
        )
    row = await _webhooks.replay(deps.store, tenant.id, webhook_id, delivery_id)
    if row is None:
        raise ApiError(404, "not_found", f"no delivery {delivery_id} of webhook {webhook_id}")
    return _webhooks.delivery_view(row)
