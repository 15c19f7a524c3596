"""gunicorn settings for the monolith and the gateway, read from the same `LAB_*` variables.

    gunicorn -c python:servinglab.serving.gunicorn_conf 'monolith.app:create_app()'

The supervisor may bind a socket itself and pass `--bind fd://N`; a command-line `--bind`
overrides the `bind` below.
"""

from __future__ import annotations

from servinglab import config as lab_config
from servinglab.serving import metrics

_settings = lab_config.load()

bind = [_settings.http_bind]
workers = _settings.http_workers
# gthread, timed: the same worker, telling the app how long each request queued (load shedding).
worker_class = {"gthread": "servinglab.serving.gunicorn_worker.QueueTimingThreadWorker"}.get(
    _settings.http_worker_class, _settings.http_worker_class
)
threads = _settings.http_threads
timeout = _settings.http_timeout_s
# Longer than a request's gRPC budget, so a draining worker finishes what it has started.
graceful_timeout = _settings.http_graceful_timeout_s
keepalive = 5
# Bounds on the request head, set explicitly from the shared settings (see config.py).
limit_request_line = _settings.http_limit_request_line
limit_request_fields = _settings.http_limit_request_fields
limit_request_field_size = _settings.http_limit_request_field_size
accesslog = None
errorlog = "-"
loglevel = "warning"
# Off by default, each worker builds its own app after fork. With HTTP_PRELOAD the master builds
# it; the backend (the model, or the gateway's gRPC channels, which do not survive fork) is still
# made on first use in each worker, but the modules and, in the monolith, the loaded artifact are
# shared copy-on-write.
preload_app = _settings.http_preload
# gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl): every
# deployment on the machine would share it, and in a container $HOME does not exist. The lab
# drives gunicorn by signals only.
control_socket_disable = True

_max_body_bytes = _settings.max_content_length
_keepalive_requests = _settings.http_keepalive_requests


def pre_request(worker, req):
    # An oversized body is refused with 413 before it is read; if the connection stayed open,
    # its unread bytes would be parsed as the next request. gunicorn ignores a Connection header
    # set by the app, so the decision to close is made here, where the request is visible.
    length = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), None)
    chunked = any(name == "TRANSFER-ENCODING" for name, _ in req.headers)
    if chunked or (length is not None and length.isdigit() and int(length) > _max_body_bytes):
        req.must_close = True
    # Workers share one listening socket (the launcher binds it and passes fd://, so gunicorn's
    # reuse_port cannot give each worker its own), and on a pinned CPU the worker that wakes first
    # accepts a whole burst of connections: under keep-alive one worker served ~98% of requests.
    # Ending each connection after a number of requests makes its client reconnect; whichever
    # worker wakes first accepts it, often the idle one, so over many reconnections the
    # connections (measured: 8 kept-alive ones, 2 workers, 1 CPU) split about evenly.
    if _keepalive_requests and req.req_number >= _keepalive_requests:
        req.must_close = True


def post_worker_init(worker):
    # The app (and its model) is loaded. Its ~160k objects (Flask, scikit-learn, pandas, numpy
    # modules) live for the worker's life, and a full garbage collection walks all of them: ~60 ms
    # of CPU, >110 ms of wall time on a CPU shared with the other worker, which was the p99 of a
    # whole load step (measured with gc.callbacks under `make bench`). Frozen, they are never
    # walked again; answers do not change.
    import gc
    import os

    gc.freeze()
    # A rolling reload may now retire an old worker (lab.launch.Deployment.reload_workers waits
    # for this marker).
    ready_dir = os.environ.get("LAB_WORKER_READY_DIR")
    if ready_dir:
        open(os.path.join(ready_dir, str(os.getpid())), "w").close()


def post_request(worker, req, environ, resp):
    # Per worker, so /metrics (and the bench report) show whether every worker takes a share.
    metrics.WORKER_REQUESTS.inc((str(worker.pid),))


def worker_exit(server, worker):
    # Publish the last second of this worker's metrics before it goes.
    metrics.flush()
