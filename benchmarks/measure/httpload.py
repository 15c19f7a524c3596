"""A small closed-loop HTTP/1.1 load generator for `make perf`.

Locust is the lab's load generator for the benchmark, but it spends ~0.6 ms of CPU per request,
which is more than a fast server spends answering it. `make perf` compares server paths whose
costs differ by tens of microseconds, so it needs a client that costs far less than the server:
this one sends pre-built request bytes over raw sockets from one thread with `selectors`, and
only parses the status line and headers it needs.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_s: list[float]
    server_timings: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        if not ordered:
            return float("nan")
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1e3


@dataclass(frozen=True)
class ResponseHead:
    """What the raw clients read of a response: its status, and what its headers ask for."""

    status: int
    close: bool  # the server closes the connection after this response
    server_timing: str


def take_response(buffer: bytes) -> tuple[ResponseHead | None, bytes]:
    """The first complete HTTP/1.1 response in `buffer` and the bytes after it.

    (None, buffer) while the response is still incomplete. Bodies are skipped, not parsed.
    """
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None, buffer
    lines = buffer[:head_end].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close, timing = 0, False, ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.strip().lower() == "close"
        elif name == "server-timing":
            timing = value.strip()
    end = head_end + 4 + length
    if len(buffer) < end:
        return None, buffer
    return ResponseHead(status, close, timing), buffer[end:]


def build_request(
    url: str, method: str = "GET", body: bytes = b"", content_type: str = "application/json"
) -> bytes:
    parts = urlsplit(url)
    lines = [f"{method} {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}"]
    if body:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection:
    def __init__(self, address: tuple[str, int], request: bytes):
        self.address = address
        self.request = request
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.started = 0.0

    def open(self) -> socket.socket:
        sock = socket.create_connection(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        return sock

    def response_complete(self) -> tuple[bool, int, bool, str]:
        """(complete, status, server closes the connection, Server-Timing value)."""
        head, self.buffer = take_response(self.buffer)
        if head is None:
            return False, 0, False, ""
        return True, head.status, head.close, head.server_timing


def run(
    url: str,
    seconds: float,
    connections: int = 8,
    method: str = "GET",
    body: bytes = b"",
    collect_server_timing: bool = False,
) -> LoadResult:
    """Keep `connections` requests in flight for `seconds`; every response must be 2xx."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    request = build_request(url, method, body)
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    timings: list[str] = []
    errors = 0

    def send(connection: _Connection) -> None:
        sock = connection.sock
        if sock is None:
            sock = connection.open()
            selector.register(sock, selectors.EVENT_READ, connection)
        connection.started = time.perf_counter()
        sock.sendall(connection.request)

    def reopen(connection: _Connection) -> None:
        sock = connection.sock
        assert sock is not None  # only connections with a socket are registered
        selector.unregister(sock)
        sock.close()
        connection.sock = None
        connection.buffer = b""

    pool = [_Connection(address, request) for _ in range(connections)]
    started = time.perf_counter()
    deadline = started + seconds
    for connection in pool:
        send(connection)
    in_flight = len(pool)
    while in_flight:
        for key, _ in selector.select(timeout=1.0):
            connection = key.data
            sock = connection.sock
            assert sock is not None  # only connections with a socket are registered
            chunk = sock.recv(65536)
            now = time.perf_counter()
            if not chunk:
                errors += 1
                reopen(connection)
                in_flight -= 1
                if now < deadline:
                    send(connection)
                    in_flight += 1
                continue
            connection.buffer += chunk
            complete, status, close, timing = connection.response_complete()
            if not complete:
                continue
            latencies.append(now - connection.started)
            if collect_server_timing and timing:
                timings.append(timing)
            if not 200 <= status < 300:
                errors += 1
            if close:
                reopen(connection)
            in_flight -= 1
            if now < deadline:
                send(connection)
                in_flight += 1
        if time.perf_counter() > deadline + 10.0:
            break  # a server that stopped answering must not hang the measurement
    elapsed = time.perf_counter() - started
    for connection in pool:
        if connection.sock is not None:
            connection.sock.close()
    selector.close()
    return LoadResult(len(latencies), errors, elapsed, latencies, timings)
