"""The wheels the image build installs from, made on the host: no network inside the build.

    python -m lab.wheelhouse            # fill build/image/ (what `make image` does first)
    python -m lab.wheelhouse --check    # list what is there, download nothing

pip inside a container cannot always reach the package index (no network in the build, or a TLS
proxy whose certificate the container does not trust), and copying the host's certificate into an
image would leak it into every layer. So the host's own pip, which already works, fetches the
wheels, and the build installs them with `pip install --no-index`:

- `build/image/wheels/serving/`: the serving dependencies (`[project].dependencies` of
  pyproject.toml) at the versions of requirements/constraints.txt, for the image's Python (its
  full version, glibc and CPU, which `make image` asks the base image itself), whatever Python
  the host runs; dependencies behind markers are evaluated for that Python too;
- `build/image/wheels/train/`: the `train` extra (the data set, pandas), for the build's training
  stage only;
- `build/image/project/`: the servinglab wheel itself, built from a clean copy of the tree, with
  the generated gRPC code and the package data (tests/static/test_packaging.py checks it).

Each wheel directory carries a `requirements.txt` of exact pins and a stamp of what produced it:
an unchanged stamp means no download, so a warm `make image` needs no network at all.

One module on purpose: resolving the pins, downloading and building the project wheel all hang on
the one stamp that decides whether anything is rebuilt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "image"
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"
# The image's interpreter when nothing better is known: Python 3.11 on Debian bookworm (glibc
# 2.36), as in both bases; `make image` asks the base itself (lab/base_image.py: probe).
DEFAULT_PYTHON = "3.11.2"
DEFAULT_GLIBC = "2.36"
PROJECT_SOURCES = (
    "pyproject.toml",
    "README.md",
    "servinglab",
    "lab",
    "monolith",
    "microservices",
    "benchmarks",
)
GENERATED = ROOT / "microservices" / "generated" / "servinglab" / "v1" / "pipeline_pb2.py"
STAMP = ".stamp.json"
REQUIREMENTS = "requirements.txt"
PIP_TIMEOUT_S = 900.0
SOURCE_DATE_EPOCH = 315532800  # 1980-01-01, the earliest time a zip file can hold
ARCHITECTURES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


class WheelhouseError(RuntimeError):
    """The wheels cannot be made; the message says why and what to do."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise WheelhouseError(f"cannot read the requirement {requirement!r} in pyproject.toml")
    return match.group(1)


def pins(constraints: Path = CONSTRAINTS) -> dict[str, str]:
    """Canonical name -> the `name==version` line of the constraints file."""
    found = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            found[canonical(line.split("==", 1)[0])] = line
    return found


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def group(name: str) -> list[str]:
    """The pinned requirements of "serving" ([project].dependencies) or of one extra, without the
    extras it includes by naming the project itself."""
    meta = project()
    requirements = (
        meta["dependencies"] if name == "serving" else meta["optional-dependencies"][name]
    )
    own = canonical(meta["name"])
    pinned = pins()
    lines = []
    for requirement in requirements:
        key = canonical(requirement_name(requirement))
        if key == own:
            continue
        if key not in pinned:
            raise WheelhouseError(
                f"{requirement_name(requirement)} ({name}) has no pin in "
                "requirements/constraints.txt: add one, the image installs pinned versions only"
            )
        lines.append(pinned[key])
    return lines


@dataclass(frozen=True)
class Wheels:
    name: str
    directory: Path
    requirements: list[str]
    downloaded: bool

    @property
    def count(self) -> int:
        return len(list(self.directory.glob("*.whl")))


@dataclass(frozen=True)
class ImagePython:
    """The interpreter the wheels are for: what the base image runs, not what the host runs."""

    version: str = (
        DEFAULT_PYTHON  # full version: markers such as python_full_version < "3.11.3" need it
    )
    glibc: str = DEFAULT_GLIBC
    machine: str = ""  # x86_64, aarch64; empty: this machine's

    @property
    def arch(self) -> str:
        import platform

        arch = ARCHITECTURES.get((self.machine or platform.machine()).lower())
        if not arch:
            raise WheelhouseError(
                f"no wheels for the CPU architecture {self.machine or platform.machine()!r}; "
                f"the image supports {', '.join(sorted(set(ARCHITECTURES.values())))}"
            )
        return arch

    @property
    def abi(self) -> str:
        major, minor = self.version.split(".")[:2]
        return f"cp{major}{minor}"

    def platforms(self) -> list[str]:
        """Every manylinux tag the image's glibc accepts, newest first: pip takes `--platform`
        literally (manylinux_2_36 alone would refuse a manylinux_2_17 wheel)."""
        major, newest = (int(part) for part in self.glibc.split(".")[:2])
        return [f"manylinux_{major}_{minor}_{self.arch}" for minor in range(newest, 4, -1)]

    def pip_options(self) -> list[str]:
        options = [
            "--only-binary=:all:",
            "--python-version",
            self.version,
            "--implementation",
            "cp",
            "--abi",
            self.abi,
        ]
        for platform in self.platforms():
            options += ["--platform", platform]
        return options

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker variables of the image's interpreter. pip evaluates a dependency's
        markers with the *host's* interpreter even for another --python-version, so a wheel that
        needs a backport below some patch release (redis: async-timeout below 3.11.3) would be
        missed; `download` evaluates them again with these."""
        major, minor = self.version.split(".")[:2]
        return {
            "python_version": f"{major}.{minor}",
            "python_full_version": self.version,
            "implementation_name": "cpython",
            "implementation_version": self.version,
            "platform_python_implementation": "CPython",
            "platform_machine": self.arch,
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
        }

    def describe(self) -> str:
        return f"CPython {self.version}, glibc {self.glibc}, {self.arch}"


def _stamp(requirements: list[str], target: ImagePython) -> dict:
    return {
        "requirements": requirements,
        "python": target.version,
        "glibc": target.glibc,
        "arch": target.arch,
        "constraints_sha256": hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest(),
    }


def _read_stamp(directory: Path) -> dict | None:
    try:
        return json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _wheel_requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode("utf-8", errors="replace")
    return [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def _wheel_name(wheel: Path) -> str:
    return canonical(wheel.name.split("-", 1)[0])


def missing_for(directory: Path, target: ImagePython) -> list[str]:
    """Dependencies the image's interpreter needs (markers evaluated for it) that no wheel in
    `directory` provides."""
    from packaging.requirements import Requirement

    present = {_wheel_name(wheel) for wheel in directory.glob("*.whl")}
    environment = {**target.marker_environment(), "extra": ""}
    missing = set()
    for wheel in directory.glob("*.whl"):
        for line in _wheel_requirements(wheel):
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            if canonical(requirement.name) not in present:
                missing.add(requirement.name)
    return sorted(missing)


def _pip_download(
    name: str,
    directory: Path,
    target: ImagePython,
    requirements: list[str],
    progress: Callable[[str], None],
) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(directory),
        *target.pip_options(),
        "-c",
        str(CONSTRAINTS),
        *requirements,
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(directory, ignore_errors=True)
        raise WheelhouseError(
            f"pip download ({name}) did not finish within {PIP_TIMEOUT_S:.0f} s: the "
            "host's pip must reach the package index (or PIP_FIND_LINKS a local wheel "
            "directory)"
        ) from None
    if result.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        tail = _tail(
            "\n".join(
                line
                for line in (result.stderr or result.stdout).splitlines()
                if "is ignored: it is neither" not in line
            )
        )
        progress(tail)
        last = tail.splitlines()[-1] if tail else "no output"
        raise WheelhouseError(
            f"pip download of the {name} wheels failed ({last}); the host's pip must reach "
            "the package index (or PIP_FIND_LINKS a local wheel directory), and every pin "
            "in requirements/constraints.txt must ship a wheel for "
            f"{target.describe()}"
        )


def download(
    name: str,
    out: Path = OUT,
    target: ImagePython | None = None,
    progress: Callable[[str], None] = print,
    offline: bool = False,
) -> Wheels:
    """Fill build/image/wheels/<name>/ with the wheels of a requirement group for the image's
    interpreter, unless its stamp says it already holds them."""
    target = target or ImagePython()
    requirements = group(name)
    directory = out / "wheels" / name
    wanted = _stamp(requirements, target)
    if _read_stamp(directory) == wanted and any(directory.glob("*.whl")):
        return Wheels(name, directory, requirements, downloaded=False)
    if offline:
        raise WheelhouseError(f"{directory} is missing or stale and --check downloads nothing")
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    progress(
        f"[wheelhouse] {name}: downloading {len(requirements)} pinned requirement(s) and their "
        f"dependencies for {target.describe()} with the host's pip"
    )
    _pip_download(name, directory, target, requirements, progress)
    for _ in range(5):  # each round may bring wheels with their own marker-only dependencies
        missing = missing_for(directory, target)
        if not missing:
            break
        progress(
            f"[wheelhouse] {name}: adding {', '.join(missing)} (needed by Python {target.version}, "
            "not by the host's)"
        )
        _pip_download(name, directory, target, missing, progress)
    else:
        raise WheelhouseError(
            f"the {name} wheels still lack {', '.join(missing_for(directory, target))}"
        )
    (directory / REQUIREMENTS).write_text("\n".join(requirements) + "\n")
    (directory / STAMP).write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    wheels = Wheels(name, directory, requirements, downloaded=True)
    shown = directory.relative_to(ROOT) if directory.is_relative_to(ROOT) else directory
    progress(f"[wheelhouse] {name}: {wheels.count} wheels in {shown}")
    return wheels


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {
        name
        for name in names
        if name == "__pycache__" or name.endswith((".pyc", ".pyo")) or name.endswith(".egg-info")
    }


def build_project_wheel(
    out: Path = OUT / "project", progress: Callable[[str], None] = print
) -> Path:
    """Build the servinglab wheel from a clean copy of the sources (an in-tree build would reuse a
    stale build/lib); returns its path, the only wheel left in `out`."""
    if not GENERATED.exists():
        raise WheelhouseError(
            f"{GENERATED.relative_to(ROOT)} is missing: generate the gRPC code first "
            "(`make protos`)"
        )
    with tempfile.TemporaryDirectory(prefix="servinglab-wheel-") as scratch:
        source = Path(scratch) / "src"
        source.mkdir()
        for name in PROJECT_SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, source / name, ignore=_ignore)
            else:
                shutil.copy2(path, source / name)
        wheels = Path(scratch) / "wheels"
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--disable-pip-version-check",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(source),
        ]
        # A fixed timestamp in the zip: the same sources give the same bytes, so the image's
        # project layer stays cached until the code really changes.
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=600, check=False, env=env
        )
        if result.returncode != 0:
            tail = _tail(result.stderr or result.stdout)
            raise WheelhouseError(
                f"building the servinglab wheel failed: {tail.splitlines()[-1] if tail else ''}"
                " (setuptools must be installed in the virtualenv: `make bootstrap`)"
            )
        built = sorted(wheels.glob("servinglab-*.whl"))
        if len(built) != 1:
            raise WheelhouseError(f"expected one servinglab wheel, got {[p.name for p in built]}")
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.whl"):
            old.unlink()
        target = out / built[0].name
        shutil.copy2(built[0], target)
    progress(f"[wheelhouse] project: {target.name}")
    return target


def prepare(
    target: ImagePython | None = None,
    progress: Callable[[str], None] = print,
    offline: bool = False,
) -> dict[str, Wheels | Path]:
    """Everything the Dockerfile copies from build/image/."""
    found: dict[str, Wheels | Path] = {
        name: download(name, OUT, target, progress, offline) for name in ("serving", "train")
    }
    if offline:
        wheels = sorted((OUT / "project").glob("servinglab-*.whl"))
        if not wheels:
            raise WheelhouseError(
                f"no project wheel in {OUT / 'project'} and --check builds nothing"
            )
        found["project"] = wheels[0]
    else:
        found["project"] = build_project_wheel(OUT / "project", progress)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list what is there, download nothing")
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="the image's Python, full version")
    parser.add_argument("--glibc", default=DEFAULT_GLIBC, help="the image's glibc version")
    parser.add_argument(
        "--machine", default="", help="the image's CPU architecture (default: this machine's)"
    )
    args = parser.parse_args(argv)
    try:
        target = ImagePython(args.python, args.glibc, args.machine)
        for name, item in prepare(target, offline=args.check).items():
            print(
                f"{name}: {item.count} wheels, {item.directory}"
                if isinstance(item, Wheels)
                else f"{name}: {item}"
            )
        return 0
    except WheelhouseError as error:
        print(f"[wheelhouse] {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
