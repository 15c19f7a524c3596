"""The serving runtime around the pipeline: the HTTP API, OpenAPI, metrics, batching, cache, gunicorn.

The monolith and the microservices gateway both build their app here; the gRPC stage services use
its metrics and batching.
"""
