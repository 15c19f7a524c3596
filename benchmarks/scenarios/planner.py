"""Scenario 1, "scale only what is hot": price replica sets as Kubernetes would, then check the plan.

A Kubernetes bill is what the replicas *request*: each replica asks for CPU and memory, and the
cluster reserves both whether they are used or not. The planner takes what one bench run measured
on this machine, per role (the monolith; the gateway and each stage):

- CPU-seconds per request: the role's share of the processes' CPU times the architecture's CPU per
  request at capacity (`analysis`), so hops and serialisation are charged where they are spent;
- memory per replica: PSS when `benchmarks.measure.memory` can sample it (pages shared between
  processes counted once), else peak RSS (which counts shared pages in every process);
- how busy a CPU may run and still meet the SLO: capacity at the SLO times CPU per request over
  the vCPUs, per architecture.

For a target rate it then picks, per role independently, the replica size (CPU request from
`REPLICA_SIZES`; memory request the measured memory plus headroom, rounded up to 64 MiB) and count
that cost least: the monolith scales whole copies of everything, microservices each stage alone.
It prices every rate up to the trace's peak and every hour of the daily trace (scaled hour by
hour, and sized for the peak all day), and finds the rate, if any, where the cheaper side changes.

Then it checks itself: each architecture's plan for the highest rate that fits this machine's
budget runs through the bench (``REPLICAS=`` for the stages; a replica of a gunicorn app
is its default 2 workers, so N replicas become 2N workers on the one node), and the report gives
planned against measured capacity. The pure part (`plan`, `cost_curve`, `day_costs`,
`load_trace`, `profiles_from_results`) is tested on recorded inputs.

One module on purpose: the pure planning arithmetic and the scenario that measures its inputs and
checks its plans read together; the scenario part starts at its banner.
"""

from __future__ import annotations

import csv
import importlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import analysis
from benchmarks.reporting import text
from benchmarks.scenarios import base

PROFILE = "forest"  # inference is the hot stage: milliseconds per call, the rest microseconds
REPLICA_SIZES = (0.25, 0.5, 1.0, 2.0)  # CPU requests a replica may ask for, vCPU
MEMORY_HEADROOM = 1.25  # memory request = measured x this, so a spike does not OOM-kill the pod
MEMORY_QUANTUM_MIB = 64
HOURS_PER_MONTH = 730
GUNICORN_WORKERS_PER_REPLICA = 2  # the servers' default LAB_HTTP_WORKERS
# A role's process names as the bench's sampler records them: "gunicorn-gateway/worker-2",
# "inference", "inference-2" -> "gateway", "inference".
_ROLE_NAME = re.compile(r"^(?:gunicorn-)?(?P<role>[a-z]+)")


@dataclass(frozen=True)
class Role:
    """One deployable unit as measured: CPU per request and memory per replica."""

    name: str
    cpu_seconds_per_request: float
    memory_mib: float


@dataclass(frozen=True)
class ArchitectureProfile:
    """An architecture's roles and the CPU utilisation at which it still met the SLO."""

    name: str
    roles: tuple[Role, ...]
    utilisation: float  # 0..1: busy fraction of the budget at capacity
    memory_source: str = "rss"  # "pss" or "rss"


@dataclass(frozen=True)
class RolePlan:
    role: str
    replicas: int
    cpu_request: float  # vCPU per replica
    memory_request_mib: int  # per replica
    capacity_rps: float  # of all the replicas at the SLO-safe utilisation
    cost_per_hour: float  # USD, all replicas


@dataclass(frozen=True)
class Plan:
    architecture: str
    target_rps: float
    roles: tuple[RolePlan, ...]

    @property
    def cost_per_hour(self) -> float:
        return sum(role.cost_per_hour for role in self.roles)

    @property
    def cpu_requested(self) -> float:
        return sum(role.replicas * role.cpu_request for role in self.roles)

    @property
    def memory_requested_gib(self) -> float:
        return sum(role.replicas * role.memory_request_mib for role in self.roles) / 1024

    def describe(self) -> str:
        return ", ".join(
            f"{role.role} {role.replicas} x ({role.cpu_request:g} vCPU, "
            f"{role.memory_request_mib} MiB)"
            for role in self.roles
        )


# --- Inputs ---------------------------------------------------------------------------------


def load_trace(path: Path) -> list[tuple[int, float]]:
    """(hour, rps) rows of a daily trace CSV (``hour,rps``; ``#`` lines are comments).

    Raises ScenarioError, naming the file and the line, when it is missing or malformed.
    """
    if not path.is_file():
        raise base.ScenarioError(f"load trace {path} does not exist")
    lines = [
        (number, line)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines or [cell.strip() for cell in lines[0][1].split(",")] != ["hour", "rps"]:
        raise base.ScenarioError(f"load trace {path}: the header must be 'hour,rps'")
    trace: list[tuple[int, float]] = []
    for number, cells in zip(
        (number for number, _ in lines[1:]),
        csv.reader(line for _, line in lines[1:]),
        strict=True,
    ):
        try:
            hour, rps = int(cells[0]), float(cells[1])
            if len(cells) != 2:
                raise ValueError
        except (ValueError, IndexError):
            raise base.ScenarioError(
                f"load trace {path} line {number}: expected 'hour,rps', got {','.join(cells)!r}"
            ) from None
        if not 0 <= hour <= 23 or not math.isfinite(rps) or rps < 0:
            raise base.ScenarioError(
                f"load trace {path} line {number}: hour must be 0-23 and rps a number >= 0"
            )
        trace.append((hour, rps))
    hours = [hour for hour, _ in trace]
    if sorted(hours) != list(range(24)):
        raise base.ScenarioError(f"load trace {path}: needs each hour 0-23 exactly once")
    return sorted(trace)


def role_of(process_name: str) -> str:
    match = _ROLE_NAME.match(process_name)
    return match.group("role") if match else process_name


def profiles_from_results(
    results: Mapping[str, Any], memory_mib: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, ArchitectureProfile]:
    """Each architecture's roles from a bench results.json; `memory_mib` (architecture -> role
    -> MiB per replica, e.g. PSS) replaces the recorded peak RSS when given."""
    vcpus = results["run"]["cpu_budget"]["sut_vcpus"]
    profiles = {}
    for name, arch in results["architectures"].items():
        per_request = (arch.get("cpu_seconds_per_1k") or 0.0) / 1000
        capacity = arch.get("capacity_rps")
        if not per_request or not capacity:
            raise base.ScenarioError(
                f"{name} met the SLO at no measured rate: nothing to plan from"
            )
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        replicas: dict[str, set[str]] = {}
        for process in arch["processes"]:
            role = role_of(process["name"])
            cpu[role] = cpu.get(role, 0.0) + process["cpu_seconds"]
            rss[role] = rss.get(role, 0.0) + process["peak_rss_mb"]
            replicas.setdefault(role, set()).add(process["name"].split("/")[0])
        total = sum(cpu.values()) or 1.0
        measured = (memory_mib or {}).get(name)
        roles = tuple(
            Role(
                role,
                per_request * cpu[role] / total,
                (measured or {}).get(role) or rss[role] / len(replicas[role]),
            )
            for role in sorted(cpu)
        )
        profiles[name] = ArchitectureProfile(
            name,
            roles,
            min(capacity * per_request / vcpus, 1.0),
            "pss" if measured else "rss",
        )
    return profiles


# --- The planner ------------------------------------------------------------------------------


def memory_request_mib(measured_mib: float) -> int:
    quantum = MEMORY_QUANTUM_MIB
    return max(quantum, math.ceil(measured_mib * MEMORY_HEADROOM / quantum) * quantum)


def plan_role(
    role: Role, target_rps: float, utilisation: float, prices: Mapping[str, float]
) -> RolePlan:
    """The cheapest count and size of `role`'s replicas that serve `target_rps` (at least one)."""
    memory = memory_request_mib(role.memory_mib)
    best: RolePlan | None = None
    for size in REPLICA_SIZES:
        per_replica = size * utilisation / role.cpu_seconds_per_request
        count = max(1, math.ceil(target_rps / per_replica - 1e-9))
        hourly = count * (size * prices["vcpu_hour_usd"] + memory / 1024 * prices["gib_hour_usd"])
        candidate = RolePlan(role.name, count, size, memory, count * per_replica, hourly)
        # Ties go to fewer, larger replicas: fewer processes to run for the same bill.
        if best is None or hourly < best.cost_per_hour - 1e-12:
            best = candidate
    assert best is not None
    return best


def plan(profile: ArchitectureProfile, target_rps: float, prices: Mapping[str, float]) -> Plan:
    """The cheapest replica set of `profile` for `target_rps` at the SLO."""
    return Plan(
        profile.name,
        target_rps,
        tuple(plan_role(role, target_rps, profile.utilisation, prices) for role in profile.roles),
    )


def cost_curve(
    profile: ArchitectureProfile, rates: Sequence[float], prices: Mapping[str, float]
) -> list[float]:
    """Cost per hour of the cheapest plan at each rate."""
    return [plan(profile, rate, prices).cost_per_hour for rate in rates]


def day_costs(
    profile: ArchitectureProfile, trace: Sequence[tuple[int, float]], prices: Mapping[str, float]
) -> dict[str, Any]:
    """Over the daily trace: cost per hour when replicas follow the load hour by hour, the day's
    total that way, and the day's total sized for the peak all day."""
    hourly = [plan(profile, rps, prices).cost_per_hour for _, rps in trace]
    peak = max(rps for _, rps in trace)
    return {
        "hourly_usd": hourly,
        "autoscaled_day_usd": sum(hourly),
        "peak_sized_day_usd": 24 * plan(profile, peak, prices).cost_per_hour,
    }


def machine_plan(profile: ArchitectureProfile, prices: Mapping[str, float], vcpus: float) -> Plan:
    """The plan for the highest whole rate whose replicas request at most `vcpus` (at least the
    plan for 1 req/s): what this machine can run to check the planner."""
    if plan(profile, 1.0, prices).cpu_requested > vcpus:
        return plan(profile, 1.0, prices)
    low, high = 1.0, 2.0
    while plan(profile, high, prices).cpu_requested <= vcpus and high < 1e6:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (
            (middle, high)
            if plan(profile, middle, prices).cpu_requested <= vcpus
            else (
                low,
                middle,
            )
        )
    return plan(profile, low, prices)


def launch_knobs(planned: Plan) -> tuple[dict[str, str], dict[str, Any]]:
    """How a plan runs on one node: bench knobs (REPLICAS of the stages) and server settings
    (a gunicorn app's replicas as workers: `GUNICORN_WORKERS_PER_REPLICA` each)."""
    replicas = {
        role.role: role.replicas
        for role in planned.roles
        if role.role not in ("monolith", "gateway") and role.replicas > 1
    }
    http = [role.replicas for role in planned.roles if role.role in ("monolith", "gateway")]
    knobs = {"REPLICAS": ",".join(f"{name}={count}" for name, count in replicas.items())}
    settings = {"HTTP_WORKERS": GUNICORN_WORKERS_PER_REPLICA * http[0]} if http else {}
    return knobs, settings


def planned_capacity(profile: ArchitectureProfile, vcpus: float) -> float:
    """What the planner expects `profile` to serve at the SLO when all its replicas share
    `vcpus` (as on this machine: one cpuset for every process)."""
    per_request = sum(role.cpu_seconds_per_request for role in profile.roles)
    return vcpus * profile.utilisation / per_request


# --- The scenario ---------------------------------------------------------------------------


def _memory_by_role(context: base.ScenarioContext) -> dict[str, dict[str, float]] | None:
    """PSS per replica of every role, from `benchmarks.measure.memory` when it exists."""
    try:  # scenario 2's sampler; optional here
        memory = importlib.import_module("benchmarks.measure.memory")
    except ModuleNotFoundError:
        return None
    sample = getattr(memory, "pss_by_role", None)
    if sample is None:
        return None
    measured: dict[str, dict[str, float]] = {}
    for architecture in base.ARCHITECTURES:
        context.check_stop()
        context.progress(f"PSS of every {architecture} process, at rest after a warm-up")
        measured[architecture] = sample(
            architecture,
            settings={"MODEL_DIR": context.models.resolve(), "MODEL_PROFILE": PROFILE},
            cpus=context.sut_cpus,
            log_dir=context.run_dir / "logs" / f"pss-{architecture}",
            check_stop=context.check_stop,
        )
    return measured


def _note_disturbance(result: base.ScenarioResult, steps: list) -> None:
    note = base.disturbed_note(steps)
    if note:
        result.notes.append(note)


def _rates(peak: float) -> list[float]:
    top = max(peak, 10.0)
    step = max(1.0, round(top / 60))
    return [float(rate) for rate in range(int(step), int(top) + 1, int(step))]


def check(context: base.ScenarioContext) -> None:
    base.require_profile(context.models, PROFILE)
    load_trace(context.trace)


def run(context: base.ScenarioContext) -> base.ScenarioResult:
    trace = load_trace(context.trace)
    prices = analysis.load_prices(context.prices)
    result = base.ScenarioResult(
        "planner",
        budget=f"{context.vcpus} vCPU measured here; plans priced at "
        f"{prices['vcpu_hour_usd']} USD/vCPU-h, {prices['gib_hour_usd']} USD/GiB-h",
    )
    context.progress(f"measuring both architectures with PROFILE={PROFILE} (the inputs)")
    measured_dir, measured = context.bench("planner-inputs", base.ARCHITECTURES, profile=PROFILE)
    result.raw["inputs_run"] = str(measured_dir.relative_to(context.run_dir))
    bench_steps = list(base.bench_steps(measured))
    memory = _memory_by_role(context)
    try:
        profiles = profiles_from_results(measured, memory)
    except base.ScenarioError as unplannable:
        # Measured, but nothing to plan from (on a busy machine p99 can miss the SLO at every
        # rate): reported as such rather than failing the other scenarios.
        result.summary = f"No plan: {unplannable}; rerun on a quieter machine or a looser SLO_MS."
        result.rows.append(
            base.row(
                "capacity at the SLO (planner inputs)",
                "req/s",
                "higher",
                measured["architectures"]["monolith"]["capacity_rps"],
                measured["architectures"]["microservices"]["capacity_rps"],
                "the planner needs a rate at which each architecture met the SLO",
                "n/a",
                noise=base.SINGLE_RUN_NOISE,
            )
        )
        _note_disturbance(result, bench_steps)
        result.complete = True
        return result
    result.raw["profiles"] = {name: asdict(profile) for name, profile in profiles.items()}
    if memory is None:
        result.notes.append(
            "Memory per replica is peak RSS (benchmarks.measure.memory has no PSS sampler here): "
            "RSS counts pages shared between gunicorn workers in each of them, so the monolith's "
            "and the gateway's memory requests are overstated."
        )

    rates = _rates(max(rps for _, rps in trace))
    mono_curve = cost_curve(profiles["monolith"], rates, prices)
    micro_curve = cost_curve(profiles["microservices"], rates, prices)
    changes = base.crossovers(rates, mono_curve, micro_curve, "lower", base.SINGLE_RUN_NOISE)
    days = {name: day_costs(profile, trace, prices) for name, profile in profiles.items()}
    peak = max(rps for _, rps in trace)
    peak_plans = {name: plan(profile, peak, prices) for name, profile in profiles.items()}
    result.raw.update(
        {
            "rates_rps": rates,
            "cost_per_hour_usd": {"monolith": mono_curve, "microservices": micro_curve},
            "crossovers": changes,
            "day": days,
            "peak_plans": {name: asdict(p) for name, p in peak_plans.items()},
        }
    )
    crossing = base.describe_crossovers(changes, rates, "req/s")
    hot = max(profiles["microservices"].roles, key=lambda role: role.cpu_seconds_per_request)
    result.rows += [
        base.row(
            f"cost at the trace's peak ({peak:g} req/s), per month",
            "USD",
            "lower",
            peak_plans["monolith"].cost_per_hour * HOURS_PER_MONTH,
            peak_plans["microservices"].cost_per_hour * HOURS_PER_MONTH,
            f"microservices scale only {hot.name} (the hot stage) but every request also pays "
            "the gateway and three gRPC hops in CPU, and every stage replica its own memory",
            crossing,
            noise=base.SINGLE_RUN_NOISE,
        ),
        base.row(
            "cost of the daily trace, replicas following the load hour by hour",
            "USD/day",
            "lower",
            days["monolith"]["autoscaled_day_usd"],
            days["microservices"]["autoscaled_day_usd"],
            "at night both shrink to their smallest replica set, and microservices' smallest "
            "set is four deployments, the monolith's one",
            crossing,
            noise=base.SINGLE_RUN_NOISE,
        ),
    ]
    result.configurations = {
        name: f"at the peak: {p.describe()} (CPU utilisation at the SLO "
        f"{profiles[name].utilisation:.0%}, memory from {profiles[name].memory_source.upper()})"
        for name, p in peak_plans.items()
    }
    result.charts += [
        base.ChartData(
            "cost-vs-rate",
            "Cheapest replica set, cost per hour",
            "target rate, req/s",
            "USD per hour",
            "Each line is the cheapest set of replicas (CPU and memory requests) that serves the "
            "rate at the SLO; steps are where one more replica is needed. Lower is cheaper.",
            [
                base.Series("monolith", rates, list(mono_curve)),
                base.Series("microservices", rates, list(micro_curve)),
            ],
            kind="step",
            marks=[(change["at"], f"{change['to']} cheaper") for change in changes],
        ),
        base.ChartData(
            "day",
            "The two-peak day, replicas following the load",
            "hour of the day",
            "USD per hour",
            "Cost of each hour of the daily trace when replicas are scaled to that hour's rate.",
            [
                base.Series("monolith", list(range(24)), list(days["monolith"]["hourly_usd"])),
                base.Series(
                    "microservices", list(range(24)), list(days["microservices"]["hourly_usd"])
                ),
            ],
            kind="step",
        ),
    ]
    context.checkpoint(result)

    vcpus = float(context.vcpus)
    checks = {name: machine_plan(profile, prices, vcpus) for name, profile in profiles.items()}
    result.raw["checks"] = {}
    measured_capacity: dict[str, float | None] = {}
    for name, planned in checks.items():
        context.check_stop()
        knobs, settings = launch_knobs(planned)
        context.progress(
            f"checking the plan for {name} at {planned.target_rps:g} req/s: {planned.describe()}"
        )
        check_dir, checked = context.bench(
            f"planner-check-{name}",
            [name],
            profile=PROFILE,
            knobs=knobs,
            settings=settings,
        )
        arch = checked["architectures"][name]
        bench_steps += base.bench_steps(checked)
        capacity = arch["capacity_rps"]
        measured_capacity[name] = capacity
        expected = planned_capacity(profiles[name], vcpus)
        within_at_rate = any(
            level["within_slo"] and level["target_rps"] >= planned.target_rps
            for level in arch["levels"]
        )
        result.raw["checks"][name] = {
            "run": str(check_dir.relative_to(context.run_dir)),
            "plan": asdict(planned),
            "knobs": knobs,
            "settings": settings,
            "planned_rps": planned.target_rps,
            "planned_capacity_rps": expected,
            "measured_capacity_rps": capacity,
            "met_slo_at_planned_rate": within_at_rate or (capacity or 0) >= planned.target_rps,
            "plan_error": None if not capacity else capacity / expected - 1,
        }
        context.checkpoint(result)
    for name, item in result.raw["checks"].items():
        error = item["plan_error"]
        launched = {**item["knobs"], **item["settings"]}
        how = ", ".join(f"{key}={value}" for key, value in launched.items() if value)
        result.notes.append(
            f"Plan check, {name}: planned for {item['planned_rps']:g} req/s, run on {vcpus:g} "
            f"vCPU with {how or 'the defaults'}; the planner expected a capacity of "
            f"{item['planned_capacity_rps']:.0f} req/s, the bench measured "
            f"{text.rps(item['measured_capacity_rps'])} req/s"
            + ("" if error is None else f" (plan off by {error:+.0%})")
            + ("; it met" if item["met_slo_at_planned_rate"] else "; it did NOT meet")
            + " the SLO at the planned rate."
        )
    result.charts.append(
        base.ChartData(
            "plan-check",
            "Planner check on this machine: capacity at the SLO",
            "",
            "req/s",
            "For each architecture's plan at the highest rate this machine's budget fits: the "
            "rate it was planned for, the capacity the planner expected on this budget, and the "
            "capacity the bench measured. Measured below planned means the plan was optimistic.",
            [
                base.Series(
                    "planned rate",
                    [0.0, 1.0],
                    [checks[name].target_rps for name in base.ARCHITECTURES],
                ),
                base.Series(
                    "planner's capacity",
                    [0.0, 1.0],
                    [
                        result.raw["checks"][name]["planned_capacity_rps"]
                        for name in base.ARCHITECTURES
                    ],
                ),
                base.Series(
                    "measured capacity",
                    [0.0, 1.0],
                    [measured_capacity[name] for name in base.ARCHITECTURES],
                ),
            ],
            kind="bar",
            categories=list(base.ARCHITECTURES),
        )
    )
    result.rows.append(
        base.row(
            "capacity on this machine's budget, planned configuration (plan check)",
            "req/s",
            "higher",
            measured_capacity["monolith"],
            measured_capacity["microservices"],
            "on one shared cpuset the stage replicas buy no CPU, so capacity is the budget over "
            "CPU per request, and the hops make microservices' CPU per request larger",
            "n/a (one rate each)",
            noise=base.SINGLE_RUN_NOISE,
        )
    )
    _note_disturbance(result, bench_steps)
    cheaper = result.rows[0].winner
    result.summary = (
        f"At the trace's peak the cheapest replica set is {cheaper if cheaper != 'tie' else 'a tie'}"
        f" ({result.rows[0].by_how_much}); over the day {result.rows[1].winner} "
        f"({result.rows[1].by_how_much}). Crossover: {crossing}."
    )
    result.complete = True
    return result


SCENARIO = base.Scenario(
    name="planner",
    number=1,
    title="Scale only what is hot",
    question="With a heavy model (the forest), inference is the hot stage. If each replica is "
    "billed for what it requests, is it cheaper to scale whole monolith copies or only the "
    "inference service? Does the answer change with the rate, or over a day with two peaks?",
    run=run,
    estimate_s=(160.0, 600.0),
    check=check,
)
