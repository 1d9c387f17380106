"""The runtime every modelreg service shares: settings, server bootstrap, interceptors,
errors, database pool and migrations, the outbox, and local PostgreSQL/S3 for dev and tests."""

__version__ = "0.1.0"
