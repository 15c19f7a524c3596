"""The base image of the project image: the pinned python slim image, or one made here from Debian.

    python -m lab.base_image resolve   # which base `make image` would use (makes one if needed)
    python -m lab.base_image make      # (re)make the local Debian base

docker/Dockerfile takes its base as a build argument, `BASE_IMAGE`. By default it is the python
slim image pinned by digest (`DEFAULT_BASE`), for machines that can pull it. A machine with an
engine but no registry (an air-gapped lab, a CI runner behind a proxy, this lab's own machines)
cannot, so when that image is neither present nor pullable, `resolve_base` makes a local base
instead: a `debootstrap` of Debian bookworm (minbase, plus python3 and python3-venv: Python 3.11,
like the slim image) imported with `docker import` as `servinglab-base:<recipe hash>`. It says so,
and the next build finds and reuses it. Debian's package mirror is an ordinary package registry,
reached by the host, never from inside a build.

An explicit `BASE_IMAGE` is used as given: it is never replaced by the local base behind the
user's back; when it is missing and cannot be pulled, the error says how to provide it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# python:3.11.14-slim-bookworm, pinned by the digest of its multi-architecture index.
DEFAULT_BASE = (
    "python:3.11.14-slim-bookworm"
    "@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d"
)
LOCAL_BASE_REPOSITORY = "servinglab-base"
SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("python3", "python3-venv")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What is removed from the root filesystem before the import: package lists and caches (the image
# never runs apt), documentation, manuals and translations; the slim image drops the same.
PRUNED = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/log",
)
# The settings `docker import` gives the image (the slim image has the same PATH and LANG).
CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
RECIPE_VERSION = 1  # bump when the recipe changes in a way the fields below do not show
DEBOOTSTRAP_TIMEOUT_S = 1800.0
PULL_TIMEOUT_S = 120
LOG_TAIL_LINES = 15


class BaseImageError(RuntimeError):
    """The base cannot be found, pulled or made; the message says why and what to do."""


def recipe() -> dict:
    return {
        "suite": SUITE,
        "variant": VARIANT,
        "packages": list(PACKAGES),
        "pruned": list(PRUNED),
        "changes": list(CHANGES),
        "version": RECIPE_VERSION,
    }


def local_base_ref() -> str:
    """`servinglab-base:bookworm-<hash of the recipe>`: a new recipe is a new name, never a stale base."""
    digest = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return f"{LOCAL_BASE_REPOSITORY}:{SUITE}-{digest}"


def present(client, ref: str) -> bool:
    import docker.errors

    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError:  # e.g. a malformed reference: treat as absent, pull says why
        return False
    return True


def split_reference(ref: str) -> tuple[str, str | None]:
    """("python", "3.11-slim") from "python:3.11-slim"; a digest wins over the tag; no tag: None."""
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:  # a colon before the last slash is a registry's port, not a tag
        name, _, tag = name.rpartition(":")
    return name, digest or tag


def try_pull(client, ref: str) -> str | None:
    """Pull `ref`; None on success, else the engine's one-line reason."""
    import docker.errors

    name, tag = split_reference(ref)
    problem = None
    try:
        for chunk in client.api.pull(name, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                problem = chunk["error"]
    except (docker.errors.DockerException, OSError) as error:
        problem = getattr(error, "explanation", None) or str(error)
    if problem is None and not present(client, ref):
        problem = "the engine reported no error but the image is absent"
    return " ".join(str(problem).split()) if problem else None


def resolve_base(
    client, requested: str | None = None, progress: Callable[[str], None] = print, make: bool = True
) -> str:
    """The base to build on: `requested` (BASE_IMAGE) or the default, pulled if need be; failing
    that (default only), the local Debian base, made once and reused."""
    base = requested or DEFAULT_BASE
    if present(client, base):
        return base
    reason = try_pull(client, base)
    if reason is None:
        progress(f"[images] pulled the base {base}")
        return base
    if requested:
        raise BaseImageError(
            f"the base image {base} (BASE_IMAGE) is not in the engine and cannot be pulled ({reason}); "
            "load it with `docker load`, or unset BASE_IMAGE to build on a local Debian base"
        )
    local = local_base_ref()
    if present(client, local):
        progress(
            f"[images] base {base} is not here and cannot be pulled; using the local Debian "
            f"base {local} made earlier"
        )
        return local
    if not make:
        raise BaseImageError(
            f"neither {base} nor the local base {local} is in the engine ({reason})"
        )
    progress(
        f"[images] base {base} is not here and cannot be pulled ({reason}); making a local "
        f"base {local} from Debian {SUITE} with debootstrap (once: later builds reuse it)"
    )
    make_local_base(client, local, progress)
    return local


PROBE = (
    "import platform, sys; print(platform.python_version(), platform.libc_ver()[1] or '', "
    "platform.machine())"
)


def probe(client, ref: str, cache: Path | None = None) -> tuple[str, str, str]:
    """(Python version, glibc version, machine) of the base's python3, asked from a throw-away
    container (no network, removed at once); remembered per image id in `cache`."""
    image_id = client.images.get(ref).id
    known: dict = {}
    if cache is not None:
        try:
            known = json.loads(cache.read_text())
        except (OSError, ValueError):
            known = {}
        if image_id in known:
            version, glibc, machine = known[image_id]
            return version, glibc, machine
    output = client.containers.run(
        ref, ["python3", "-c", PROBE], remove=True, network_disabled=True, stdout=True, stderr=True
    )
    parts = output.decode().split()
    if len(parts) != 3 or not parts[1]:
        raise BaseImageError(
            f"the base {ref} has no usable python3 with glibc (it printed {output!r}); "
            "use a Debian- or Ubuntu-based Python 3.11 image as BASE_IMAGE"
        )
    if cache is not None:
        known[image_id] = parts
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known, indent=2) + "\n")
    return parts[0], parts[1], parts[2]


def _prerequisites() -> str:
    if sys.platform != "linux":
        raise BaseImageError(
            "making the local Debian base needs Linux (debootstrap); pull or `docker load` "
            f"{DEFAULT_BASE} instead, or set BASE_IMAGE to a Python 3.11 image you have"
        )
    if os.geteuid() != 0:
        raise BaseImageError(
            "making the local Debian base needs root (debootstrap creates device nodes and "
            "chowns files): run `make image` as root once, or `docker load` a Python 3.11 base "
            "and set BASE_IMAGE to it"
        )
    found = shutil.which("debootstrap")
    if not found:
        raise BaseImageError(
            "making the local Debian base needs debootstrap: `apt-get install -y debootstrap`, "
            "or `docker load` a Python 3.11 base and set BASE_IMAGE to it"
        )
    return found


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def make_local_base(
    client, ref: str, progress: Callable[[str], None] = print, mirror: str | None = None
) -> str:
    """debootstrap Debian into a temporary directory, prune it, `docker import` it as `ref`."""
    debootstrap = _prerequisites()
    mirror = mirror or os.environ.get("DEBIAN_MIRROR") or DEFAULT_MIRROR
    started = time.monotonic()
    # /var/tmp, not /tmp: debootstrap needs a file system that allows device nodes and setuid.
    work = Path(tempfile.mkdtemp(prefix="servinglab-base-", dir="/var/tmp"))
    rootfs, log, tarball = work / "rootfs", work / "debootstrap.log", work / "rootfs.tar"
    try:
        command = [
            debootstrap,
            f"--variant={VARIANT}",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            mirror,
        ]
        progress(f"[images] {' '.join(command)}")
        with log.open("wb") as out:
            try:
                result = subprocess.run(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=DEBOOTSTRAP_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise BaseImageError(
                    f"debootstrap of Debian {SUITE} did not finish within "
                    f"{DEBOOTSTRAP_TIMEOUT_S:.0f} s; check that {mirror} is reachable "
                    "(or set DEBIAN_MIRROR)"
                ) from None
        if result.returncode != 0:
            tail = _tail(log)
            if tail:
                progress(tail)
            last = tail.splitlines()[-1] if tail else "no output"
            raise BaseImageError(
                f"debootstrap of Debian {SUITE} from {mirror} failed (exit "
                f"{result.returncode}: {last}); check the mirror is reachable or set "
                "DEBIAN_MIRROR to one that is"
            )
        for relative in PRUNED:
            target = rootfs / relative
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir(mode=0o755)
        python = subprocess.run(
            ["chroot", str(rootfs), "python3", "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        version = python.stdout.strip() or python.stderr.strip()
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."],
            check=True,
            capture_output=True,
            timeout=600,
        )
        repository, _, tag = ref.partition(":")
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=tag, changes=list(CHANGES)
        )
        if not present(client, ref):
            raise BaseImageError(
                f"`docker import` of the Debian root file system did not produce {ref}"
            )
        size_mb = client.images.get(ref).attrs.get("Size", 0) / 1e6
        progress(
            f"[images] made the local base {ref} ({version}, {size_mb:.0f} MB) in "
            f"{time.monotonic() - started:.0f} s"
        )
        return ref
    except subprocess.SubprocessError as error:
        raise BaseImageError(
            f"packing the Debian root file system failed ({error}); check free space under /var/tmp"
        ) from error
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from lab import images

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=("resolve", "make"))
    args = parser.parse_args(argv)
    try:
        available, reason = images.engine_available()
        if not available:
            raise BaseImageError(reason)
        client = images.docker_client()
        if args.command == "make":
            print(make_local_base(client, local_base_ref()))
        else:
            print(resolve_base(client, os.environ.get("BASE_IMAGE") or None))
        return 0
    except BaseImageError as error:
        print(f"[images] {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
