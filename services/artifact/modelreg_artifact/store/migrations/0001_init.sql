-- Owners (model versions, runs) that have files or a sealed manifest. The row is the lock that
-- serialises sealing against writes to the owner.
CREATE TABLE owners (
    owner          text PRIMARY KEY,
    sealed_digest  text,
    sealed_at      timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Content-addressed blobs: one stored object per distinct sha256.
CREATE TABLE blobs (
    digest       text PRIMARY KEY,
    storage_key  text NOT NULL UNIQUE,
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Last time an upload resolved to this blob: the collector's grace period counts from here.
    touched_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blobs_touched_at ON blobs (touched_at);

CREATE TABLE manifest_entries (
    owner        text NOT NULL REFERENCES owners (owner),
    path         text COLLATE "C" NOT NULL,
    digest       text NOT NULL REFERENCES blobs (digest),
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    media_type   text NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, path)
);
CREATE INDEX manifest_entries_digest ON manifest_entries (digest);

-- Uploads in progress; their bytes live in the backend under storage_key.
CREATE TABLE upload_sessions (
    id                 uuid PRIMARY KEY,
    owner              text NOT NULL,
    path               text NOT NULL,
    media_type         text NOT NULL,
    expected_size      bigint,
    expected_digest    text,
    storage_key        text NOT NULL UNIQUE,
    backend_upload_id  text NOT NULL DEFAULT '',
    part_size          bigint NOT NULL,
    mode               text NOT NULL CHECK (mode IN ('stream', 'presigned')),
    resumable          boolean NOT NULL,
    -- The stream currently writing (a random token), so two streams never write one upload.
    holder             uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upload_sessions_updated_at ON upload_sessions (updated_at);

CREATE TABLE upload_parts (
    session_id   uuid NOT NULL REFERENCES upload_sessions (id) ON DELETE CASCADE,
    part_number  integer NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
    etag         text NOT NULL,
    size_bytes   bigint NOT NULL,
    PRIMARY KEY (session_id, part_number)
);

-- Backend objects (and unfinished multipart uploads) to delete. Queued in the transaction
-- that orphans them, removed once the backend confirmed, retried by the collector.
CREATE TABLE doomed_objects (
    storage_key        text PRIMARY KEY,
    backend_upload_id  text NOT NULL DEFAULT '',
    queued_at          timestamptz NOT NULL DEFAULT now(),
    attempt_after      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX doomed_objects_attempt_after ON doomed_objects (attempt_after);
