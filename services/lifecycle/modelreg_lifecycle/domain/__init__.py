"""Rules of the lifecycle service: no grpc, protobuf or asyncpg here."""
