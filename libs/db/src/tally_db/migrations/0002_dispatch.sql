-- Fair dispatch: a planned job's chunks wait here, not on the bus. The orchestrator moves them
-- to the outbox a few at a time (tenants taking turns, each within its in-flight limit), so the
-- detectors' queue stays shallow and a small tenant's photo never waits behind another's
-- backlog. A row leaves when its chunk's result is recorded or its job reaches a final status;
-- until then `dispatched_at` says whether it is waiting (NULL) or out with the detectors.
CREATE TABLE chunk_dispatch (
    job_id         uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    chunk_index    integer NOT NULL CHECK (chunk_index >= 0),
    tenant_id      uuid NOT NULL,
    slices         integer NOT NULL CHECK (slices >= 0),
    -- The DetectChunk as the outbox will carry it.
    exchange       text NOT NULL,
    routing_key    text NOT NULL,
    message_type   text NOT NULL,
    payload        bytea NOT NULL,
    headers        jsonb NOT NULL DEFAULT '{}',
    job_created_at timestamptz NOT NULL,  -- a tenant's chunks go out in upload order
    dispatched_at  timestamptz,
    dispatches     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, chunk_index)
);
CREATE INDEX chunk_dispatch_waiting
    ON chunk_dispatch (tenant_id, job_created_at, job_id, chunk_index)
    WHERE dispatched_at IS NULL;
CREATE INDEX chunk_dispatch_out ON chunk_dispatch (tenant_id) WHERE dispatched_at IS NOT NULL;

-- Whose turn it is: the tenant served longest ago goes first.
CREATE TABLE dispatch_turns (
    tenant_id  uuid PRIMARY KEY,
    last_turn  bigint NOT NULL
);
