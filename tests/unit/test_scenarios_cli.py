"""`make scenarios` on bad input: one line naming the problem, exit 2, nothing run or written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scenarios import run

ROOT = Path(__file__).resolve().parents[2]


def _main(tmp_path: Path, capsys, *argv: str) -> tuple[int, list[str]]:
    code = run.main(["--out", str(tmp_path / "reports"), *argv])
    return code, capsys.readouterr().err.strip().splitlines()


def _trained(tmp_path: Path, *profiles: str) -> Path:
    models = tmp_path / "models"
    for profile in profiles:
        (models / profile).mkdir(parents=True)
        (models / profile / "CURRENT").write_text("v1\n")
    return models


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenarios", "foo"], "unknown scenario 'foo'; choose from planner, memory"),
        (["--scenarios", "planner", "--trace", "/nonexistent/day.csv"], "does not exist"),
        (["--scenarios", "planner", "--models", "/nonexistent"], "models folder /nonexistent"),
        (["--scenarios", "planner", "--sut-cpus", "zero"], "invalid literal"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code, lines = _main(tmp_path, capsys, *argv)
    assert code == 2
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "reports").exists()  # nothing ran, nothing written


def test_unknown_name_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCENARIOS", "planner foo")
    code, lines = _main(tmp_path, capsys)
    assert code == 2 and "unknown scenario 'foo'" in lines[0]


def test_a_malformed_trace_names_the_line(tmp_path, capsys):
    trace = tmp_path / "day.csv"
    trace.write_text("hour,rps\n0,lots\n")
    code, lines = _main(tmp_path, capsys, "--scenarios", "planner", "--trace", str(trace))
    assert code == 2
    assert lines == [
        f"[scenarios] error: load trace {trace} line 2: expected 'hour,rps', got '0,lots'"
    ]


def test_an_untrained_profile_is_named(tmp_path, capsys):
    models = _trained(tmp_path, "linear")
    code, lines = _main(tmp_path, capsys, "--scenarios", "batching", "--models", str(models))
    assert code == 2
    assert lines[0].endswith(
        f"model profile 'forest' is not trained in {models}/ (run `make train PROFILE=forest`)"
    )


def test_the_command_line_exits_2(tmp_path):
    """The same refusal through `python -m`, as `make scenarios SCENARIOS=foo` runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scenarios", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "SCENARIOS": "foo"},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "[scenarios] error: unknown scenario 'foo'; choose from planner, memory, batching, ship "
        "(SCENARIOS=...)"
    ]
