"""The chaos timeline chart: one panel per view of the same seconds, the events marked."""

from __future__ import annotations

from matplotlib.figure import Figure

from benchmarks.reporting import charts

# Colours of the failed requests' statuses, stacked; cycled if there are more statuses.
STATUS_COLOURS = ["#D55E00", "#E69F00", "#CC79A7", "#56B4E9", "#999999"]


def _series(rows: list[dict], key: str) -> list[float]:
    """One value per second; NaN (a gap in the line) where there is none."""
    values = (row.get(key) for row in rows)
    return [float("nan") if value is None else value for value in values]


def timeline_chart(data: dict) -> Figure:
    """Successful and failed requests, rolling p99 (SLO and the seconds above it), SUT CPU and,
    when scraped, the cache hit rate, per second of one timeline."""
    rows = data["timeline"]
    with_cache = any(row.get("cache_hit_rate") is not None for row in rows)
    with_cpu = any("cpu_percent" in row for row in rows)
    panels = 3 + with_cpu + with_cache
    figure = charts.new_figure((11, 2.3 * panels + 0.6))
    axes = figure.subplots(panels, 1, sharex=True)
    # A bin covers [second, second + 1): plot it at its middle, so events line up with it.
    seconds = [row["second"] + 0.5 for row in rows]
    axes[0].plot(seconds, [row["ok"] for row in rows], color="#0072B2", linewidth=2)
    axes[0].set_ylabel("successful req/s")
    statuses = sorted({status for row in rows for status in row["errors"]})
    bottom = [0] * len(rows)
    for color, status in zip(STATUS_COLOURS * 3, statuses, strict=False):
        heights = [row["errors"].get(status, 0) for row in rows]
        label = "no answer (connection failed)" if status == "0" else f"HTTP {status}"
        axes[1].bar(seconds, heights, bottom=bottom, color=color, label=label, width=0.9)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes[1].set_ylabel("failed req/s")
    if statuses:
        axes[1].legend(loc="upper right")
    axes[2].plot(
        seconds, _series(rows, "p99_ms"), color="#009E73", linewidth=2, label="p99 (rolling window)"
    )
    slo = data.get("slo_ms")
    if slo:
        axes[2].axhline(
            slo, color="#D55E00", linestyle="--", linewidth=1.5, label=f"SLO {slo:g} ms"
        )
        for row in rows:
            if row.get("above_slo"):
                axes[2].axvspan(
                    row["second"], row["second"] + 1, color="#D55E00", alpha=0.12, linewidth=0
                )
        axes[2].legend(loc="upper right")
    axes[2].set_ylabel("p99 latency (ms)")
    axes[2].set_yscale("log")
    panel = 3
    if with_cpu:
        axes[panel].plot(seconds, _series(rows, "cpu_percent"), color="#CC79A7", linewidth=2)
        axes[panel].set_ylabel("SUT CPU (% of budget)")
        axes[panel].set_ylim(bottom=0)
        panel += 1
    if with_cache:
        axes[panel].plot(
            seconds,
            [100 * v for v in _series(rows, "cache_hit_rate")],
            color="#E69F00",
            linewidth=2,
            marker=".",
        )
        axes[panel].set_ylabel("cache hit rate (%)")
        axes[panel].set_ylim(0, 100)
    axes[-1].set_xlabel("seconds since the load started")
    for event in data["events"]:
        for ax in axes:
            ax.axvline(event["at_s"], color="#444", linestyle="--", linewidth=1)
        axes[0].annotate(
            event["event"],
            (event["at_s"], 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=10,
        )
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return figure
