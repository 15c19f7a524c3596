"""gunicorn's threaded worker, plus the one thing load shedding needs: how long a request queued.

Beyond capacity, a worker's queue only grows, and every queued request gets slower until clients
time out: the server keeps doing work nobody is waiting for. The fix (CoDel-like admission, as
large services do it) is to refuse quickly what has already queued too long: the app answers 503
with `Retry-After` in microseconds instead of computing a stale answer in milliseconds.

The worker stamps each connection when it is handed to the thread pool and passes the wait to the
app as the `X-Lab-Queue-Ms` header, after removing any header of that name a client sent, so it
cannot be forged. `HTTP_WORKER_CLASS=gthread` selects this worker (see gunicorn_conf.py).
"""

from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker

QUEUE_HEADER = "X-LAB-QUEUE-MS"  # gunicorn upper-cases names; WSGI sees HTTP_X_LAB_QUEUE_MS


class QueueTimingThreadWorker(ThreadWorker):
    def enqueue_req(self, conn):
        conn.lab_enqueued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle_request(self, req, conn):
        enqueued_at = getattr(conn, "lab_enqueued_at", None)
        headers = [(name, value) for name, value in req.headers if name != QUEUE_HEADER]
        if enqueued_at is not None:
            headers.append((QUEUE_HEADER, f"{(time.monotonic() - enqueued_at) * 1e3:.3f}"))
        req.headers = headers
        return super().handle_request(req, conn)
