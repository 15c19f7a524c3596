"""Microservices: a Flask gateway calling one gRPC service per pipeline stage.

Generated protobuf code lives in `microservices.generated` (built by `make protos`, not committed).
"""
