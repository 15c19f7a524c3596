"""Running a sweep: one whole `make bench` run per knob value, the report rewritten after each."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import analysis, bench, knobs
from benchmarks.measure import runs, targets
from benchmarks.report import RESULTS_FILE
from benchmarks.reporting.output import CHARTS_DIR
from benchmarks.reporting.progress import Progress
from benchmarks.sweep.document import SWEEP_FILE, assemble, point_from_results, validate
from benchmarks.sweep.page import write_sweep_report
from lab.watchdog import StopRequested, StopSignals

progress = Progress("sweep")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def plan(
    knob_key: str | None, values_text: str | None
) -> tuple[knobs.Knob, list[str], list[Any], bool]:
    """The knob, the values as typed, as parsed, and whether they are numbers.

    Raises KnobError, saying why, when the knob cannot be swept or the values are unusable.
    """
    sweepable = [knob.key for knob in knobs.KNOBS if knob.sweep_values]
    if not knob_key:
        raise knobs.KnobError(f"set SWEEP to one of {', '.join(sweepable)}")
    knob = knobs.BY_KEY.get(knob_key.lower())
    if knob is None or not knob.sweep_values:
        raise knobs.KnobError(
            f"SWEEP={knob_key!r} is not a knob to sweep; choose from {', '.join(sweepable)}"
        )
    labels = values_text.split() if values_text and values_text.strip() else list(knob.sweep_values)
    if len(labels) < 2:
        raise knobs.KnobError(f"SWEEP_VALUES needs at least two values to compare, got {labels}")
    parsed = [knob.value_from(label) for label in labels]
    if len({repr(knobs.canonical(value)) for value in parsed}) != len(parsed):
        raise knobs.KnobError(f"SWEEP_VALUES repeats a value: {' '.join(labels)}")
    numeric = all(
        isinstance(value, (int, float)) and not isinstance(value, bool) for value in parsed
    )
    if numeric:
        # The x axis must run one way for crossovers to mean "above/below"; sort the values.
        order = sorted(range(len(parsed)), key=lambda i: parsed[i])
        labels, parsed = [labels[i] for i in order], [parsed[i] for i in order]
    return knob, labels, parsed, numeric


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sweep",
        description="`make bench-sweep`: vary one experiment "
        "knob, benchmark every value, say where the winner changes.",
        epilog="Other options are the bench's (python -m benchmarks.bench --help).",
    )
    parser.add_argument(
        "--knob", default=env.get("SWEEP") or None, help="the knob to vary (env SWEEP)"
    )
    parser.add_argument(
        "--values",
        default=env.get("SWEEP_VALUES") or None,
        help="values separated by spaces (env SWEEP_VALUES; default: the knob's own list)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        default=env.get("QUICK") == "0",
        help="full-length runs instead of QUICK ones (or QUICK=0)",
    )
    parser.add_argument(
        "--report", type=Path, metavar="SWEEP_DIR", help="only rebuild the report of a sweep"
    )
    return parser.parse_known_args(argv)


def run_sweep(
    knob: knobs.Knob,
    labels: list[str],
    parsed: list[Any],
    numeric: bool,
    bench_argv: list[str],
    stop: StopSignals,
) -> Path:
    """Every value's bench run, under reports/sweep-<time>-<knob>/ (and reports/latest-sweep)."""
    # Every value's configuration is parsed (and so validated) before the first run starts.
    configs = [
        bench.parse_config(
            [*bench_argv, knob.option, label, "--label", f"{knob.key}-{_safe(label)}"]
        )
        for label in labels
    ]
    for config in configs:
        targets.check(config)
    started = datetime.now(UTC)
    sweep_dir = runs.new_run_dir(configs[0].out, f"sweep-{runs.stamp()}-{knob.key}")
    (sweep_dir / "runs").mkdir()
    runs.link_latest(sweep_dir, "latest-sweep")
    progress(
        f"{knob.variable} over {', '.join(labels)}: {len(labels)} runs of "
        f"{', '.join(configs[0].archs)}{' (QUICK)' if configs[0].quick else ''}; "
        f"output in {sweep_dir}"
    )
    points: list[dict] = []
    clock = time.monotonic()
    try:
        _run_values(knob, labels, parsed, numeric, configs, sweep_dir, stop, started, points)
    except StopRequested:
        print()
        progress.note(
            f"stopped after {len(points)} of {len(labels)} values; what was measured is "
            f"in {sweep_dir}"
        )
        raise
    progress(f"done in {(time.monotonic() - clock) / 60:.1f} min")
    for path in sorted(sweep_dir.glob("sweep.*")) + sorted((sweep_dir / CHARTS_DIR).glob("*.png")):
        print(f"  {path}")
    return sweep_dir


def _run_values(
    knob: knobs.Knob,
    labels: list[str],
    parsed: list[Any],
    numeric: bool,
    configs: list[bench.BenchConfig],
    sweep_dir: Path,
    stop: StopSignals,
    started: datetime,
    points: list[dict],
) -> None:
    """One bench run per value; sweep.json and its report are rewritten after each."""
    first_run: Mapping[str, Any] | None = None
    floors: dict[str, dict | None] = {}  # bench.shared_floors
    clock = time.monotonic()
    for index, (label, value, config) in enumerate(zip(labels, parsed, configs, strict=True)):
        elapsed = time.monotonic() - clock
        left = elapsed / index * (len(labels) - index) / 60 if index else 0.0
        eta = f", about {left:.0f} min left" if index else ""
        progress(f"value {index + 1}/{len(labels)}: {knob.variable}={label}{eta}")
        config.out = sweep_dir / "runs"
        run_dir = bench.run(config, stop, link_latest=False, floors_cache=floors)
        results = runs.read_json(run_dir / RESULTS_FILE)
        first_run = first_run or results["run"]
        x = float(value) if numeric else float(index)
        points.append(point_from_results(label, x, str(run_dir.relative_to(sweep_dir)), results))
        complete = len(points) == len(labels)
        doc = assemble(
            knob, labels, numeric, points, first_run, started, datetime.now(UTC), complete
        )
        validate(doc)
        runs.write_json(sweep_dir / SWEEP_FILE, doc)
        write_sweep_report(sweep_dir)
        progress(f"{knob.variable}={label} done; sweep report updated")


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = parse_args(argv)
    if args.report:
        try:
            for path in write_sweep_report(args.report):
                print(path)
        except (FileNotFoundError, analysis.ResultsValidationError) as problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        return 0
    try:
        knob, labels, parsed, numeric = plan(args.knob, args.values)
    except knobs.KnobError as problem:
        progress.note(str(problem), error=True)
        return 2
    clash = [item for item in rest if item.split("=")[0] == knob.option]
    if clash:
        progress.note(
            f"{knob.option} is the swept knob; set its values with SWEEP_VALUES / --values",
            error=True,
        )
        return 2
    bench_argv = [*rest, *([] if args.full else ["--quick"])]
    stop = StopSignals()
    try:
        sweep_dir = run_sweep(knob, labels, parsed, numeric, bench_argv, stop)
    except StopRequested as reason:
        progress.note(f"{reason}: stopped every process")
        return 130
    except targets.TargetUnavailable as missing:
        progress.note(str(missing), error=True)
        return 3
    print("\n" + runs.read_json(sweep_dir / SWEEP_FILE)["conclusion"])
    return 0
