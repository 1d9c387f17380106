"""PostgreSQL and the metadata peer, behind the domain's ports."""
