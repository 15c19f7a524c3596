"""Gateway app factory: the shared HTTP API around the gRPC stage services, in one of three modes.

    LAB_PREPROCESS_ADDR=... LAB_INFERENCE_ADDR=... LAB_POSTPROCESS_ADDR=... \
        gunicorn -c python:servinglab.serving.gunicorn_conf 'microservices.gateway.app:create_app()'
    LAB_GATEWAY_MODE=split LAB_INFERENCE_ADDR=... gunicorn ... 'microservices.gateway.app:create_app()'
    LAB_GATEWAY_MODE=chained LAB_PREPROCESS_ADDR=... gunicorn ... 'microservices.gateway.app:create_app()'

`LAB_GATEWAY_MODE` (servinglab/config.py) picks the backend; each mode requires exactly the
addresses it calls, checked here so a missing one stops start-up with its name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask

from microservices.gateway.chained import ChainedBackend
from microservices.gateway.orchestrated import OrchestratedBackend
from servinglab import config as lab_config
from servinglab.config import Settings
from servinglab.contract import STAGES, Backend
from servinglab.serving.api import build_app
from servinglab.serving.cache import cache_mode, with_cache


def _split(settings: Settings) -> Callable[[], Backend]:
    # Imported here: the split gateway alone loads a model artifact (skops, scikit-learn: over a
    # second of start-up that the other modes' gateways need not pay).
    from microservices.gateway.split import LocalStages, SplitBackend

    # The in-process stages load the artifact now, before gunicorn forks; channels after the fork.
    local = LocalStages(settings)
    return lambda: SplitBackend(settings, local)


# mode -> (addresses it calls, what builds its backend factory before the fork)
MODES: dict[str, tuple[tuple[str, ...], Callable[[Settings], Callable[[], Backend]]]] = {
    "orchestrated": (
        tuple(f"{stage.upper()}_ADDR" for stage in STAGES),
        lambda settings: lambda: OrchestratedBackend(settings),
    ),
    "split": (("INFERENCE_ADDR",), _split),
    "chained": (("PREPROCESS_ADDR",), lambda settings: lambda: ChainedBackend(settings)),
}


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """`config`: the settings, or overrides of the environment's (`servinglab.config.resolve`)."""
    settings = lab_config.resolve(config)
    mode = settings.gateway_mode
    if mode not in MODES:
        raise RuntimeError(
            f"unknown {lab_config.env_name('GATEWAY_MODE')}={mode!r}; choose one of: {', '.join(MODES)}"
        )
    addresses, prepare = MODES[mode]
    # Checked here, before any worker forks, so a missing address stops start-up with its name.
    try:
        lab_config.require(settings, *addresses)
    except RuntimeError as missing:
        raise RuntimeError(f"the {mode} gateway: {missing}") from None
    cache_mode(settings)  # a misspelt cache setting stops start-up here, not in each worker
    factory = prepare(settings)
    # With CACHE_PLACEMENT=gateway the cache wraps whichever backend, built lazily in each worker.
    return build_app(lambda: with_cache(factory(), settings, "gateway"), __name__, settings)
