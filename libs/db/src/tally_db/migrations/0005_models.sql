-- The model registry: every detector a session can use, each version a row. A tenant's own
-- models carry its tenant_id; shared ones (the operators', the built-in default among them)
-- have none. An uploaded model's file is in the object store (object_key); the built-in one is
-- in Triton's own repository (object_key NULL). `triton_name` is the model's name on Triton,
-- one per version, never reused.

CREATE TABLE models (
    id           uuid PRIMARY KEY,
    tenant_id    uuid REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    version      integer NOT NULL CHECK (version > 0),
    format       text NOT NULL CHECK (format IN ('tally', 'yolov8', 'yolov5')),
    labels       jsonb NOT NULL,
    -- The side of the square slices of a static-shape model; NULL: any multiple of 32.
    input_size   integer CHECK (input_size > 0),
    batched      boolean NOT NULL,
    input_name   text NOT NULL,
    output_name  text NOT NULL,
    triton_name  text NOT NULL UNIQUE,
    object_key   text,
    bytes        bigint NOT NULL CHECK (bytes >= 0),
    sha256       text NOT NULL,
    -- validating (checked statically, its dry run on Triton to come), ready, failed (`error`).
    status       text NOT NULL CHECK (status IN ('validating', 'ready', 'failed')),
    error        text,
    is_default   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    validated_at timestamptz,
    deleted_at   timestamptz
);
-- One version number per name in each scope (a tenant's own, or the shared ones), deleted
-- versions included: a version is never given twice.
CREATE UNIQUE INDEX models_scope_name_version
    ON models ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), name, version);
CREATE INDEX models_tenant ON models (tenant_id, name, version DESC);
CREATE UNIQUE INDEX models_one_default ON models (is_default) WHERE is_default AND deleted_at IS NULL;

-- The model each session runs (NULL: the default at the time, recorded by the sessions made
-- from now on); a model a session still uses cannot be deleted.
ALTER TABLE sessions ADD COLUMN model_id uuid REFERENCES models (id);
CREATE INDEX sessions_model ON sessions (model_id) WHERE model_id IS NOT NULL;

-- The built-in default: Tally's seedling and weed detector, served from Triton's repository.
INSERT INTO models (id, tenant_id, name, version, format, labels, input_size, batched, input_name,
                    output_name, triton_name, object_key, bytes, sha256, status, is_default,
                    validated_at)
VALUES ('00000000-0000-0000-0000-00000000a001', NULL, 'seedlings', 1, 'tally',
        '["seedling", "weed"]', NULL, true, 'images', 'detections', 'tally_detector', NULL, 0,
        '', 'ready', true, now());
