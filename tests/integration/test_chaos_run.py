"""`make chaos` for real, briefly: every event in chaos.json and in the report's table, the same
numbers in both, the rolls done as their descriptions say (from the servers' own logs), and Ctrl-C
leaves no process behind.

Nothing here needs a lucky zero: whatever a rolling restart costs on a busy machine is counted,
and the tests check that it is counted consistently and that the old processes were replaced.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psutil
import pytest
from helpers import wait_for_exact_tree

from benchmarks.chaos import CACHE_EVENTS, MAIN_EVENTS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RATE, USERS, PHASE_SECONDS, PROBE_SECONDS = 20, 4, 2, 2
DAMAGE_KEYS = {
    "failed",
    "failed_by_status",
    "last_failure_s",
    "seconds_above_slo",
    "peak_p99_ms",
    "slow_requests",
    "back_within_slo_s",
}
# The blast-radius table of issue #17, column by column.
TABLE_HEADERS = [
    "architecture",
    "event",
    "at (s)",
    "failed requests",
    "s above SLO",
    "peak p99 (ms)",
    "slower than SLO",
    "last failure (s)",
    "back within SLO (s)",
]
SETTINGS_KEYS = {
    "rate",
    "users",
    "phase_seconds",
    "profile",
    "sut_cpus",
    "loadgen_cpus",
    "request_budget_ms",
    "slo_ms",
    "window_s",
    "sustained_s",
    "burst_factor",
    "burst_seconds",
    "cache_rate",
    "probe_seconds",
}
TIMELINE_KEYS = {"second", "ok", "errors", "slow", "p99_ms", "p99_1s_ms", "above_slo", "good"}


def _chaos(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.chaos",
            "--out",
            str(out),
            "--rate",
            str(RATE),
            "--users",
            str(USERS),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "LAB_MODEL_DIR": str(ROOT / "models"),
            # gunicorn then logs each worker it boots and retires, and each TTIN/TTOU it handles:
            # the evidence of how the monolith was rolled.
            "GUNICORN_CMD_ARGS": "--log-level info",
        },
    )


@pytest.fixture(scope="module")
def chaos_run(tmp_path_factory) -> Path:
    """One short `make chaos` of both architectures; its run folder."""
    out = tmp_path_factory.mktemp("chaos")
    # A 2 s burst (the default is 4) still offers 3 x capacity; it only leaves less to drain. A 2 s
    # probe (the default is 5) scatters more, which only moves what the burst offers.
    process = _chaos(
        out,
        "--phase-seconds",
        str(PHASE_SECONDS),
        "--burst-seconds",
        "2",
        "--probe-seconds",
        str(PROBE_SECONDS),
    )
    try:
        output, _ = process.communicate(timeout=900)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    [run_dir] = out.glob("chaos-*")
    return run_dir


def markdown_table(text: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the Markdown table whose first header cell is `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split(" | ")])
    headers, _rule, *rows = table
    return headers, rows


def failed_cell(cell: str) -> tuple[int, dict[str, int]]:
    """'12 (2 x no answer, 10 x 503)' -> (12, {"0": 2, "503": 10})."""
    match = re.fullmatch(r"(\d+)(?: \((.*)\))?", cell)
    assert match, cell
    by_status = {}
    for part in (match.group(2) or "").split(", ") if match.group(2) else []:
        count, status = part.split(" x ")
        by_status["0" if status == "no answer" else status] = int(count)
    return int(match.group(1)), by_status


def number_cell(cell: str) -> float | None:
    return None if cell in ("n/a", "not yet") else float(cell)


def expected_rows(document: dict) -> list[tuple[str, dict]]:
    """(table label, JSON outcome) of every event of every run, in report order."""
    rows = []
    for architecture, result in document["architectures"].items():
        rows += [(architecture, outcome) for outcome in result["events"]]
        rows += [(f"{architecture} (CACHE=redis)", o) for o in result["state"]["events"]]
    return rows


def test_chaos_json_holds_every_event_with_its_damage(chaos_run):
    document = json.loads((chaos_run / "chaos.json").read_text())
    assert document["kind"] == "chaos"
    settings = document["settings"]
    assert set(settings) == SETTINGS_KEYS
    assert (
        settings["rate"],
        settings["users"],
        settings["phase_seconds"],
        settings["probe_seconds"],
    ) == (RATE, USERS, PHASE_SECONDS, PROBE_SECONDS)
    # At least 100 samples per p99 at 20 req/s: a 5 s trailing window.
    assert settings["window_s"] == 5 and settings["sustained_s"] == 3 and settings["slo_ms"] == 50
    assert list(document["architectures"]) == ["monolith", "microservices"]
    versions = document["versions"]
    assert versions["from"] != versions["to"]
    for architecture, result in document["architectures"].items():
        assert [e["event"] for e in result["events"]] == MAIN_EVENTS[architecture]
        assert [e["event"] for e in result["state"]["events"]] == CACHE_EVENTS
        for run in (result, result["state"]):
            assert run["requests"] > 0
            assert [e["at_s"] for e in run["events"]] == sorted(e["at_s"] for e in run["events"])
            for event in run["events"]:
                assert set(event) >= DAMAGE_KEYS | {"description", "at_s", "action_s"}, event
                # Every failure is counted once, under its status; only refusals and no answers.
                assert event["failed"] == sum(event["failed_by_status"].values()), event
                assert set(event["failed_by_status"]) <= {"0", "503", "504"}, event
                assert event["slow_requests"] >= 0 and event["seconds_above_slo"] >= 0
            # Events count the requests started after them; the quiet phase before counts in
            # the run only.
            assert sum(e["failed"] for e in run["events"]) <= run["failed"] <= run["requests"]
            assert [row["second"] for row in run["timeline"]] == list(range(len(run["timeline"])))
            assert all(set(row) >= TIMELINE_KEYS | {"cpu_percent"} for row in run["timeline"])
        # Every answer names one of the two versions, and the rollout reached the new one.
        assert set(result["versions"]) <= {versions["from"], versions["to"]}
        assert versions["to"] in result["versions"]
        # The burst really offered several times the probed capacity, and its requests count.
        overload = result["events"][-1]
        assert overload["offered_rps"] > 2 * overload["capacity_rps"] > 0
        assert 0 < overload["burst_requests"] <= result["requests"]
        assert overload["burst_ok"] + overload["burst_shed"] <= overload["burst_requests"]
        # Cache-aside: losing Redis fails nothing by itself (a 503 would be load shedding on a
        # machine busy with something else), and the per-second hit rate was measured.
        state = result["state"]
        assert set().union(*(e["failed_by_status"] for e in state["events"])) <= {"503"}
        assert any(row.get("cache_hit_rate") for row in state["timeline"])
    # The rolls say how they are done: TTIN/TTOU for the monolith (not SIGHUP, which would stop
    # the old workers before the new ones have loaded the model).
    monolith = {e["event"]: e for e in document["architectures"]["monolith"]["events"]}
    for name in ("rolling restart", "model rollout"):
        assert "TTIN" in monolith[name]["description"] and "TTOU" in monolith[name]["description"]
    # The only postprocess process died: under steady load, that is an outage until it is back.
    crash = document["architectures"]["microservices"]["events"][0]
    assert crash["event"] == "crash" and crash["failed"] > 0


def test_the_report_table_has_every_event_and_the_json_numbers(chaos_run):
    document = json.loads((chaos_run / "chaos.json").read_text())
    report = (chaos_run / "report.md").read_text()
    headers, rows = markdown_table(report, "architecture")
    assert headers == TABLE_HEADERS
    expected = expected_rows(document)
    assert [(row[0], row[1]) for row in rows] == [(label, o["event"]) for label, o in expected]
    for row, (label, outcome) in zip(rows, expected, strict=True):
        cells = dict(zip(TABLE_HEADERS, row, strict=True))
        where = f"{label} {outcome['event']}"
        assert number_cell(cells["at (s)"]) == pytest.approx(outcome["at_s"], abs=0.051), where
        assert failed_cell(cells["failed requests"]) == (
            outcome["failed"],
            outcome["failed_by_status"],
        ), where
        assert int(cells["s above SLO"]) == outcome["seconds_above_slo"], where
        peak = number_cell(cells["peak p99 (ms)"])
        assert (peak is None) == (outcome["peak_p99_ms"] is None), where
        assert peak is None or peak == pytest.approx(outcome["peak_p99_ms"], abs=0.051), where
        assert int(cells["slower than SLO"]) == outcome["slow_requests"], where
        last_failure = number_cell(cells["last failure (s)"])
        assert last_failure == pytest.approx(outcome["last_failure_s"], abs=0.051), where
        back = number_cell(cells["back within SLO (s)"])
        assert (back is None) == (outcome["back_within_slo_s"] is None), where
        assert back is None or back == pytest.approx(outcome["back_within_slo_s"], abs=0.051)
    window = document["settings"]["window_s"]
    assert f"trailing {window} s window" in report and "back within SLO" in report
    assert "What this says about state" in report
    html = (chaos_run / "report.html").read_text()
    for header in TABLE_HEADERS:
        assert f">{header}<" in html, header
    for text in (report, html):
        assert "SIGHUP" not in text, "the monolith rolls with TTIN/TTOU"
    for name in (
        "charts/timeline-monolith.png",
        "charts/timeline-microservices.png",
        "charts/timeline-monolith-cache.png",
        "charts/timeline-microservices-cache.png",
    ):
        assert (chaos_run / name).stat().st_size > 0


GUNICORN_LINE = re.compile(
    r"\[(?P<pid>\d+)\] \[\w+\] (?:Booting worker with pid: (?P<booted>\d+)"
    r"|Handling signal: (?P<signal>\w+)|Worker exiting \(pid: (?P<exiting>\d+)\)"
    r"|Worker \(pid:(?P<killed>\d+)\) was sent SIGKILL)"
)


def test_the_monolith_rolls_worker_by_worker_with_ttin_then_ttou(chaos_run):
    """From gunicorn's own log: the crash costs one worker, replaced; each of the two rolls (the
    restart and the rollout) adds a new worker before it retires an old one, until none is left."""
    alive: set[int] = set()
    killed, rolls = [], []
    for line in (
        (chaos_run / "logs" / "monolith" / "gunicorn-monolith.log").read_text().splitlines()
    ):
        match = GUNICORN_LINE.search(line)
        if not match:
            continue
        if match["signal"] in ("term", "int", "quit"):
            break  # the end of the run: every worker goes
        if match["signal"] == "ttin":
            rolls.append({"before": set(alive), "booted": None, "retired": None})
        elif match["signal"] == "ttou":
            assert rolls and rolls[-1]["booted"], "TTOU before the new worker had booted"
        elif match["booted"]:
            alive.add(int(match["booted"]))
            if rolls and rolls[-1]["booted"] is None:
                rolls[-1]["booted"] = int(match["booted"])
        elif match["exiting"]:
            alive.discard(int(match["exiting"]))
            if rolls and rolls[-1]["retired"] is None:
                rolls[-1]["retired"] = int(match["exiting"])
        elif match["killed"]:
            killed.append(int(match["killed"]))
            alive.discard(int(match["killed"]))
    assert len(killed) == 1, "the crash event kills exactly one worker"
    workers = 2
    assert len(rolls) == 2 * workers, "two rolls (restart, rollout), one TTIN/TTOU per worker"
    for roll in rolls:
        assert roll["booted"] not in roll["before"], roll
        assert roll["retired"] in roll["before"], "TTOU retires an old worker, not the new one"
    # After each roll every worker is new: none of those serving before its first TTIN is left
    # (the second roll's first TTIN found what the first roll left; the end, what the second did).
    for first, after in ((0, rolls[workers]["before"]), (workers, alive)):
        assert len(after) == workers and not after & rolls[first]["before"], (first, after)


SERVING_LINE = re.compile(r"serving (\w+) on port (\d+) \(pid (\d+)\)")


def test_microservices_replace_each_stage_process_on_its_own_port(chaos_run):
    """From each stage's log: every restart (recover, rolling restart, rollout) is a new process
    on the port the old one had, and the rolled ones were drained (SIGTERM), not killed."""
    logs = chaos_run / "logs" / "microservices"
    starts = {
        # name: (starts, graceful drains), event by event
        "postprocess": (2, 1),  # start, recover after the crash; killed, not drained
        "preprocess": (2, 2),  # start, rollout; drained by the rollout and the final stop
        "inference-0": (4, 3),  # start, recover, rolling restart, rollout
        "inference-1": (3, 3),  # start, rolling restart, rollout
    }
    for name, (expected_starts, expected_drains) in starts.items():
        text = (logs / f"{name}.log").read_text()
        serving = SERVING_LINE.findall(text)
        assert len(serving) == expected_starts, (name, serving)
        assert len({pid for _, _, pid in serving}) == expected_starts, "each start is a new process"
        assert len({port for _, port, _ in serving}) == 1, "a replacement binds the same port"
        assert text.count("received SIGTERM, draining") == expected_drains, name


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_stopping_chaos_leaves_no_process(stop_signal, tmp_path, watch_output):
    process = _chaos(tmp_path, "--archs", "microservices", "--phase-seconds", "30")
    try:
        watch_output(process).wait_for("microservices: starting", timeout_s=300)
        # Interrupt in the middle of the run: once the deployment and a Locust (the probe's or
        # the steady load's) all exist, and nothing else.
        expected = Counter(
            {
                "gunicorn": 3,  # the master and its 2 workers
                "microservices.preprocess": 1,
                "microservices.inference": 2,
                "microservices.postprocess": 1,
                "locust": 1,
            }
        )
        children = wait_for_exact_tree(process.pid, expected, timeout_s=300)
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
    finally:
        if process.poll() is None:
            process.kill()
