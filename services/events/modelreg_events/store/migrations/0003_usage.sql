-- Who used which model version how often: one row per (version, principal, kind, hour), its
-- count raised in place by every flushed batch, so the table grows with distinct users per
-- hour, not with uses.
CREATE TABLE usage_counts (
    model text NOT NULL,
    version bigint NOT NULL,
    -- "C" collation: page tokens compare principals byte-wise, whatever the database locale.
    principal text COLLATE "C" NOT NULL,
    kind text NOT NULL CHECK (kind IN ('DOWNLOAD', 'ALIAS_RESOLUTION')),
    hour_start timestamptz NOT NULL,
    count bigint NOT NULL CHECK (count > 0),
    PRIMARY KEY (model, version, principal, kind, hour_start)
);

-- ListUsage: one model's rows, newest hour first (scanned backwards).
CREATE INDEX usage_counts_by_hour ON usage_counts (model, hour_start, version, principal, kind);

-- Batch ids already applied, so a flush retried after a lost answer is counted once. Kept for a
-- retention period far longer than a service keeps retrying one batch, then deleted.
CREATE TABLE usage_batches (
    batch_id text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX usage_batches_applied_at ON usage_batches (applied_at);
