-- The approvals queue lists requests across models (parent models/-), newest first.
CREATE INDEX transition_requests_by_time ON transition_requests (state, create_time DESC, id DESC);
