-- Aliases: the current holder, with the version record as metadata returned it when the alias
-- moved, so resolving is one primary-key read and never a peer call.
CREATE TABLE aliases (
    model text NOT NULL,
    alias text NOT NULL,
    version bigint NOT NULL,
    record bytea NOT NULL,
    revision bigint NOT NULL,
    updater text NOT NULL,
    update_time timestamptz NOT NULL,
    PRIMARY KEY (model, alias)
);

-- Every move, forever. `id` and `time` are both taken under the alias's lock, so they grow
-- together per alias: time travel reads the last entry at or before a moment.
CREATE TABLE alias_history (
    id bigserial PRIMARY KEY,
    model text NOT NULL,
    alias text NOT NULL,
    from_version bigint,
    to_version bigint,
    record bytea,
    action text NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL DEFAULT '',
    request_id text NOT NULL DEFAULT '',
    transition_request text NOT NULL DEFAULT '',
    time timestamptz NOT NULL
);
CREATE INDEX alias_history_by_alias ON alias_history (model, alias, id DESC);

-- Versions not in the initial stage.
CREATE TABLE version_stages (
    model text NOT NULL,
    version bigint NOT NULL,
    stage text NOT NULL,
    updater text NOT NULL,
    update_time timestamptz NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE INDEX version_stages_by_stage ON version_stages (model, stage);

CREATE TABLE stage_history (
    id bigserial PRIMARY KEY,
    model text NOT NULL,
    version bigint NOT NULL,
    from_stage text NOT NULL,
    to_stage text NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL DEFAULT '',
    request_id text NOT NULL DEFAULT '',
    transition_request text NOT NULL DEFAULT '',
    time timestamptz NOT NULL
);
CREATE INDEX stage_history_by_model ON stage_history (model, id DESC);
CREATE INDEX stage_history_by_version ON stage_history (model, version, id DESC);

-- scope: a model id, or '' for the registry-wide policy. `document` holds rules and thresholds.
CREATE TABLE policies (
    scope text PRIMARY KEY,
    document jsonb NOT NULL,
    revision bigint NOT NULL,
    updater text NOT NULL,
    update_time timestamptz NOT NULL
);

CREATE TABLE transition_requests (
    id text PRIMARY KEY,
    model text NOT NULL,
    version bigint NOT NULL,
    target_kind text NOT NULL CHECK (target_kind IN ('alias', 'stage')),
    target text NOT NULL,
    comment text NOT NULL DEFAULT '',
    state text NOT NULL,
    requester text NOT NULL,
    base text NOT NULL,
    required_approvals int NOT NULL,
    failure_reason text NOT NULL DEFAULT '',
    closing_reviewer text,
    closing_comment text,
    closing_time timestamptz,
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL
);
CREATE INDEX transition_requests_by_model ON transition_requests (model, create_time DESC, id DESC);
CREATE INDEX transition_requests_pending ON transition_requests (model, target_kind, target)
    WHERE state = 'PENDING';

CREATE TABLE approvals (
    request_id text NOT NULL REFERENCES transition_requests (id),
    approver text NOT NULL,
    comment text NOT NULL DEFAULT '',
    time timestamptz NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE deployments (
    id text PRIMARY KEY,
    model text NOT NULL,
    version bigint NOT NULL,
    environment text NOT NULL,
    endpoint text NOT NULL,
    status text NOT NULL,
    recorder text NOT NULL,
    create_time timestamptz NOT NULL,
    end_time timestamptz,
    lineage_node text NOT NULL DEFAULT ''
);
CREATE INDEX deployments_by_model ON deployments (model, create_time DESC, id DESC);
CREATE INDEX deployments_current ON deployments (model, environment, endpoint)
    WHERE end_time IS NULL;

CREATE TABLE production_metrics (
    id bigserial PRIMARY KEY,
    model text NOT NULL,
    version bigint NOT NULL,
    environment text NOT NULL,
    metric text NOT NULL,
    value double precision NOT NULL,
    window_seconds double precision NOT NULL,
    record_time timestamptz NOT NULL
);
CREATE INDEX production_metrics_by_series
    ON production_metrics (model, version, environment, metric, id DESC);

-- An episode is open while end_time is NULL; the partial unique index makes "degraded" fire
-- once per episode even when values arrive concurrently.
CREATE TABLE degradations (
    id bigserial PRIMARY KEY,
    model text NOT NULL,
    version bigint NOT NULL,
    environment text NOT NULL,
    metric text NOT NULL,
    threshold text NOT NULL,
    value double precision NOT NULL,
    start_time timestamptz NOT NULL,
    end_time timestamptz
);
CREATE UNIQUE INDEX degradations_open
    ON degradations (model, version, environment, metric) WHERE end_time IS NULL;
CREATE INDEX degradations_by_model ON degradations (model, id DESC);
