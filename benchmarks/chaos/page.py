"""The chaos report: the blast-radius table, what overload and a lost cache did, the timelines."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks import slo_damage
from benchmarks.chaos.config import CACHE_EVENTS, REQUEST_BUDGET_MS
from benchmarks.chaos.plots import timeline_chart
from benchmarks.reporting import document as doc
from benchmarks.reporting.output import write_document
from benchmarks.reporting.text import MISSING, percent


def _chart_spec(key: str, title: str, window_s: int) -> doc.ChartSpec:
    return doc.ChartSpec(
        f"timeline-{key}",
        title,
        timeline_chart,
        "Top: successful requests per second (the load is constant, so dips are "
        "failures or slowness; the overload burst adds its own). Next: failed "
        "requests per second by status. Then p99 latency per second over a trailing "
        f"{window_s} s window, with the SLO dashed and the seconds counted above it "
        "shaded; then the CPU of every server process, in % of the CPU budget; for "
        "the cache run, the hit rate per second. Dashed lines mark the events.",
    )


def _number(value: float | None, decimals: int = 1) -> str:
    """Fixed decimals, no thousands separator (unlike `text.number`): a p99 of 1234.5 ms."""
    return MISSING if value is None else f"{value:.{decimals}f}"


def _damage_row(label: str, outcome: dict) -> list[str]:
    statuses = ", ".join(
        f"{count} x {'no answer' if s == '0' else s}"
        for s, count in sorted(outcome["failed_by_status"].items())
    )
    failed = f"{outcome['failed']}" + (f" ({statuses})" if statuses else "")
    back = outcome["back_within_slo_s"]
    return [
        label,
        outcome["event"],
        f"{outcome['at_s']:.1f}",
        failed,
        str(outcome["seconds_above_slo"]),
        _number(outcome["peak_p99_ms"]),
        str(outcome["slow_requests"]),
        f"{outcome['last_failure_s']:.1f}",
        "not yet" if back is None else f"{back:.1f}",
    ]


DAMAGE_HEADERS = [
    "architecture",
    "event",
    "at (s)",
    "failed requests",
    "s above SLO",
    "peak p99 (ms)",
    "slower than SLO",
    "last failure (s)",
    "back within SLO (s)",
]


def damage_table(document: dict) -> doc.Table:
    """Every event of every run, one row each: the table of the report."""
    rows = []
    for architecture, result in document["architectures"].items():
        for outcome in result["events"]:
            rows.append(_damage_row(architecture, outcome))
        for outcome in result.get("state", {}).get("events", []):
            rows.append(_damage_row(f"{architecture} (CACHE=redis)", outcome))
    return doc.Table(DAMAGE_HEADERS, rows, numeric_columns={2, 4, 5, 6, 7, 8})


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def cache_phases(state: dict, cores: int = 1) -> dict[str, dict[str, float | None]]:
    """Hit rate, p99 and CPU per request before the loss, while Redis is gone, and after it is back.

    Each phase but "gone" lasts half the outage; "gone" skips the second Redis died in.
    """
    rows = state["timeline"]
    loss, back = (
        next(e for e in state["events"] if e["event"] == name)["at_s"] for name in CACHE_EVENTS
    )
    quarter = max(1, int((back - loss) / 2))
    phases = {
        "before": (max(0, int(loss) - quarter), int(loss)),
        "gone": (math.ceil(loss) + 1, int(back)),
        "just back": (math.ceil(back), math.ceil(back) + quarter),
        "at the end": (len(rows) - quarter, len(rows)),
    }
    out = {}
    for name, (a, b) in phases.items():
        chosen = rows[a:b]
        ok = sum(row["ok"] for row in chosen)
        cpu = _mean([row.get("cpu_percent") for row in chosen])
        out[name] = {
            "hit_rate": _mean([row.get("cache_hit_rate") for row in chosen]),
            "p99_ms": _mean([row["p99_1s_ms"] for row in chosen]),
            # CPU-ms per request: CPU % of the budget x cores x 10 ms per second of wall time.
            "cpu_ms_per_request": (cpu * cores * 10.0 / (ok / len(chosen)))
            if chosen and ok and cpu is not None
            else None,
        }
    return out


def state_blocks(document: dict) -> list[doc.Block]:
    blocks: list[doc.Block] = [doc.Heading(2, "State: losing the cache (CACHE=redis)")]
    table_rows = []
    for architecture, result in document["architectures"].items():
        state = result.get("state")
        if not state:
            continue
        for phase, values in cache_phases(state, len(document["settings"]["sut_cpus"])).items():
            hit_rate = values["hit_rate"]
            table_rows.append(
                [
                    architecture,
                    phase,
                    percent(None if hit_rate is None else 100 * hit_rate),
                    _number(values["p99_ms"]),
                    _number(values["cpu_ms_per_request"], 2),
                ]
            )
    if not table_rows:
        return []
    rate = next(
        r["state"]["cache_rate"] for r in document["architectures"].values() if r.get("state")
    )
    blocks += [
        doc.Paragraph(
            "A second deployment of each architecture with a shared Redis cache "
            f"(`CACHE=redis`) and a workload in which {rate:.0%} of requests repeat an "
            "earlier input. Redis is killed under load, then started again: same address, "
            "no data. The hit rate is scraped from `/metrics` every second (the servers "
            "publish their counters once a second, so it lags by up to a second)."
        ),
        doc.Table(
            [
                "architecture",
                "phase",
                "hit rate",
                "mean p99 of the second (ms)",
                "CPU-ms per request",
            ],
            table_rows,
            numeric_columns={2, 3, 4},
        ),
        doc.Paragraph(
            "What this says about state. Nothing failed: the cache is *cache-aside* (a "
            "lookup that fails makes the request compute the answer, and a circuit breaker "
            "keeps a dead Redis out of the request path), so Redis is not on the critical "
            "path of correctness. But it is on the critical path of cost: while it is gone "
            "every request pays the full pipeline (higher latency, and more CPU per "
            "request wherever a hit saves more than a Redis round trip costs: in the "
            "microservices a gateway hit skips three gRPC hops, while the monolith's linear "
            "model can be cheaper than the lookup; the table shows which), "
            "and when it comes back it is *empty*: restarting a stateless process gives you "
            "the same process back, restarting a stateful one gives you a different one. "
            "The hit rate climbs back only as traffic refills it, popular inputs first. A "
            "service sized for the warm hit rate is under-provisioned after every cache "
            "restart; that is why stateful components get persistence or replicas, warm-up "
            "before they take traffic, and capacity planned for the cold case, and why the "
            "rest of the system is kept stateless so that any of it can be killed and "
            "restarted (as the events above do) without this cost."
        ),
    ]
    return blocks


def overload_blocks(document: dict) -> list[doc.Block]:
    items = []
    for architecture, result in document["architectures"].items():
        for outcome in result["events"]:
            if outcome["event"] != "overload" or "offered_rps" not in outcome:
                continue
            back = outcome["back_within_slo_s"]
            unsent = (
                f" ({outcome['unsent']} never sent: every connection the client may open was busy)"
                if outcome.get("unsent")
                else ""
            )
            items.append(
                f"{architecture}: probed capacity {outcome['capacity_rps']:g} req/s; the burst "
                f"offered {outcome['offered_rps']:g} req/s for {outcome['seconds']:g} s and sent "
                f"{outcome['sent_rps']:g} req/s{unsent}; of its {outcome['burst_requests']} "
                f"requests {outcome['burst_shed']} were shed with 503 and {outcome['burst_ok']} "
                f"answered; with the steady load, {outcome['failed']} requests failed and "
                f"{outcome['slow_requests']} were answered slower than the SLO; peak p99 "
                f"{_number(outcome['peak_p99_ms'])} ms; back within the SLO "
                + (
                    "not before the run ended"
                    if back is None
                    else f"{back:.1f} s after the burst began"
                )
                + "."
            )
    if not items:
        return []
    return [
        doc.Heading(2, "Overload"),
        doc.Paragraph(
            "A burst of several times capacity on top of the steady load, from an "
            "open-loop client (`benchmarks/measure/burst.py`: requests leave on "
            "schedule whatever the answers, as from many independent clients; Locust's "
            "users would wait for answers and offer less). Capacity is a closed-loop "
            "probe's throughput just before. Bounded queues shed what they cannot serve "
            "in time (`503` with `Retry-After`) instead of queueing it until every "
            "answer is late; what is measured is how much was shed, how slow the rest "
            "got, and how soon the steady load was served within the SLO again. "
            "Shedding is not free: a refused request still costs the server an accept, "
            "a parse and an answer, so goodput falls while the burst lasts."
        ),
        doc.Bullets(items),
    ]


def build_blocks(document: dict) -> list[doc.Block]:
    settings = document["settings"]
    slo = settings.get("slo_ms", 50.0)
    window = settings.get("window_s", slo_damage.MIN_WINDOW_S)
    sustained = settings.get("sustained_s", slo_damage.SUSTAINED_S)
    blocks: list[doc.Block] = [
        doc.Heading(1, "Chaos: what fails, what slows down, and for how long"),
        doc.Paragraph(
            f"Steady load of {settings['rate']:g} req/s from {settings['users']} paced "
            f"Locust users; events every {settings['phase_seconds']:g} s; model profile "
            f"`{settings['profile']}`; request budget {REQUEST_BUDGET_MS} ms; the gateway "
            "retries UNAVAILABLE within that budget. Versions: "
            f"`{document['versions']['from']}` then `{document['versions']['to']}`."
        ),
        doc.Heading(2, "Blast radius of each event"),
        damage_table(document),
        doc.Paragraph(slo_damage.definitions(slo, window, sustained), style="note"),
        doc.Paragraph(
            "Failed requests count requests *started* between an event and the next one. "
            "For a crash, failures last until the recovery event restores the process, so a "
            "crash is not back within the SLO before its recovery event; the monolith has "
            "no replica events because its crash already kills one of two identical "
            "workers.",
            style="note",
        ),
    ]
    blocks += overload_blocks(document)
    for architecture, result in document["architectures"].items():
        versions = (
            ", ".join(f"`{v}`: {n}" for v, n in sorted(result["versions"].items()))
            or "none recorded"
        )
        blocks += [
            doc.Heading(2, architecture),
            doc.Paragraph(
                f"{result['requests']} requests, {result['failed']} failed. Answers "
                f"by model version: {versions}."
            ),
            doc.Chart(
                _chart_spec(architecture, f"{architecture}: a timeline of the events", window),
                {**result, "slo_ms": slo},
            ),
        ]
        state = result.get("state")
        if state:
            title = f"{architecture} with CACHE=redis: losing the cache"
            blocks.append(
                doc.Chart(
                    _chart_spec(f"{architecture}-cache", title, window), {**state, "slo_ms": slo}
                )
            )
    blocks += state_blocks(document)
    blocks += [
        doc.Heading(2, "What to look for"),
        doc.Bullets(
            [
                "A crash of a single-replica stage is an outage for every request until it is "
                "back; a crash of one of two replicas (or of two gunicorn workers) fails only "
                "what that process held, and the gateway's retries move the rest to the other "
                "one.",
                "Rolling restarts and the rollout should fail nothing, but they are not free: "
                "a process loading the model competes for the same CPUs, and the table counts "
                "the seconds above the SLO.",
                "During the rollout each answer names its version; the gateway never mixes the "
                "preprocessing of one version with the model of another.",
                "Under overload, shedding refuses fast (503 with Retry-After) what has queued "
                "too long, so the answers that are given stay useful and the queue does not "
                "outlive the burst; it does not keep goodput at capacity (refusing costs CPU "
                "too): compare the answered requests with the shed ones.",
            ]
        ),
        doc.Heading(2, "Machine and settings"),
        doc.Paragraph(
            f"{document['machine'].get('cpu_model', 'unknown CPU')}, "
            f"{document['machine'].get('logical_cores', '?')} logical CPUs; SUT on "
            f"CPUs {settings['sut_cpus']}, Locust on {settings['loadgen_cpus']}; run "
            f"{document['started_at']}."
        ),
    ]
    return blocks


def write_report(run_dir: Path, document: dict) -> list[Path]:
    """report.md, a self-contained report.html and one timeline chart per run, in `run_dir`."""
    return write_document(run_dir, doc.Document("Chaos report", build_blocks(document)))
