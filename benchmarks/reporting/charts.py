"""The house style of every chart, and charts as PNG and SVG.

Figures are built on an explicit Agg canvas instead of through pyplot, so they work in scripts,
servers and notebooks alike without touching the global backend or leaking open figures. Draw
inside ``matplotlib.rc_context(STYLE)`` on a `new_figure()`; colour architectures with
`architecture_colours`, so one architecture has one colour in every chart of every report.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from benchmarks.reporting.document import Chart

# Okabe-Ito: distinguishable with the common colour-vision deficiencies and on projectors.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]
FIXED_COLOURS = {"monolith": "#0072B2", "microservices": "#E69F00"}
SLO_COLOUR = "#CC0000"

# Sized to stay legible when a slide is projected or the PNG is shrunk into a report.
STYLE: dict[RcKeyType, Any] = {
    "font.size": 13,
    "axes.titlesize": 16,
    "axes.titleweight": "bold",
    "axes.labelsize": 14,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "path",
}
FIGSIZE = (10, 5.8)


def architecture_colours(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per architecture, so every chart uses the same one."""
    spare = [colour for colour in PALETTE if colour not in FIXED_COLOURS.values()]
    unknown = [name for name in names if name not in FIXED_COLOURS]
    colours = {name: spare[index % len(spare)] for index, name in enumerate(unknown)}
    return {name: FIXED_COLOURS.get(name) or colours[name] for name in names}


def new_figure(figsize: tuple[float, float] = FIGSIZE) -> Figure:
    """A figure on its own Agg canvas, with constrained layout."""
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plain_number(value: float, _position: Any = None) -> str:
    """Axis ticks: 1,200 rather than 1.2e3; small values as they are."""
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def usd_tick(value: float, _position: Any = None) -> str:
    """Axis ticks and bar labels in dollars: $1.23 from a dollar up, three digits below."""
    if not value:
        return "$0"
    return f"${value:,.2f}" if value >= 1 else f"${value:.3g}"


def figure_to_png_bytes(figure: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def figure_to_base64_png(figure: Figure, dpi: int = 150) -> str:
    """The figure as base64-encoded PNG text, ready for a data: URI."""
    return base64.b64encode(figure_to_png_bytes(figure, dpi=dpi)).decode("ascii")


def figure_to_svg(figure: Figure) -> str:
    """The figure as standalone SVG text, text drawn as paths so no font is needed to view it.

    Metadata is dropped so the output carries no date or links and is reproducible.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "servinglab", "svg.fonttype": "path"}):
        figure.savefig(
            buffer,
            format="svg",
            facecolor="white",
            metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
        )
    return buffer.getvalue()


def write_pngs(charts: Iterable[Chart], directory: Path) -> list[Path]:
    """Draw each chart from its data into ``directory/<key>.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in charts:
        path = directory / f"{chart.spec.key}.png"
        path.write_bytes(figure_to_png_bytes(chart.spec.draw(chart.data)))
        written.append(path)
    return written
