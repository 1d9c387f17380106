-- request_id of idempotent creates (AIP-155): a replay returns the saved response.
CREATE TABLE idempotency_keys (
    request_id text PRIMARY KEY,
    method text NOT NULL,
    request_hash bytea NOT NULL,
    response bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
