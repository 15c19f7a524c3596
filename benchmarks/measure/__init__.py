"""The measuring kit: drive load, read what the servers and the machine say, keep the results.

- `loadgen`: the load generators' driver, each in its own process pinned by a `Supervisor`,
  returning `Samples` (every request's start, latency and status; the Server-Timing headers;
  the generator's own CPU): `run_locust` (a headless Locust run of fixed length), `probe` (a
  closed-loop one: throughput and warm-up), `start_locust` + `LoadRun.stop` (load the caller
  ends), `run_burst` (an open-loop burst); `write_records` (the held-out birds they send) and
  `measurement_window` (a paced run once every user has phased in).
- what runs in those processes: `locustfile` (Locust's user and recorder), `workload` (inputs
  that repeat at a given rate), `burst` (the open-loop client); `httpload` is the low-overhead
  closed-loop client of `make perf` (`run`, and `take_response`, the raw clients' HTTP reader).
- `stats`: `percentile` (nearest rank), the one definition every report uses.
- `servertiming`: the `Server-Timing` header: `parse`, `durations`, `medians`, `cache_counts`,
  `stage_breakdown` (the report's compute / hop / HTTP categories).
- `metrics`: a server's ``/metrics`` read with prometheus_client's parser: `scrape`,
  `scrape_cache_counts`, `cache_counts`, `totals_by_label`, and `Scraper` (once a second, for a
  timeline).
- `machine`: `machine_info()` for the results, `parse_cpus("0-3")`.
- `resources`: CPU-seconds and peak memory of the system under test wherever it runs
  (`ProcessSampler`, `MetricsServerSampler`, all `CpuSeries`; the docker target's
  `EngineStatsSampler` lives in `docker_target`).
- `targets`: where the system under test runs (local processes, Docker via `docker_target`,
  kind): `check`, then `open_target` yields a `Target` (URL, sampler, budget, details).
- `runs`: run folders and result files: `stamp`, `new_run_dir`, `link_latest`, `write_json`,
  `read_json`, `utc_timestamp`.

Submodules are imported one by one (``from benchmarks.measure import loadgen``): the Locust and
burst processes import `workload` and `httpload` from here and must not pay for the rest.
"""
