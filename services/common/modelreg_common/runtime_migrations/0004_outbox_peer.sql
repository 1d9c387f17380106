-- The network peer of the call that made the change (`ipv4:10.0.0.7:51234`), shipped with the
-- event for the audit trail. Rows written before this column existed, or outside an RPC, have ''.
ALTER TABLE outbox ADD COLUMN peer text NOT NULL DEFAULT '';
