"""gunicorn settings for the monolith and the gateway, read from the same `LAB_*` variables.

    gunicorn -c python:servinglab.serving.gunicorn_conf 'monolith.app:create_app()'

The supervisor may bind a socket itself and pass `--bind fd://N`; a command-line `--bind`
overrides the `bind` below.
"""

from __future__ import annotations

from servinglab import config as lab_config

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
# Each worker builds its own app (and, in the gateway, its own gRPC channels) after fork: gRPC
# channels do not survive fork, and the model is small enough that sharing pages buys little.
preload_app = False

_max_body_bytes = _settings.max_content_length


def pre_request(worker, req):
    # An oversized body is refused with 413 before it is read; if the connection stayed open,
    # its unread bytes would be parsed as the next request. gunicorn ignores a Connection header
    # set by the app, so the decision to close is made here, where the request is visible.
    length = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), None)
    chunked = any(name == "TRANSFER-ENCODING" for name, _ in req.headers)
    if chunked or (length is not None and length.isdigit() and int(length) > _max_body_bytes):
        req.must_close = True


def post_worker_init(worker):
    # The app (and its model) is loaded: a rolling reload may now retire an old worker
    # (lab.launch.Deployment.reload_workers waits for this marker).
    import os

    ready_dir = os.environ.get("LAB_WORKER_READY_DIR")
    if ready_dir:
        open(os.path.join(ready_dir, str(os.getpid())), "w").close()


def worker_exit(server, worker):
    # Publish the last second of this worker's metrics before it goes.
    from servinglab.serving import metrics

    metrics.flush()
