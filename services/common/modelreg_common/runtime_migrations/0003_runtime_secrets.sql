-- Secrets the runtime generates once per schema and every replica shares, such as the key
-- that signs page tokens (so a token from one replica is valid on the next).
CREATE TABLE runtime_secrets (
    name text PRIMARY KEY,
    value bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO runtime_secrets (name, value)
VALUES (
    'page_token_key',
    decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
);
