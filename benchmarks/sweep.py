"""`make bench-sweep`: vary one experiment knob, benchmark every value, say where the winner changes.

    make bench-sweep SWEEP=hop_delay_ms                     # 0 0.5 2 5 (the knob's default values)
    make bench-sweep SWEEP=cache_rate SWEEP_VALUES="0 0.9" CACHE=local
    python -m benchmarks.sweep --report reports/latest-sweep   # rebuild the report from sweep.json

SWEEP names a knob of `benchmarks/knobs.py` by its key (profile, hop_delay_ms, cache_rate,
batching, cache, replicas, ...); every other knob and bench variable keeps the value it has in the
environment, so ``CACHE=local SWEEP=cache_rate`` sweeps the repeat share with a cache on. Each
value is one whole benchmark run (`benchmarks.runner.run`), short (QUICK) unless QUICK=0, all
validated before the first one starts.

Output in reports/sweep-<timestamp>-<knob>/ (and reports/latest-sweep): the per-value runs under
runs/, each with its own results.json and report; sweep.json (schema: sweep.schema.json) with
the per-architecture capacity, latency, cost and hit rate at every value, the winner at each value
by capacity, provisioned and consumed cost, and the crossovers; sweep.md and a self-contained
sweep.html with charts. sweep.json and the report are rewritten after every value, so an
interrupted sweep (Ctrl-C stops every process, as `make bench` does) keeps what it measured.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema

from benchmarks import knobs, plots, report, runner, targets
from lab.supervisor import StopRequested, StopSignals
from servinglab.model.training import git_sha

SCHEMA_PATH = Path(__file__).with_name("sweep.schema.json")
SWEEP_FILE = "sweep.json"
SCHEMA_VERSION = 1
# Capacities are ladder steps rounded to two significant figures, and quick runs are noisy:
# architectures within this fraction of each other are called a tie, not a win.
TIE_TOLERANCE = 0.05


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    read: Callable[[Mapping[str, Any]], float | None]


METRICS = (
    Metric("capacity", "capacity", True, lambda arch: arch["capacity_rps"]),
    Metric("provisioned_cost", "provisioned cost", False, lambda arch: arch["cost_per_million_usd"]["provisioned"]),
    Metric("consumed_cost", "consumed cost", False, lambda arch: arch["cost_per_million_usd"]["consumed"]),
)


def progress(message: str) -> None:
    print(f"[sweep {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# --- Analysis (pure functions of the sweep document) ----------------------------------------------


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TIE_TOLERANCE * max(abs(a), abs(b))


def leader(figures: Mapping[str, float | None], higher_is_better: bool) -> dict[str, Any]:
    """The best architecture at one value: {"winner": name, "tied": []}, or a tie, or no data.

    An architecture without a figure (it met the SLO at no tested rate) loses to any with one.
    """
    known = {name: value for name, value in figures.items() if value is not None}
    if not known:
        return {"winner": None, "tied": []}
    ranked = sorted(known, key=lambda name: known[name], reverse=higher_is_better)
    best = ranked[0]
    tied = [name for name in ranked[1:] if _close(known[name], known[best])]
    return {"winner": None, "tied": [best, *tied]} if tied else {"winner": best, "tied": []}


def _margin(points: Sequence[Mapping[str, Any]], metric: Metric, index: int, first: str, second: str) -> float | None:
    """How far `first` is ahead of `second` at one point, positive when ahead."""
    archs = points[index]["architectures"]
    a = metric.read(archs[first]) if first in archs else None
    b = metric.read(archs[second]) if second in archs else None
    if a is None or b is None:
        return None
    return (a - b) if metric.higher_is_better else (b - a)


def _interpolate(points: Sequence[Mapping[str, Any]], metric: Metric, start: int, end: int,
                 first: str, second: str) -> float | None:
    """Where the lines of `first` and `second` cross between two points, by linear interpolation."""
    for k in range(start, end):
        d0, d1 = _margin(points, metric, k, first, second), _margin(points, metric, k + 1, first, second)
        if d0 is None or d1 is None or d0 == d1:
            continue
        if d0 >= 0 >= d1:
            x0, x1 = float(points[k]["x"]), float(points[k + 1]["x"])
            return round(x0 + (x1 - x0) * d0 / (d0 - d1), 6)
    return None


def crossovers(points: Sequence[Mapping[str, Any]], leaders: Sequence[Mapping[str, Any]], metric: Metric,
               numeric: bool) -> list[dict[str, Any]]:
    """Every change of winner between consecutive decided values (ties and gaps are skipped).

    For a numeric knob, `at` estimates the value where the two lines cross; for a categorical one
    (profile, cache, ...) there is nothing between the values, and `at` is null.
    """
    decided = [(index, entry["winner"]) for index, entry in enumerate(leaders) if entry["winner"]]
    found = []
    for (i, before), (j, after) in itertools.pairwise(decided):
        if before == after:
            continue
        found.append({
            "between_indexes": [i, j], "between": [points[i]["value"], points[j]["value"]],
            "from": before, "to": after,
            "at": _interpolate(points, metric, i, j, before, after) if numeric else None,
        })
    return found


def analyse(points: Sequence[Mapping[str, Any]], numeric: bool) -> dict[str, Any]:
    """Per metric: the leader at every value and the crossovers."""
    result = {}
    for metric in METRICS:
        leaders = [leader({name: metric.read(arch) for name, arch in point["architectures"].items()},
                          metric.higher_is_better) for point in points]
        result[metric.key] = {"higher_is_better": metric.higher_is_better, "leaders": leaders,
                              "crossovers": crossovers(points, leaders, metric, numeric)}
    return result


# --- The conclusion in words ----------------------------------------------------------------------


def _wins(name: str) -> str:
    # "the monolith wins", "microservices win": the plural reads naturally for the latter.
    return f"{report._display_name(name)} {'win' if name.endswith('s') else 'wins'}"


def _values_text(values: Sequence[str]) -> str:
    return report._join(list(values))


def _describe(doc: Mapping[str, Any], metric_key: str) -> str:
    variable = doc["knob"]["variable"]
    points = doc["points"]
    entry = doc["analysis"][metric_key]
    leaders, found = entry["leaders"], entry["crossovers"]
    winners = [item["winner"] for item in leaders]
    tie_values = [points[i]["value"] for i, item in enumerate(leaders) if item["tied"]]
    decided = [name for name in winners if name]
    tie_note = (f" (within {TIE_TOLERANCE:.0%} of each other, a tie, at {variable} = {_values_text(tie_values)})"
                if tie_values else "")
    if not decided:
        if tie_values:
            return f"the architectures are within {TIE_TOLERANCE:.0%} of each other at every value tested"
        return "no architecture met the SLO at any value tested"
    if len(set(decided)) == 1:
        qualifier = " or ties" if tie_values else ""
        return f"{_wins(decided[0])}{qualifier} at every value tested{tie_note}"
    numeric = doc["knob"]["numeric"]
    if numeric and len(found) == 1:
        crossing = found[0]
        below = [points[i]["value"] for i, name in enumerate(winners) if name == crossing["from"]]
        above = [points[i]["value"] for i, name in enumerate(winners) if name == crossing["to"]]
        text = (f"{_wins(crossing['from'])} when {variable} is {below[-1]} or less, "
                f"{_wins(crossing['to'])} when it is {above[0]} or more")
        if crossing["at"] is not None:
            text += f" (the lines cross near {variable} = {crossing['at']:.3g})"
        return text + tie_note
    by_winner: dict[str, list[str]] = {}
    for index, name in enumerate(winners):
        if name:
            by_winner.setdefault(name, []).append(points[index]["value"])
    parts = [f"{_wins(name)} at {variable} = {_values_text(values)}" for name, values in by_winner.items()]
    changes = [f"between {c['between'][0]} and {c['between'][1]} ({report._display_name(c['from'])} to "
               f"{report._display_name(c['to'])})" for c in found]
    return "; ".join(parts) + f"; the winner changes {_values_text(changes)}" + tie_note


def conclusion(doc: Mapping[str, Any]) -> str:
    """The sweep's verdict in words, by capacity and by cost, with where it holds."""
    points = doc["points"]
    variable = doc["knob"]["variable"]
    names = plots._sweep_architectures(doc)
    if not points:
        return "No value was measured."
    if len(names) == 1:
        name = names[0]
        capacities = [point["architectures"][name]["capacity_rps"] for point in points]
        shown = ", ".join(f"{report._rps(c)} at {p['value']}" for c, p in zip(capacities, points, strict=True))
        sentence = f"Only {report._display_name(name)} was measured; its capacity (req/s) by {variable}: {shown}."
    else:
        # Measures with the same winner at every value share one sentence, described by the first
        # of them (provisioned cost usually follows capacity: the budget is the same for all).
        groups: dict[str, list[Metric]] = {}
        for metric in METRICS:
            leaders = json.dumps(doc["analysis"][metric.key]["leaders"], sort_keys=True)
            groups.setdefault(leaders, []).append(metric)
        sentences = []
        for metrics in groups.values():
            labels = [metric.label for metric in metrics]
            sentences.append(f"By {report._join(labels)}, {_describe(doc, metrics[0].key)}.")
        sentence = " ".join(sentences)
        sentence = sentence[0].upper() + sentence[1:]
    tested = _values_text([point["value"] for point in points])
    caveat = "short QUICK runs, so confirm with QUICK=0 before relying on it" if doc["run"]["quick"] else ""
    where = f"This holds on this machine, for this workload, at {variable} = {tested}"
    return f"{sentence} {where}{' (' + caveat + ')' if caveat else ''}."


# --- Building the document ------------------------------------------------------------------------


def point_from_results(value: str, x: float, run_dir: str, results: Mapping[str, Any]) -> dict[str, Any]:
    """One sweep point from one bench run's results.json."""
    architectures = {}
    for name, arch in results["architectures"].items():
        cache = arch.get("cache") or {}
        architectures[name] = {
            "capacity_rps": arch["capacity_rps"],
            "p50_at_capacity_ms": arch["p50_at_capacity_ms"],
            "p99_at_capacity_ms": arch["p99_at_capacity_ms"],
            "cost_per_million_usd": dict(arch["cost_per_million_usd"]),
            "cpu_seconds_per_1k": arch["cpu_seconds_per_1k"],
            "peak_rss_mb_total": arch["peak_rss_mb_total"],
            "hit_rate": cache.get("hit_rate"),
            "hop_delay_method": (arch.get("applied") or {}).get("hop_delay_method"),
        }
    return {"value": value, "x": x, "run_dir": run_dir, "architectures": architectures}


def assemble(knob: knobs.Knob, labels: Sequence[str], numeric: bool, points: list[dict], first_run: Mapping[str, Any],
             started: datetime, finished: datetime, complete: bool) -> dict[str, Any]:
    base_knobs = {key: value for key, value in (first_run.get("knobs") or {}).items() if key != knob.key}
    run = {
        **{key: first_run[key] for key in ("quick", "repetitions", "slo_p99_ms", "target", "cpu_budget", "machine",
                                           "prices")},
        "label": f"sweep-{knob.key}",
        "started_at": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "finished_at": finished.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "duration_s": round((finished - started).total_seconds(), 1),
        "git_sha": git_sha(),
        "settings": {key: value for key, value in first_run["settings"].items()
                     if not (knob.key == "profile" and key == "model_profile")},
        "knobs": base_knobs,
        "complete": complete,
    }
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "knob": {"key": knob.key, "variable": knob.variable, "numeric": numeric, "values": list(labels)},
        "run": run,
        "points": points,
        "analysis": analyse(points, numeric),
    }
    doc["conclusion"] = conclusion(doc)
    return doc


def validation_errors(doc: Any) -> list[str]:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{error.json_path}: {error.message}"
            for error in sorted(validator.iter_errors(doc), key=lambda error: list(error.absolute_path))]


def validate(doc: Any) -> None:
    errors = validation_errors(doc)
    if errors:
        raise report.analysis.ResultsValidationError(errors)


# --- Report -----------------------------------------------------------------------------------------

CHARTS = (
    report.ChartSpec(
        "sweep_capacity_cost", "Capacity and cost against the knob", plots.sweep_chart,
        "Top: each architecture's capacity (requests/s within the SLO) at every value; higher is better. "
        "Bottom: cost per million predictions, solid for provisioned (the whole budget at capacity) and "
        "dotted for consumed (only what the requests used); lower is better. A vertical dashed line marks "
        "a crossover, where the winner changes; for a numeric knob it sits where the two lines cross. A "
        "gap in a line: that architecture met the SLO at no tested rate there.",
    ),
    report.ChartSpec(
        "sweep_latency", "Latency at capacity (and cache hit rate)", plots.sweep_latency_chart,
        "p99 latency at each architecture's capacity; the red dashed line is the SLO, so every point sits "
        "below it by definition, and a point close to it means the capacity was set by latency. When the "
        "servers reported cache lookups, the lower panel shows the hit rate.",
    ),
)


def _winner_cell(entry: Mapping[str, Any]) -> str:
    if entry["winner"]:
        return entry["winner"]
    return "tie: " + ", ".join(entry["tied"]) if entry["tied"] else report.MISSING


def build_blocks(doc: Mapping[str, Any]) -> list[report.Block]:
    knob = knobs.BY_KEY.get(doc["knob"]["key"])
    variable = doc["knob"]["variable"]
    run = doc["run"]
    points = doc["points"]
    blocks: list[report.Block] = [
        report.Heading(1, f"Sweep: {variable} = {', '.join(doc['knob']['values'])}"),
        report.Paragraph(doc["conclusion"], style="headline"),
        report.Paragraph(
            f"Each value is one whole benchmark run of {report._join(plots._sweep_architectures(doc))} at the same "
            f"CPU budget ({report._vcpus(run)}), {run['repetitions']} repetition(s) each"
            f"{', short QUICK steps' if run['quick'] else ''}; everything else stayed as listed under “Machine and "
            f"settings”. Capacity is the highest tested rate within a p99 SLO of {run['slo_p99_ms']:g} ms; an "
            f"architecture wins at a value when it is more than {TIE_TOLERANCE:.0%} ahead, otherwise it is a tie."),
    ]
    if not run.get("complete", True):
        blocks.append(report.Paragraph(
            f"This sweep was interrupted after {len(points)} of {len(doc['knob']['values'])} values: the "
            "conclusion covers only those.", style="headline"))
    if knob is not None:
        blocks += [report.Heading(2, f"What {variable} teaches"), report.Paragraph(knob.about)]
    methods = sorted({arch["hop_delay_method"] for point in points for arch in point["architectures"].values()
                      if arch["hop_delay_method"] not in (None, "none")})
    if methods:
        blocks.append(report.Paragraph(f"The hop delay was applied by: {', '.join(methods)} (netem: the kernel's "
                                       "network emulator; sleep: an in-process sleep before each call).",
                                       style="note"))
    blocks.append(report.Heading(2, "Charts"))
    for spec in CHARTS:
        blocks += [report.Heading(3, spec.title), report.Chart(spec, doc), report.Paragraph(spec.how_to_read,
                                                                                          style="note")]
    analysed = doc["analysis"]
    blocks += [
        report.Heading(2, "Winner at each value"),
        report.Table([variable, *[f"By {metric.label}" for metric in METRICS]],
                     [[point["value"], *[_winner_cell(analysed[metric.key]["leaders"][i]) for metric in METRICS]]
                      for i, point in enumerate(points)]),
    ]
    crossings = [f"By {metric.label}: {report._display_name(c['from'])} → {report._display_name(c['to'])} between "
                 f"{variable} = {c['between'][0]} and {c['between'][1]}"
                 + (f", lines crossing near {c['at']:.3g}" if c["at"] is not None else "")
                 for metric in METRICS for c in analysed[metric.key]["crossovers"]]
    blocks.append(report.Bullets(crossings) if crossings else report.Paragraph(
        "No crossover: the winner is the same (or tied) at every value tested, by every measure."))
    rows = []
    for point in points:
        for name, arch in point["architectures"].items():
            rows.append([point["value"], name, report._rps(arch["capacity_rps"]), report._ms(arch["p99_at_capacity_ms"]),
                         report._usd(arch["cost_per_million_usd"]["provisioned"]),
                         report._usd(arch["cost_per_million_usd"]["consumed"]),
                         report.MISSING if arch["hit_rate"] is None else f"{100 * arch['hit_rate']:.1f}%",
                         f"`{point['run_dir']}`"])
    blocks += [
        report.Heading(2, "Every value"),
        report.Table([variable, "Architecture", "Capacity (req/s)", "p99 at capacity (ms)", "Provisioned $ per million",
                      "Consumed $ per million", "Cache hit rate", "Run (report.html inside)"], rows,
                     numeric_columns={2, 3, 4, 5, 6}),
        report.Heading(2, "Caveats"),
        report.Bullets([
            ("Every value ran at a different time: slow drifts of the machine (heat, other load) fall between "
            "values, not between architectures, which ran back to back within each value."),
            "Capacities are ladder steps: a crossover's position is as coarse as the steps and the values tested.",
            *(["Quick runs: one short repetition per value, enough to see a trend, not to quote a number."]
              if run["quick"] else []),
            "The verdict is for this machine, this model and this load; other hardware can move the crossover.",
        ]),
        report.Heading(2, "Machine and settings"),
        *report._machine_blocks({"run": run}),
        *report._knob_blocks({"run": run}),
        report.Heading(2, "Prices"),
        *report._prices_blocks({"run": run}),
    ]
    return blocks


def write_sweep_report(sweep_dir: Path) -> list[Path]:
    """Validate sweep.json and write sweep.md, sweep.html and charts/*.png beside it."""
    doc = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
    validate(doc)
    written = report.write_chart_pngs(((spec, doc) for spec in CHARTS), sweep_dir / report.CHARTS_DIR)
    blocks = build_blocks(doc)
    markdown = sweep_dir / "sweep.md"
    markdown.write_text(report.render_markdown_blocks(blocks, report.CHARTS_DIR), encoding="utf-8")
    page = sweep_dir / "sweep.html"
    page.write_text(report.render_html_page(blocks, f"Sweep of {doc['knob']['variable']}", doc), encoding="utf-8")
    return [markdown, page, *written]


# --- Running ------------------------------------------------------------------------------------------


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def plan(knob_key: str | None, values_text: str | None) -> tuple[knobs.Knob, list[str], list[Any], bool]:
    """The knob, the values as typed, as parsed, and whether they are numbers; KnobError if unusable."""
    sweepable = [knob.key for knob in knobs.KNOBS if knob.sweep_values]
    if not knob_key:
        raise knobs.KnobError(f"set SWEEP to one of {', '.join(sweepable)}")
    knob = knobs.BY_KEY.get(knob_key.lower())
    if knob is None or not knob.sweep_values:
        raise knobs.KnobError(f"SWEEP={knob_key!r} is not a knob to sweep; choose from {', '.join(sweepable)}")
    labels = values_text.split() if values_text and values_text.strip() else list(knob.sweep_values)
    if len(labels) < 2:
        raise knobs.KnobError(f"SWEEP_VALUES needs at least two values to compare, got {labels}")
    parsed = [knob.value_from(label) for label in labels]
    if len({repr(knobs._canonical(value)) for value in parsed}) != len(parsed):
        raise knobs.KnobError(f"SWEEP_VALUES repeats a value: {' '.join(labels)}")
    numeric = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in parsed)
    if numeric:
        # The x axis must run one way for crossovers to mean "above/below"; sort the values.
        order = sorted(range(len(parsed)), key=lambda i: parsed[i])
        labels, parsed = [labels[i] for i in order], [parsed[i] for i in order]
    return knob, labels, parsed, numeric


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.splitlines()[0],
                                     epilog="Other options are the runner's (python -m benchmarks.runner --help).")
    parser.add_argument("--knob", default=env.get("SWEEP") or None, help="the knob to vary (env SWEEP)")
    parser.add_argument("--values", default=env.get("SWEEP_VALUES") or None,
                        help="values separated by spaces (env SWEEP_VALUES; default: the knob's own list)")
    parser.add_argument("--full", action="store_true", default=env.get("QUICK") == "0",
                        help="full-length runs instead of QUICK ones (or QUICK=0)")
    parser.add_argument("--report", type=Path, metavar="SWEEP_DIR", help="only rebuild the report of a sweep")
    return parser.parse_known_args(argv)


def run_sweep(knob: knobs.Knob, labels: list[str], parsed: list[Any], numeric: bool, bench_argv: list[str],
              stop: StopSignals) -> Path:
    # Every value's configuration is parsed (and so validated) before the first run starts.
    configs = [runner.parse_config([*bench_argv, knob.option, label, "--label", f"{knob.key}-{_safe(label)}"])
               for label in labels]
    for config in configs:
        targets.check(config)
    out = configs[0].out
    started = datetime.now(UTC)
    sweep_dir = out / f"sweep-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{knob.key}"
    (sweep_dir / "runs").mkdir(parents=True)
    latest = out / "latest-sweep"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(sweep_dir.name)
    progress(f"{knob.variable} over {', '.join(labels)}: {len(labels)} runs of {', '.join(configs[0].archs)}"
             f"{' (QUICK)' if configs[0].quick else ''}; output in {sweep_dir}")
    points: list[dict] = []
    clock = time.monotonic()
    try:
        _run_values(knob, labels, parsed, numeric, configs, sweep_dir, stop, started, points)
    except StopRequested:
        print(f"\n[sweep] stopped after {len(points)} of {len(labels)} values; what was measured is in {sweep_dir}",
              flush=True)
        raise
    progress(f"done in {(time.monotonic() - clock) / 60:.1f} min")
    for path in sorted(sweep_dir.glob("sweep.*")) + sorted((sweep_dir / report.CHARTS_DIR).glob("*.png")):
        print(f"  {path}")
    return sweep_dir


def _run_values(knob: knobs.Knob, labels: list[str], parsed: list[Any], numeric: bool, configs: list,
                sweep_dir: Path, stop: StopSignals, started: datetime, points: list[dict]) -> None:
    """One bench run per value; sweep.json and its report are rewritten after each."""
    first_run: Mapping[str, Any] | None = None
    clock = time.monotonic()
    for index, (label, value, config) in enumerate(zip(labels, parsed, configs, strict=True)):
        elapsed = time.monotonic() - clock
        eta = f", about {elapsed / index * (len(labels) - index) / 60:.0f} min left" if index else ""
        progress(f"value {index + 1}/{len(labels)}: {knob.variable}={label}{eta}")
        config.out = sweep_dir / "runs"
        run_dir = runner.run(config, stop, link_latest=False)
        results = json.loads((run_dir / report.RESULTS_FILE).read_text())
        first_run = first_run or results["run"]
        x = float(value) if numeric else float(index)
        points.append(point_from_results(label, x, str(run_dir.relative_to(sweep_dir)), results))
        complete = len(points) == len(labels)
        doc = assemble(knob, labels, numeric, points, first_run, started, datetime.now(UTC), complete)
        validate(doc)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(doc, indent=2) + "\n")
        write_sweep_report(sweep_dir)
        progress(f"{knob.variable}={label} done; sweep report updated")


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = parse_args(argv)
    if args.report:
        try:
            for path in write_sweep_report(args.report):
                print(path)
        except (FileNotFoundError, report.analysis.ResultsValidationError) as problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        return 0
    try:
        knob, labels, parsed, numeric = plan(args.knob, args.values)
    except knobs.KnobError as problem:
        print(f"[sweep] {problem}", file=sys.stderr)
        return 2
    clash = [item for item in rest if item.split("=")[0] == knob.option]
    if clash:
        print(f"[sweep] {knob.option} is the swept knob; set its values with SWEEP_VALUES / --values", file=sys.stderr)
        return 2
    bench_argv = [*rest, *([] if args.full else ["--quick"])]
    stop = StopSignals()
    try:
        sweep_dir = run_sweep(knob, labels, parsed, numeric, bench_argv, stop)
    except StopRequested as reason:
        print(f"[sweep] {reason}: stopped every process", flush=True)
        return 130
    except targets.TargetUnavailable as missing:
        print(f"[sweep] {missing}", file=sys.stderr, flush=True)
        return 3
    doc = json.loads((sweep_dir / SWEEP_FILE).read_text())
    print("\n" + doc["conclusion"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
