"""`make image`: the whole offline build behind `lab.images.build_images`.

1. the base (lab/base_image.py): BASE_IMAGE, else the pinned python slim image, else a local
   Debian base made with debootstrap (once); its python3 is asked its version, glibc and CPU;
2. the wheelhouse, on the host (lab/wheelhouse.py): serving and training wheels for exactly that
   interpreter, and the project wheel;
3. `docker build` of docker/Dockerfile through the SDK with BASE_IMAGE as a build argument and no
   pull; each step's header is printed, the whole log goes to build/image/build.log, and a failing
   step's last lines are shown with the error;
4. the image's size, printed and written to build/image/last-build.json.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import docker.errors

from lab import base_image, wheelhouse

ROOT = wheelhouse.ROOT
DOCKERFILE = "docker/Dockerfile"

LOG = wheelhouse.OUT / "build.log"
SUMMARY = wheelhouse.OUT / "last-build.json"
PROBES = wheelhouse.OUT / "base-probes.json"
TAIL_LINES = 25


class BuildError(RuntimeError):
    """The build cannot run or failed; the message says why and what to do."""


@dataclass
class BuildResult:
    ref: str
    base: str
    size_bytes: int
    base_size_bytes: int
    seconds: float
    cached_steps: int
    steps: int

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


def _size(client, ref: str) -> int:
    try:
        return int(client.images.get(ref).attrs.get("Size", 0))
    except Exception:  # a size is informative only
        return 0


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_error(error: str) -> str:
    """The engine's "The command '/bin/sh -c <the whole RUN>' returned a non-zero code: 1", shortened."""
    text = " ".join(str(error).split())
    match = re.search(r"returned a non-zero code: (\d+)", text)
    return f"the command exited with code {match.group(1)}" if match else _short(text, 200)


def build(
    client,
    ref: str,
    labels: dict[str, str],
    progress: Callable[[str], None] = print,
    base: str | None = None,
    context: Path = ROOT,
    dockerfile: str = DOCKERFILE,
    wheels: bool = True,
    log_path: Path = LOG,
) -> BuildResult:
    """Build `dockerfile` of `context` as `ref` on the resolved base (BASE_IMAGE as a build
    argument); `wheels=False` skips the wheelhouse (a context that does not use it)."""
    started = time.monotonic()
    try:
        resolved = base_image.resolve_base(
            client, base or os.environ.get("BASE_IMAGE") or None, progress
        )
        version, glibc, machine = base_image.probe(client, resolved, PROBES)
        target = wheelhouse.ImagePython(version, glibc, machine)
        progress(f"[images] base {resolved}: {target.describe()}")
        if wheels:
            wheelhouse.prepare(target, progress)
    except (wheelhouse.WheelhouseError, base_image.BaseImageError) as error:
        raise BuildError(str(error)) from None
    except docker.errors.DockerException as error:
        raise BuildError(
            f"the engine failed while preparing the build ({_short(str(error), 200)}); "
            "check `docker info` and retry"
        ) from None
    progress(
        f"[images] building {ref} from {dockerfile} on {resolved} (context {context}, filtered by "
        f".dockerignore; log {_shown(log_path)})"
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    step_start = 0
    steps = cached = 0
    with log_path.open("w") as log:
        # pull=False: the base was resolved above, and nothing else may be fetched. rm/forcerm
        # remove intermediate containers even when a step fails.
        stream = client.api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=ref,
            labels=labels,
            buildargs={"BASE_IMAGE": resolved},
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                log.write(f"ERROR: {chunk['error']}\n")
                tail = lines[step_start:][-TAIL_LINES:]
                if tail:
                    progress("\n".join(tail))
                step = lines[step_start] if step_start < len(lines) else "the build"
                raise BuildError(
                    f"building {ref} failed at {_short(step)}: {_short_error(chunk['error'])}; "
                    f"fix that step (its log tail is above, the whole log in "
                    f"{_shown(log_path)}) and run `make image` again"
                )
            text = chunk.get("stream", "")
            if not text:
                continue
            log.write(text)
            for line in text.rstrip("\n").splitlines():
                lines.append(line)
                if line.startswith("Step "):
                    step_start = len(lines) - 1
                    steps += 1
                    progress(f"[images] {line}")
                elif line.strip() == "---> Using cache":
                    cached += 1
    size = _size(client, ref)
    if not size:
        raise BuildError(f"the build of {ref} ended without an image (see {_shown(log_path)})")
    result = BuildResult(
        ref,
        resolved,
        size,
        _size(client, resolved),
        round(time.monotonic() - started, 1),
        cached,
        steps,
    )
    if context == ROOT:
        SUMMARY.write_text(json.dumps(asdict(result), indent=2) + "\n")
    progress(
        f"[images] built {ref}: {result.size_mb:.0f} MB (base {resolved}: "
        f"{result.base_size_bytes / 1e6:.0f} MB), {cached}/{steps} steps from cache, "
        f"{result.seconds:.0f} s"
    )
    return result


def last_build() -> dict | None:
    try:
        return json.loads(Path(SUMMARY).read_text())
    except (OSError, ValueError):
        return None
