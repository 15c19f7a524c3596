"""Run folders and result files: where every experiment keeps what it measured.

A run lives in ``<out>/<name>/`` (``20261130-120000-quick``, ``sweep-20261130-120000-cache_rate``,
``chaos-20261130-120000``); a symlink such as ``<out>/latest`` points at the newest one. Result
documents are indented JSON with a final newline, timestamps ISO 8601 in UTC with a ``Z``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def stamp(when: datetime | None = None) -> str:
    """``20261130-120000``: the time part of a run folder's name (local time unless given)."""
    return (when or datetime.now()).strftime("%Y%m%d-%H%M%S")


def new_run_dir(out: Path, name: str, *, exist_ok: bool = False) -> Path:
    """Create and return ``out/name`` (and `out`)."""
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=exist_ok)
    return run_dir


def link_latest(run_dir: Path, name: str = "latest") -> Path:
    """Point the symlink ``<run_dir's parent>/<name>`` at `run_dir` (relative, so it can move)."""
    latest = run_dir.parent / name
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name)
    return latest


def utc_timestamp(when: datetime) -> str:
    """``2026-11-30T12:00:00Z``."""
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
