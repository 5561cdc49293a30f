-- Webhooks (Standard Webhooks v1): a tenant's endpoints, their signing secrets, the events
-- recorded with the jobs' final transitions (an outbox of its own), and each event's delivery
-- to each endpoint with every attempt made.

CREATE TABLE webhook_endpoints (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url              text NOT NULL,
    events           text[] NOT NULL,
    description      text NOT NULL DEFAULT '',
    enabled          boolean NOT NULL DEFAULT true,
    -- Why it was disabled (410 Gone, failing too long, or by the tenant), for the tenant to read.
    disabled_reason  text,
    -- Since when every attempt has failed (none has succeeded since); cleared by a success.
    failing_since    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at DESC, id DESC);

-- An endpoint's secrets: the current one (expires_at NULL) and, after a rotation, the one
-- before it until it expires; every attempt is signed with each that has not.
CREATE TABLE webhook_secrets (
    endpoint_id  uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    secret       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz,
    PRIMARY KEY (endpoint_id, created_at)
);

-- An event as it is sent: `id` is the `webhook-id` (the receivers' idempotency key), `body` the
-- exact bytes signed, the same on every attempt.
CREATE TABLE webhook_events (
    id          text PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type        text NOT NULL,
    body        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id         text NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    -- Where the retry schedule starts again: a replay sends from its start.
    schedule_from    integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    -- A sender holds a delivery it is attempting until then: one that dies holding it loses
    -- nothing, the delivery is due again when the lease runs out.
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint
    ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);

CREATE TABLE webhook_attempts (
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL,
    status_code  integer,
    latency_ms   integer NOT NULL,
    error        text,
    PRIMARY KEY (delivery_id, attempt)
);
