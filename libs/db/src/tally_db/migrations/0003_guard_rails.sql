-- Guard rails for a shared service: what a key may do, what a tenant may use, what it has used.

-- A key's scope: `read` keys (dashboards, integrators) see everything of their tenant and change
-- nothing; `write` keys also create sessions, upload, cancel and delete. Existing keys keep
-- what they could do.
ALTER TABLE api_keys
    ADD COLUMN scope text NOT NULL DEFAULT 'write' CHECK (scope IN ('read', 'write'));

-- A tenant's own limits where they differ from the services' defaults (rate limits, stream
-- caps, quotas), by name: {"write_rate": 2, "queued_slices": 50000, ...}. Names and defaults:
-- docs/configuration.md.
ALTER TABLE tenants ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';

-- The slices a photo was planned at upload (SAHI's plan of its size and the session's params):
-- what the queued-work quota counts until the job finishes.
ALTER TABLE jobs ADD COLUMN planned_slices integer NOT NULL DEFAULT 0
    CHECK (planned_slices >= 0);
CREATE INDEX jobs_tenant_active ON jobs (tenant_id) WHERE status IN ('queued', 'processing');

-- What each tenant used, by UTC day: photos and bytes accepted, slices planned less those
-- refunded (a cancelled or failed job's slices that were never processed).
CREATE TABLE usage_daily (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day        date NOT NULL,
    photos     bigint NOT NULL DEFAULT 0,
    slices     bigint NOT NULL DEFAULT 0,
    bytes      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);
