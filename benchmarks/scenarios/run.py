"""Running the scenarios: `make scenarios` / ``python -m benchmarks.scenarios``.

Every selected scenario is loaded and checked (its module exists, its inputs are good) before the
first one starts, so bad input costs nothing and leaves nothing running. Then each runs in turn in
``reports/scenarios-<time>/<name>/``; scenarios.json (validated by scenarios.schema.json) and the
report (scenarios.md, scenarios.html, charts/) are rewritten after each, so Ctrl-C keeps what was
measured: the scenario that was running contributes its last checkpoint, marked incomplete.

Exit codes: 0 done; 2 bad input (one line on stderr); 3 a target the bench cannot use; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench import add_budget_arguments
from benchmarks.measure import runs, targets
from benchmarks.measure.machine import machine_info, parse_cpus
from benchmarks.reporting.progress import Progress
from benchmarks.scenarios import base
from benchmarks.scenarios.document import (
    SCENARIOS_FILE,
    SCHEMA_VERSION,
    ScenariosValidationError,
    validate,
    write_scenarios_report,
)
from lab.watchdog import StopRequested, StopSignals
from servinglab.model.training import git_sha

progress = Progress("scenarios")
DEFAULT_TRACE = Path(__file__).resolve().parent / "traces" / "two-peak-day.csv"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scenarios",
        description="`make scenarios`: measured scenarios in which microservices may win.",
    )
    parser.add_argument(
        "--scenarios",
        default=env.get("SCENARIOS") or "",
        help=f"names separated by spaces or commas (env SCENARIOS; default all: "
        f"{' '.join(base.REGISTRY)})",
    )
    add_budget_arguments(parser, env)
    parser.add_argument(
        "--prices", type=Path, default=Path(env["PRICES"]) if env.get("PRICES") else None
    )
    parser.add_argument("--models", type=Path, default=Path(env.get("MODELS") or "models"))
    parser.add_argument(
        "--trace",
        type=Path,
        default=Path(env["TRACE"]) if env.get("TRACE") else DEFAULT_TRACE,
        help="daily load trace, CSV hour,rps (env TRACE; default the two-peak day)",
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=float(env.get("STEP_SECONDS") or 0) or None,
        help="length of every load step and probe (env STEP_SECONDS; default each scenario's)",
    )
    parser.add_argument("--out", type=Path, default=Path(env.get("REPORTS") or "reports"))
    parser.add_argument(
        "--report", type=Path, metavar="SCENARIOS_DIR", help="only rebuild the report of a run"
    )
    return parser.parse_args(argv)


def _context(args: argparse.Namespace, run_dir: Path, name: str) -> base.ScenarioContext:
    return base.ScenarioContext(
        quick=args.quick,
        slo_ms=args.slo_ms,
        sut_cpus=parse_cpus(args.sut_cpus),
        loadgen_cpus=parse_cpus(args.loadgen_cpus),
        sut_memory_gib=args.sut_memory_gib,
        run_dir=run_dir / name,
        models=args.models,
        prices=args.prices,
        trace=args.trace,
        progress=Progress(f"scenario {name}"),
        step_seconds=args.step_seconds,
    )


def _run_info(
    args: argparse.Namespace, names: list[str], started: datetime, complete: bool
) -> dict[str, Any]:
    from benchmarks import analysis

    sut = parse_cpus(args.sut_cpus)
    return {
        "started_at": runs.utc_timestamp(started),
        "finished_at": runs.utc_timestamp(datetime.now(UTC)),
        "git_sha": git_sha(),
        "quick": args.quick,
        "slo_p99_ms": args.slo_ms,
        "sut_cpus": sut,
        "loadgen_cpus": parse_cpus(args.loadgen_cpus),
        "sut_vcpus": len(sut),
        "sut_memory_gib": args.sut_memory_gib,
        "trace": str(args.trace),
        "requested": names,
        "complete": complete,
        "machine": machine_info(),
        "prices": analysis.load_prices(args.prices),
    }


def document(
    args: argparse.Namespace,
    names: list[str],
    started: datetime,
    results: list[tuple[base.Scenario, base.ScenarioResult]],
    complete: bool,
) -> dict[str, Any]:
    """scenarios.json: the run's settings and every scenario's result, in the issue's order."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run": _run_info(args, names, started, complete),
        "scenarios": [
            {
                "number": scenario.number,
                "title": scenario.title,
                "question": scenario.question,
                **result.as_dict(),
            }
            for scenario, result in results
        ],
    }


def write_run(run_dir: Path, doc: dict[str, Any]) -> None:
    """Validate `doc`, write it as scenarios.json and rebuild the report beside it."""
    doc = json.loads(json.dumps(doc))  # as it will be read back: tuples become arrays
    validate(doc)
    runs.write_json(run_dir / SCENARIOS_FILE, doc)
    write_scenarios_report(run_dir)


def prepare(args: argparse.Namespace) -> list[base.Scenario]:
    """The selected scenarios, each loaded and its inputs checked; ScenarioError (one line) on
    the first problem, before anything starts."""
    parse_cpus(args.sut_cpus), parse_cpus(args.loadgen_cpus)  # ValueError on nonsense
    scenarios = [base.load(name) for name in base.select(args.scenarios)]
    if not args.models.is_dir():
        raise base.ScenarioError(f"models folder {args.models} does not exist (run `make models`)")
    for scenario in scenarios:
        if scenario.check is not None:
            scenario.check(_context(args, Path("."), scenario.name))
    return scenarios


def run_scenarios(
    args: argparse.Namespace, scenarios: list[base.Scenario], stop: StopSignals
) -> Path:
    """Run the prepared scenarios in order; scenarios.json and the report after each."""
    names = [scenario.name for scenario in scenarios]
    started = datetime.now(UTC)
    run_dir = runs.new_run_dir(args.out, f"scenarios-{runs.stamp()}")
    runs.link_latest(run_dir, "latest-scenarios")
    estimate = sum(scenario.estimate_s[0 if args.quick else 1] for scenario in scenarios)
    progress(
        f"{len(scenarios)} scenario(s): {', '.join(names)}{' (QUICK)' if args.quick else ''}; "
        f"about {estimate / 60:.0f} min; SUT on CPUs {args.sut_cpus}, Locust on "
        f"{args.loadgen_cpus}, SLO p99 {args.slo_ms:g} ms; output in {run_dir}"
    )
    results: list[tuple[base.Scenario, base.ScenarioResult]] = []
    clock = time.monotonic()
    for index, scenario in enumerate(scenarios):
        context = _context(args, run_dir, scenario.name)
        context.stop = stop
        context.run_dir.mkdir(parents=True, exist_ok=True)
        latest: dict[str, base.ScenarioResult] = {}  # the scenario's last checkpoint
        context.on_checkpoint = lambda result, latest=latest: latest.update(result=result)
        progress(f"scenario {scenario.number} ({index + 1}/{len(scenarios)}): {scenario.title}")
        begun = time.monotonic()
        try:
            result = scenario.run(context)
        except (StopRequested, base.ScenarioError):
            if "result" in latest:
                partial = latest["result"]
                partial.complete = False
                partial.seconds = round(time.monotonic() - begun, 1)
                results.append((scenario, partial))
            write_run(run_dir, document(args, names, started, results, complete=False))
            raise
        result.seconds = round(time.monotonic() - begun, 1)
        results.append((scenario, result))
        write_run(run_dir, document(args, names, started, results, complete=False))
        progress(f"scenario {scenario.number} done in {result.seconds:.0f}s; report updated")
    write_run(run_dir, document(args, names, started, results, complete=True))
    progress(f"done in {(time.monotonic() - clock) / 60:.1f} min")
    for path in sorted(run_dir.glob("scenarios.*")):
        print(f"  {path}")
    return run_dir


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        try:
            for path in write_scenarios_report(args.report):
                print(path)
        except (FileNotFoundError, ScenariosValidationError) as problem:
            progress.note(f"error: {problem}", error=True)
            return 2
        return 0
    try:
        scenarios = prepare(args)
    except (base.ScenarioError, ValueError) as problem:  # ValueError: SUT_CPUS that do not parse
        progress.note(f"error: {problem}", error=True)
        return 2
    except KeyboardInterrupt:  # nothing started yet
        return 130
    stop = StopSignals()
    try:
        run_dir = run_scenarios(args, scenarios, stop)
    except base.ScenarioError as problem:
        progress.note(f"error: {problem}", error=True)
        return 2
    except StopRequested as reason:
        print()
        progress.note(f"{reason}: stopped every process; what was measured is in the report")
        return 130
    except targets.TargetUnavailable as missing:
        progress.note(str(missing), error=True)
        return 3
    from benchmarks.scenarios.document import conclusion

    print("\n" + conclusion(runs.read_json(run_dir / SCENARIOS_FILE)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
