"""Under keep-alive load every gunicorn worker serves, and /metrics says how many requests each did.

The load is the case that used to go wrong: a burst of connections opened at once (as wrk or a
Locust ramp-up does) and then kept alive. On a pinned CPU the worker that wakes first accepts the
whole burst; only `HTTP_KEEPALIVE_REQUESTS` (gunicorn_conf.py) ends those connections so that the
other worker gets a share. The counter is `lab_http_worker_requests_total{worker=<pid>}`, one
series per worker, merged over the workers' published snapshots (servinglab/serving/metrics.py).
"""

from __future__ import annotations

import json
import socket

import pytest

from benchmarks.measure import httpload, metrics
from lab.launch import launch
from servinglab.model import data

WORKERS = 2
CONNECTIONS = 8
KEEPALIVE_REQUESTS = 20  # small, so a few hundred requests are enough to rebalance
FAIR_SHARE = 0.2  # each of the two workers must have served at least this share
MAX_REQUESTS = 4000  # the load a spread must show within; a stuck split never gets there
CHECK_EVERY = 200
COUNTER = "lab_http_worker_requests_total"


class KeepAliveClient:
    """`connections` sockets opened together, each with one request in flight at a time.

    A response with `Connection: close` makes that socket reconnect for its next request, as
    any HTTP/1.1 client does.
    """

    def __init__(self, url: str, request: bytes, connections: int = CONNECTIONS):
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.request = request
        self.sockets = [socket.create_connection(self.address) for _ in range(connections)]
        self.reconnects = 0

    def send(self, index: int) -> int:
        self.sockets[index].sendall(self.request)
        return self.receive(index)

    def round(self) -> list[int]:
        """One request on every connection at once (closed loop, all in flight), their statuses."""
        for sock in self.sockets:
            sock.sendall(self.request)
        return [self.receive(index) for index in range(len(self.sockets))]

    def receive(self, index: int) -> int:
        sock = self.sockets[index]
        buffer = b""
        while True:
            chunk = sock.recv(65536)
            assert chunk, "the server closed a connection without answering"
            head, _ = httpload.take_response(buffer + chunk)
            buffer += chunk
            if head is not None:
                break
        if head.close:
            sock.close()
            self.sockets[index] = socket.create_connection(self.address)
            self.reconnects += 1
        return head.status

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def per_worker(url: str) -> dict[str, float]:
    text = metrics.scrape(url)
    assert text is not None, "/metrics did not answer"
    return metrics.totals_by_label(text, COUNTER, "worker")


@pytest.fixture(scope="module")
def pinned_monolith(models_root, tmp_path_factory):
    # One CPU, as `make bench` pins the system under test: where one worker took all the load.
    with launch(
        "monolith",
        settings={
            "MODEL_DIR": models_root,
            "HTTP_WORKERS": WORKERS,
            "HTTP_KEEPALIVE_REQUESTS": KEEPALIVE_REQUESTS,
            # Eight requests queue per round; on a busy machine that can pass the shedding limit.
            "HTTP_MAX_QUEUE_MS": 0,
        },
        cpus={0},
        log_dir=tmp_path_factory.mktemp("spread-logs"),
    ) as deployment:
        yield deployment


def test_every_worker_serves_keep_alive_load_and_metrics_count_each(pinned_monolith):
    deployment = pinned_monolith
    workers = {str(pid) for pid in deployment.entry_workers()}
    assert len(workers) == WORKERS
    before = per_worker(deployment.url)
    body = json.dumps({"instances": data.held_out_records()[:1]}).encode()
    client = KeepAliveClient(
        deployment.url, httpload.build_request(deployment.url + "/v1/predict", "POST", body)
    )
    sent, shares = 0, {}
    try:
        while sent < MAX_REQUESTS:
            for _ in range(CHECK_EVERY // CONNECTIONS):
                assert client.round() == [200] * CONNECTIONS
                sent += CONNECTIONS
            counts = per_worker(deployment.url)
            served = {pid: counts.get(pid, 0.0) - before.get(pid, 0.0) for pid in workers}
            total = sum(served.values())
            shares = {pid: count / total for pid, count in served.items()}
            if min(shares.values()) >= FAIR_SHARE:
                break
    finally:
        client.close()
    assert min(shares.values()) >= FAIR_SHARE, (
        f"after {sent} requests on {CONNECTIONS} kept-alive connections, "
        f"the workers' shares were {shares}"
    )
    assert client.reconnects > 0, "no kept-alive connection was ever closed"
    # Every request the client sent was counted, by one worker or the other (the scrapes too).
    assert total >= sent
    # Only the live workers' pids label the series this deployment published.
    assert set(per_worker(deployment.url)) == workers


@pytest.mark.parametrize(("limit", "reconnects"), [(0, 0), (KEEPALIVE_REQUESTS, 2)])
def test_a_kept_alive_connection_ends_after_the_limit_and_only_then(models_root, limit, reconnects):
    """The limit, not chance, closes connections: after exactly N requests, or never with 0."""
    with launch(
        "monolith",
        settings={"MODEL_DIR": models_root, "HTTP_WORKERS": 1, "HTTP_KEEPALIVE_REQUESTS": limit},
    ) as deployment:
        # One connection: an idle extra one would hold the worker's only thread (HTTP_THREADS=1)
        # until gunicorn's timeout, and this test is about the limit, not about idle sockets.
        client = KeepAliveClient(
            deployment.url, httpload.build_request(deployment.url + "/healthz"), connections=1
        )
        try:
            for _ in range(KEEPALIVE_REQUESTS * 2 + 1):
                assert client.send(0) == 200
        finally:
            client.close()
    assert client.reconnects == reconnects
