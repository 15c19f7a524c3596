"""The scenario interface: what every scenario of `make scenarios` is given and what it returns.

A scenario is one measured claim about when splitting the pipeline pays ("scale only what is hot",
"one model server batching for everyone", ...). Each lives in its own module of this package and
exposes ``SCENARIO``, a `Scenario`: a name, a number, a title, the question it answers and
``run(context) -> ScenarioResult``.

- `ScenarioContext` carries the run's settings (QUICK, the SLO, the CPU budget, the prices, the
  models folder), the scenario's own folder, the progress printer, the stop flag, and
  `ScenarioContext.bench` (one `make bench` run through the bench kit: the one load driver);
- `ScenarioResult` holds the table rows (`Row`: metric | monolith | microservices | winner | by
  how much | why | crossover), the best configuration of each side as stated, the chart data
  (`ChartData`: series of points, drawn by `benchmarks.scenarios.document`; a scenario never draws),
  notes, and its raw measurements;
- `judge` decides a row's winner from two figures and their intervals: a difference inside the
  noise is a tie, never a win;
- `REGISTRY` maps names to modules, imported lazily by `load`, so a scenario whose module is
  missing gives one clear error instead of breaking the others.

A scenario that can fail on bad input (an untrained profile, a malformed trace) raises
`ScenarioError` with a one-line message. While it measures it calls `ScenarioContext.checkpoint`
with what it has so far: on Ctrl-C the runner writes the last checkpoint, marked incomplete.

One module on purpose: it is the whole kit a scenario imports (result types, the context, the
registry, the row and crossover helpers), so a scenario needs nothing else.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmarks.reporting.progress import Progress
from lab.watchdog import StopRequested, StopSignals

ARCHITECTURES = ("monolith", "microservices")
WINNERS = ("monolith", "microservices", "tie", "n/a")

# Two figures closer than this (relative to the larger) are a tie even when the run gave no
# interval: the bench's own tie band (the sweep's verdict uses the same 5%).
TIE_FRACTION = 0.05
# A figure from one QUICK run with no repetition to give an interval: two identical QUICK benches
# here differed by 25-40% (issue #13), so differences below this are called ties, not wins.
SINGLE_RUN_NOISE = 0.25


class ScenarioError(Exception):
    """Bad input or an impossible measurement: the runner prints the message on one line, exits 2."""


@dataclass(frozen=True)
class Interval:
    """The spread of a figure over repetitions: its lowest and highest value."""

    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval | None:
        finite = [value for value in values if value is not None and math.isfinite(value)]
        return cls(min(finite), max(finite)) if finite else None

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


@dataclass
class Row:
    """One line of the scenario table. `winner` and `by_how_much` come from `judge`."""

    metric: str  # "cost per month at the day's peak", "capacity at p99 <= 50 ms"
    unit: str  # "req/s", "USD/month", "s", ...
    better: Literal["higher", "lower"]
    monolith: float | None
    microservices: float | None
    winner: str  # one of WINNERS
    by_how_much: str  # "2.3x", "+18%", "within the noise"
    why: str  # one sentence: the mechanism, not the number
    crossover: str = "none"  # "at about 180 req/s", "none in 20-400 req/s", "tie (within noise)"
    monolith_interval: Interval | None = None
    microservices_interval: Interval | None = None


def judge(
    better: Literal["higher", "lower"],
    monolith: float | None,
    microservices: float | None,
    monolith_interval: Interval | None = None,
    microservices_interval: Interval | None = None,
    noise: float = TIE_FRACTION,
) -> tuple[str, str]:
    """(winner, by how much) of two figures; a tie when their intervals overlap or when they
    differ by at most `noise` of the larger (5% by default; `SINGLE_RUN_NOISE` for one run)."""
    if monolith is None or microservices is None:
        return "n/a", "a side has no figure (e.g. met the SLO at no tested rate)"
    if (
        monolith_interval is not None
        and microservices_interval is not None
        and monolith_interval.overlaps(microservices_interval)
    ):
        return "tie", "within the noise (intervals overlap)"
    largest = max(abs(monolith), abs(microservices))
    if largest == 0 or abs(monolith - microservices) <= noise * largest:
        return "tie", f"within the noise ({noise:.0%})"
    monolith_wins = (monolith > microservices) == (better == "higher")
    best, worst = (monolith, microservices) if monolith_wins else (microservices, monolith)
    winner = "monolith" if monolith_wins else "microservices"
    if worst == 0 or best == 0:
        return winner, "only one side is above zero"
    factor = best / worst if better == "higher" else worst / best
    return winner, f"{factor:.2f}x" if factor < 10 else f"{factor:.0f}x"


def row(
    metric: str,
    unit: str,
    better: Literal["higher", "lower"],
    monolith: float | None,
    microservices: float | None,
    why: str,
    crossover: str = "none",
    monolith_interval: Interval | None = None,
    microservices_interval: Interval | None = None,
    noise: float = TIE_FRACTION,
) -> Row:
    """A `Row` whose winner and margin are decided by `judge`: the one way rows are made."""
    winner, by = judge(
        better, monolith, microservices, monolith_interval, microservices_interval, noise
    )
    return Row(
        metric,
        unit,
        better,
        monolith,
        microservices,
        winner,
        by,
        why,
        crossover,
        monolith_interval,
        microservices_interval,
    )


def crossovers(
    xs: Sequence[float],
    monolith: Sequence[float | None],
    microservices: Sequence[float | None],
    better: Literal["higher", "lower"],
    noise: float = TIE_FRACTION,
) -> list[dict[str, Any]]:
    """Where the leader changes along `xs`: [{"at": x, "to": winner}], at the first x of the new
    lead. Points where a side is missing, or the two differ by at most `noise`, are ties: they
    never start or end a lead, so a crossover inside the noise is not reported."""
    changes: list[dict[str, Any]] = []
    leader: str | None = None
    for x, mono, micro in zip(xs, monolith, microservices, strict=True):
        winner, _ = judge(better, mono, micro, noise=noise)
        if winner not in ARCHITECTURES:
            continue
        if leader is not None and winner != leader:
            changes.append({"at": x, "to": winner})
        leader = winner
    return changes


def describe_crossovers(
    changes: Sequence[Mapping[str, Any]], xs: Sequence[float], unit: str
) -> str:
    """ "microservices lead from 180 req/s", or "none in 20-400 req/s"."""
    if not xs:
        return "not measured"
    if not changes:
        return f"none in {min(xs):g}-{max(xs):g} {unit}"
    return "; ".join(f"{change['to']} lead from {change['at']:g} {unit}" for change in changes)


DISTURBED_PREFIX = "Other work shared the CPUs"


def disturbed_note(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """A note when load steps were disturbed by other work on the benchmark's CPUs (a step's
    ``disturbed`` flag, or the bench's ``interference.disturbed``), else None."""

    def disturbed(step: Mapping[str, Any]) -> bool:
        return bool(step.get("disturbed") or (step.get("interference") or {}).get("disturbed"))

    count = sum(disturbed(step) for step in steps)
    if not count:
        return None
    return (
        f"{DISTURBED_PREFIX} in {count} of {len(steps)} load steps: latencies read high and "
        "capacities low; rerun on a quiet machine before quoting a figure."
    )


def bench_steps(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every load step of a bench results.json, all architectures."""
    return [level for arch in results["architectures"].values() for level in arch["levels"]]


@dataclass
class Series:
    """One line (or set of bars) of a chart; `low`/`high`, when given, shade its interval."""

    name: str  # "monolith", "microservices", or any label
    x: list[float]
    y: list[float | None]
    low: list[float | None] | None = None
    high: list[float | None] | None = None


@dataclass
class ChartData:
    """What a scenario wants drawn. `kind`: "line" (x numeric), "step" (a trace over the day),
    "bar" (grouped bars, x = positions of `categories`). `marks` are vertical lines (x, label),
    `hlines` horizontal ones (y, label), e.g. the SLO."""

    key: str  # file name of the PNG, unique within the scenario
    title: str
    x_label: str
    y_label: str
    how_to_read: str
    series: list[Series]
    kind: Literal["line", "step", "bar"] = "line"
    categories: list[str] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    hlines: list[tuple[float, str]] = field(default_factory=list)  # horizontal lines (y, label)
    log_y: bool = False


@dataclass
class ScenarioResult:
    """What one scenario measured and concluded."""

    name: str
    rows: list[Row] = field(default_factory=list)
    # Best configuration of each side, stated: {"monolith": "2 workers x 8 threads, batch 32"}.
    configurations: dict[str, str] = field(default_factory=dict)
    budget: str = ""  # the equal budget both sides got, in words: "1 vCPU, 2 GiB"
    summary: str = ""  # the scenario's conclusion in one or two sentences, as measured
    charts: list[ChartData] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats: loaded machine, RSS not PSS, ...
    raw: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable measurements
    complete: bool = True
    seconds: float = 0.0  # wall time, set by the runner

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScenarioContext:
    """Everything a scenario may use; built once per run by the CLI (`benchmarks.scenarios.run`)."""

    quick: bool
    slo_ms: float
    sut_cpus: list[int]
    loadgen_cpus: list[int]
    sut_memory_gib: float
    run_dir: Path  # this scenario's own folder, reports/scenarios-<time>/<name>/
    models: Path
    prices: Path | None
    trace: Path  # the daily load trace (scenario 1)
    progress: Progress
    stop: StopSignals | None = None
    # Length of one load step and of a closed-loop probe, seconds; None: each scenario's own
    # (STEP_SECONDS=, or a test's very short run, sets it for all of them).
    step_seconds: float | None = None
    # Extra `python -m benchmarks.bench` options for every bench run.
    bench_argv: list[str] = field(default_factory=list)
    on_checkpoint: Callable[[ScenarioResult], None] | None = None
    floors: dict[str, dict | None] = field(default_factory=dict)  # bench.shared_floors

    @property
    def vcpus(self) -> int:
        """The CPU budget of the system under test, in vCPUs."""
        return len(self.sut_cpus)

    def check_stop(self) -> None:
        """Raise `StopRequested` if Ctrl-C arrived: call between measurements."""
        if self.stop is not None:
            self.stop.check()

    def checkpoint(self, result: ScenarioResult) -> None:
        """Hand over what was measured so far; on Ctrl-C it is what the report shows."""
        result.complete = False
        if self.on_checkpoint is not None:
            self.on_checkpoint(result)

    def bench_config(
        self,
        label: str,
        archs: Sequence[str],
        *,
        knobs: Mapping[str, str] | None = None,
        sut_cpus: Sequence[int] | None = None,
        profile: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Any:
        """The `benchmarks.bench.BenchConfig` of a run with the scenarios' settings, writing under
        ``run_dir/runs/``: for `bench`, or for `benchmarks.measure.targets.open_target` when a
        scenario drives the kit itself. `knobs` are bench variables by name
        ({"REPLICAS": "inference=2"}); `settings` are server settings on top ({"HTTP_WORKERS":
        1}). Every knob is passed, at its default unless set here, so a knob left in the
        caller's environment (`make scenarios REPLICAS=...`) cannot leak into a scenario."""
        from benchmarks import bench
        from benchmarks import knobs as bench_knobs

        argv = [
            *(["--quick"] if self.quick else []),
            "--slo-ms",
            f"{self.slo_ms:g}",
            "--sut-cpus",
            ",".join(str(cpu) for cpu in (sut_cpus or self.sut_cpus)),
            "--loadgen-cpus",
            ",".join(str(cpu) for cpu in self.loadgen_cpus),
            "--sut-memory-gib",
            f"{self.sut_memory_gib:g}",
            "--models",
            str(self.models),
            "--out",
            str(self.run_dir / "runs"),
            "--label",
            label,
            *(["--prices", str(self.prices)] if self.prices else []),
            *self.bench_argv,
            *(
                [
                    "--step-seconds",
                    f"{self.step_seconds:g}",
                    "--probe-seconds",
                    f"{self.step_seconds:g}",
                ]
                if self.step_seconds
                else []
            ),
        ]
        chosen = {
            "ARCHS": " ".join(archs),
            **({"PROFILE": profile} if profile else {}),
            **{name.upper(): value for name, value in (knobs or {}).items()},
        }
        unknown = sorted(set(chosen) - {knob.variable for knob in bench_knobs.KNOBS})
        if unknown:
            raise ScenarioError(f"not a bench knob: {', '.join(unknown)}")
        for knob in bench_knobs.KNOBS:
            argv += [knob.option, str(chosen.get(knob.variable, ""))]
        try:
            config = bench.parse_config(argv)
        except SystemExit as refused:  # argparse already printed the one-line reason
            raise ScenarioError(f"bench refused the options {' '.join(argv)}") from refused
        config.extra_settings = dict(settings or {})
        return config

    def bench(self, label: str, archs: Sequence[str], **options: Any) -> tuple[Path, dict]:
        """One whole bench run (QUICK when the scenarios are; options as `bench_config`): its
        folder and its results.json."""
        from benchmarks import bench
        from benchmarks.measure import runs
        from benchmarks.report import RESULTS_FILE

        config = self.bench_config(label, archs, **options)
        self.check_stop()
        run_dir = bench.run(config, self.stop, link_latest=False, floors_cache=self.floors)
        return run_dir, runs.read_json(run_dir / RESULTS_FILE)


def require_profile(models: Path, profile: str) -> None:
    """ScenarioError unless `profile` is trained in `models` (``models/<profile>/CURRENT``)."""
    if not (models / profile / "CURRENT").is_file():
        raise ScenarioError(
            f"model profile {profile!r} is not trained in {models}/ "
            f"(run `make train PROFILE={profile}`)"
        )


@dataclass(frozen=True)
class Scenario:
    """A registered scenario: what the runner lists, orders and calls."""

    name: str  # what SCENARIOS= takes: "planner", "memory", "batching", "ship"
    number: int  # the numbering, the order of the report
    title: str  # "Scale only what is hot"
    question: str  # what a student should predict before running it
    run: Callable[[ScenarioContext], ScenarioResult]
    # Rough wall time in seconds, (quick, default): for the ETA in the progress lines.
    estimate_s: tuple[float, float] = (60.0, 240.0)
    # Called for every selected scenario before any runs: raise ScenarioError on bad input
    # (a missing trace, an untrained profile) so nothing starts that cannot finish.
    check: Callable[[ScenarioContext], None] | None = None


# Name -> module exposing SCENARIO. Imported only when selected, so one missing module (being
# written, or removed) is one clear error and not a broken `make scenarios`.
REGISTRY: dict[str, str] = {
    "planner": "benchmarks.scenarios.planner",
    "memory": "benchmarks.scenarios.memory",
    "batching": "benchmarks.scenarios.batching",
    "ship": "benchmarks.scenarios.ship",
}


def load(name: str) -> Scenario:
    """The registered scenario `name`; ScenarioError (one line) if unknown or not importable."""
    module_name = REGISTRY.get(name)
    if module_name is None:
        raise ScenarioError(
            f"unknown scenario {name!r}; choose from {', '.join(REGISTRY)} (SCENARIOS=...)"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name != module_name:
            raise
        raise ScenarioError(
            f"scenario {name!r} is registered but its module {module_name} is missing"
        ) from missing
    scenario = getattr(module, "SCENARIO", None)
    if not isinstance(scenario, Scenario):
        raise ScenarioError(f"{module_name} does not define SCENARIO = Scenario(...)")
    return scenario


def select(names: str | None) -> list[str]:
    """The scenario names a SCENARIOS= value asks for, in the report's order; all when empty."""
    if not names or not names.strip():
        return list(REGISTRY)
    wanted = names.replace(",", " ").split()
    unknown = [name for name in wanted if name not in REGISTRY]
    if unknown:
        raise ScenarioError(
            f"unknown scenario {unknown[0]!r}; choose from {', '.join(REGISTRY)} (SCENARIOS=...)"
        )
    return [name for name in REGISTRY if name in wanted]


__all__ = [
    "ARCHITECTURES",
    "REGISTRY",
    "SINGLE_RUN_NOISE",
    "ChartData",
    "Interval",
    "Row",
    "Scenario",
    "ScenarioContext",
    "ScenarioError",
    "ScenarioResult",
    "Series",
    "StopRequested",
    "bench_steps",
    "crossovers",
    "describe_crossovers",
    "disturbed_note",
    "judge",
    "load",
    "require_profile",
    "row",
    "select",
]
