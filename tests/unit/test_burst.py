"""The open-loop burst client against a small real HTTP server: it sends on schedule and counts every answer."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from benchmarks.measure import burst


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn's gthread workers
    seen: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append(body)
        # Every third request is "shed", the way the servers answer an overload.
        status = 503 if len(_Handler.seen) % 3 == 0 else 200
        payload = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_burst_sends_rate_times_seconds_requests_and_records_each_answer(server):
    records = [{"island": "Biscoe", "year": 2009}, {"island": "Dream", "year": 2008}]
    result = burst.run(
        server,
        rate=200,
        seconds=0.5,
        requests=burst.build_requests(server, records),
        max_connections=8,
    )
    assert len(result["requests"]) == 100 and result["unsent"] == 0
    statuses = sorted(row[2] for row in result["requests"])
    assert statuses.count(503) == 33 and statuses.count(200) == 67
    assert all(row[1] >= 0 for row in result["requests"])
    # Request i was due at i / rate: start times are the schedule, not when an answer allowed it.
    starts = sorted(row[0] for row in result["requests"])
    assert (
        starts[0] >= result["started_at"] - 1e-5 and abs((starts[-1] - starts[0]) - 99 / 200) < 1e-3
    )
    assert {tuple(sorted(b["instances"][0])) for b in _Handler.seen} == {("island", "year")}


def test_a_refused_connection_is_a_failed_request_not_a_crash():
    closed = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    url = f"http://127.0.0.1:{closed.server_address[1]}"
    closed.server_close()  # nothing listens there any more
    result = burst.run(
        url,
        rate=100,
        seconds=0.1,
        requests=burst.build_requests(url, [{"year": 1}]),
        max_connections=4,
        drain_s=2.0,
    )
    assert len(result["requests"]) == 10
    assert {row[2] for row in result["requests"]} == {0}
