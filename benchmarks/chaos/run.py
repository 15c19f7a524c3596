"""Running `make chaos`: per architecture, a timeline of events, then one that loses its cache."""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import slo_damage
from benchmarks.chaos.config import (
    CHAOS_FILE,
    REQUEST_BUDGET_MS,
    ROLLOUT_SEED,
    ChaosConfig,
    parse_config,
)
from benchmarks.chaos.events import (
    cache_events,
    microservices_events,
    monolith_events,
    overload_action,
)
from benchmarks.chaos.page import write_report
from benchmarks.chaos.timeline import progress, run_timeline
from benchmarks.measure import loadgen, runs
from benchmarks.measure.machine import machine_info
from lab.launch import launch
from lab.supervisor import Supervisor
from lab.watchdog import StopSignals, run_in_foreground
from servinglab.model.artifact import set_current
from servinglab.model.training import train


def prepare_models(config: ChaosConfig, run_dir: Path) -> tuple[Path, str, str]:
    """A private models root with the served version (v1, CURRENT) and a retrained one (v2)."""
    root = run_dir / "models"
    source = config.models / config.profile
    if not (source / "CURRENT").exists():
        raise SystemExit(
            f"no trained {config.profile} model in {config.models}: run "
            f"`make train PROFILE={config.profile}`"
        )
    shutil.copytree(source, root / config.profile)
    v1 = (root / config.profile / "CURRENT").read_text().strip()
    progress(f"training the version to roll out ({config.profile}, seed {ROLLOUT_SEED})")
    v2 = train(config.profile, ROLLOUT_SEED, root).name
    set_current(root / config.profile, v1)
    return root, v1, v2


def run_architecture(
    architecture: str,
    config: ChaosConfig,
    run_dir: Path,
    models_root: Path,
    v2: str,
    stop: StopSignals,
) -> dict:
    """The main timeline of one architecture (its events, the overload last), then its cache's."""
    profile_dir = models_root / config.profile
    settings = {
        "MODEL_DIR": models_root,
        "MODEL_PROFILE": config.profile,
        "REQUEST_BUDGET_MS": REQUEST_BUDGET_MS,
    }
    replicas = {"inference": 2} if architecture == "microservices" else None
    log_dir = run_dir / "logs" / architecture
    progress(f"{architecture}: starting")
    with (
        launch(
            architecture,
            settings=settings,
            cpus=config.sut_cpus,
            log_dir=log_dir,
            replicas=replicas,
        ) as deployment,
        Supervisor(log_dir=log_dir, cpus=config.loadgen_cpus) as supervisor,
    ):
        # Closed-loop throughput for a few seconds (also a warm-up): what the burst multiplies.
        capacity = loadgen.probe(
            supervisor,
            deployment.url,
            config.probe_seconds,
            run_dir / "locust" / f"{architecture}-probe",
            run_dir / loadgen.RECORDS_FILE,
            stop,
        ).closed_loop_rps
        progress(
            f"{architecture}: probe {capacity:.0f} req/s closed-loop (the overload offers "
            f"{config.burst_factor:g} x that)"
        )
        builder = microservices_events if architecture == "microservices" else monolith_events
        overload = overload_action(
            supervisor, deployment.url, run_dir, architecture, config, capacity, stop
        )
        # The overload comes last, with a double phase after it to see the queue drain.
        result = run_timeline(
            architecture,
            deployment,
            supervisor,
            config,
            run_dir,
            builder(deployment, profile_dir, v2, stop, overload),
            stop,
            final_phases=2.0,
        )
    result["capacity_rps"] = round(capacity, 1)
    result["state"] = run_cache_timeline(architecture, config, run_dir, models_root, stop)
    return result


def run_cache_timeline(
    architecture: str, config: ChaosConfig, run_dir: Path, models_root: Path, stop: StopSignals
) -> dict:
    """CACHE=redis under a repeating workload: kill redis-server, start it again, watch the hit
    rate."""
    settings = {
        "MODEL_DIR": models_root,
        "MODEL_PROFILE": config.profile,
        "REQUEST_BUDGET_MS": REQUEST_BUDGET_MS,
        "CACHE": "redis",
    }
    log_dir = run_dir / "logs" / f"{architecture}-cache"
    label = f"{architecture} CACHE=redis"
    progress(f"{label}: starting")
    with (
        launch(
            architecture, settings=settings, cpus=config.sut_cpus, log_dir=log_dir
        ) as deployment,
        Supervisor(log_dir=log_dir, cpus=config.loadgen_cpus) as supervisor,
    ):
        if deployment.redis is None:
            raise RuntimeError("CACHE=redis started no redis-server to kill")
        result = run_timeline(
            label,
            deployment,
            supervisor,
            config,
            run_dir,
            cache_events(deployment),
            stop,
            {"LAB_BENCH_CACHE_RATE": str(config.cache_rate), "LAB_BENCH_SEED": "11"},
            scrape_cache=True,
            final_phases=2.0,
        )
    result["cache_rate"] = config.cache_rate
    return result


def run(config: ChaosConfig, stop: StopSignals) -> Path:
    """Every architecture's timelines, chaos.json, and the report; returns the run's folder."""
    started = datetime.now(UTC)
    run_dir = runs.new_run_dir(config.out, f"chaos-{runs.stamp(started)}")
    loadgen.write_records(run_dir)
    models_root, v1, v2 = prepare_models(config, run_dir)
    document: dict[str, Any] = {
        "kind": "chaos",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "rate": config.rate,
            "users": config.users,
            "phase_seconds": config.phase_seconds,
            "profile": config.profile,
            "sut_cpus": config.sut_cpus,
            "loadgen_cpus": config.loadgen_cpus,
            "request_budget_ms": REQUEST_BUDGET_MS,
            "slo_ms": config.slo_ms,
            "window_s": config.window_s,
            "sustained_s": slo_damage.SUSTAINED_S,
            "burst_factor": config.burst_factor,
            "burst_seconds": config.burst_seconds,
            "cache_rate": config.cache_rate,
            "probe_seconds": config.probe_seconds,
        },
        "versions": {"from": v1, "to": v2},
        "architectures": {},
    }
    for architecture in config.archs:
        set_current(models_root / config.profile, v1)
        result = run_architecture(architecture, config, run_dir, models_root, v2, stop)
        document["architectures"][architecture] = result
        for outcome in result["events"] + result["state"]["events"]:
            back = outcome["back_within_slo_s"]
            progress(
                f"{architecture}: {outcome['event']}: {outcome['failed']} failed, "
                f"{outcome['seconds_above_slo']} s above the SLO, back within it "
                + ("not yet" if back is None else f"after {back:.1f} s")
            )
    runs.write_json(run_dir / CHAOS_FILE, document)
    shutil.rmtree(models_root, ignore_errors=True)
    for path in write_report(run_dir, document):
        progress(f"wrote {path}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    return run_in_foreground(lambda stop: (run(config, stop), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
