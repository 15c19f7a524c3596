"""Request bodies for the cache experiment: a share `CACHE_RATE` of requests repeat earlier inputs.

    workload = Workload(records, cache_rate=0.5, seed=1)
    body = next(workload)          # one {"instances": [bird]} body, as bytes, forever

A workload is a deterministic sequence, from its seed, of single-bird bodies of two kinds:
- *repeats*: an input already sent earlier in the sequence, chosen with Zipf-like popularity
  (s = 1.1 over the inputs in order of first appearance): a few inputs are asked for again and
  again, most rarely, as in real traffic;
- *new* inputs: held-out records, reshuffled on every pass over them, with a tiny deterministic
  perturbation of one measurement so that no new input ever equals an earlier one.

The repeat share is exact, not only expected: the sequence is cut into blocks of `BLOCK`
requests, and each block gets exactly the number of repeats that brings the running total to
floor(rate x requests so far), at random positions within the block. Any prefix that ends on a
block boundary therefore has a repeat share within 1/length of the rate (the very first request
cannot repeat anything). Short benchmark steps then measure the rate they were given, not a
binomial draw around it. An ideal cache, large enough and never expiring, would hit on exactly
the repeats; a real one hits less (per-worker caches, TTL, eviction, two users asking for the same
new input at once), which is what the experiment measures.

Perturbation: pass c over the records adds c x `STEP` to the record's first non-null
non-integer measurement (0.1 µm per pass for a bill in mm: 10,000 passes move it by 1 mm), plus
seed x `STEP` / 2^20, so two workloads with different seeds (below 2^20) never send the same new
input either; the bench gives each run and step its own seed when one cache outlives them.

Imports stay light (no scikit-learn, no numpy): Locust loads this in its load-generating process.
"""

from __future__ import annotations

import json
import random
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import islice

DEFAULT_ZIPF_S = 1.1
BLOCK = 100
STEP = 1e-4
SALT_SLOTS = 1 << 20
# Measurements that may take a fractional nudge (year must stay a whole number).
PERTURBABLE = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")


def _encode(record: dict) -> bytes:
    return json.dumps({"instances": [record]}, separators=(",", ":")).encode()


class Workload:
    """An endless, seeded sequence of request bodies; `next()` gives the next one."""

    def __init__(
        self,
        records: Sequence[dict],
        cache_rate: float,
        seed: int = 0,
        zipf_s: float = DEFAULT_ZIPF_S,
    ):
        if not 0.0 <= cache_rate <= 1.0:
            raise ValueError(f"cache rate must be within [0, 1], got {cache_rate}")
        self.base = [
            record
            for record in records
            if any(record.get(name) is not None for name in PERTURBABLE)
        ]
        if not self.base:
            raise ValueError(
                "no record has a measurement to perturb: new inputs could not be made unique"
            )
        self.cache_rate = cache_rate
        self.zipf_s = zipf_s
        self.salt = (seed % SALT_SLOTS) * STEP / SALT_SLOTS
        self.rng = random.Random(seed)
        self.pool: list[bytes] = []  # distinct inputs sent so far, in order of first appearance
        self.cumulative: list[float] = []  # running sum of Zipf weights 1/rank^s over the pool
        self.new_count = 0  # new inputs made so far
        self.order: list[int] = []  # this pass's shuffled record order
        self.sent = 0
        self.repeats = 0
        self.pending: list[bool] = []  # this block: True = repeat, popped from the end

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if not self.pending:
            self._plan_block()
        repeat = self.pending.pop() and bool(self.pool)
        self.sent += 1
        if repeat:
            self.repeats += 1
            return self._repeat()
        return self._new()

    def take(self, count: int) -> list[bytes]:
        return list(islice(self, count))

    def _plan_block(self) -> None:
        # Repeats due by the end of this block so that the running share is exact there.
        start = self.sent
        due = int(self.cache_rate * (start + BLOCK)) - self.repeats
        due = max(0, min(BLOCK, due))
        plan = [True] * due + [False] * (BLOCK - due)
        self.rng.shuffle(plan)
        self.pending = plan

    def _repeat(self) -> bytes:
        point = self.rng.random() * self.cumulative[-1]
        return self.pool[min(bisect_left(self.cumulative, point), len(self.pool) - 1)]

    def _new(self) -> bytes:
        passes, position = divmod(self.new_count, len(self.base))
        if position == 0:
            self.order = list(range(len(self.base)))
            self.rng.shuffle(self.order)
        self.new_count += 1
        record = dict(self.base[self.order[position]])
        name = next(name for name in PERTURBABLE if record.get(name) is not None)
        record[name] = float(record[name]) + passes * STEP + self.salt
        body = _encode(record)
        self.pool.append(body)
        weight = 1.0 / len(self.pool) ** self.zipf_s
        self.cumulative.append(weight + (self.cumulative[-1] if self.cumulative else 0.0))
        return body


def build_bodies(
    records: Sequence[dict],
    cache_rate: float,
    count: int,
    seed: int = 0,
    zipf_s: float = DEFAULT_ZIPF_S,
) -> list[bytes]:
    """The first `count` bodies of a workload: the same list for the same arguments."""
    return Workload(records, cache_rate, seed, zipf_s).take(count)
