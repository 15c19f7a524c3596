"""Gateway app factory: the shared HTTP API around the gRPC stage services.

    LAB_PREPROCESS_ADDR=... LAB_INFERENCE_ADDR=... LAB_POSTPROCESS_ADDR=... \
        gunicorn -c python:servinglab.gunicorn_conf 'microservices.gateway.app:create_app()'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from microservices.gateway.stages import GrpcBackend
from servinglab import config as lab_config
from servinglab.api import build_app


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    settings = lab_config.load(overrides=config)
    # Checked here, before any worker forks, so a missing address stops start-up with its name.
    lab_config.require(settings, "PREPROCESS_ADDR", "INFERENCE_ADDR", "POSTPROCESS_ADDR")
    return build_app(lambda: GrpcBackend(settings), __name__, config)
