"""A server's Prometheus ``/metrics``, read with prometheus_client's own text parser.

Every server process publishes its counters once a second (servinglab/serving/metrics.py), so a
scrape polls until the numbers have settled (every process has published the last requests).

- `scrape(url)`: the text once settled; `Scraper(url, read)`: ``read(text)`` about once a second,
  in a thread, for a timeline;
- `cache_counts(text)`: hits and misses of whatever cache counters the servers have;
- `totals_by_label(text, sample, label)`: one sample's values summed per value of one label.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.measure.servertiming import cache_outcome

# Server processes publish every servinglab.serving.metrics.FLUSH_INTERVAL_S (1 s): counters that
# have not moved for one interval plus scheduling slack have every process's last publication.
SETTLED_AFTER_S = 1.5
SETTLE_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.25


def _load_counters(text: str) -> tuple[float, tuple[tuple[str, float], ...]]:
    """What load moves: predictions answered and cache lookups (not scrapes, not probes)."""
    predictions = totals_by_label(text, "lab_http_requests_total", "route").get("/v1/predict", 0.0)
    return predictions, tuple(sorted(cache_counts(text).items()))


def predictions_answered(url: str) -> float | None:
    """`/v1/predict` requests the deployment at `url` has answered so far (as last published), or
    None when its /metrics does not answer."""
    try:
        response = requests.get(url + "/metrics", timeout=5)
    except requests.RequestException:
        return None
    if not response.ok:
        return None
    return _load_counters(response.text)[0]


def scrape(
    url: str, settled: Callable[[str], bool] | None = None, timeout_s: float = SETTLE_TIMEOUT_S
) -> str | None:
    """The text of ``url/metrics`` once the counters are complete, or None when it does not answer.

    A first scrape may miss the requests a process has not published yet. `settled(text)` says
    when the numbers are complete (they count every request sent, say); by default, when the
    predictions and cache lookups counted have not moved for `SETTLED_AFTER_S`. Polled every
    `POLL_INTERVAL_S`; at `timeout_s` the latest text is returned as it is.
    """
    deadline = time.monotonic() + timeout_s
    previous, unchanged_since = None, time.monotonic()
    with requests.Session() as session:
        while True:
            try:
                response = session.get(url + "/metrics", timeout=5)
            except requests.RequestException:
                return None
            if not response.ok:
                return None
            now = time.monotonic()
            try:
                if settled is not None:
                    done = settled(response.text)
                else:
                    counters = _load_counters(response.text)
                    if counters != previous:
                        previous, unchanged_since = counters, now
                    done = now - unchanged_since >= SETTLED_AFTER_S
            except ValueError:  # not Prometheus text: it will not settle; the caller judges it
                return response.text
            if done or now >= deadline:
                return response.text
            time.sleep(POLL_INTERVAL_S)


def cache_counts(text: str) -> dict[str, float]:
    """Hits and misses summed over the counters whose name mentions "cache".

    Which counter says hit or miss is read from its name or labels (`lab_cache_hits_total`,
    `lab_cache_lookups_total{result="miss"}`), so the benchmark does not depend on one naming.
    Raises ValueError on text that is not the Prometheus exposition format.
    """
    counts = {"hits": 0.0, "misses": 0.0}
    for family in text_string_to_metric_families(text):
        if family.type != "counter" or "cache" not in family.name.lower():
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue  # when the counter was created, not a count
            labels = ",".join(f'{key}="{value}"' for key, value in sample.labels.items())
            outcome = cache_outcome(sample.name + labels)
            if outcome:
                counts[outcome] += float(sample.value)
    return counts


def totals_by_label(text: str, sample: str, label: str) -> dict[str, float]:
    """Values of the samples named `sample` (``lab_cache_lookups_total``), summed per `label`
    value over every other label; samples without the label are left out."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and label in found.labels:
                key = found.labels[label]
                totals[key] = totals.get(key, 0.0) + float(found.value)
    return totals


class Scraper:
    """``read(text of /metrics)`` about every `interval_s`, in a thread, with the time of each.

    Scrapes that fail (no answer, not Prometheus text) are skipped: a timeline shows the gap.
    """

    def __init__(self, url: str, read: Callable[[str], Any], interval_s: float = 1.0):
        self.url = url
        self.read = read
        self.interval_s = interval_s
        self.samples: list[tuple[float, Any]] = []  # (epoch seconds, what `read` returned)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(self.interval_s):
                try:
                    response = session.get(self.url + "/metrics", timeout=self.interval_s)
                    if response.ok:
                        self.samples.append((time.time(), self.read(response.text)))
                except (requests.RequestException, ValueError):
                    continue

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def scrape_cache_counts(url: str) -> dict[str, float] | None:
    """The cache counters of a running architecture, or None when /metrics does not answer."""
    text = scrape(url)
    if text is None:
        return None
    try:
        return cache_counts(text)
    except ValueError:
        return None
