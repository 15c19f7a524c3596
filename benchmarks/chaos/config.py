"""What `make chaos` runs: its events per architecture, its settings and their defaults."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from benchmarks import slo_damage
from benchmarks.measure.machine import parse_cpus

DESCRIPTION = (
    "`make chaos`: faults, rollouts, overload and a lost cache on a timeline, under "
    "steady Locust load."
)
CHAOS_FILE = "chaos.json"
ROLLOUT_SEED = 43  # the second model version: another seed, another split, another model
REQUEST_BUDGET_MS = 1000
# The bench's probe length: shorter ones scatter (300 to 900 req/s seen for the monolith).
PROBE_SECONDS = 5.0
MAIN_EVENTS = {
    "microservices": [
        "crash",
        "recover",
        "replica crash",
        "replica recover",
        "rolling restart",
        "model rollout",
        "overload",
    ],
    "monolith": ["crash", "recover", "rolling restart", "model rollout", "overload"],
}
CACHE_EVENTS = ["cache loss", "cache back"]


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
    slo_ms: float = 50.0
    burst_factor: float = 3.0
    burst_seconds: float = 4.0
    cache_rate: float = 0.9
    probe_seconds: float = PROBE_SECONDS

    @property
    def window_s(self) -> int:
        return slo_damage.rolling_window_s(self.rate)


def parse_config(argv: list[str] | None = None) -> ChaosConfig:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=DESCRIPTION)
    parser.add_argument("--archs", default=env.get("ARCHS") or "monolith microservices")
    parser.add_argument(
        "--rate",
        type=float,
        default=float(env.get("RATE") or 40),
        help="requests per second, held constant (below both architectures' capacity)",
    )
    parser.add_argument("--users", type=int, default=int(env.get("USERS") or 8))
    parser.add_argument(
        "--phase-seconds",
        type=float,
        default=float(env.get("PHASE_SECONDS") or 8),
        help="seconds of steady load before, between and after the events",
    )
    parser.add_argument("--profile", default=env.get("PROFILE") or "linear")
    parser.add_argument("--sut-cpus", default=env.get("SUT_CPUS") or "0")
    parser.add_argument("--loadgen-cpus", default=env.get("LOADGEN_CPUS") or "1")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path(env.get("REPORTS") or "reports"))
    parser.add_argument(
        "--slo-ms",
        type=float,
        default=float(env.get("SLO_MS") or 50),
        help="the p99 latency SLO the damage is measured against (the bench's SLO_MS)",
    )
    parser.add_argument(
        "--burst-factor",
        type=float,
        default=float(env.get("BURST_FACTOR") or 3),
        help="the overload burst's rate, in multiples of the probed capacity",
    )
    parser.add_argument("--burst-seconds", type=float, default=float(env.get("BURST_SECONDS") or 4))
    parser.add_argument(
        "--probe-seconds",
        type=float,
        default=float(env.get("PROBE_SECONDS") or PROBE_SECONDS),
        help="the closed-loop probe whose throughput the burst multiplies (also a warm-up)",
    )
    parser.add_argument(
        "--cache-rate",
        type=float,
        default=float(env.get("CACHE_RATE") or 0.9),
        help="share of requests repeating earlier inputs in the CACHE=redis run",
    )
    args = parser.parse_args(argv)
    archs = args.archs.replace(",", " ").split()
    unknown = [a for a in archs if a not in MAIN_EVENTS]
    if unknown:
        parser.error(f"make chaos runs monolith and microservices, not {unknown}")
    if (
        min(
            args.rate,
            args.users,
            args.phase_seconds,
            args.slo_ms,
            args.burst_factor,
            args.burst_seconds,
            args.probe_seconds,
        )
        <= 0
    ):
        parser.error(
            "--rate, --users, --phase-seconds, --slo-ms, --burst-factor, --burst-seconds and "
            "--probe-seconds must be positive"
        )
    if not 0 < args.cache_rate <= 1:
        parser.error("--cache-rate must be within (0, 1]")
    return ChaosConfig(
        archs,
        args.rate,
        args.users,
        args.phase_seconds,
        args.profile,
        parse_cpus(args.sut_cpus),
        parse_cpus(args.loadgen_cpus),
        args.models,
        args.out,
        args.slo_ms,
        args.burst_factor,
        args.burst_seconds,
        args.cache_rate,
        args.probe_seconds,
    )
