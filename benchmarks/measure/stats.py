"""Order statistics shared by every measurement and report, and how sure a percentile is.

- `percentile`: the nearest-rank percentile every table reports.
- `samples_for_quantile`: how many samples a step needs before its percentile means something.
  A p99 from n samples is an order statistic whose rank is itself random: the count of samples
  above the true p99 is Binomial(n, 0.01), so the reported value wanders between the true
  p(99 - d) and p(99 + d) with d ~ z * sqrt(q (1 - q) / n). Asking d <= `rank_tolerance`
  gives n >= z^2 q (1 - q) / tolerance^2: 1,522 samples (about 15 beyond the p99) for the p99 to
  lie between the true p98.5 and p99.5 with 95% confidence, 381 for p98-p100.
- `bootstrap_within_probability`: the share of bootstrap resamples of a step's recorded
  requests in which it still meets the SLO, computed exactly rather than by drawing: in a
  resample of n requests, the count slower than the SLO is Binomial(n, slow / n), and the
  nearest-rank p99 is within the SLO exactly when that count leaves the p99's rank untouched.
  A plain bootstrap cannot see a tail the step was too short to meet (40 fast requests resample
  to "certainly fast"), so the slow share is estimated with half a pseudo-request
  (`PRIOR_SLOW`, the Jeffreys prior): (slow + 0.5) / (n + 1). Long steps barely notice it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

PRIOR_SLOW = 0.5  # pseudo-requests slower than the limit added to every step's count


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence; None when it is empty."""
    if not ordered:
        return None
    return ordered[min(math.ceil(q * len(ordered)) - 1, len(ordered) - 1)] if q > 0 else ordered[0]


def samples_for_quantile(q: float, rank_tolerance: float, confidence: float = 0.95) -> int:
    """The fewest samples whose nearest-rank q-quantile lies within +-`rank_tolerance` (in
    quantile terms: 0.005 = half a percentile) of the true one, with `confidence`."""
    if not 0 < q < 1 or not 0 < rank_tolerance < 1 or not 0 < confidence < 1:
        raise ValueError("q, rank_tolerance and confidence must lie strictly between 0 and 1")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return math.ceil(z * z * q * (1 - q) / rank_tolerance**2)


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (n in the tens of thousands)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    total = sum(
        math.exp(base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        for i in range(k + 1)
    )
    return min(total, 1.0)


def bootstrap_within_probability(
    latencies_ms: Sequence[float],
    failures: int,
    q: float,
    limit_ms: float,
    max_error_rate: float,
    prior_slow: float = PRIOR_SLOW,
) -> float:
    """Probability that a bootstrap resample of a step's requests meets both the latency SLO
    (nearest-rank `q` percentile of the answered requests <= `limit_ms`) and the error budget.

    The two criteria are resampled as independent binomials (a request's being slow and its
    failing are counted separately), which is how they are checked. `prior_slow` pseudo-requests
    are added to the slow count (and twice that to the total); 0 gives the plain bootstrap.
    """
    answered = len(latencies_ms)
    total = answered + failures
    if answered == 0:
        return 0.0
    slow = sum(1 for latency in latencies_ms if latency > limit_ms)
    # The nearest-rank percentile is the ceil(q n)-th smallest value: it stays within the limit
    # while at most n - ceil(q n) values exceed it.
    allowed_slow = answered - math.ceil(q * answered)
    latency_ok = binomial_cdf(
        allowed_slow, answered, (slow + prior_slow) / (answered + 2 * prior_slow)
    )
    allowed_failures = math.floor(max_error_rate * total)
    errors_ok = binomial_cdf(allowed_failures, total, failures / total)
    return latency_ok * errors_ok


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of unsorted values (at least one)."""
    if not values:
        raise ValueError("quantile of no values")
    ordered = sorted(values)
    return ordered[min(max(math.ceil(q * len(ordered)) - 1, 0), len(ordered) - 1)]
