"""The ML pipeline itself: data, estimators, training, artifacts, quality gate, serving stages.

Imports no web or RPC framework: both architectures call these same functions, in process or
behind a gRPC service.
"""
