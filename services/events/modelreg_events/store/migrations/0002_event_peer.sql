-- The network peer the change came from, for the audit trail. Adding a column with a constant
-- default rewrites no rows (and so fires no UPDATE trigger): the log stays append-only.
ALTER TABLE events ADD COLUMN peer text NOT NULL DEFAULT '';

CREATE INDEX events_peer ON events (peer, sequence);
