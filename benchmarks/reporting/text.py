"""How numbers, lists and architecture names read in a report.

Each formatter takes None for a figure that does not exist (say, the capacity of an architecture
that met the SLO at no tested rate) and shows it as `MISSING`.
"""

from __future__ import annotations

from collections.abc import Sequence

MISSING = "n/a"


def _banded(value: float, bands: Sequence[tuple[float, str]], rest: str) -> str:
    """`value` in the format of the first band whose bound it is under, else in `rest`."""
    for bound, pattern in bands:
        if value < bound:
            return pattern.format(value)
    return rest.format(value)


def rps(value: float | None) -> str:
    """Requests per second: whole numbers from 100 up, one decimal below."""
    return MISSING if value is None else _banded(value, [(100, "{:.1f}")], "{:,.0f}")


def ms(value: float | None) -> str:
    """Milliseconds with three significant digits or so."""
    if value is None:
        return MISSING
    return _banded(value, [(1, "{:.3f}"), (10, "{:.2f}"), (100, "{:.1f}")], "{:,.0f}")


def usd(value: float | None) -> str:
    """Dollars: cents from a dollar up, three significant digits below."""
    if value is None:
        return MISSING
    return _banded(value, [(1e-4, "${:.2e}"), (1, "${:.3g}"), (100, "${:.2f}")], "${:,.0f}")


def ratio(value: float | None) -> str:
    """A ratio as "0.27x", "3.8x" or "12x"."""
    if value is None:
        return MISSING
    return _banded(value, [(0.995, "{:.2g}x"), (9.95, "{:.1f}x")], "{:,.0f}x")


def number(value: float | None, decimals: int = 2) -> str:
    return MISSING if value is None else f"{value:,.{decimals}f}"


def percent(value: float | None, decimals: int = 0) -> str:
    """`value` is already in percent: 12.5 -> "12%"."""
    return MISSING if value is None else f"{value:.{decimals}f}%"


def join(words: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def display_name(name: str) -> str:
    """How an architecture reads inside a sentence: "the monolith", "microservices"."""
    return "the monolith" if name == "monolith" else name


def wins(name: str) -> str:
    """ "the monolith wins", "microservices win": the plural reads naturally for the latter."""
    return f"{display_name(name)} {'win' if name.endswith('s') else 'wins'}"
