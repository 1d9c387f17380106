-- Appends commit without waiting for the WAL flush, so subscribers are woken at once; PublishEvents
-- answers only after a flush (store/events.py). A PostgreSQL crash can therefore lose the tail of
-- the log that subscribers already saw, and the sequence numbers drawn for it. `log_epoch` holds
-- the server start time the log last appended under: the first append after a restart commits
-- synchronously and moves the sequence far past any number that tail may have used, so a
-- subscriber resuming after a number it saw never skips a later event given the same number.
CREATE TABLE log_epoch (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    postmaster_started timestamptz
);
INSERT INTO log_epoch DEFAULT VALUES;

-- `setval` on it WAL-logs and takes a transaction id, so a synchronous commit of it flushes the
-- WAL up to that point: everything appended before is durable. Overwritten in place, no bloat.
CREATE SEQUENCE log_flush;
