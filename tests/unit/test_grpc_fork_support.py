"""gRPC's fork handlers are off in every process of ours that loads gRPC, unless its caller chose.

With them on, a busy channel in one thread can abort the child of the next subprocess.Popen before
it execs (grpc/grpc#43055; here a stage "exited with code -6 before it was ready").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a stage server, the gateway and the bench's floors import, each in a fresh interpreter.
SHOW = (
    "import {module}, os, sys; "
    "assert 'grpc' in sys.modules; "
    "print(os.environ.get('GRPC_ENABLE_FORK_SUPPORT'))"
)


def _setting_after_import(module: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    result = subprocess.run(
        [sys.executable, "-c", SHOW.format(module=module)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **env},
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize(
    "module", ["microservices.preprocess.server", "microservices.gateway.orchestrated"]
)
def test_loading_grpc_through_our_code_switches_its_fork_handlers_off(module):
    assert _setting_after_import(module) == "0"


def test_a_callers_own_setting_wins():
    assert _setting_after_import("microservices.grpc_server", GRPC_ENABLE_FORK_SUPPORT="1") == "1"
