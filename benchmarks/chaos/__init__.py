"""`make chaos`: faults, rollouts, overload and a lost cache on a timeline, under steady Locust load.

What a student sees is the *blast radius* of each event: how many requests failed, with which
status, how long and how far latency stayed above the SLO, and how long until the service was back
within it. The same events run on both architectures where both have them:

| event           | microservices                                     | monolith                                     |
|-----------------|---------------------------------------------------|----------------------------------------------|
| crash           | SIGKILL the only postprocess process              | SIGKILL one of the 2 gunicorn workers        |
| recover         | start postprocess again (the gateway reconnects)  | gunicorn starts a replacement worker         |
| replica crash   | SIGKILL one of the 2 inference replicas           | (its crash already is one of 2 workers)      |
| replica recover | start that replica again, on its port             |                                              |
| rolling restart | the 2 inference replicas, one at a time           | TTIN/TTOU: a new worker, then an old retired |
| model rollout   | new version: inference replicas, then preprocess  | new version in CURRENT, then the TTIN/TTOU   |
| overload        | open-loop burst: BURST_FACTOR x probed capacity   | the same                                     |
| cache loss      | CACHE=redis run: SIGKILL redis-server             | the same                                     |
| cache back      | start redis-server again, empty                   | the same                                     |

The overload burst (`benchmarks/measure/burst.py`) lasts BURST_SECONDS.

The cache events run in a second deployment of each architecture with `CACHE=redis` and a
workload whose requests repeat earlier inputs (`CACHE_RATE`), with the hit rate scraped from
`/metrics` every second. The load is open-loop (paced Locust users), so a failing service does not
slow the load down and hide its own failures. Latency damage is judged against the bench's SLO
(`SLO_MS`) by `benchmarks.slo_damage`, whose definitions the report prints. Output: `chaos.json`,
`report.md`, `report.html` and a timeline chart per run (throughput, errors by status, rolling
p99, SUT CPU and, for the cache run, the hit rate per second; events marked).

    python -m benchmarks.chaos --archs "monolith microservices" --rate 40 --phase-seconds 8

- `config`: the events per architecture (`MAIN_EVENTS`, `CACHE_EVENTS`) and `ChaosConfig`;
- `events`: what each event does to a deployment (`Event`, the timelines' builders);
- `timeline`: one timeline under load and its summary (`run_timeline`, `summarise`);
- `page` and `plots`: the report (`build_blocks`, `damage_table`, `timeline_chart`);
- `run`: `run`, `main`. The damage arithmetic is `benchmarks.slo_damage`.
"""

from benchmarks.chaos.config import CACHE_EVENTS, MAIN_EVENTS, ChaosConfig, parse_config
from benchmarks.chaos.events import Event
from benchmarks.chaos.page import build_blocks, cache_phases, damage_table, write_report
from benchmarks.chaos.plots import timeline_chart
from benchmarks.chaos.run import main, run
from benchmarks.chaos.timeline import cache_lookups, summarise

__all__ = [
    "CACHE_EVENTS",
    "MAIN_EVENTS",
    "ChaosConfig",
    "Event",
    "build_blocks",
    "cache_lookups",
    "cache_phases",
    "damage_table",
    "main",
    "parse_config",
    "run",
    "summarise",
    "timeline_chart",
    "write_report",
]
