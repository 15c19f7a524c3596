"""`make bench-container-tax`: the same architectures as local processes and as containers, side by side.

    python -m benchmarks.container_tax                      # QUICK runs, local and docker interleaved
    python -m benchmarks.container_tax --report DIR         # rebuild tax.md/tax.json of a finished one

What the containers cost, at the same CPU budget (SUT_CPUS: local processes pinned to it, the
containers sharing it as their cpuset with a CFS quota of the budget each). Two measurements:

1. *under load*: `make bench` with TARGET=local and TARGET=docker, alternated (L D L D ... with
   REPS pairs, each run both architectures), so a slow drift of the machine hits both targets
   alike. Per architecture and target: capacity within the SLO, p50/p99 at capacity, CPU-seconds
   per 1,000 requests (psutil over processes vs the engine's stats of the containers) and the
   median hop cost (Server-Timing `hop-*`: what a gRPC call cost on top of the stage's compute).
2. *idle*: one request at a time (`IDLE_REQUESTS`), no queueing: the latency a client sees and
   the cost of one hop, over loopback (local) vs over a veth pair and the bridge (docker).

Everything goes to reports/container-tax-<timestamp>/ (runs/ holds each bench run), tax.json and
tax.md; reports/latest-container-tax points at it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lab.run import EXAMPLE

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("local", "docker")
IDLE_REQUESTS = 300
IDLE_WARMUP = 50


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _hop_ms(stages: dict[str, float]) -> tuple[float | None, int]:
    hops = [value for key, value in stages.items() if key.startswith("hop_")]
    return (round(sum(hops), 3), len(hops)) if hops else (None, 0)


def summarise_runs(run_dirs: dict[str, list[Path]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{architecture: {target: figures}} from the results.json of every bench run, medians over runs."""
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    for target, dirs in run_dirs.items():
        documents = [json.loads((d / "results.json").read_text()) for d in dirs]
        architectures = sorted({a for doc in documents for a in doc["architectures"]})
        for architecture in architectures:
            entries = [
                doc["architectures"][architecture]
                for doc in documents
                if architecture in doc["architectures"]
            ]
            hops = [_hop_ms(entry.get("stages_ms") or {}) for entry in entries]
            figures.setdefault(architecture, {})[target] = {
                "runs": len(entries),
                "capacity_rps": _median([e["capacity_rps"] for e in entries]),
                "capacity_rps_each": [e["capacity_rps"] for e in entries],
                "p50_at_capacity_ms": _median([e["p50_at_capacity_ms"] for e in entries]),
                "p99_at_capacity_ms": _median([e["p99_at_capacity_ms"] for e in entries]),
                "cpu_ms_per_request": _median([e["cpu_seconds_per_1k"] for e in entries]),
                "hops": max((count for _, count in hops), default=0),
                "hop_ms_under_load": _median([total for total, _ in hops]),
            }
    return figures


def idle_probe(
    target: str, architecture: str, cpus: list[int], image: str | None, models: Path
) -> dict[str, Any]:
    """One request at a time: client latency and per-hop cost without queueing."""
    import requests

    def measure(url: str) -> dict[str, Any]:
        session = requests.Session()
        body = {"instances": [EXAMPLE]}
        for _ in range(IDLE_WARMUP):
            session.post(url + "/v1/predict", json=body, timeout=10).raise_for_status()
        latencies, hops = [], []
        for _ in range(IDLE_REQUESTS):
            started = time.perf_counter()
            response = session.post(url + "/v1/predict", json=body, timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
            timing = dict(
                part.strip().split(";dur=") for part in response.headers["Server-Timing"].split(",")
            )
            hop = [float(v) for k, v in timing.items() if k.startswith("hop-")]
            if hop:
                hops.append(sum(hop) / len(hop))
        return {
            "requests": IDLE_REQUESTS,
            "latency_p50_ms": round(statistics.median(latencies), 3),
            "per_hop_p50_ms": round(statistics.median(hops), 3) if hops else None,
        }

    if target == "local":
        from lab.launch import launch

        with launch(
            architecture, settings={"MODEL_DIR": models.resolve()}, cpus=cpus, log_dir=None
        ) as processes:
            return measure(processes.url)
    from lab import containers

    with containers.deploy(architecture, image, cpus=cpus, progress=lambda _: None) as deployment:
        return measure(deployment.url)


def _tax(local: float | None, docker: float | None) -> str:
    if local in (None, 0) or docker is None:
        return "-"
    return f"{(docker - local) / local:+.0%}"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def markdown(document: dict[str, Any]) -> str:
    meta = document["run"]
    lines = [
        "# The container tax: local processes vs containers",
        "",
        f"Same CPU budget: SUT_CPUS={meta['sut_cpus']} ({meta['vcpus']} vCPU); containers: "
        f"{meta['docker_limits']}. Image `{meta['image']}`. {meta['pairs']} local/docker pair(s) of "
        f"`make bench{' QUICK=1' if meta['quick'] else ''}`, alternated; medians over the runs. "
        f"Started {meta['started_at']}, {meta['duration_s']:.0f} s.",
        "",
        "## Under load (make bench)",
        "",
        "| Architecture | Target | Capacity (req/s) | p50 at capacity (ms) | p99 at capacity (ms) | "
        "CPU per request (ms) | Hop cost, all hops (ms) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for architecture, targets in document["under_load"].items():
        for target in TARGETS:
            f = targets.get(target)
            if not f:
                continue
            lines.append(
                f"| {architecture} | {target} | {_fmt(f['capacity_rps'], 0)} | "
                f"{_fmt(f['p50_at_capacity_ms'])} | {_fmt(f['p99_at_capacity_ms'])} | "
                f"{_fmt(f['cpu_ms_per_request'], 3)} | {_fmt(f['hop_ms_under_load'])} |"
            )
        local, docker = targets.get("local", {}), targets.get("docker", {})
        lines.append(
            f"| {architecture} | **tax** | {_tax(local.get('capacity_rps'), docker.get('capacity_rps'))} | "
            f"{_tax(local.get('p50_at_capacity_ms'), docker.get('p50_at_capacity_ms'))} | "
            f"{_tax(local.get('p99_at_capacity_ms'), docker.get('p99_at_capacity_ms'))} | "
            f"{_tax(local.get('cpu_ms_per_request'), docker.get('cpu_ms_per_request'))} | "
            f"{_tax(local.get('hop_ms_under_load'), docker.get('hop_ms_under_load'))} |"
        )
    idle = document.get("idle") or {}
    if idle:
        lines += [
            "",
            "## Idle, one request at a time",
            "",
            "| Architecture | Target | Client latency p50 (ms) | One hop p50 (ms) |",
            "|---|---|---:|---:|",
        ]
        for architecture, targets in idle.items():
            for target in TARGETS:
                f = targets.get(target)
                if f:
                    lines.append(
                        f"| {architecture} | {target} ({'loopback' if target == 'local' else 'bridge'}) | "
                        f"{_fmt(f['latency_p50_ms'])} | {_fmt(f['per_hop_p50_ms'], 3)} |"
                    )
    lines += [
        "",
        "Capacity: the highest target rate within p99 ≤ the SLO; CPU per request: CPU-seconds "
        "of the whole architecture per 1,000 requests ÷ 1,000 (psutil locally, the engine's stats "
        "for containers); hop cost: Server-Timing `hop-*`, what the gRPC calls cost on top of the "
        "stages' compute (serialisation, network stack, queueing). The docker client latency also "
        "includes the engine's port publishing on 127.0.0.1.",
        "",
    ]
    return "\n".join(lines)


def write(tax_dir: Path, document: dict[str, Any]) -> None:
    (tax_dir / "tax.json").write_text(json.dumps(document, indent=2) + "\n")
    (tax_dir / "tax.md").write_text(markdown(document))


def _run_dirs(tax_dir: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {target: [] for target in TARGETS}
    for results in sorted((tax_dir / "runs").glob("*/*/results.json")):
        if results.parent.is_symlink():  # each bench run's `latest` link: counted once, not twice
            continue
        target = results.parent.parent.name.split("-")[0]
        if target in found:
            found[target].append(results.parent)
    return found


def main(argv: list[str] | None = None) -> int:
    from benchmarks.measure import docker_target
    from benchmarks.measure.machine import parse_cpus
    from lab.watchdog import StopRequested, StopSignals

    env = os.environ
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--pairs",
        type=int,
        default=int(env.get("REPS") or 2),
        help="local/docker pairs of bench runs (env REPS)",
    )
    parser.add_argument("--full", action="store_true", help="full bench runs instead of QUICK ones")
    parser.add_argument(
        "--no-idle", action="store_true", help="skip the one-request-at-a-time probe"
    )
    parser.add_argument("--out", type=Path, default=Path(env.get("REPORTS") or "reports"))
    parser.add_argument(
        "--report", type=Path, help="rebuild tax.md/tax.json of a finished directory"
    )
    args = parser.parse_args(argv)
    if args.report:
        finished = json.loads((args.report / "tax.json").read_text())
        finished["under_load"] = summarise_runs(_run_dirs(args.report))
        write(args.report, finished)
        print(args.report / "tax.md")
        return 0
    archs = (env.get("ARCHS") or "monolith microservices").split()
    cpus = parse_cpus(env.get("SUT_CPUS") or "0")
    stop = StopSignals()
    # What docker_target.check reads: it checks the engine and the architectures, and builds the
    # image of this tree when IMAGE is not given; every docker run then uses that one image.
    config = SimpleNamespace(archs=archs, image=env.get("IMAGE") or None, sut_cpus=cpus)
    try:
        where = docker_target.check(config)
    except docker_target.DockerTargetError as problem:
        print(f"[container-tax] {problem}", file=sys.stderr)
        return 3
    started = datetime.now(UTC)
    clock = time.monotonic()
    tax_dir = args.out / f"container-tax-{started.strftime('%Y%m%d-%H%M%S')}"
    (tax_dir / "runs").mkdir(parents=True)
    limits = docker_target.run_settings(config)
    document: dict[str, Any] = {
        "run": {
            "started_at": started.isoformat(timespec="seconds"),
            "duration_s": 0.0,
            "pairs": args.pairs,
            "quick": not args.full,
            "archs": archs,
            "sut_cpus": cpus,
            "vcpus": len(cpus),
            "image": config.image,
            "docker_limits": limits["docker_cpu_limit"],
            "engine": where,
        },
        "under_load": {},
        "idle": {},
    }
    print(
        f"[container-tax] {tax_dir}: {args.pairs} pair(s) of local/docker bench runs of "
        f"{', '.join(archs)} on CPUs {cpus}; {where}",
        flush=True,
    )
    try:
        for pair in range(args.pairs):
            for target in TARGETS:
                out = tax_dir / "runs" / f"{target}-r{pair}"
                run_env = {
                    **env,
                    "TARGET": target,
                    "REPS": "1",
                    "LABEL": f"{target}-r{pair}",
                    "IMAGE": config.image,
                    "ARCHS": " ".join(archs),
                }
                if not args.full:
                    run_env["QUICK"] = "1"
                command = [sys.executable, "-m", "benchmarks.bench", "--out", str(out)]
                print(f"[container-tax] pair {pair + 1}/{args.pairs}: TARGET={target}", flush=True)
                result = subprocess.run(command, env=run_env, cwd=ROOT, check=False)
                if result.returncode != 0:
                    print(
                        f"[container-tax] the TARGET={target} run failed (exit {result.returncode}); "
                        f"its output is above, what it wrote is in {out}",
                        file=sys.stderr,
                    )
                    return result.returncode
                document["under_load"] = summarise_runs(_run_dirs(tax_dir))
                document["run"]["duration_s"] = round(time.monotonic() - clock, 1)
                write(tax_dir, document)
        if not args.no_idle:
            for architecture in archs:
                for target in TARGETS:
                    stop.check()
                    print(f"[container-tax] idle probe: {architecture} on {target}", flush=True)
                    document["idle"].setdefault(architecture, {})[target] = idle_probe(
                        target, architecture, cpus, config.image, ROOT / "models"
                    )
        document["run"]["duration_s"] = round(time.monotonic() - clock, 1)
        write(tax_dir, document)
    except StopRequested:
        print(f"\n[container-tax] stopped; what was measured is in {tax_dir}", file=sys.stderr)
        return 130
    latest = args.out / "latest-container-tax"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(tax_dir.name)
    print(markdown(document))
    print(f"[container-tax] {tax_dir / 'tax.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
