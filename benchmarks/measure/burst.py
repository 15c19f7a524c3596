"""An open-loop HTTP burst for `make chaos`'s overload event: requests at a fixed rate, whatever the answers.

Locust's users send one request at a time, so against a server that slows down they send less:
a "burst" of paced users turns into a closed loop that never offers several times capacity.
This client schedules request *i* at `i / rate` seconds and sends it then, on an idle keep-alive
connection or a new one (up to `max_connections`), however many are still waiting for answers.
A request that finds no connection waits in the client, and its latency counts from when it was
due, so the client's own queueing is not hidden (no coordinated omission). One thread, raw
sockets and `selectors`, tens of microseconds of CPU per request: a few thousand requests a second
from one core, where Locust manages about a thousand.

    python -m benchmarks.measure.burst --url http://127.0.0.1:8000 --rate 900 --seconds 4 \\
        --records records.json --out burst.json

Writes the Locust recorder's format: {"started_at", "stopped_at", "requests": [[start epoch s,
latency ms, status]]}, status 0 for no answer (refused, reset, or none within the drain time),
plus "unsent": requests still waiting for a connection when the drain time ran out (never sent,
so not in "requests").
"""

from __future__ import annotations

import argparse
import errno
import json
import resource
import selectors
import socket
import sys
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.measure.httpload import take_response

DRAIN_S = 5.0  # after the last request is due, how long answers are still waited for
MAX_CONNECTIONS = 1800


def build_requests(url: str, records: list[dict]) -> list[bytes]:
    parts = urlsplit(url)
    requests = []
    for record in records:
        body = json.dumps({"instances": [record]}).encode()
        head = (
            f"POST /v1/predict HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


class _Connection:
    __slots__ = ("buffer", "closed", "connecting", "due", "request", "sock")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.due: float | None = None  # perf_counter time the request in flight was due
        self.request = b""
        self.connecting = True
        self.closed = False

    def response(self) -> tuple[bool, int, bool]:
        """(complete, status, server closes the connection) for the bytes received so far."""
        head, self.buffer = take_response(self.buffer)
        if head is None:
            return False, 0, False
        return True, head.status, head.close


def run(
    url: str,
    rate: float,
    seconds: float,
    requests: list[bytes],
    max_connections: int = MAX_CONNECTIONS,
    drain_s: float = DRAIN_S,
) -> dict:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    selector = selectors.DefaultSelector()
    idle: list[_Connection] = []
    waiting: deque[float] = deque()  # due times of requests with no connection yet
    records: list[list] = []
    total = max(1, round(rate * seconds))
    started, epoch = time.perf_counter(), time.time()
    scheduled = in_flight = open_connections = unsent = 0

    def record(due: float, now: float, status: int) -> None:
        records.append([round(epoch + (due - started), 6), round((now - due) * 1e3, 3), status])

    def close(connection: _Connection) -> None:
        nonlocal open_connections
        if connection.closed:
            return
        connection.closed = True
        selector.unregister(connection.sock)
        connection.sock.close()
        open_connections -= 1

    def send(connection: _Connection, due: float) -> None:
        nonlocal in_flight
        connection.due = due
        connection.request = requests[scheduled % len(requests)]
        in_flight += 1
        if not connection.connecting:
            _send(connection)

    def _send(connection: _Connection) -> None:
        try:
            connection.sock.setblocking(True)
            connection.sock.sendall(connection.request)
            connection.sock.setblocking(False)
        except OSError:
            fail(connection, time.perf_counter())

    def fail(connection: _Connection, now: float) -> None:
        nonlocal in_flight
        if connection.due is not None:
            record(connection.due, now, 0)
            connection.due = None
            in_flight -= 1
        close(connection)

    def connect() -> _Connection | None:
        nonlocal open_connections
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            return None
        connection = _Connection(sock)
        selector.register(sock, selectors.EVENT_WRITE, connection)
        open_connections += 1
        return connection

    def assign(now: float) -> None:
        """Give waiting requests idle connections, or new ones while under the cap."""
        while waiting:
            connection = None
            while idle and connection is None:
                candidate = idle.pop()
                connection = None if candidate.closed else candidate
            if connection is None:
                if open_connections >= max_connections:
                    return
                connection = connect()
                if connection is None:  # refused outright: count it, move on
                    record(waiting.popleft(), now, 0)
                    continue
            send(connection, waiting.popleft())

    end = started + seconds
    while True:
        now = time.perf_counter()
        while scheduled < total and started + scheduled / rate <= now:
            waiting.append(started + scheduled / rate)
            scheduled += 1
        assign(now)
        if scheduled >= total and not waiting and in_flight == 0:
            break
        if now > end + drain_s:
            for key in list(selector.get_map().values()):
                fail(key.data, now)
            unsent = len(waiting)  # never got a connection: not offered to the server at all
            break
        timeout = (
            0.05 if scheduled >= total else max(0.0, min(started + scheduled / rate - now, 0.05))
        )
        for key, _mask in selector.select(timeout):
            connection: _Connection = key.data
            now = time.perf_counter()
            if connection.connecting:
                error = connection.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    fail(connection, now)
                    continue
                connection.connecting = False
                selector.modify(connection.sock, selectors.EVENT_READ, connection)
                if connection.due is not None:
                    _send(connection)
                continue
            try:
                chunk = connection.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                fail(connection, now)
                continue
            connection.buffer += chunk
            complete, status, closing = connection.response()
            if not complete:
                continue
            if connection.due is not None:  # always: an answer comes for a request sent
                record(connection.due, now, status)
            connection.due = None
            in_flight -= 1
            if closing:
                close(connection)
            else:
                idle.append(connection)
    stopped = time.time()
    for key in list(selector.get_map().values()):
        key.data.sock.close()
    selector.close()
    return {
        "started_at": epoch,
        "stopped_at": stopped,
        "requests": records,
        "offered_rps": rate,
        "seconds": seconds,
        "max_connections": max_connections,
        "unsent": unsent,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.max_connections <= 0:
        parser.error("--rate, --seconds and --max-connections must be positive")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.max_connections + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    requests = build_requests(args.url, json.loads(args.records.read_text()))
    result = run(args.url, args.rate, args.seconds, requests, args.max_connections)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
