-- The append-only event log. `sequence` is assigned under a transaction-scoped advisory lock
-- (see store/events.py), so sequence order is commit order and a reader that has seen
-- sequence N has seen everything below it.
CREATE TABLE events (
    sequence bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    source text NOT NULL,
    type text NOT NULL,
    subject text NOT NULL,
    actor text NOT NULL,
    request_id text NOT NULL DEFAULT '',
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    trace_context jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at timestamptz NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_type ON events (type, sequence);
CREATE INDEX events_subject ON events (subject text_pattern_ops, sequence);
CREATE INDEX events_actor ON events (actor, sequence);
CREATE INDEX events_occurred_at ON events (occurred_at);

-- No UPDATE or DELETE on the log, ever: it is the audit trail.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END;
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

-- The signing secret is stored as issued: HMAC needs the raw key to sign every delivery.
CREATE TABLE webhooks (
    id text PRIMARY KEY,
    url text NOT NULL,
    event_types text[] NOT NULL DEFAULT '{}',
    models text[] NOT NULL DEFAULT '{}',
    state text NOT NULL CHECK (state IN ('ACTIVE', 'DISABLED')),
    description text NOT NULL DEFAULT '',
    secret text NOT NULL,
    previous_secret text,
    previous_secret_expires_at timestamptz,
    revision bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_sequence bigint NOT NULL REFERENCES events (sequence),
    state text NOT NULL DEFAULT 'PENDING'
        CHECK (state IN ('PENDING', 'SUCCEEDED', 'DEAD_LETTER')),
    attempt_count integer NOT NULL DEFAULT 0,
    -- attempt_count when RedeliverEvent last reset it: the retry budget counts from here.
    round_start integer NOT NULL DEFAULT 0,
    -- For PENDING rows: when the next attempt is due. A worker that claims a row pushes it
    -- forward by a lease, so a worker that dies mid-attempt hands the row back on expiry.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer NOT NULL DEFAULT 0,
    last_latency_ms double precision NOT NULL DEFAULT 0,
    last_error text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, event_sequence)
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'PENDING';
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, created_at DESC, id DESC);

CREATE TABLE delivery_attempts (
    delivery_id uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    status_code integer NOT NULL DEFAULT 0,
    latency_ms double precision NOT NULL DEFAULT 0,
    error text NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, attempt)
);
