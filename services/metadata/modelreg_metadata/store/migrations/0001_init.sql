-- The metadata service's tables. Names ({model}, {experiment}, {run}) are the resource ids;
-- bigint ids are internal. Tags live twice: a jsonb copy on the row (one read returns the whole
-- resource) and, for models and versions, a key/value table indexed for filters.

CREATE TABLE registered_models (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    tags jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    -- The version counter: CreateModelVersion increments it under the row lock, so numbers
    -- are gapless per model and a rolled-back create gives its number back.
    last_version bigint NOT NULL DEFAULT 0,
    revision bigint NOT NULL DEFAULT 1
);

CREATE INDEX registered_models_name_pattern ON registered_models (name text_pattern_ops);
CREATE INDEX registered_models_create_time ON registered_models (create_time, name);

CREATE TABLE registered_model_tags (
    model_id bigint NOT NULL REFERENCES registered_models (id) ON DELETE CASCADE,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE INDEX registered_model_tags_key_value ON registered_model_tags (key, value, model_id);

CREATE TABLE model_versions (
    id bigserial PRIMARY KEY,
    model_id bigint NOT NULL REFERENCES registered_models (id) ON DELETE CASCADE,
    -- Copy of registered_models.name (kept in step by rename): sorting and prefix filters on
    -- it use this table's own indexes.
    model_name text NOT NULL,
    version bigint NOT NULL,
    state text NOT NULL,
    run text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    source text NOT NULL DEFAULT '',
    model_format text NOT NULL DEFAULT '',
    framework text NOT NULL DEFAULT '',
    signature jsonb NOT NULL DEFAULT '{}'::jsonb,
    tags jsonb NOT NULL DEFAULT '{}'::jsonb,
    artifact_digest text NOT NULL DEFAULT '',
    artifact_file_count bigint NOT NULL DEFAULT 0,
    artifact_size_bytes bigint NOT NULL DEFAULT 0,
    status_message text NOT NULL DEFAULT '',
    created_by text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    revision bigint NOT NULL DEFAULT 1,
    UNIQUE (model_id, version)
);

CREATE UNIQUE INDEX model_versions_name_version ON model_versions (model_name, version);
CREATE INDEX model_versions_name_pattern ON model_versions (model_name text_pattern_ops, version);
CREATE INDEX model_versions_create_time ON model_versions (create_time, model_name, version);
CREATE INDEX model_versions_run ON model_versions (run) WHERE run <> '';

CREATE TABLE model_version_tags (
    version_id bigint NOT NULL REFERENCES model_versions (id) ON DELETE CASCADE,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (version_id, key)
);

CREATE INDEX model_version_tags_key_value ON model_version_tags (key, value, version_id);

-- One row per signature input/output/param, for `signature.inputs.<name> = FLOAT32` filters.
CREATE TABLE model_version_signature_fields (
    version_id bigint NOT NULL REFERENCES model_versions (id) ON DELETE CASCADE,
    kind text NOT NULL,
    name text NOT NULL,
    type text NOT NULL,
    PRIMARY KEY (version_id, kind, name)
);

CREATE INDEX model_version_signature_fields_lookup
    ON model_version_signature_fields (kind, name, type, version_id);

CREATE TABLE experiments (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    tags jsonb NOT NULL DEFAULT '{}'::jsonb,
    state text NOT NULL DEFAULT 'ACTIVE',
    created_by text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    revision bigint NOT NULL DEFAULT 1
);

CREATE TABLE runs (
    id bigserial PRIMARY KEY,
    experiment_id bigint NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    experiment_name text NOT NULL,
    run_id text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    status text NOT NULL,
    start_time timestamptz NOT NULL DEFAULT now(),
    end_time timestamptz,
    params jsonb NOT NULL DEFAULT '{}'::jsonb,
    tags jsonb NOT NULL DEFAULT '{}'::jsonb,
    inputs jsonb NOT NULL DEFAULT '[]'::jsonb,
    code jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    revision bigint NOT NULL DEFAULT 1,
    UNIQUE (experiment_id, run_id)
);

CREATE UNIQUE INDEX runs_name ON runs (experiment_name, run_id);
CREATE INDEX runs_experiment_create_time ON runs (experiment_name, create_time, run_id);
CREATE INDEX runs_create_time ON runs (create_time, experiment_name, run_id);
CREATE INDEX runs_tags ON runs USING gin (tags jsonb_path_ops);
CREATE INDEX runs_params ON runs USING gin (params jsonb_path_ops);

-- The latest point of each metric (highest step, then latest timestamp), for Run and filters.
CREATE TABLE run_latest_metrics (
    run_pk bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key text NOT NULL,
    value double precision NOT NULL,
    step bigint NOT NULL,
    timestamp timestamptz NOT NULL,
    PRIMARY KEY (run_pk, key)
);

CREATE INDEX run_latest_metrics_key_value ON run_latest_metrics (key, value, run_pk);

CREATE TABLE run_metrics (
    run_pk bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key text NOT NULL,
    step bigint NOT NULL,
    timestamp timestamptz NOT NULL,
    seq bigserial,
    value double precision NOT NULL,
    PRIMARY KEY (run_pk, key, step, timestamp, seq)
);

-- Lineage: explicit nodes (datasets, code, deployments) are rows here; runs and model
-- versions are nodes by their resource names without a row. Edges point from source to target
-- in the direction data flows.
CREATE TABLE lineage_nodes (
    name text PRIMARY KEY,
    type text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    properties jsonb NOT NULL DEFAULT '{}'::jsonb,
    create_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lineage_edges (
    source text NOT NULL,
    target text NOT NULL,
    type text NOT NULL,
    properties jsonb NOT NULL DEFAULT '{}'::jsonb,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, target, type)
);

CREATE INDEX lineage_edges_target ON lineage_edges (target, source);
