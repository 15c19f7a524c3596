"""A server's Prometheus ``/metrics``, read with prometheus_client's own text parser.

Every server process publishes its counters once a second (servinglab/serving/metrics.py), so a
scrape waits for one more publication (`FLUSH_WAIT_S`) to have the last requests in the numbers.

- `scrape(url)`: the text once; `Scraper(url, read)`: ``read(text)`` about once a second, in a
  thread, for a timeline;
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

FLUSH_WAIT_S = 1.2


def scrape(url: str, wait_s: float = FLUSH_WAIT_S) -> str | None:
    """The text of ``url/metrics`` after `wait_s`, or None when it does not answer."""
    time.sleep(wait_s)
    try:
        response = requests.get(url + "/metrics", timeout=5)
    except requests.RequestException:
        return None
    return response.text if response.ok else None


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
