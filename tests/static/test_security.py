"""No secrets in the repository or the image's build context; loopback-only defaults."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from servinglab import config

ROOT = Path(__file__).resolve().parents[2]
SECRET_PATTERNS = [
    re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    re.compile(rb"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(rb"(?i)(?:password|secret|token)\s*[:=]\s*['\"][^'\"]{8,}['\"]"),
]


def _tracked_files() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def test_no_tracked_file_contains_a_secret():
    offenders = []
    for path in _tracked_files():
        if path.is_file() and path.suffix not in {".png", ".ipynb"}:
            content = path.read_bytes()
            offenders += [
                f"{path.relative_to(ROOT)}: {p.pattern!r}"
                for p in SECRET_PATTERNS
                if p.search(content)
            ]
    assert offenders == []


def test_generated_keys_stay_out_of_git_and_images():
    assert "certs/" in (ROOT / ".gitignore").read_text().split()
    allowed = [
        line[1:]
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert not any(entry.startswith("certs") for entry in allowed)


def test_servers_bind_to_loopback_by_default():
    assert config.DEFAULTS["HTTP_BIND"].startswith("127.0.0.1:")
    assert (
        config.DEFAULTS["GRPC_BIND"] is None
    )  # -> 127.0.0.1:<service port>, see microservices.grpc_server
    source = (ROOT / "microservices" / "grpc_server.py").read_text()
    assert 'f"127.0.0.1:{lab_config.DEFAULT_GRPC_PORTS[stage]}"' in source
