"""Order statistics shared by every measurement and report."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence; None when it is empty."""
    if not ordered:
        return None
    return ordered[min(math.ceil(q * len(ordered)) - 1, len(ordered) - 1)] if q > 0 else ordered[0]
