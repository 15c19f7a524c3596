"""Interference arithmetic on recorded /proc/stat snapshots: what others took of our CPUs."""

from __future__ import annotations

import pytest

from benchmarks import analysis
from benchmarks.measure import interference
from benchmarks.measure.interference import Snapshot, read_cpu_times

HZ = interference.TICKS_PER_SECOND

# Two snapshots of a 2-CPU VM's /proc/stat, 2 s apart (in ticks: 2 s = 2 HZ per CPU). Fields:
# user nice system idle iowait irq softirq steal guest guest_nice.
BEFORE = """cpu  1000 10 500 8000 100 0 50 40 0 0
cpu0 600 0 300 4000 50 0 30 20 0 0
cpu1 400 10 200 4000 50 0 20 20 0 0
intr 12793559 0 0 0
ctxt 1234
"""


def after(cpu0: tuple[int, ...], cpu1: tuple[int, ...]) -> str:
    """BEFORE advanced by the given per-field tick deltas (user nice system idle iowait irq
    softirq steal), the guest fields untouched."""
    rows = []
    for name, delta in (("cpu0", cpu0), ("cpu1", cpu1)):
        old = next(line for line in BEFORE.splitlines() if line.startswith(name + " "))
        values = [int(v) for v in old.split()[1:]]
        new = [value + (delta[i] if i < len(delta) else 0) for i, value in enumerate(values)]
        rows.append(f"{name} " + " ".join(map(str, new)))
    return "cpu  0 0 0 0 0 0 0 0 0 0\n" + "\n".join(rows) + "\n"


def ticks(fraction: float) -> int:
    """A share of one CPU over the 2-s interval, in ticks."""
    return round(fraction * 2 * HZ)


def snapshots(cpu0, cpu1, sut_s: float, harness_s: float) -> tuple[Snapshot, Snapshot]:
    return (
        Snapshot(read_cpu_times(BEFORE), 10.0, 20.0),
        Snapshot(read_cpu_times(after(cpu0, cpu1)), 10.0 + sut_s, 20.0 + harness_s),
    )


def busy_then_idle(busy: float, steal: float = 0.0) -> tuple[int, ...]:
    """Deltas for one CPU busy `busy` (user) and stolen `steal` of the interval, idle the rest."""
    return (ticks(busy), 0, 0, ticks(1 - busy - steal), 0, 0, 0, ticks(steal))


def test_proc_stat_is_read_per_cpu_in_seconds():
    times = read_cpu_times(BEFORE)
    assert set(times) == {0, 1}  # the summed "cpu" line and the other lines are not CPUs
    # busy = user + nice + system + irq + softirq; iowait is idle; steal apart.
    assert times[0].busy == pytest.approx((600 + 300 + 30) / HZ)
    assert times[1].busy == pytest.approx((400 + 10 + 200 + 20) / HZ)
    assert times[0].steal == pytest.approx(20 / HZ)
    assert times[0].total == pytest.approx((600 + 300 + 4000 + 50 + 30 + 20) / HZ)


def test_a_step_where_only_our_processes_ran_is_quiet():
    # CPU 0 half busy, all of it the SUT's (1 s of 2); CPU 1 30% busy, all Locust and the harness.
    before, now = snapshots(busy_then_idle(0.5), busy_then_idle(0.3), sut_s=1.0, harness_s=0.6)
    result = interference.interference(before, now, [0], [1])
    assert result.sut_others_percent == 0.0 and result.loadgen_others_percent == 0.0
    assert result.steal_percent == 0.0 and result.disturbed is False


def test_others_on_the_sut_cpu_are_what_the_sut_did_not_use():
    # CPU 0 90% busy, the SUT used 1.2 of its 2 s (60%): others took 30%.
    before, now = snapshots(busy_then_idle(0.9), busy_then_idle(0.3), sut_s=1.2, harness_s=0.6)
    result = interference.interference(before, now, [0], [1])
    assert result.sut_others_percent == pytest.approx(30.0)
    assert result.loadgen_others_percent == 0.0 and result.disturbed is True


def test_a_few_percent_is_tolerated_and_the_threshold_is_a_setting():
    # Others took 4% of CPU 0: under the default 5%, over a 3% threshold.
    before, now = snapshots(busy_then_idle(0.54), busy_then_idle(0.3), sut_s=1.0, harness_s=0.6)
    assert interference.interference(before, now, [0], [1]).disturbed is False
    strict = interference.interference(before, now, [0], [1], disturbed_percent=3.0)
    assert strict.sut_others_percent == pytest.approx(4.0) and strict.disturbed is True


def test_harness_time_the_loadgen_cpu_cannot_hold_came_off_the_sut_cpu():
    # The harness used 0.8 s but CPU 1 was busy only 0.6 s: 0.2 s of it ran on CPU 0, so of
    # CPU 0's 1.4 busy seconds, 1.0 was the SUT, 0.2 the harness, and 0.2 (10%) others.
    before, now = snapshots(busy_then_idle(0.7), busy_then_idle(0.3), sut_s=1.0, harness_s=0.8)
    result = interference.interference(before, now, [0], [1])
    assert result.loadgen_others_percent == 0.0
    assert result.sut_others_percent == pytest.approx(10.0)


def test_steal_is_recorded_and_flags_a_step():
    # 10% of both CPUs stolen by the hypervisor, no other work.
    before, now = snapshots(
        busy_then_idle(0.5, steal=0.1), busy_then_idle(0.3, steal=0.1), sut_s=1.0, harness_s=0.6
    )
    result = interference.interference(before, now, [0], [1])
    assert result.steal_percent == pytest.approx(10.0)
    assert result.sut_others_percent == 0.0 and result.disturbed is True


def test_overlapping_cpus_count_once_with_the_sut():
    before, now = snapshots(busy_then_idle(0.9), busy_then_idle(0.3), sut_s=1.2, harness_s=0.2)
    result = interference.interference(before, now, [0], [0])
    assert result.loadgen_others_percent == 0.0  # no CPU of its own: nothing to measure
    # CPU 0 busy 1.8 s: 1.2 the SUT's, 0.2 the harness's (it had nowhere else to run), 0.4 others.
    assert result.sut_others_percent == pytest.approx(20.0)


def test_disturbed_steps_are_recorded_as_results_json_says():
    before, now = snapshots(busy_then_idle(0.9), busy_then_idle(0.3), sut_s=1.2, harness_s=0.6)
    result = interference.interference(before, now, [0], [1])
    schema = analysis.load_schema()
    errors = analysis.schema_errors(
        {"$defs": schema["$defs"], "$ref": "#/$defs/interference"}, result.as_dict()
    )
    assert errors == []
    assert "DISTURBED" in interference.step_note(result)
    assert interference.step_note(None) == "" and interference.run_record(result)["before_run"]
    assert "already busy" in interference.disturbed_warning(result, [0], [1])


def test_a_watch_reads_the_stat_file_it_is_given(tmp_path):
    # A recorded file that does not change: no time passed on its CPUs, nothing to blame.
    stat = tmp_path / "stat"
    stat.write_text(BEFORE)
    with interference.StepWatch([0], [1], [], stat_path=stat) as watch:
        pass
    assert watch.result is not None and watch.result.disturbed is False
    with interference.StepWatch([0], [1], None, stat_path=stat) as unwatched:
        pass
    assert unwatched.result is None  # not our processes (docker, kind): no accounting
