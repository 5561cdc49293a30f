-- Tally's system of record. Every table that holds customer data carries tenant_id, and every
-- query of the repository filters on it.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 digests only; the key itself is shown once, at creation.
-- `prefix` (the first characters of the key) lets an operator tell keys apart without the key.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix      text NOT NULL,
    digest      bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL DEFAULT '',
    params      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (tenant_id, id)
);
CREATE INDEX sessions_tenant_created ON sessions (tenant_id, created_at DESC, id DESC);

CREATE TABLE jobs (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL,
    session_id     uuid NOT NULL,
    image_id       uuid NOT NULL,
    filename       text NOT NULL,
    object_key     text NOT NULL,
    width          integer NOT NULL CHECK (width > 0),
    height         integer NOT NULL CHECK (height > 0),
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    phase          text NOT NULL DEFAULT 'queued',
    processed      integer NOT NULL DEFAULT 0 CHECK (processed >= 0),
    total          integer NOT NULL DEFAULT 0 CHECK (total >= 0),
    chunk_count    integer NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    error_code     text,
    error_message  text,
    warnings       text[] NOT NULL DEFAULT '{}',
    -- clock_timestamp, not now(): jobs created in one transaction keep their upload order.
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at     timestamptz,
    completed_at   timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX jobs_tenant_session ON jobs (tenant_id, session_id, created_at, id);
CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX jobs_tenant_status ON jobs (tenant_id, status);

-- What each chunk of a job found, until the job's result is merged. The primary key makes a
-- redelivered or duplicated ChunkResult change nothing.
CREATE TABLE chunk_results (
    job_id       uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    chunk_index  integer NOT NULL CHECK (chunk_index >= 0),
    slices       integer NOT NULL CHECK (slices >= 0),
    payload      bytea NOT NULL,  -- tally.v1.ChunkDetections
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, chunk_index)
);

-- The results index: counts in the row, detections in the object store.
CREATE TABLE results (
    job_id      uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL,
    counts      jsonb NOT NULL,
    detections  integer NOT NULL CHECK (detections >= 0),
    object_key  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX results_tenant ON results (tenant_id);

-- Transactional outbox: a message is written in the same transaction as the rows it announces,
-- and a relay publishes it afterwards, so a committed job is always dispatched.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    exchange      text NOT NULL,
    routing_key   text NOT NULL,
    message_type  text NOT NULL,
    payload       bytea NOT NULL,
    headers       jsonb NOT NULL DEFAULT '{}',  -- e.g. the W3C trace context of the request
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
