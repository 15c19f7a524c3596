"""`make chaos`: faults and rollouts on a timeline, under steady Locust load, per architecture.

What a student sees is the *blast radius* of each event: how many requests failed, with which
status, and how long until the service was whole again. The same four kinds of event run on both
architectures:

| event               | microservices                                   | monolith                               |
|---------------------|-------------------------------------------------|----------------------------------------|
| crash               | SIGKILL the only postprocess process             | SIGKILL one gunicorn worker            |
| recover             | start postprocess again (the gateway reconnects) | gunicorn starts a replacement worker   |
| rolling restart     | the two inference replicas, one at a time        | SIGHUP: gunicorn replaces every worker |
| model rollout       | new version: inference replicas, then preprocess | new version, then SIGHUP               |

The load is open-loop (paced Locust users), so a failing service does not slow the load down and
hide its own failures. Output: `chaos.json`, `report.md`, `report.html` and a timeline chart per
architecture (throughput, errors by status and p99 per second, events marked).

    python -m benchmarks.chaos --archs "monolith microservices" --rate 40 --phase-seconds 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from benchmarks.report import (
    CHARTS_DIR,
    Bullets,
    Chart,
    ChartSpec,
    Heading,
    Paragraph,
    Table,
    render_html_page,
    render_markdown_blocks,
    write_chart_pngs,
)
from benchmarks.runner import (
    LOCUSTFILE,
    RECORDS_FILE,
    machine_info,
    parse_cpus,
    percentile,
)
from servinglab.model.artifact import set_current
from servinglab.model.data import held_out_records
from lab.launch import Deployment, launch
from lab.supervisor import (
    ProcessSpec,
    StopSignals,
    Supervisor,
    run_in_foreground,
)
from servinglab.model.training import train

CHAOS_FILE = "chaos.json"
ROLLOUT_SEED = 43  # the second model version: another seed, another split, another model
REQUEST_BUDGET_MS = 1000
RECOVERED_AFTER_S = 3.0  # "recovered" = this long without a failed request


@dataclass
class Event:
    name: str
    description: str
    started: float = 0.0   # epoch seconds
    finished: float = 0.0


@dataclass
class ChaosConfig:
    archs: list[str]
    rate: float
    users: int
    phase_seconds: float
    profile: str
    sut_cpus: list[int]
    loadgen_cpus: list[int]
    models: Path
    out: Path


def parse_config(argv: list[str] | None = None) -> ChaosConfig:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=env.get("ARCHS") or "monolith microservices")
    parser.add_argument("--rate", type=float, default=float(env.get("RATE") or 40),
                        help="requests per second, held constant (below both architectures' capacity)")
    parser.add_argument("--users", type=int, default=int(env.get("USERS") or 8))
    parser.add_argument("--phase-seconds", type=float, default=float(env.get("PHASE_SECONDS") or 8),
                        help="seconds of steady load before, between and after the events")
    parser.add_argument("--profile", default=env.get("PROFILE") or "linear")
    parser.add_argument("--sut-cpus", default=env.get("SUT_CPUS") or "0")
    parser.add_argument("--loadgen-cpus", default=env.get("LOADGEN_CPUS") or "1")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path(env.get("REPORTS") or "reports"))
    args = parser.parse_args(argv)
    archs = args.archs.replace(",", " ").split()
    unknown = [a for a in archs if a not in ("monolith", "microservices")]
    if unknown:
        parser.error(f"make chaos runs monolith and microservices, not {unknown}")
    if args.rate <= 0 or args.users <= 0 or args.phase_seconds <= 0:
        parser.error("--rate, --users and --phase-seconds must be positive")
    return ChaosConfig(archs, args.rate, args.users, args.phase_seconds, args.profile,
                       parse_cpus(args.sut_cpus), parse_cpus(args.loadgen_cpus), args.models, args.out)


def progress(message: str) -> None:
    print(f"[chaos] {message}", flush=True)


def prepare_models(config: ChaosConfig, run_dir: Path) -> tuple[Path, str, str]:
    """A private models root with the served version (v1, CURRENT) and a retrained one (v2)."""
    root = run_dir / "models"
    source = config.models / config.profile
    if not (source / "CURRENT").exists():
        raise SystemExit(f"no trained {config.profile} model in {config.models}: run `make train PROFILE={config.profile}`")
    shutil.copytree(source, root / config.profile)
    v1 = (root / config.profile / "CURRENT").read_text().strip()
    progress(f"training the version to roll out ({config.profile}, seed {ROLLOUT_SEED})")
    v2 = train(config.profile, ROLLOUT_SEED, root).name
    set_current(root / config.profile, v1)
    return root, v1, v2


# --- the events ---------------------------------------------------------------------------------


def _wait(condition: Callable[[], bool], timeout_s: float, stop: StopSignals) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        stop.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting after {timeout_s:.0f}s")
        time.sleep(0.05)


def microservices_events(deployment: Deployment, profile_dir: Path, v2: str, stop: StopSignals):
    def crash():
        deployment.kill("postprocess")

    def recover():
        deployment.start_replica("postprocess")

    def rolling():
        deployment.rolling_restart("inference")

    def rollout():
        set_current(profile_dir, v2)
        deployment.rolling_restart("inference")
        deployment.rolling_restart("preprocess")

    return [
        (Event("crash", "SIGKILL the only postprocess process"), crash),
        (Event("recover", "start postprocess again; the gateway reconnects by itself"), recover),
        (Event("rolling restart", "restart the 2 inference replicas one at a time (new one up, then old drained)"),
         rolling),
        (Event("model rollout", f"serve {v2}: inference replicas one by one, then preprocess"), rollout),
    ]


def monolith_events(deployment: Deployment, profile_dir: Path, v2: str, stop: StopSignals):
    state: dict[str, Any] = {}

    def crash():
        workers = deployment.entry_workers()
        state["victim"], state["count"] = workers[0], len(workers)
        os.kill(workers[0], signal.SIGKILL)

    def recover():
        # Nothing to do: gunicorn's master replaces the worker. The event lasts until it has.
        _wait(lambda: state["victim"] not in deployment.entry_workers()
              and len(deployment.entry_workers()) == state["count"], 60, stop)

    def reload_and_wait():
        old = set(deployment.entry_workers())
        deployment.reload_workers()
        _wait(lambda: not old & set(deployment.entry_workers()) and len(deployment.entry_workers()) == len(old),
              60, stop)

    def rollout():
        set_current(profile_dir, v2)
        reload_and_wait()

    return [
        (Event("crash", "SIGKILL one of the 2 gunicorn workers"), crash),
        (Event("recover", "gunicorn's master starts a replacement worker by itself"), recover),
        (Event("rolling restart", "SIGHUP: gunicorn starts new workers and drains the old ones"), reload_and_wait),
        (Event("model rollout", f"serve {v2}: point CURRENT at it, then SIGHUP"), rollout),
    ]


# --- one architecture ---------------------------------------------------------------------------


def run_architecture(architecture: str, config: ChaosConfig, run_dir: Path, models_root: Path, v2: str,
                     stop: StopSignals) -> dict:
    profile_dir = models_root / config.profile
    settings = {"MODEL_DIR": models_root, "MODEL_PROFILE": config.profile, "REQUEST_BUDGET_MS": REQUEST_BUDGET_MS}
    replicas = {"inference": 2} if architecture == "microservices" else None
    log_dir = run_dir / "logs" / architecture
    samples_path = run_dir / f"{architecture}.samples.json"
    progress(f"{architecture}: starting")
    with launch(architecture, settings=settings, cpus=config.sut_cpus, log_dir=log_dir,
                replicas=replicas) as deployment, Supervisor(log_dir=log_dir, cpus=config.loadgen_cpus) as loadgen:
        builder = microservices_events if architecture == "microservices" else monolith_events
        timeline = builder(deployment, profile_dir, v2, stop)
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", deployment.url,
                "-u", str(config.users), "-r", str(config.users * 10), "-t", "3600s", "--only-summary",
                "--loglevel", "WARNING", "--exit-code-on-error", "0", "--stop-timeout", "2"]
        env = {"LAB_BENCH_USER_RPS": str(config.rate / config.users), "LAB_BENCH_SAMPLES": str(samples_path),
               "LAB_BENCH_RECORDS": str(run_dir / RECORDS_FILE), "LAB_BENCH_RECORD_VERSIONS": "1"}
        locust = loadgen.start(ProcessSpec("locust", argv, env))
        load_started = time.time()
        events = []
        _pause(config.phase_seconds, stop)
        for event, action in timeline:
            progress(f"{architecture}: {event.name}: {event.description}")
            event.started = time.time()
            action()
            event.finished = time.time()
            events.append(event)
            _pause(config.phase_seconds, stop)
        # SIGTERM makes Locust stop its users and fire test_stop, where the recorder writes.
        loadgen.stop_one(locust, grace_s=30)
    if not samples_path.exists():
        raise RuntimeError(f"Locust wrote no samples; see {log_dir / 'locust.log'}")
    samples = json.loads(samples_path.read_text())
    samples_path.unlink()
    return summarise(architecture, samples, events, load_started)


def _pause(seconds: float, stop: StopSignals) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stop.check()
        time.sleep(0.1)


# --- analysis -----------------------------------------------------------------------------------


def per_second(requests: list, origin: float, end: float) -> list[dict]:
    """Requests binned by the second they started in: successes, failures by status, p99."""
    # Whole seconds only: a last, partial second would look like a drop in throughput.
    seconds = max(1, math.floor(end - origin))
    bins: list[list] = [[] for _ in range(seconds)]
    for started, latency_ms, status in requests:
        index = int(started - origin)
        if 0 <= index < seconds:
            bins[index].append((latency_ms, status))
    rows = []
    for index, items in enumerate(bins):
        errors = Counter(str(status) for _, status in items if not 200 <= status < 300)
        latencies = sorted(latency for latency, _ in items)
        rows.append({"second": index, "ok": sum(1 for _, s in items if 200 <= s < 300), "errors": dict(errors),
                     "p99_ms": percentile(latencies, 0.99)})
    return rows


def event_outcomes(requests: list, events: list[Event], end: float) -> list[dict]:
    """Failures that started between an event and the next, and how long until they stopped."""
    outcomes = []
    for index, event in enumerate(events):
        window_end = events[index + 1].started if index + 1 < len(events) else end
        failed = sorted((started, status) for started, _, status in requests
                        if event.started <= started < window_end and not 200 <= status < 300)
        by_status = Counter(str(status) for _, status in failed)
        outcomes.append({
            "event": event.name, "description": event.description,
            "at_s": event.started, "action_s": round(event.finished - event.started, 2),
            "failed": len(failed), "failed_by_status": dict(by_status),
            # From the event until its last failure: 0 when nothing failed.
            "recovery_s": round(failed[-1][0] - event.started, 2) if failed else 0.0,
        })
    return outcomes


def summarise(architecture: str, samples: dict, events: list[Event], load_started: float) -> dict:
    requests = sorted(samples["requests"])
    origin = samples["started_at"] or load_started
    end = samples["stopped_at"] or (requests[-1][0] if requests else origin)
    outcomes = event_outcomes(requests, events, end)
    for outcome in outcomes:
        outcome["at_s"] = round(outcome["at_s"] - origin, 2)
    versions = Counter(v for v in samples.get("versions", []) if v)
    return {
        "requests": len(requests),
        "failed": sum(1 for _, _, status in requests if not 200 <= status < 300),
        "events": outcomes,
        "timeline": per_second(requests, origin, end),
        "versions": dict(versions),
    }


# --- report -------------------------------------------------------------------------------------


def timeline_chart(data: dict) -> Figure:
    figure = Figure(figsize=(11, 7.5), layout="constrained")
    axes = figure.subplots(3, 1, sharex=True)
    rows = data["timeline"]
    # A bin covers [second, second + 1): plot it at its middle, so events line up with it.
    seconds = [row["second"] + 0.5 for row in rows]
    axes[0].plot(seconds, [row["ok"] for row in rows], color="#0072B2", linewidth=2)
    axes[0].set_ylabel("successful req/s")
    statuses = sorted({status for row in rows for status in row["errors"]})
    bottom = [0] * len(rows)
    palette = ["#D55E00", "#E69F00", "#CC79A7", "#56B4E9", "#999999"]
    for color, status in zip(palette * 3, statuses):
        heights = [row["errors"].get(status, 0) for row in rows]
        label = "no answer (connection failed)" if status == "0" else f"HTTP {status}"
        axes[1].bar(seconds, heights, bottom=bottom, color=color, label=label, width=0.9)
        bottom = [b + h for b, h in zip(bottom, heights)]
    axes[1].set_ylabel("failed req/s")
    if statuses:
        axes[1].legend(loc="upper right")
    axes[2].plot(seconds, [row["p99_ms"] if row["p99_ms"] is not None else float("nan") for row in rows],
                 color="#009E73", linewidth=2)
    axes[2].set_ylabel("p99 latency (ms)")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("seconds since the load started")
    for event in data["events"]:
        for ax in axes:
            ax.axvline(event["at_s"], color="#444", linestyle="--", linewidth=1)
        axes[0].annotate(event["event"], (event["at_s"], 1.0), xycoords=("data", "axes fraction"),
                         rotation=90, va="top", ha="right", fontsize=10)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return figure


def _chart_spec(architecture: str) -> ChartSpec:
    return ChartSpec(f"timeline-{architecture}", f"{architecture}: a timeline of the events", timeline_chart,
                     "Top: successful requests per second (the load is constant, so dips are failures or "
                     "slowness). Middle: failed requests per second by status. Bottom: p99 latency per second. "
                     "Dashed lines mark the events.")


def build_blocks(document: dict) -> list:
    settings = document["settings"]
    blocks = [
        Heading(1, "Chaos: what fails, and for how long"),
        Paragraph(f"Steady load of {settings['rate']:g} req/s from {settings['users']} paced Locust users; "
                  f"events every {settings['phase_seconds']:g} s; model profile `{settings['profile']}`; "
                  f"request budget {REQUEST_BUDGET_MS} ms; the gateway retries UNAVAILABLE within that budget. "
                  f"Versions: `{document['versions']['from']}` then `{document['versions']['to']}`."),
    ]
    rows = []
    for architecture, result in document["architectures"].items():
        for outcome in result["events"]:
            statuses = ", ".join(f"{count} x {'no answer' if s == '0' else s}"
                                 for s, count in sorted(outcome["failed_by_status"].items())) or "none"
            rows.append([architecture, outcome["event"], f"{outcome['at_s']:.1f}", f"{outcome['action_s']:.1f}",
                         str(outcome["failed"]), statuses, f"{outcome['recovery_s']:.1f}"])
    blocks += [Heading(2, "Blast radius of each event"),
               Table(["architecture", "event", "at (s)", "action took (s)", "failed requests", "by status",
                      "time to recover (s)"], rows, numeric_columns={2, 3, 4, 6}),
               Paragraph("Failed requests count requests *started* between an event and the next one. Time to "
                         "recover runs from the event to its last failed request (0: nothing failed). For a crash, "
                         "failures last until the recovery event restores the process.", style="note")]
    for architecture, result in document["architectures"].items():
        versions = ", ".join(f"`{v}`: {n}" for v, n in sorted(result["versions"].items())) or "none recorded"
        blocks += [Heading(2, architecture),
                   Paragraph(f"{result['requests']} requests, {result['failed']} failed. Answers by model "
                             f"version: {versions}."),
                   Chart(_chart_spec(architecture), result)]
    blocks += [Heading(2, "What to look for"),
               Bullets([
                   "A crash of a single-replica stage is an outage for every request until it is back; a crash "
                   "of one of two gunicorn workers fails only what that worker held.",
                   "Rolling restarts and the rollout should fail nothing: new processes are up before old ones "
                   "drain, and the gateway retries a call that reached a process on its way out.",
                   "During the rollout each answer names its version; the gateway never mixes the "
                   "preprocessing of one version with the model of another.",
               ]),
               Heading(2, "Machine and settings"),
               Paragraph(f"{document['machine'].get('cpu_model', 'unknown CPU')}, "
                         f"{document['machine'].get('logical_cores', '?')} logical CPUs; SUT on CPUs "
                         f"{settings['sut_cpus']}, Locust on {settings['loadgen_cpus']}; run {document['started_at']}.")]
    return blocks


def write_report(run_dir: Path, document: dict) -> list[Path]:
    blocks = build_blocks(document)
    written = write_chart_pngs(((b.spec, b.data) for b in blocks if isinstance(b, Chart)), run_dir / CHARTS_DIR)
    markdown = run_dir / "report.md"
    markdown.write_text(render_markdown_blocks(blocks, CHARTS_DIR), encoding="utf-8")
    page = run_dir / "report.html"
    page.write_text(render_html_page(blocks, "Chaos report", document), encoding="utf-8")
    return [markdown, page, *written]


def run(config: ChaosConfig, stop: StopSignals) -> Path:
    started = datetime.now(UTC)
    run_dir = config.out / f"chaos-{started:%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True)
    (run_dir / RECORDS_FILE).write_text(json.dumps(held_out_records()))
    models_root, v1, v2 = prepare_models(config, run_dir)
    document = {
        "kind": "chaos", "started_at": started.isoformat(timespec="seconds"), "machine": machine_info(),
        "settings": {"rate": config.rate, "users": config.users, "phase_seconds": config.phase_seconds,
                     "profile": config.profile, "sut_cpus": config.sut_cpus, "loadgen_cpus": config.loadgen_cpus,
                     "request_budget_ms": REQUEST_BUDGET_MS},
        "versions": {"from": v1, "to": v2},
        "architectures": {},
    }
    for architecture in config.archs:
        set_current(models_root / config.profile, v1)
        document["architectures"][architecture] = run_architecture(architecture, config, run_dir, models_root, v2, stop)
        for outcome in document["architectures"][architecture]["events"]:
            progress(f"{architecture}: {outcome['event']}: {outcome['failed']} failed, "
                     f"recovered after {outcome['recovery_s']:.1f} s")
    (run_dir / CHAOS_FILE).write_text(json.dumps(document, indent=2) + "\n")
    shutil.rmtree(models_root, ignore_errors=True)
    for path in write_report(run_dir, document):
        progress(f"wrote {path}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    return run_in_foreground(lambda stop: (run(config, stop), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
