"""Long-lived servers freeze their start-up heap, so a full garbage collection does not walk it.

Unfrozen, a gen-2 collection in a gunicorn worker walked ~160k objects (Flask, scikit-learn,
pandas) and paused a request by >100 ms every few seconds under load: the p99 of a whole load
step. Each check runs in a fresh interpreter, where nothing is frozen yet.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(source: str, env: dict[str, str] | None = None) -> str:
    process = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=env,
    )
    assert process.returncode == 0, process.stderr
    return process.stdout


def test_a_gunicorn_worker_freezes_its_heap_once_the_app_is_loaded():
    output = run_python(
        """
        import gc
        from servinglab.serving import gunicorn_conf
        before = gc.get_freeze_count()
        gunicorn_conf.post_worker_init(None)
        print(before, gc.get_freeze_count())
        """
    )
    before, after = map(int, output.split())
    assert before == 0 and after > 10_000


def test_a_stage_server_freezes_its_heap_before_it_serves(models_root):
    # serve() with the real preprocess server (its model loaded), wrapped to report the freeze
    # count when serve() starts it, and to end there: what comes after is not this test's.
    output = run_python(
        """
        import gc, os
        from microservices import grpc_server
        from microservices.preprocess.server import create_server

        class ReportAtStart:
            def start(self):
                print(gc.get_freeze_count(), flush=True)
                os._exit(0)

        def build(address, settings):
            _, port, health = create_server(address, settings)
            return ReportAtStart(), port, health

        grpc_server.serve("preprocess", build)
        """,
        env={
            **os.environ,
            "LAB_MODEL_DIR": str(models_root),
            "LAB_GRPC_BIND": "127.0.0.1:0",
        },
    )
    assert int(output.split()[0]) > 10_000
