"""The bench report's floors: each path held against the cheapest version of it in the same run,
and how the entry point's requests spread over its gunicorn workers.

Reads ``results["floors"]`` (the bare gRPC echo on the SUT CPUs and the in-process pipeline, from
`benchmarks.measure.floors`) and each architecture's ``entry[]`` (its HTTP noop, requests per
worker, /v1/predict requests served). Old results without them get no section.

CPU per call of a stage server = its CPU over the run ÷ the /v1/predict requests served (one call
per request and stage). The gateway's client share of one hop (orchestrated microservices, with a
monolith in the run) = (gateway CPU per request - what the monolith spends per request outside
the pipeline) ÷ the number of hops: the gateway does the monolith's HTTP work, plus the calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.measure import floors
from benchmarks.reporting.document import Block, Heading, Paragraph, Table
from benchmarks.reporting.text import MISSING, number, percent, rps

# Stage process -> (its Server-Timing stage, its hop) in results `stages_ms`.
STAGE_PROCESSES = {
    "preprocess": ("pre", "hop_pre"),
    "inference": ("infer", "hop_infer"),
    "postprocess": ("post", "hop_post"),
}
ORCHESTRATED = "microservices"  # the topology whose gateway makes every call itself


def _served(arch: Mapping[str, Any]) -> float:
    return sum(entry.get("predict_requests") or 0.0 for entry in arch.get("entry") or [])


def _cpu(arch: Mapping[str, Any], name: str) -> float:
    return sum(p["cpu_seconds"] for p in arch["processes"] if p["name"] == name)


def _entry_cpu_us_per_request(arch: Mapping[str, Any]) -> float | None:
    """The gunicorn master and workers' CPU per /v1/predict request, the noop's requests left out."""
    served = _served(arch)
    if not served:
        return None
    spent = sum(p["cpu_seconds"] for p in arch["processes"] if p["name"].startswith("gunicorn-"))
    for entry in arch.get("entry") or []:
        noop = entry.get("noop") or {}
        spent -= noop.get("requests", 0) * noop.get("cpu_us", 0.0) / 1e6
    return max(spent, 0.0) / served * 1e6


def _noop_us(arch: Mapping[str, Any]) -> float | None:
    values = [e["noop"]["cpu_us"] for e in arch.get("entry") or [] if e.get("noop")]
    return sum(values) / len(values) if values else None


def floors_table(results: Mapping[str, Any]) -> Table:
    run_floors = results.get("floors") or {}
    rows = []
    transport = run_floors.get("transport")
    if transport:
        rows.append(
            [
                f"gRPC echo, bare transport (CPU {', '.join(map(str, transport['cpus']))})",
                number(transport["cpu_us"], 0),
                f"client {number(transport['client_cpu_us'], 0)} + server "
                f"{number(transport['server_cpu_us'], 0)} µs; p50 {number(transport['p50_us'], 0)} "
                f"µs; {rps(transport['calls_per_s'])} calls/s",
            ]
        )
    for name, arch in results.get("architectures", {}).items():
        noop = _noop_us(arch)
        if noop is not None:
            entries = [e["noop"] for e in arch["entry"] if e.get("noop")]
            rows.append(
                [
                    f"HTTP noop `/healthz`, {name}",
                    number(noop, 0),
                    f"{rps(sum(e['rps'] for e in entries) / len(entries))} req/s closed loop, "
                    "all of the SUT's CPU",
                ]
            )
    pipeline = run_floors.get("pipeline")
    if pipeline:
        rows.append(
            [
                f"Pipeline in process ({pipeline['profile']})",
                number(pipeline["predict_us"], 1),
                "`ServingPipeline.predict` of one record, wall time",
            ]
        )
    return Table(["Floor", "µs per call", "What"], rows, numeric_columns={1})


def _client_share_us(results: Mapping[str, Any], name: str) -> float | None:
    architectures = results.get("architectures", {})
    pipeline = (results.get("floors") or {}).get("pipeline")
    if name != ORCHESTRATED or "monolith" not in architectures or not pipeline:
        return None
    gateway = _entry_cpu_us_per_request(architectures[name])
    monolith = _entry_cpu_us_per_request(architectures["monolith"])
    if gateway is None or monolith is None:
        return None
    return (gateway - (monolith - pipeline["predict_us"])) / len(STAGE_PROCESSES)


def hop_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per architecture and stage server: CPU per call and latency against the transport floor."""
    transport = (results.get("floors") or {}).get("transport")
    if not transport:
        return []
    rows = []
    for name, arch in results.get("architectures", {}).items():
        served = _served(arch)
        if not served:
            continue
        client = _client_share_us(results, name)
        hops = {}
        for process, (stage, hop) in STAGE_PROCESSES.items():
            if not any(p["name"] == process for p in arch["processes"]):
                continue
            server = _cpu(arch, process) / served * 1e6
            compute = (arch["stages_ms"].get(stage) or 0.0) * 1e3
            latency = arch["stages_ms"].get(hop)
            hops[f"{name}: {hop.replace('_', '-')}"] = {
                "server_cpu_us": round(server, 1),
                "client_cpu_us": None if client is None else round(client, 1),
                "cpu_us": None if client is None else round(server - compute + client, 1),
                "p50_us": None if latency is None else round(latency * 1e3, 1),
            }
        rows += floors.hop_comparison(transport, hops)
    return rows


def _met(value: bool | None) -> str:
    return {True: "met", False: "missed", None: MISSING}[value]


def _times(value: float | None, times: float | None, digits: int = 0) -> str:
    """ "453 (0.84x)", or n/a when the value is unknown."""
    if value is None:
        return MISSING
    return f"{number(value, digits)} ({number(times, 2)}x)" if times is not None else number(value)


def against_floors_table(results: Mapping[str, Any]) -> Table | None:
    transport = (results.get("floors") or {}).get("transport") or {}
    rows = []
    for row in hop_rows(results):  # none without a transport floor
        server_times = floors.ratio(row["server_cpu_us"], transport["server_cpu_us"])
        rows.append(
            [
                row["hop"],
                _times(row["server_cpu_us"], server_times),
                number(row["client_cpu_us"], 0),
                _times(row["cpu_us"], row["cpu_x_floor"]),
                number(row["latency_x_floor"], 2) + "x" if row["latency_x_floor"] else MISSING,
                f"{row['target']}: {_met(row['met'])}",
            ]
        )
    for name, arch in results.get("architectures", {}).items():
        noop, predict = _noop_us(arch), _entry_cpu_us_per_request(arch)
        if noop is None or predict is None or name != "monolith":
            continue
        # At a saturated CPU, throughput is 1 / CPU per request: the ratio of CPU is that of rates.
        verdict = floors.noop_comparison(1e6 / predict, 1e6 / noop)
        rows.append(
            [
                f"{name}: `/v1/predict` vs its `/healthz`",
                f"{number(predict, 0)} vs {number(noop, 0)} per request",
                MISSING,
                f"{number(verdict['x_noop'], 2)}x the noop's rate",
                MISSING,
                f"{verdict['target']}: {_met(verdict['met'])}",
            ]
        )
    if not rows:
        return None
    return Table(
        [
            "Path",
            "Server CPU per call, µs (x echo server)",
            "Client share, µs",
            "Whole hop, µs (x echo)",
            "Latency p50 (x echo)",
            "Target",
        ],
        rows,
        numeric_columns={1, 2, 3, 4},
    )


def worker_table(results: Mapping[str, Any]) -> Table | None:
    rows = []
    for name, arch in results.get("architectures", {}).items():
        for repetition, entry in enumerate(arch.get("entry") or []):
            workers = entry.get("workers") or {}
            total = sum(workers.values())
            if not total:
                continue
            shares = ", ".join(
                f"{count:,.0f} ({percent(100 * count / total)})"
                for count in sorted(workers.values(), reverse=True)
            )
            rows.append([name, str(repetition), str(len(workers)), f"{total:,.0f}", shares])
    if not rows:
        return None
    return Table(
        ["Architecture", "Rep", "Workers", "Requests", "Per worker (share)"],
        rows,
        numeric_columns={1, 2, 3},
    )


def floor_blocks(results: Mapping[str, Any]) -> list[Block]:
    """The "Floors and worker spread" section, or nothing for results that predate it."""
    floors_rows = floors_table(results)
    against = against_floors_table(results)
    workers = worker_table(results)
    if not floors_rows.rows and against is None and workers is None:
        return []
    blocks: list[Block] = [
        Heading(2, "Floors: each cost against the cheapest version of it"),
        Paragraph(
            "Measured in this run, on the same CPUs: the bare gRPC call (an echo of bytes, no "
            "protobuf, no app), the HTTP noop on each entry point's own gunicorn, and the "
            "pipeline in process. A hop that costs far more than the echo spends it in the "
            "servers' own machinery, not in the network."
        ),
    ]
    if floors_rows.rows:
        blocks.append(floors_rows)
    if against is not None:
        blocks += [
            against,
            Paragraph(
                f"Targets: every hop at most {floors.HOP_CPU_TARGET:g}x the echo's CPU per call "
                f"(client and server, the stage's own compute left out); the monolith's "
                f"`/v1/predict` at least {floors.PREDICT_VS_NOOP_TARGET:g}x its `/healthz` rate. "
                "Server CPU per call = the stage server's CPU over the run ÷ the requests served "
                "(the warm-up probe included). The client share is the gateway's CPU per request "
                "less what the monolith spends outside its pipeline, split over the hops; latency "
                "is the hop's median under load (Server-Timing) over the echo's unloaded p50. "
                "`/healthz` goes through Flask; the common `/v1/predict` does not (the API's WSGI "
                "fast path), so it can outrun the noop.",
                style="note",
            ),
        ]
    if workers is not None:
        blocks += [
            Heading(3, "Requests per gunicorn worker"),
            workers,
            Paragraph(
                "From each entry point's `lab_http_worker_requests_total{worker}` at the end of "
                "the repetition. Kept-alive connections stay with the worker that accepted them; "
                "`HTTP_KEEPALIVE_REQUESTS` ends each after that many requests so every worker "
                "gets a share.",
                style="note",
            ),
        ]
    return blocks
