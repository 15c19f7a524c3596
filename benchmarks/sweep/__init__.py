"""`make bench-sweep`: vary one experiment knob, benchmark every value, say where the winner
changes.

    make bench-sweep SWEEP=hop_delay_ms                     # 0 0.5 2 5 (the knob's default values)
    make bench-sweep SWEEP=cache_rate SWEEP_VALUES="0 0.9" CACHE=local
    python -m benchmarks.sweep --report reports/latest-sweep   # rebuild the report from sweep.json

SWEEP names a knob of `benchmarks/knobs.py` by its key (profile, hop_delay_ms, cache_rate,
batching, cache, replicas, ...); every other knob and bench variable keeps the value it has in the
environment, so ``CACHE=local SWEEP=cache_rate`` sweeps the repeat share with a cache on. Each
value is one whole benchmark run (`benchmarks.bench.run`), short (QUICK) unless QUICK=0, all
validated before the first one starts.

Output in reports/sweep-<timestamp>-<knob>/ (and reports/latest-sweep): the per-value runs under
runs/, each with its own results.json and report; sweep.json (schema: sweep.schema.json) with
the per-architecture capacity, latency, cost and hit rate at every value, the winner at each value
by capacity, provisioned and consumed cost, and the crossovers; sweep.md and a self-contained
sweep.html with charts. sweep.json and the report are rewritten after every value, so an
interrupted sweep (Ctrl-C stops every process, as `make bench` does) keeps what it measured.

- `verdict`: pure functions of the points: `leader`, `crossovers`, `analyse`, `conclusion`;
- `document`: sweep.json: `point_from_results`, `assemble`, `validate`;
- `plots` and `page`: the report's charts and the report (`write_sweep_report`);
- `run`: `plan` (the values to run), `run_sweep`, `main`.
"""

from benchmarks.sweep.document import (
    SWEEP_FILE,
    assemble,
    point_from_results,
    validate,
    validation_errors,
)
from benchmarks.sweep.page import CHARTS, build_document, write_sweep_report
from benchmarks.sweep.run import main, plan, run_sweep
from benchmarks.sweep.verdict import METRICS, TIE_TOLERANCE, analyse, conclusion, crossovers, leader

__all__ = [
    "CHARTS",
    "METRICS",
    "SWEEP_FILE",
    "TIE_TOLERANCE",
    "analyse",
    "assemble",
    "build_document",
    "conclusion",
    "crossovers",
    "leader",
    "main",
    "plan",
    "point_from_results",
    "run_sweep",
    "validate",
    "validation_errors",
    "write_sweep_report",
]
