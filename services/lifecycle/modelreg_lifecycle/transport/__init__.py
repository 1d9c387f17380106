"""gRPC servicers and the proto <-> domain conversion."""
