-- Replaces `log_epoch` (0004) as the sign that unflushed appends may have been lost. A server
-- start time misses a crash of one backend (the postmaster reinitialises shared memory, WAL
-- buffers included, without restarting) and flags every clean restart. PostgreSQL empties
-- unlogged tables in crash recovery, and a promoted standby has them empty, but keeps them
-- over a clean shutdown: so this row is missing exactly when appends committed without a
-- flush may be gone, and the next append then steps the sequence over them (store/events.py).
DROP TABLE log_epoch;
CREATE UNLOGGED TABLE log_alive (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row)
);
INSERT INTO log_alive DEFAULT VALUES;
