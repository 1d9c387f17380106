-- Stage requests may archive the versions they displace when applied.
ALTER TABLE transition_requests ADD COLUMN archive_existing boolean NOT NULL DEFAULT false;
