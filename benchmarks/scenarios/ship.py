"""Scenario 4, "ship a change to one stage": a new postprocess rule under steady load.

The change is the confidence threshold under which a prediction is flagged `uncertain` (0.6 ->
0.99), a postprocess rule, with the big `knn` model deployed. Both architectures read it from a
settings file (`LAB_SETTINGS_FILE`, read when a process starts, like a mounted ConfigMap), so
shipping is: write the new value, then restart what must restart, with the lab's zero-failure
rollouts (`lab.launch.Deployment`):

- microservices: `rolling_restart("postprocess")`: a new postprocess process on the same port,
  then the old one drains; it loads no model. Nothing else restarts.
- monolith: `reload_workers()`: TTIN/TTOU, worker by worker, each new worker loading the whole
  app, the model included, before an old one retires.

Load: the chaos timeline (`benchmarks.chaos.timeline.run_timeline`): paced Locust users at a rate
below both capacities, a quiet phase, the change, then two phases; failures and latency damage as
`benchmarks.slo_damage` defines them. Alongside, a probe sends one bird whose confidence lies
between the two thresholds every PROBE_INTERVAL_S on a new connection (so answers come from every
worker) and records which rule each answer shows. *Time to deliver* runs from the change's start
to the first probe sent after the last answer under the old rule: from then on every answer shows
the new one (to within one probe interval).

One scenario in one module: the probing, the change made to each architecture and the timing of
delivery are one measurement.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import requests

from benchmarks.chaos.config import REQUEST_BUDGET_MS, ChaosConfig
from benchmarks.chaos.events import Event
from benchmarks.chaos.timeline import run_timeline
from benchmarks.measure import loadgen, memory
from benchmarks.scenarios import base
from lab.launch import Deployment, launch
from lab.supervisor import Supervisor
from lab.watchdog import StopSignals
from servinglab.model.data import held_out_records

PROFILE = "knn"
OLD_THRESHOLD = 0.6  # the lab's default (servinglab.config)
NEW_THRESHOLD = 0.99
PROBE_INTERVAL_S = 0.1
RATE = 20.0  # req/s, paced: below both architectures' capacity with the knn model on one core
USERS = 4
# Seconds of steady load before the change (the baseline), and twice that after it.
QUICK_PHASE_S = 6.0
PHASE_S = 10.0
SETTINGS_FILE = "settings.env"


def check(context: base.ScenarioContext) -> None:
    base.require_profile(context.models, PROFILE)


def write_rule(path: Path, threshold: float) -> None:
    """The settings file every process of the deployment reads when it starts."""
    path.write_text(
        "# the postprocess rule shipped by make scenarios (scenario 4)\n"
        f"LAB_CONFIDENCE_THRESHOLD={threshold:g}\n"
    )


@dataclass(frozen=True)
class ProbeAnswer:
    sent: float  # epoch seconds
    received: float
    status: int  # 0 = no answer
    uncertain: bool | None  # the flag the answer carries: which rule made it


class RuleProbe:
    """One bird every `interval_s`, each on a new connection, recording the rule in each answer."""

    def __init__(self, url: str, record: Mapping[str, Any], interval_s: float = PROBE_INTERVAL_S):
        self.url = f"{url}/v1/predict"
        self.body = {"instances": [dict(record)]}
        self.interval_s = interval_s
        self.answers: list[ProbeAnswer] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rule-probe", daemon=True)

    def _run(self) -> None:
        while not self._stopping.is_set():
            sent = time.time()
            status, uncertain = 0, None
            try:
                response = requests.post(self.url, json=self.body, timeout=5)
                status = response.status_code
                if status == 200:
                    uncertain = bool(response.json()["predictions"][0]["uncertain"])
            except requests.RequestException:
                pass
            self.answers.append(ProbeAnswer(sent, time.time(), status, uncertain))
            self._stopping.wait(self.interval_s)

    def __enter__(self) -> RuleProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)


def delivery(answers: Sequence[ProbeAnswer], change_started: float) -> dict[str, Any]:
    """When the new rule (`uncertain` true for the probe bird) reached every answer.

    `delivered_s`: from the change's start to the first answer under the new rule sent after the
    last answer under the old one arrived (None: not delivered before the run ended);
    `first_new_s`: to the first answer under the new rule; `old_before` counts old-rule answers
    before the change, `new_before` new-rule ones (which would mean the probe is not measuring)."""
    before = [a for a in answers if a.sent < change_started and a.status == 200]
    after = sorted((a for a in answers if a.sent >= change_started), key=lambda a: a.sent)
    old = [a for a in after if a.status == 200 and a.uncertain is False]
    new = [a for a in after if a.status == 200 and a.uncertain is True]
    last_old = max((a.received for a in old), default=None)
    delivered = next((a.sent for a in new if last_old is None or a.sent > last_old), None)

    def since(moment: float | None) -> float | None:
        return None if moment is None else round(moment - change_started, 2)

    return {
        "delivered_s": since(delivered),
        "first_new_s": since(new[0].sent if new else None),
        "last_old_s": since(last_old),
        "old_answers_after_change": len(old),
        "probes": len(answers),
        "probe_failed": sum(1 for a in answers if a.status != 200),
        "old_before": sum(1 for a in before if a.uncertain is False),
        "new_before": sum(1 for a in before if a.uncertain is True),
    }


def pick_probe_record(url: str) -> dict[str, Any]:
    """A held-out bird whose confidence lies between the old and the new threshold, asked of the
    deployment itself: its `uncertain` flag is then the rule that answered."""
    records = held_out_records()
    response = requests.post(f"{url}/v1/predict", json={"instances": records}, timeout=60)
    response.raise_for_status()
    for record, prediction in zip(records, response.json()["predictions"], strict=True):
        if OLD_THRESHOLD <= prediction["confidence"] < NEW_THRESHOLD:
            return record
    raise base.ScenarioError(
        f"no held-out bird has a {PROFILE} confidence within [{OLD_THRESHOLD}, {NEW_THRESHOLD}): "
        "the rule change would not show in any answer"
    )


class _ContextStop:
    """What `run_timeline` needs of a stop flag, answered by the scenario context."""

    def __init__(self, context: base.ScenarioContext):
        self.context = context

    def check(self) -> None:
        self.context.check_stop()


def ship_action(architecture: str, deployment: Deployment, settings_file: Path):
    def ship(_event: Event) -> None:
        write_rule(settings_file, NEW_THRESHOLD)
        if architecture == "microservices":
            deployment.rolling_restart("postprocess")
        else:
            deployment.reload_workers()

    return ship


DESCRIPTIONS = {
    "microservices": "new threshold in the settings file, then roll the postprocess service "
    "(new process on its port, old one drained); no model is loaded",
    "monolith": "new threshold in the settings file, then TTIN/TTOU worker by worker: each new "
    "worker loads the app and the model before an old one retires",
}


def measure(
    context: base.ScenarioContext, architecture: str, record: dict[str, Any] | None
) -> dict[str, Any]:
    """One architecture under load through the change: the timeline's summary and the probe's."""
    run_dir = context.run_dir / architecture
    run_dir.mkdir(parents=True, exist_ok=True)
    loadgen.write_records(run_dir)
    settings_file = run_dir / SETTINGS_FILE
    write_rule(settings_file, OLD_THRESHOLD)
    phase = QUICK_PHASE_S if context.quick else PHASE_S
    config = ChaosConfig(
        archs=[architecture],
        rate=RATE,
        users=USERS,
        phase_seconds=phase,
        profile=PROFILE,
        sut_cpus=context.sut_cpus,
        loadgen_cpus=context.loadgen_cpus,
        models=context.models,
        out=run_dir,
        slo_ms=context.slo_ms,
    )
    settings = {
        "MODEL_DIR": context.models.resolve(),
        "MODEL_PROFILE": PROFILE,
        "SETTINGS_FILE": settings_file,
        "REQUEST_BUDGET_MS": REQUEST_BUDGET_MS,
    }
    stop = cast(StopSignals, context.stop or _ContextStop(context))
    log_dir = run_dir / "logs"
    event = Event("ship", DESCRIPTIONS[architecture])
    with (
        launch(
            architecture, settings=settings, cpus=context.sut_cpus, log_dir=log_dir
        ) as deployment,
        Supervisor(log_dir=log_dir, cpus=context.loadgen_cpus) as supervisor,
    ):
        workers = len(deployment.entry_workers())
        memory.wait_for_workers(deployment, workers, deployment.ready_timeout_s, context.check_stop)
        record = record or pick_probe_record(deployment.url)
        with RuleProbe(deployment.url, record) as probe:
            summary = run_timeline(
                architecture,
                deployment,
                supervisor,
                config,
                run_dir,
                [(event, ship_action(architecture, deployment, settings_file))],
                stop,
                final_phases=2.0,
            )
    outcome = summary["events"][0]
    # The last whole second before the change: its rolling window is the steady load alone.
    before = [row for row in summary["timeline"] if row["second"] + 1 <= outcome["at_s"]]
    return {
        "architecture": architecture,
        "record": record,
        "event": outcome,
        "delivery": delivery(probe.answers, event.started),
        "requests": summary["requests"],
        "failed": summary["failed"],
        "change_at_s": outcome["at_s"],
        "event_started": event.started,
        "baseline_p99_ms": before[-1]["p99_ms"] if before else None,
        "timeline": summary["timeline"],
        "probe": [asdict(answer) for answer in probe.answers],
    }


def build_result(
    context: base.ScenarioContext, measured: Mapping[str, Mapping[str, Any]]
) -> base.ScenarioResult:
    """Rows, charts and notes from the architectures measured so far."""

    def figure(architecture: str, *path: str) -> Any:
        value: Any = measured.get(architecture)
        for key in path:
            value = None if value is None else value.get(key)
        return value

    result = base.ScenarioResult(
        name="ship",
        configurations={
            "monolith": f"gunicorn, 2 workers x 1 thread, the {PROFILE} model in each; ships by "
            "replacing every worker (TTIN/TTOU)",
            "microservices": "gateway 2 workers, one process per stage; ships by rolling the "
            "postprocess service alone",
        },
        budget=(
            f"{context.vcpus} vCPU (CPU {','.join(map(str, context.sut_cpus))}) for the servers, "
            f"Locust on CPU {','.join(map(str, context.loadgen_cpus))}; {RATE:g} req/s paced "
            f"from {USERS} users"
        ),
        raw={
            "profile": PROFILE,
            "rule": {"from": OLD_THRESHOLD, "to": NEW_THRESHOLD},
            "rate": RATE,
            "users": USERS,
            "probe_interval_s": PROBE_INTERVAL_S,
            "architectures": dict(measured),
        },
    )
    noise = base.SINGLE_RUN_NOISE
    result.rows = [
        base.row(
            "time to deliver the new rule (every answer under it)",
            "s",
            "lower",
            figure("monolith", "delivery", "delivered_s"),
            figure("microservices", "delivery", "delivered_s"),
            "The microservices restart one small process that loads no model; the monolith "
            "replaces every worker, and each new one loads the whole model before it serves.",
            noise=noise,
        ),
        base.row(
            "failed requests during the change",
            "requests",
            "lower",
            figure("monolith", "event", "failed"),
            figure("microservices", "event", "failed"),
            "Both rollouts start the replacement before the old process drains, so no request "
            "should find nobody listening.",
            noise=noise,
        ),
        base.row(
            "p99 before the change (steady load, nothing changing)",
            "ms",
            "lower",
            figure("monolith", "baseline_p99_ms"),
            figure("microservices", "baseline_p99_ms"),
            "The reference the change's peak is read against: the microservices pay their hops "
            "on every request, change or not.",
            noise=noise,
        ),
        base.row(
            "peak p99 from the change to the end of the run",
            "ms",
            "lower",
            figure("monolith", "event", "peak_p99_ms"),
            figure("microservices", "event", "peak_p99_ms"),
            "Loading a model takes CPU from the workers still serving on the same cores; "
            "restarting postprocess takes little.",
            noise=noise,
        ),
        base.row(
            "seconds above the SLO during the change",
            "s",
            "lower",
            figure("monolith", "event", "seconds_above_slo"),
            figure("microservices", "event", "seconds_above_slo"),
            f"Seconds whose rolling p99 exceeded the {context.slo_ms:g} ms SLO with slow "
            "requests of their own (benchmarks.slo_damage); if the p99 before the change was "
            "already above the SLO, this counts the machine, not the change.",
            noise=noise,
        ),
    ]
    result.charts = [_rule_chart(measured), _p99_chart(measured, context.slo_ms)]
    result.notes = [
        "One run per architecture, on the load the machine had: differences under "
        f"{noise:.0%} are called ties.",
        f"Time to deliver is resolved to one probe interval ({PROBE_INTERVAL_S:g} s); the probe "
        "opens a new connection per request, so the kernel hands it to any worker.",
        "The monolith with gunicorn --preload (scenario 2's memory saver) could not ship this "
        "way at all: its new workers fork from the master's loaded app and keep the old rule "
        "until the whole master restarts.",
    ]
    first = result.rows[0]
    result.summary = (
        f"Time to deliver the new postprocess rule: {first.winner} ({first.by_how_much}); "
        f"failed requests: monolith {_count(figure('monolith', 'event', 'failed'))}, "
        f"microservices {_count(figure('microservices', 'event', 'failed'))}."
    )
    return result


def _count(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _rule_chart(measured: Mapping[str, Mapping[str, Any]]) -> base.ChartData:
    series = []
    for architecture in base.ARCHITECTURES:
        point = measured.get(architecture)
        if not point:
            continue
        start = point["event_started"]
        answers = [a for a in point["probe"] if a["status"] == 200]
        series.append(
            base.Series(
                architecture,
                [round(a["sent"] - start, 2) for a in answers],
                [1.0 if a["uncertain"] else 0.0 for a in answers],
            )
        )
    return base.ChartData(
        "rule-in-answers",
        "Which rule answered the probe, around the change",
        "seconds since the change started",
        "new rule (1) or old rule (0)",
        "Each step is one probe answer. The microservices switch once, when the new postprocess "
        "takes over; the monolith answers under both rules while old and new workers overlap.",
        series,
        kind="step",
        marks=[(0.0, "change starts")],
    )


def _p99_chart(measured: Mapping[str, Mapping[str, Any]], slo_ms: float) -> base.ChartData:
    series = []
    for architecture in base.ARCHITECTURES:
        point = measured.get(architecture)
        if not point:
            continue
        rows = point["timeline"]
        series.append(
            base.Series(
                architecture,
                [float(row["second"]) - point["change_at_s"] for row in rows],
                [row["p99_ms"] for row in rows],
            )
        )
    return base.ChartData(
        "p99-during-change",
        "Rolling p99 latency around the change",
        "seconds since the change started",
        "p99, ms",
        f"Per second, the p99 of a trailing window (benchmarks.slo_damage); the dashed line is "
        f"the SLO ({slo_ms:g} ms).",
        series,
        hlines=[(slo_ms, f"SLO {slo_ms:g} ms")],
        marks=[(0.0, "change starts")],
        log_y=True,
    )


def run(context: base.ScenarioContext) -> base.ScenarioResult:
    measured: dict[str, dict[str, Any]] = {}
    record: dict[str, Any] | None = None
    for architecture in base.ARCHITECTURES:
        context.check_stop()
        context.progress(f"ship: {architecture}: starting, {PROFILE} model, {RATE:g} req/s")
        point = measure(context, architecture, record)
        record = point["record"]
        measured[architecture] = point
        shown = point["delivery"]["delivered_s"]
        context.progress(
            f"ship: {architecture}: delivered after "
            + ("(not delivered)" if shown is None else f"{shown:.1f} s")
            + f", {point['event']['failed']} failed, peak p99 {point['event']['peak_p99_ms']} ms"
        )
        context.checkpoint(build_result(context, measured))
    return build_result(context, measured)


SCENARIO = base.Scenario(
    name="ship",
    number=4,
    title="Ship a change to one stage",
    question="Under steady load with a big model deployed, the postprocess rule changes (the "
    "confidence threshold). How long until every answer shows it, and what does the change cost "
    "in failures and latency, when only the postprocess service rolls versus every monolith "
    "worker reloading the model?",
    run=run,
    estimate_s=(55.0, 80.0),
    check=check,
)
