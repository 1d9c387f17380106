-- Governance: API keys and IAM policies (who holds which role on the registry or on a model).

-- Only the SHA-256 of a key's secret is kept; the secret itself is shown once, on create.
CREATE TABLE api_keys (
    -- The {id} of apiKeys/{id}: random, unrelated to the secret.
    id text PRIMARY KEY,
    display_name text NOT NULL DEFAULT '',
    principal text NOT NULL,
    groups text[] NOT NULL DEFAULT '{}',
    secret_sha256 bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    secret_prefix text NOT NULL,
    created_by text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz,
    revoke_time timestamptz,
    -- The create's request id (AIP-155), kept with the key for the audit trail; replays are
    -- answered from idempotency_keys.
    request_id text
);

-- ListApiKeys pages by (create_time, id), for one principal or for all.
CREATE INDEX api_keys_principal ON api_keys (principal, create_time, id);
CREATE INDEX api_keys_create_time ON api_keys (create_time, id);

-- One row per policy that was ever set: `registry` or `models/{model}`. Its revision is the
-- etag; a resource without a row has the empty policy at revision 0.
CREATE TABLE iam_policies (
    resource text PRIMARY KEY,
    revision bigint NOT NULL DEFAULT 1,
    update_time timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

-- Role numbers are those of modelreg.metadata.v1.Role (viewer 1 .. admin 5).
CREATE TABLE iam_bindings (
    resource text NOT NULL REFERENCES iam_policies (resource)
        ON DELETE CASCADE ON UPDATE CASCADE,
    role smallint NOT NULL CHECK (role BETWEEN 1 AND 5),
    -- user:{subject}, group:{group} or user:*
    member text NOT NULL,
    PRIMARY KEY (resource, role, member)
);

-- ResolveAccess: every binding of a principal's members, answered from the index alone.
CREATE INDEX iam_bindings_member ON iam_bindings (member, resource, role);
