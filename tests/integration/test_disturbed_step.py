"""A real step with another program spinning on the SUT's CPU: the step is flagged as disturbed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from benchmarks.measure import interference, loadgen
from lab.launch import launch
from lab.supervisor import Supervisor

pytestmark = pytest.mark.integration


def spin_outside_our_tree(cpu: int) -> psutil.Process:
    """A Python busy loop pinned to `cpu`, started through a shell that exits at once, so it is
    not our descendant: to the bench it is someone else's program, as it must be."""
    loop = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    shell = subprocess.run(
        ["sh", "-c", '"$@" >/dev/null 2>&1 & echo $!', "sh", sys.executable, "-c", loop],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return psutil.Process(int(shell.stdout.strip()))


def spin_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def test_a_busy_process_on_the_sut_cpu_gets_the_step_flagged(tmp_path, models_root):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not interference.available():
        pytest.skip("needs two CPUs and /proc/stat")
    sut_cpu, loadgen_cpu = cpus[0], cpus[-1]
    records = loadgen.write_records(tmp_path / "locust")
    supervisor = Supervisor(log_dir=tmp_path / "logs", cpus=[loadgen_cpu])
    spinner = None
    try:
        with launch(
            "monolith",
            settings={"MODEL_DIR": models_root},
            cpus=[sut_cpu],
            log_dir=tmp_path / "sut",
        ) as deployment:
            sut_pids = [managed.pid for managed in deployment.supervisor.processes]
            spinner = spin_outside_our_tree(sut_cpu)
            ours = {child.pid for child in psutil.Process().children(recursive=True)}
            assert spinner.pid not in ours
            spun_before, started = spin_seconds(spinner), time.monotonic()
            # The same step seen twice: as the bench sees it, and with the spinner counted as
            # ours. The difference is what the spinner took, whatever else loads this machine.
            with (
                interference.StepWatch([sut_cpu], [loadgen_cpu], sut_pids) as watch,
                interference.StepWatch([sut_cpu], [loadgen_cpu], [*sut_pids, spinner.pid]) as blind,
            ):
                samples = loadgen.run_locust(
                    supervisor,
                    "locust-step",
                    deployment.url,
                    4,
                    5.0,
                    2,
                    tmp_path / "locust" / "step",
                    records,
                )
            spun, wall = spin_seconds(spinner) - spun_before, time.monotonic() - started
    finally:
        if spinner is not None:
            spinner.send_signal(signal.SIGKILL)
            _, alive = psutil.wait_procs([spinner], timeout=10)
            assert alive == []
        supervisor.stop(grace_s=2)
    assert samples.requests, "the step sent no request"
    result, spinner_as_ours = watch.result, blind.result
    assert result is not None and spinner_as_ours is not None
    assert result.disturbed, result
    spinner_percent = 100 * spun / wall
    seen = result.sut_others_percent - spinner_as_ours.sut_others_percent
    assert seen >= 0.8 * spinner_percent, (result, spinner_as_ours, spinner_percent)
