"""The offline image build's pieces that need no engine: wheelhouse targets and markers, base
references, and the errors a build without its prerequisites gives."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lab import base_image, image_build, wheelhouse

ROOT = Path(__file__).resolve().parents[2]


def fake_wheel(directory: Path, name: str, version: str, requires: list[str]) -> Path:
    path = directory / f"{name}-{version}-py3-none-any.whl"
    metadata = (
        "\n".join(
            [
                "Metadata-Version: 2.1",
                f"Name: {name}",
                f"Version: {version}",
                *[f"Requires-Dist: {r}" for r in requires],
            ]
        )
        + "\n"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata)
    return path


def test_markers_are_evaluated_for_the_image_python_not_the_host(tmp_path):
    """redis needs async-timeout below Python 3.11.3: Debian's 3.11.2 does, the host's may not."""
    fake_wheel(
        tmp_path,
        "redis",
        "8.1.0",
        ['async-timeout>=4.0.3; python_full_version < "3.11.3"', 'cryptography; extra == "ocsp"'],
    )
    assert wheelhouse.missing_for(tmp_path, wheelhouse.ImagePython("3.11.2", "2.36", "x86_64")) == [
        "async-timeout"
    ]
    assert (
        wheelhouse.missing_for(tmp_path, wheelhouse.ImagePython("3.11.14", "2.36", "x86_64")) == []
    )
    fake_wheel(tmp_path, "async_timeout", "5.0.1", [])
    assert (
        wheelhouse.missing_for(tmp_path, wheelhouse.ImagePython("3.11.2", "2.36", "x86_64")) == []
    )


def test_pip_is_asked_for_every_manylinux_tag_the_image_glibc_accepts():
    target = wheelhouse.ImagePython("3.11.2", "2.36", "amd64")
    platforms = target.platforms()
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert platforms[-1] == "manylinux_2_5_x86_64"
    options = target.pip_options()
    assert options[options.index("--python-version") + 1] == "3.11.2"
    assert options[options.index("--abi") + 1] == "cp311"
    assert "--only-binary=:all:" in options
    assert (
        wheelhouse.ImagePython("3.11.2", "2.36", "aarch64").platforms()[0]
        == "manylinux_2_36_aarch64"
    )
    with pytest.raises(wheelhouse.WheelhouseError, match="architecture"):
        wheelhouse.ImagePython("3.11.2", "2.36", "sparc").platforms()


def test_requirement_groups_are_pinned_from_the_constraints():
    pins = wheelhouse.pins()
    for line in wheelhouse.group("serving"):
        name, version = line.split("==")
        assert pins[wheelhouse.canonical(name)] == line and version
    assert not [r for r in wheelhouse.group("lab") if r.startswith("servinglab")], (
        "self-references are dropped"
    )


def test_a_fresh_wheelhouse_stamp_means_no_download(tmp_path, monkeypatch):
    target = wheelhouse.ImagePython("3.11.2", "2.36", "x86_64")
    directory = tmp_path / "wheels" / "serving"
    directory.mkdir(parents=True)
    fake_wheel(directory, "flask", "3.1.3", [])
    import json

    (directory / wheelhouse.STAMP).write_text(
        json.dumps(wheelhouse._stamp(wheelhouse.group("serving"), target))
    )
    monkeypatch.setattr(
        wheelhouse, "_pip_download", lambda *a, **k: pytest.fail("downloaded again")
    )
    wheels = wheelhouse.download("serving", tmp_path, target, progress=lambda _: None)
    assert wheels.downloaded is False and wheels.count == 1
    with pytest.raises(wheelhouse.WheelhouseError, match="stale"):
        wheelhouse.download(
            "serving",
            tmp_path,
            wheelhouse.ImagePython("3.12.1", "2.36", "x86_64"),
            progress=lambda _: None,
            offline=True,
        )


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("python:3.11.14-slim-bookworm@sha256:" + "a" * 64, ("python", "sha256:" + "a" * 64)),
        ("localhost:5000/team/python:3.11", ("localhost:5000/team/python", "3.11")),
        ("localhost:5000/python", ("localhost:5000/python", None)),
        ("servinglab-base:bookworm-0123456789ab", ("servinglab-base", "bookworm-0123456789ab")),
    ],
)
def test_image_references_split_into_repository_and_tag_or_digest(ref, expected):
    assert base_image.split_reference(ref) == expected


def test_the_local_base_is_named_by_its_recipe():
    name = base_image.local_base_ref()
    assert name.startswith("servinglab-base:bookworm-") and name == base_image.local_base_ref()
    assert "python3" in base_image.PACKAGES and "python3-venv" in base_image.PACKAGES


def test_making_a_base_without_root_says_what_to_do(monkeypatch):
    monkeypatch.setattr(base_image.os, "geteuid", lambda: 1000)
    with pytest.raises(base_image.BaseImageError, match=r"needs root.*BASE_IMAGE"):
        base_image.make_local_base(object(), "servinglab-base:test")


def test_making_a_base_without_debootstrap_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(base_image.os, "geteuid", lambda: 0)
    monkeypatch.setattr(base_image.shutil, "which", lambda name: None)
    with pytest.raises(base_image.BaseImageError, match="apt-get install -y debootstrap"):
        base_image.make_local_base(object(), "servinglab-base:test")


def test_an_explicit_base_is_never_swapped_for_the_local_one():
    class NoImages:
        class images:
            @staticmethod
            def get(ref):
                import docker.errors

                raise docker.errors.ImageNotFound(ref)

        class api:
            @staticmethod
            def pull(name, tag=None, stream=False, decode=False):
                return iter([{"error": "dial tcp: lookup registry-1.docker.io: no such host"}])

    with pytest.raises(
        base_image.BaseImageError, match=r"BASE_IMAGE.*cannot be pulled.*no such host"
    ):
        base_image.resolve_base(NoImages(), "example.org/python:3.11", progress=lambda _: None)
    with pytest.raises(base_image.BaseImageError, match="neither"):
        base_image.resolve_base(NoImages(), None, progress=lambda _: None, make=False)


def test_a_failing_step_is_reported_in_one_line_with_its_exit_code():
    long = "The command '/bin/sh -c pip install --no-index -r x.txt && echo this is long' returned a non-zero code: 3"
    assert image_build._short_error(long) == "the command exited with code 3"
    assert len(image_build._short("Step 5/31 : RUN " + "x" * 300)) <= 90


def test_make_image_without_an_engine_is_one_line_and_non_zero(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lab.images", "build"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "DOCKER_HOST": f"unix://{tmp_path}/none.sock",
            "HOME": str(tmp_path),
        },
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "no Docker engine answered" in lines[0] and "Start one" in lines[0]
    ), result.stderr
