"""The gateway: the public HTTP API, orchestrating the three stage services over gRPC."""
