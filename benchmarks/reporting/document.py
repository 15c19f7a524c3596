"""The document model every report is built from: a title and a list of blocks.

Blocks carry text, not markup: inline `backticks` mark code, and a paragraph's ``style`` says how
it is shown ("headline" stands out, "note" is quieter). A `Chart` holds its `ChartSpec` and the
data the spec draws from, so a document can be rendered, and its charts drawn, on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure


@dataclass(frozen=True)
class ChartSpec:
    """One kind of chart: its file name (``key``), title, how to draw it and how to read it."""

    key: str
    title: str
    draw: Callable[[Any], Figure]
    how_to_read: str


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str
    style: str = ""  # "headline" or "note" change how it is shown


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    numeric_columns: set[int] = field(default_factory=set)
    row_styles: list[str] = field(default_factory=list)  # CSS classes per row, "" for none


@dataclass
class Chart:
    spec: ChartSpec
    data: Mapping[str, Any]  # what `spec.draw` is given


Block = Heading | Paragraph | Bullets | Table | Chart


@dataclass
class Document:
    title: str  # the page's title; the first heading, if any, is one of the blocks
    blocks: Sequence[Block]

    def charts(self) -> Iterator[Chart]:
        """Every chart of the document, in order."""
        return (block for block in self.blocks if isinstance(block, Chart))
