"""Build the servinglab container image through the docker Python SDK, tagged with the git sha.

    python -m lab.images check     # is a Docker engine answering? (exit 0/1)
    python -m lab.images ref       # the image reference a build of this tree gets
    python -m lab.images build     # build it offline (what `make image` and `make kind-load` run)

The build needs no registry and no network inside it (lab/image_build.py): the host fills the
wheelhouse, the base is pulled, found or made locally (lab/base_image.py). The equivalent with the
docker CLI, from the repository root, once the wheelhouse is there:

    python -m lab.wheelhouse
    docker build -f docker/Dockerfile --build-arg BASE_IMAGE="$(python -m lab.base_image resolve)" \
        -t servinglab:$(git rev-parse --short=12 HEAD) .

One image serves every role (docker/Dockerfile explains why). The tag is the commit, never
`latest`: a tag that moves would let Kubernetes (imagePullPolicy IfNotPresent) keep running an old
build under a new name. Uncommitted changes add `-dirty-` and a hash of those changes, so such a
build is never mistaken for the commit it started from, and a second build after more edits gets
a new tag too: a bare `<sha>-dirty` reused for both would let pods keep running the first one
(IfNotPresent, same name) after `make kind-load`. The engine is found as the docker CLI finds it:
DOCKER_HOST, else the active `docker context` (Docker Desktop, colima), else the default socket.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_NAME = "servinglab"
DOCKERFILE = "docker/Dockerfile"
SHA_LENGTH = 12
DIRTY_HASH_LENGTH = 12


class ImageError(RuntimeError):
    """No engine, no git revision, or a failed build; the message says which and what to do."""


def _git(*args: str) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ImageError(f"cannot run git ({error}); pass an explicit tag instead") from error
    if result.returncode != 0:
        raise ImageError(
            f"git {' '.join(args)} failed: {result.stderr.strip()}; pass an explicit tag instead"
        )
    return result.stdout.strip()


def _git_bytes(*args: str) -> bytes:
    """Like _git, but the raw output: diffs and file names need not be text."""
    try:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ImageError(f"cannot run git ({error}); pass an explicit tag instead") from error
    if result.returncode != 0:
        why = result.stderr.decode(errors="replace").strip()
        raise ImageError(f"git {' '.join(args)} failed: {why}; pass an explicit tag instead")
    return result.stdout


def changes_hash() -> str:
    """A hash of how the working tree differs from HEAD: tracked changes, staged or not, and the
    content of untracked files that are not ignored. Equal trees give equal hashes."""
    digest = hashlib.sha256(
        _git_bytes("diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv")
    )
    untracked = _git_bytes("ls-files", "--others", "--exclude-standard", "-z").split(b"\0")
    for name in sorted(n for n in untracked if n):
        digest.update(b"\0untracked\0" + name + b"\0")
        try:
            digest.update((ROOT / os.fsdecode(name)).read_bytes())
        except OSError:
            digest.update(b"\0unreadable\0")
    return digest.hexdigest()[:DIRTY_HASH_LENGTH]


def git_tag() -> str:
    """Short commit sha of the working tree; with uncommitted changes `<sha>-dirty-<their hash>`."""
    sha = _git("rev-parse", f"--short={SHA_LENGTH}", "HEAD")
    return f"{sha}-dirty-{changes_hash()}" if _git("status", "--porcelain") else sha


def image_ref(tag: str | None = None) -> str:
    tag = tag or git_tag()
    if tag == "latest":
        raise ImageError(
            "refusing the tag 'latest': tag images with the git sha so every build is traceable"
        )
    return f"{IMAGE_NAME}:{tag}"


def _docker_context_host() -> str | None:
    """The endpoint of the docker CLI's active context, when DOCKER_HOST is not set."""
    try:
        result = subprocess.run(
            ["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    host = result.stdout.strip()
    return host if result.returncode == 0 and host else None


def engine_address() -> tuple[str | None, str]:
    """(base_url to pass to the SDK or None for its default, a description for messages)."""
    if os.environ.get("DOCKER_HOST"):
        return None, f"DOCKER_HOST={os.environ['DOCKER_HOST']}"
    host = _docker_context_host()
    if host:
        return host, f"{host} (active docker context)"
    return None, "the default socket unix:///var/run/docker.sock"


def _client(base_url: str | None):
    import docker  # imported here: most of servinglab never needs it

    # For mypy, run from the repository root, `docker` is our docker/ folder: hence the ignore.
    return docker.DockerClient(base_url=base_url) if base_url else docker.from_env()  # type: ignore[attr-defined]


def docker_client():
    """An SDK client for the same engine `engine_available` checks (DOCKER_HOST or the docker context)."""
    return _client(engine_address()[0])


def engine_available() -> tuple[bool, str]:
    """(True, engine version and address) when an engine answers a ping, else (False, what to do)."""
    import docker

    base_url, where = engine_address()
    try:
        client = _client(base_url)
        client.ping()
        version = client.version().get("Version", "unknown")
    except docker.errors.DockerException as error:
        return False, (
            f"no Docker engine answered at {where}: {error}. Start one (Docker Desktop, "
            "`sudo systemctl start docker`, `colima start`) or point DOCKER_HOST at it."
        )
    return True, f"Docker engine {version} at {where}"


def build_images(tag: str | None = None, progress: Callable[[str], None] = print) -> list[str]:
    """Build the image from docker/Dockerfile; returns the references built (one: all roles share it)."""
    ref = image_ref(tag)
    available, reason = engine_available()
    if not available:
        raise ImageError(reason)
    client = _client(engine_address()[0])
    labels = {
        "org.opencontainers.image.title": IMAGE_NAME,
        "org.opencontainers.image.revision": _git("rev-parse", "HEAD"),
        "org.opencontainers.image.created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # Offline: wheelhouse on the host, a base that is here (or made here), no pull (lab/image_build.py).
    from lab import image_build

    try:
        image_build.build(client, ref, labels, progress)
    except image_build.BuildError as error:
        raise ImageError(str(error)) from None
    return [ref]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("build", "check", "ref"))
    parser.add_argument("--tag", help="override the git-sha tag (never 'latest')")
    args = parser.parse_args(argv)
    try:
        if args.command == "ref":
            print(image_ref(args.tag))
            return 0
        if args.command == "check":
            available, reason = engine_available()
            print(reason, file=sys.stdout if available else sys.stderr)
            return 0 if available else 1
        for ref in build_images(args.tag):
            print(ref)
        return 0
    except ImageError as error:
        print(f"[images] {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
