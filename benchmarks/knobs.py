"""The experiment knobs of `make bench`, in one table: parsing, how each applies, what it teaches.

Each `Knob` is one make/environment variable (``CACHE=local``), also a bench option
(``--cache local``). The table says how its value is parsed and checked, how it reaches the
system under test (server settings, i.e. ``LAB_<NAME>`` variables; keyword arguments of
``lab.launch.launch``; environment of the Locust process), and the paragraph the report
shows when the knob is not at its default. The bench, the targets, the report and the sweep
all read this table; none of them knows a knob by name.

A knob at its default applies nothing: the servers keep their own defaults, so a plain
``make bench`` runs exactly what it ran before these knobs existed. The one exception is
``CACHE_PLACEMENT``, pinned whenever a cache is on so that where the cache sat is what the
results say, not whatever the server's default happens to be.

Features land in the servers independently of this table. A knob whose setting the checkout
does not define yet (``servinglab/config.py``), or whose ``launch`` argument does not exist, or
whose Locust variable nothing reads, fails with a message naming what is missing instead of
being silently ignored by servers that do not know it.

``python -m benchmarks.knobs`` prints the table as Markdown (the README's list is checked
against it by the tests).

One module although it is over 400 lines: it is one table, and most of its length is the
paragraphs the report prints; the parsers and appliers each serve a row of it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.launch import ARCHITECTURES, TOPOLOGIES

BENCH_DIR = Path(__file__).resolve().parent
# Files that run inside the Locust process: a Locust variable must be read by one of them.
LOCUST_SOURCES = (BENCH_DIR / "measure" / "locustfile.py", BENCH_DIR / "measure" / "workload.py")
# Enough threads per worker for concurrent requests to meet in one batch. gunicorn's gthread
# workers and the gRPC servers serve one request per thread, so with one thread (the default)
# a batch could never hold more than one request.
BATCHING_THREADS = 8
MAX_REPLICAS = 16
MAX_HOP_DELAY_MS = 1000.0  # beyond this every request would blow the default 2 s budget


class KnobError(ValueError):
    """A knob's value is invalid, or the checkout cannot apply it; the message says why."""


Settings = dict[str, Any]
Values = Mapping[str, Any]


def _nothing(_values: Values, _architecture: str) -> dict:
    return {}


@dataclass(frozen=True)
class Knob:
    variable: str  # make / environment variable, e.g. "CACHE"
    default: Any
    values: str  # accepted values, for help and error messages
    summary: str  # one line: make help, README, the report's settings table
    parse: Callable[[str], Any]  # raw text -> value; raises KnobError
    about: str  # the report's paragraph: what varying this teaches
    # How a value reaches the system under test, per architecture (values = every knob's value):
    settings: Callable[[Values, str], Settings] = _nothing  # server settings (LAB_<NAME>)
    launch: Callable[[Values, str], dict] = _nothing  # keyword arguments of launch()
    locust_env: Callable[[Values], dict[str, str]] = lambda _values: {}
    # A sentence or two about this run's value (where the cache sat, how the delay was added).
    detail: Callable[[Any, Mapping[str, Any]], str] = lambda _value, _results: ""
    sweep_values: tuple[str, ...] = ()  # default values of `make bench-sweep SWEEP=<key>`
    runner_field: str | None = None  # BenchConfig attribute the bench reads directly
    # Whether a value deserves the report's paragraph; default: any value but the default.
    noteworthy: Callable[[Any], bool] | None = None

    @property
    def key(self) -> str:
        """The name in results.json (run.knobs) and in SWEEP=."""
        return self.variable.lower()

    @property
    def option(self) -> str:
        return "--" + self.key.replace("_", "-")

    def value_from(self, raw: str | None) -> Any:
        """The default for unset or empty text (make exports unset variables as empty)."""
        if raw is None or not str(raw).strip():
            return self.default
        try:
            return self.parse(str(raw).strip())
        except KnobError as problem:
            raise KnobError(f"{self.variable}={raw!r}: {problem}; expected {self.values}") from None

    def is_default(self, value: Any) -> bool:
        return canonical(value) == canonical(self.default)

    def worth_explaining(self, value: Any) -> bool:
        return self.noteworthy(value) if self.noteworthy else not self.is_default(value)

    def show(self, value: Any) -> str:
        return show_value(value)


def canonical(value: Any) -> Any:
    """A comparable, hashable form of a value: lists as tuples, dicts as sorted pairs."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return value


def show_value(value: Any) -> str:
    """How a knob value reads in a table or a sentence."""
    if value is None:
        return "server default"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{name}={count}" for name, count in value.items()) or "none"
    return str(value)


# --- Parsers --------------------------------------------------------------------------------


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.lower()
        if value not in options:
            raise KnobError(f"unknown value {text!r}")
        return value

    return parse


def _bounded(
    cast: Callable[[str], Any], kind: str, low: Any, high: Any, show: Callable[[Any], str]
) -> Callable[[str], Any]:
    """A parser of `cast(text)` within low..high; `kind` names what the text must be."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise KnobError(f"{text!r} is not {kind}") from None
        if not low <= value <= high:
            raise KnobError(f"{show(value)} is outside {show(low)}..{show(high)}")
        return value

    return parse


def _number(low: float, high: float) -> Callable[[str], float]:
    return _bounded(float, "a number", low, high, lambda value: f"{value:g}")


def _count(low: int, high: int) -> Callable[[str], int]:
    return _bounded(int, "a whole number", low, high, str)


def _switch(text: str) -> bool:
    value = text.lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise KnobError(f"unknown value {text!r}")


def _all_services() -> list[str]:
    services: list[str] = []
    for topology in TOPOLOGIES.values():
        services += [s for s in topology.services if s not in services]
    return services


def _replicas(text: str) -> dict[str, int]:
    """ "inference=2,preprocess=2" -> {"inference": 2, "preprocess": 2}."""
    counts: dict[str, int] = {}
    known = _all_services()
    for item in re.split(r"[,\s]+", text):
        if not item:
            continue
        service, sep, count = item.partition("=")
        if not sep:
            raise KnobError(f"{item!r} is not SERVICE=COUNT")
        if service not in known:
            raise KnobError(f"no service {service!r}; services are {', '.join(known)}")
        counts[service] = _count(1, MAX_REPLICAS)(count)
    return counts


def _architectures(text: str) -> tuple[str, ...]:
    names: list[str] = []
    for name in re.split(r"[,\s]+", text):
        if name and name not in names:
            names.append(name)
    unknown = [name for name in names if name not in ARCHITECTURES]
    if unknown:
        raise KnobError(
            f"unknown architecture(s) {', '.join(unknown)}; choose from {', '.join(ARCHITECTURES)}"
        )
    if not names:
        raise KnobError("no architecture named")
    return tuple(names)


def _profile(text: str) -> str:
    # Imported here: the estimators pull in scikit-learn, which the report does not need.
    from servinglab.model.estimators import PROFILES

    if text not in PROFILES:
        raise KnobError(f"unknown model profile {text!r}; choose from {', '.join(PROFILES)}")
    return text


# --- How knobs apply ------------------------------------------------------------------------


def _services(architecture: str) -> tuple[str, ...]:
    topology = TOPOLOGIES.get(architecture)
    return topology.services if topology else ()


def _cache_settings(values: Values, _architecture: str) -> Settings:
    return {} if values["cache"] == "none" else {"CACHE": values["cache"]}


def _placement_settings(values: Values, architecture: str) -> Settings:
    # Only where the gateway and the inference service are separate processes is there a choice.
    if values["cache"] == "none" or "inference" not in _services(architecture):
        return {}
    return {"CACHE_PLACEMENT": values["cache_placement"]}


def _batching_settings(values: Values, architecture: str) -> Settings:
    if not values["batching"]:
        return {}
    settings: Settings = {"BATCHING": True, "HTTP_THREADS": BATCHING_THREADS}
    if _services(architecture):
        settings["GRPC_THREADS"] = BATCHING_THREADS
    return settings


def _batch_limit(knob_key: str, setting: str) -> Callable[[Values, str], Settings]:
    """With batching on, the limit is always passed (the knob's or the servers' default), so the
    results record the batch limits that ran; with batching off it means nothing."""

    def apply(values: Values, _architecture: str) -> Settings:
        if not values["batching"]:
            return {}
        value = values[knob_key]
        if value is None:
            from servinglab import config as lab_config

            value = lab_config.DEFAULTS.get(setting)
        return {} if value is None else {setting: value}

    return apply


def _replicas_launch(values: Values, architecture: str) -> dict:
    mine = {
        service: count
        for service, count in values["replicas"].items()
        if service in _services(architecture)
    }
    return {"replicas": mine} if mine else {}


def _hop_delay_settings(values: Values, architecture: str) -> Settings:
    if values["hop_delay_ms"] <= 0 or not _services(architecture):
        return {}
    return {"HOP_DELAY_MS": values["hop_delay_ms"]}


def cache_location(values: Values, architecture: str) -> str | None:
    """Where a cache sat in one architecture, or None when no cache was on."""
    if values.get("cache", "none") == "none":
        return None
    services = _services(architecture)
    if not services:
        return "in process"
    if "inference" in services:
        return "gateway" if values.get("cache_placement") == "gateway" else "inference service"
    return "server default"


# --- Report sentences about one run -------------------------------------------------------------


def _applied(results: Mapping[str, Any], field: str) -> dict[str, Any]:
    return {
        name: (arch.get("applied") or {}).get(field)
        for name, arch in results.get("architectures", {}).items()
    }


def _cache_detail(value: str, results: Mapping[str, Any]) -> str:
    places = {name: place for name, place in _applied(results, "cache_location").items() if place}
    parts = [f"{name}: {place}" for name, place in places.items()]
    sentence = f"In this run the cache was `{value}`"
    return sentence + (f", sitting at: {'; '.join(parts)}." if parts else ".")


def _cache_rate_detail(value: float, _results: Mapping[str, Any]) -> str:
    return f"In this run {value:.0%} of requests repeated an earlier input."


def _hop_delay_detail(value: float, results: Mapping[str, Any]) -> str:
    how = {
        "netem": "with netem (the kernel's network emulator)",
        "sleep": "by an in-process sleep before each call",
    }
    delayed = {
        name: applied.get("hop_delay_method")
        for name, applied in (
            (name, arch.get("applied") or {}) for name, arch in results["architectures"].items()
        )
        if applied.get("settings", {}).get("HOP_DELAY_MS")
    }
    if not delayed:
        return f"HOP_DELAY_MS={value:g} applied to no architecture in this run."
    methods = sorted(
        {
            how.get(m, f"by `{m}`") if m else "by a method the deployment did not report"
            for m in delayed.values()
        }
    )
    return f"This run added {value:g} ms per hop to {', '.join(delayed)}, {' and '.join(methods)}."


def _replicas_detail(value: Mapping[str, int], results: Mapping[str, Any]) -> str:
    launched = {
        name: replicas
        for name, replicas in (
            (name, (launch or {}).get("replicas"))
            for name, launch in _applied(results, "launch").items()
        )
        if replicas
    }
    if not launched:
        return f"REPLICAS={show_value(value)} applied to no architecture in this run."
    return (
        "Replicas in this run: "
        + "; ".join(f"{name} {show_value(r)}" for name, r in launched.items())
        + "."
    )


def _batching_detail(_value: bool, results: Mapping[str, Any]) -> str:
    settings: dict[str, Any] = {}
    for applied in _applied(results, "settings").values():
        settings.update(applied or {})
    size, wait = settings.get("BATCH_MAX_SIZE"), settings.get("BATCH_MAX_WAIT_MS")
    threads = settings.get("HTTP_THREADS", BATCHING_THREADS)
    return (
        f"This run batched at most {show_value(size)} rows per model call, waiting at most {show_value(wait)} ms "
        f"for a batch to fill, with {threads} threads per worker."
    )


def _archs_detail(value: Iterable[str], results: Mapping[str, Any]) -> str:
    described = [
        f"{name}: {topology}"
        for name, topology in _applied(results, "topology").items()
        if topology
    ]
    return ("The topologies in this run: " + "; ".join(described) + ".") if described else ""


# --- The table ------------------------------------------------------------------------------

KNOBS: tuple[Knob, ...] = (
    Knob(
        "ARCHS",
        ("monolith", "microservices"),
        " ".join(ARCHITECTURES),
        "architectures to compare, in order",
        _architectures,
        runner_field="archs",
        # Dropping one of the two, or reordering them, teaches nothing new about topologies.
        noteworthy=lambda archs: bool(set(archs) - {"monolith", "microservices"}),
        about=(
            "Topologies. The same pipeline (preprocess, model, postprocess) is cut into processes in "
            "different ways. Every process boundary is a hop: the data is serialised, crosses the "
            "network stack and is parsed again by another server, and each extra process is one more "
            "to schedule on the same CPUs. Comparing topologies at the same CPU budget shows that the "
            "cost follows the number and the place of the hops, not the label “microservices”."
        ),
        detail=_archs_detail,
    ),
    Knob(
        "PROFILE",
        "linear",
        "linear|forest|boosting",
        "model profile to serve",
        _profile,
        runner_field="profile",
        sweep_values=("linear", "boosting", "forest"),
        about=(
            "Model profile. The model's own work per prediction grows from a fraction of a "
            "millisecond (linear) to milliseconds (boosting, forest), while the cost of a hop stays "
            "the same. The heavier the model, the smaller the share of each request the hops take, "
            "so the monolith's advantage shrinks and the freedom to give the model its own service "
            "(scaled separately) matters more."
        ),
    ),
    Knob(
        "CACHE",
        "none",
        "none|local|redis",
        "prediction cache in the servers",
        _choice("none", "local", "redis"),
        settings=_cache_settings,
        detail=_cache_detail,
        sweep_values=("none", "local", "redis"),
        about=(
            "Prediction cache. The same input always gets the same answer, so a cache can answer a "
            "request it has seen before without running the pipeline. `local` keeps one cache in "
            "every server process (each gunicorn worker or replica has its own copy, so an input must "
            "have reached the same process before to hit); `redis` shares one cache between all "
            "processes at the price of a network round trip per lookup to a separate Redis process, "
            "which runs inside the same CPU budget. "
            "Where the cache sits decides what a hit saves: in the monolith it is in the process that "
            "runs the model; in microservices at the gateway a hit skips every hop as well as the "
            "compute, while at the inference service a hit still pays the hops (the gateway calls "
            "preprocess, then inference answers from its cache) and saves only the model's work. A "
            "cache helps only as much as the traffic repeats itself: look at the hit rate next to "
            "the capacity and the cost."
        ),
    ),
    Knob(
        "CACHE_PLACEMENT",
        "gateway",
        "gateway|inference",
        "where microservices cache (with CACHE on)",
        _choice("gateway", "inference"),
        settings=_placement_settings,
        sweep_values=("gateway", "inference"),
        about=(
            "Cache placement in microservices. At the gateway the cache is keyed on the request as "
            "it arrived and a hit answers before any hop; at the inference service it is keyed on "
            "the features after preprocessing, so a hit saves the model's work but still costs the "
            "hops to preprocess, inference and postprocess. The inference-side cache has its own "
            "reasons (several gateways or clients share it, and inputs that differ but preprocess to "
            "the same features hit), but for latency and CPU the rule is: cache as early in the call "
            "chain as you can. The monolith has one process, so for it the placement makes no "
            "difference."
        ),
    ),
    Knob(
        "CACHE_RATE",
        0.0,
        "0..1",
        "share of requests repeating earlier inputs (Zipf-like)",
        _number(0.0, 1.0),
        # With a cache on, CACHE_RATE=0 must mean "every input new", not the default workload,
        # which cycles through the held-out birds and so repeats almost every request.
        locust_env=lambda values: (
            {"LAB_BENCH_CACHE_RATE": f"{values['cache_rate']:g}"}
            if values["cache_rate"] > 0 or values["cache"] != "none"
            else {}
        ),
        detail=_cache_rate_detail,
        sweep_values=("0", "0.5", "0.9"),
        about=(
            "Repeated inputs. The load generator drew this share of requests from inputs it had sent "
            "before, a few popular ones much more often than the rest (Zipf-like, as real traffic "
            "often is); the others were new. Without a cache repetition changes nothing: every "
            "request is computed again. With a cache, the hit rate is what it made of the "
            "repetition, and it can be lower than the repeat share: an input must be seen once "
            "before it can hit, and a cache per process sees only the requests that reach that "
            "process."
        ),
    ),
    Knob(
        "BATCHING",
        False,
        "on|off",
        "micro-batch concurrent requests in the model call",
        _switch,
        settings=_batching_settings,
        detail=_batching_detail,
        sweep_values=("off", "on"),
        about=(
            "Micro-batching. Requests that arrive together wait a moment (at most BATCH_MAX_WAIT_MS) "
            "and go through the model in one call of its vectorised code (at most BATCH_MAX_SIZE "
            "rows), instead of one call each. It trades a little latency per request for less work "
            "per row, so it raises throughput when the model call is a large share of a request "
            "and the server is busy, and only adds waiting when it is idle. A batch needs requests "
            f"in flight at the same time in one process, so batching runs also get {BATCHING_THREADS} "
            "threads per gunicorn worker and per gRPC service (threads that also compete for the "
            "GIL): compare throughput and p99 against a run with BATCHING=off "
            "(`make bench-sweep SWEEP=batching`)."
        ),
    ),
    Knob(
        "BATCH_MAX_SIZE",
        None,
        "1..4096 (with BATCHING=on)",
        "largest batch, in rows",
        _count(1, 4096),
        settings=_batch_limit("batch_max_size", "BATCH_MAX_SIZE"),
        sweep_values=("4", "16", "64"),
        about=(
            "Largest batch. A bigger batch spreads the fixed cost of one model call over more rows, "
            "but a request at the end of a big batch waits for all the rows before it."
        ),
    ),
    Knob(
        "BATCH_MAX_WAIT_MS",
        None,
        "0..1000 (with BATCHING=on)",
        "longest wait for a batch to fill, ms",
        _number(0.0, 1000.0),
        settings=_batch_limit("batch_max_wait_ms", "BATCH_MAX_WAIT_MS"),
        sweep_values=("0.5", "2", "5"),
        about=(
            "Batch wait. The longest a request waits for others to join its batch: this wait is "
            "added to every request's latency when traffic is light, and buys larger batches when "
            "it is heavy. It should stay a small fraction of the SLO."
        ),
    ),
    Knob(
        "REPLICAS",
        {},
        "SERVICE=N[,SERVICE=N] e.g. inference=2",
        "replicas per gRPC service, same CPU budget",
        _replicas,
        launch=_replicas_launch,
        detail=_replicas_detail,
        sweep_values=("inference=1", "inference=2", "inference=3"),
        about=(
            "Replicas. More copies of a service share the same CPUs (every process stays pinned to "
            "SUT_CPUS), and the gateway spreads calls over them round-robin. Replicas add "
            "parallelism where one process was the bottleneck while CPU was left over, but they add "
            "no CPU, and each costs memory (see peak memory and the consumed cost) and scheduling. "
            "This is the microservices scaling story in miniature: the busy stage can be scaled "
            "alone, where the monolith can only add whole copies of everything. The monolith has no "
            "services to replicate and is not changed."
        ),
    ),
    Knob(
        "HOP_DELAY_MS",
        0.0,
        f"0..{MAX_HOP_DELAY_MS:g}",
        "extra network delay per hop between services, ms",
        _number(0.0, MAX_HOP_DELAY_MS),
        settings=_hop_delay_settings,
        detail=_hop_delay_detail,
        sweep_values=("0", "0.5", "2", "5"),
        about=(
            "Network delay between services. On one machine a hop crosses only the loopback "
            "interface, in tens of microseconds; between machines it takes about 0.1 to 0.5 ms in "
            "one data centre, 1 to 2 ms across zones and tens of milliseconds across regions. The "
            "delay costs no CPU, but every request waits for it on every hop, so latency rises; "
            "since capacity is the highest rate that meets the p99 SLO, capacity falls as the delay "
            "eats the latency budget, and requests held longer keep threads and connections busy. "
            "The monolith has no hops and is unaffected: this is the price of distributing a "
            "pipeline that a benchmark on one machine hides."
        ),
    ),
)
BY_KEY: dict[str, Knob] = {knob.key: knob for knob in KNOBS}


# --- Using the table --------------------------------------------------------------------------


def defaults() -> dict[str, Any]:
    return {knob.key: knob.default for knob in KNOBS}


def parse_all(raw: Mapping[str, str | None]) -> dict[str, Any]:
    """Every knob's value from raw text keyed by knob key (missing or empty -> default)."""
    return {knob.key: knob.value_from(raw.get(knob.key)) for knob in KNOBS}


def non_default(values: Values) -> list[Knob]:
    return [knob for knob in KNOBS if knob.key in values and not knob.is_default(values[knob.key])]


def validate(values: Values) -> list[str]:
    """Check knobs against each other; raise KnobError on a contradiction, return warnings."""
    archs = values["archs"]
    if values["cache"] == "none" and not BY_KEY["cache_placement"].is_default(
        values["cache_placement"]
    ):
        raise KnobError(
            f"CACHE_PLACEMENT={values['cache_placement']} has no effect with CACHE=none; "
            "set CACHE=local or CACHE=redis"
        )
    if not values["batching"]:
        for key in ("batch_max_size", "batch_max_wait_ms"):
            if values[key] is not None:
                raise KnobError(f"{key.upper()}={show_value(values[key])} needs BATCHING=on")
    present = {service for arch in archs for service in _services(arch)}
    missing = [service for service in values["replicas"] if service not in present]
    if missing:
        raise KnobError(
            f"REPLICAS names {', '.join(missing)}, which no architecture in ARCHS "
            f"({' '.join(archs)}) runs"
        )
    warnings = []
    if values["cache_rate"] > 0 and values["cache"] == "none":
        warnings.append(
            f"CACHE_RATE={values['cache_rate']:g} with CACHE=none: repeated inputs are computed "
            "again (a no-cache baseline)"
        )
    if values["hop_delay_ms"] > 0 and not present:
        warnings.append(
            f"HOP_DELAY_MS={values['hop_delay_ms']:g}: no architecture in ARCHS has hops"
        )
    if (
        values["cache"] != "none"
        and values["cache_placement"] == "inference"
        and "inference" not in present
    ):
        warnings.append(
            "CACHE_PLACEMENT=inference: no architecture in ARCHS has an inference service"
        )
    return warnings


def settings_for(values: Values, architecture: str) -> Settings:
    """Server settings (launch's ``settings=``, LAB_<NAME> in containers) for one architecture."""
    settings: Settings = {}
    for knob in KNOBS:
        settings.update(knob.settings(values, architecture))
    return settings


def launch_kwargs_for(values: Values, architecture: str) -> dict:
    kwargs: dict = {}
    for knob in KNOBS:
        kwargs.update(knob.launch(values, architecture))
    return kwargs


def locust_env(values: Values) -> dict[str, str]:
    env: dict[str, str] = {}
    for knob in KNOBS:
        env.update(knob.locust_env(values))
    return env


def applied_for(values: Values, architecture: str) -> dict[str, Any]:
    """What the knobs did to one architecture, as recorded in results.json."""
    topology = TOPOLOGIES.get(architecture)
    return {
        "settings": settings_for(values, architecture),
        "launch": launch_kwargs_for(values, architecture),
        "topology": topology.description if topology else None,
        "cache_location": cache_location(values, architecture),
    }


def _who_sets(values: Values, architectures: Iterable[str], part: str) -> dict[str, Knob]:
    """name (setting or launch argument) -> the knob that sets it, over the given architectures."""
    found: dict[str, Knob] = {}
    for knob in KNOBS:
        for architecture in architectures:
            for name in getattr(knob, part)(values, architecture):
                found.setdefault(name, knob)
    return found


def check_available(values: Values) -> None:
    """Fail, naming the missing piece, when this checkout cannot apply a chosen knob."""
    from lab.launch import launch
    from servinglab import config as lab_config

    archs = values["archs"]
    for setting, knob in _who_sets(values, archs, "settings").items():
        if setting not in lab_config.DEFAULTS:
            raise KnobError(
                f"{knob.variable}={show_value(values[knob.key])} needs the server setting "
                f"LAB_{setting}, which this checkout does not define yet (servinglab/config.py): "
                "the feature has not landed"
            )
    parameters = inspect.signature(launch).parameters
    for argument, knob in _who_sets(values, archs, "launch").items():
        if argument not in parameters:
            raise KnobError(
                f"{knob.variable}={show_value(values[knob.key])} needs launch(..., {argument}=...), "
                "which lab.launch does not accept yet"
            )
    sources = "".join(path.read_text() for path in LOCUST_SOURCES if path.exists())
    for knob in KNOBS:
        for name in knob.locust_env(values):
            if name not in sources:
                raise KnobError(
                    f"{knob.variable}={show_value(values[knob.key])} needs the load generator to read "
                    f"{name}, which neither benchmarks/measure/locustfile.py nor workload.py does yet"
                )


def check_target(values: Values, target: str) -> None:
    """Knobs that change the servers need a target the benchmark starts itself."""
    archs = values["archs"]
    settings = _who_sets(values, archs, "settings")
    launched = _who_sets(values, archs, "launch")
    if target == "kind" and (settings or launched):
        names = sorted({knob.variable for knob in [*settings.values(), *launched.values()]})
        raise KnobError(
            f"TARGET=kind benchmarks what `make kind-deploy` deployed; {', '.join(names)} change the "
            "servers, so set them in the manifests (k8s/) instead"
        )
    if target == "docker" and launched:
        names = sorted({knob.variable for knob in launched.values()})
        raise KnobError(
            f"TARGET=docker runs one container per role and cannot apply {', '.join(names)}; "
            "use TARGET=local"
        )


def record(values: Values) -> dict[str, Any]:
    """Every knob's value as plain JSON for results.json (run.knobs)."""
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in values.items()
    }


def explanations(results: Mapping[str, Any]) -> list[tuple[Knob, str]]:
    """(knob, paragraph) for every knob of the run that is not at its default, in table order.

    Results written before knobs were recorded have no ``run.knobs``: nothing to explain.
    """
    recorded = results["run"].get("knobs") or {}
    paragraphs = []
    for knob in non_default(recorded):
        if not knob.worth_explaining(recorded[knob.key]):
            continue
        detail = knob.detail(recorded[knob.key], results)
        paragraphs.append((knob, f"{knob.about} {detail}".strip()))
    return paragraphs


def markdown_table() -> str:
    lines = ["| Variable | Values | Default | What |", "|---|---|---|---|"]
    for knob in KNOBS:
        values = knob.values.replace("|", "\\|")  # a bare | would end the Markdown cell
        lines.append(
            f"| `{knob.variable}` | `{values}` | {show_value(knob.default)} | {knob.summary} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
