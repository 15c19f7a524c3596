"""Container entrypoint: `entrypoint.py ROLE [gunicorn options...]` replaces itself with ROLE's server.

    docker run servinglab:<git-sha> monolith
    docker run servinglab:<git-sha> gateway --log-level debug     # extra options go to gunicorn
    docker run servinglab:<git-sha> inference

One image serves all five roles (docker/Dockerfile says why). `os.execvpe` replaces this process
instead of starting a child, so the server itself is PID 1 and receives the SIGTERM that
`docker stop` or the kubelet sends: gunicorn and the gRPC services both drain gracefully on it,
and no wrapper is left in between to swallow or delay the signal.
"""

from __future__ import annotations

import os
import sys

from lab.architectures import HTTP_APPS, ROLES, STAGE_SERVICES, stage_module
from servinglab.config import DEFAULT_GRPC_PORTS

GUNICORN_CONFIG = "python:servinglab.serving.gunicorn_conf"
# Inside a container the servers must listen on every interface: the code's defaults
# (127.0.0.1) would only be reachable from inside the container itself.
HTTP_BIND = "0.0.0.0:8000"
EX_USAGE = 64


def command_for(role: str, extra: list[str]) -> list[str]:
    """The argv that serves `role`; raises ValueError for an unknown role or misplaced options."""
    if role in HTTP_APPS:
        # No control socket: gunicorn_conf.py disables it (it would go under $HOME, which the
        # container does not have, on a read-only root filesystem).
        return ["gunicorn", "--config", GUNICORN_CONFIG, *extra, HTTP_APPS[role]]
    if role in STAGE_SERVICES:
        if extra:
            raise ValueError(
                f"the {role} service takes no options (got {' '.join(extra)}); "
                "configure it with LAB_* environment variables"
            )
        return [sys.executable, "-m", stage_module(role)]
    raise ValueError(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")


def container_defaults(role: str, environ: dict[str, str]) -> dict[str, str]:
    """Settings only a container needs; anything already set (by Kubernetes, `docker run -e`) wins."""
    defaults = {"LAB_HTTP_BIND": HTTP_BIND} if role in HTTP_APPS else {}
    if role in STAGE_SERVICES:
        defaults["LAB_GRPC_BIND"] = f"0.0.0.0:{DEFAULT_GRPC_PORTS[role]}"
    return {**defaults, **environ}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 0 if argv else EX_USAGE
    role, extra = argv[0], argv[1:]
    environ = container_defaults(role, dict(os.environ))
    try:
        command = command_for(role, extra)
    except ValueError as error:
        print(f"entrypoint: {error}", file=sys.stderr)
        return EX_USAGE
    metrics_dir = environ.get("LAB_METRICS_DIR")
    if metrics_dir:
        # gunicorn workers write metric snapshots here; on Kubernetes it is a fresh emptyDir.
        os.makedirs(metrics_dir, exist_ok=True)
    sys.stdout.flush()
    os.execvpe(command[0], command, environ)
    return 1  # not reached: exec either replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
