"""Helpers shared by several test modules: one definition each, imported with `from helpers import`.

`tests/` is on sys.path because tests/conftest.py lives there (pytest's rootdir-relative
insertion), so this is a plain module, not a package: no fixtures here, only functions and classes.
"""

from __future__ import annotations

import functools
import socket
import time
from collections import Counter
from collections.abc import Callable

import pandas as pd
import psutil

from servinglab.model import data


@functools.cache
def held_out_frame() -> pd.DataFrame:
    """The held-out birds exactly as training frames are built (object categories, float numbers).

    Cached: the split is deterministic, and every caller only reads the frame.
    """
    _, frame = data.split(data.load_frame())
    return frame


def process_roles(pid: int) -> tuple[list[psutil.Process], Counter[str]] | None:
    """Every process under `pid` and how many of each role: "gunicorn" for a gunicorn master or
    worker, else the module a `python -m` runs (`microservices.inference`, `locust`). None when
    one of them exited while being looked at: the tree is changing, look again."""
    children = psutil.Process(pid).children(recursive=True)
    roles: Counter[str] = Counter()
    try:
        for child in children:
            command = child.cmdline()
            if "gunicorn" in command:
                roles["gunicorn"] += 1
            elif "-m" in command:
                roles[command[command.index("-m") + 1]] += 1
            else:
                roles[" ".join(command)] += 1
    except psutil.NoSuchProcess:
        return None
    return children, roles


def wait_for_exact_tree(
    pid: int, expected: Counter[str], timeout_s: float = 120.0
) -> list[psutil.Process]:
    """The processes under `pid` once they are exactly `expected` (role -> count, see
    `process_roles`): none missing, none extra. Fails after the deadline with what was there."""
    last: list[Counter[str]] = [Counter()]

    def exact() -> list[psutil.Process] | None:
        looked = process_roles(pid)
        if looked is None:
            return None
        children, last[0] = looked
        return children if last[0] == expected else None

    try:
        return wait_until(exact, f"exactly {dict(expected)} under pid {pid}", timeout_s)
    except AssertionError as error:
        raise AssertionError(f"{error}; the last look found {dict(last[0])}") from None


class NullBackend:
    """A backend for apps whose tests never reach the model: validation or routing refuses first."""

    def predict(self, batch):
        raise AssertionError("the request should have been refused before reaching the model")

    def describe(self) -> dict:
        return {}

    def readiness(self):
        return True, {}


def wait_until(
    condition: Callable[[], object], what: str, timeout_s: float = 60.0, poll_s: float = 0.1
):
    """Poll `condition` until it returns something truthy, which is returned; fail after the
    (generous) deadline, saying `what` was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def closed_port() -> int:
    """A local TCP port where nothing listens: picked by binding to port 0, then released.

    A stage address there is refused at once (connection refused, not a timeout): a stage that
    is down, without starting and killing a process.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
