-- Webhook signing secrets sealed at rest (domain/secret_box.py): AES-256-GCM under a key kept
-- outside the database, bound to the webhook id. HMAC needs the raw key, so hashing is no
-- option. The service seals the clear rows at start-up (store/webhooks.py,
-- seal_clear_secrets) and empties `secret`/`previous_secret`; they stay, nullable, only so a
-- replica of the previous release still running during a rolling upgrade can create and rotate
-- webhooks (a clear value it writes wins over the sealed one and is sealed at the next start).
ALTER TABLE webhooks
    ADD COLUMN secret_box bytea,
    ADD COLUMN previous_secret_box bytea,
    ALTER COLUMN secret DROP NOT NULL,
    ADD CONSTRAINT webhooks_secret_present CHECK (secret IS NOT NULL OR secret_box IS NOT NULL);

-- Finds the rows still to seal at start-up without scanning the table.
CREATE INDEX webhooks_clear_secret ON webhooks (id)
    WHERE secret IS NOT NULL OR previous_secret IS NOT NULL;
