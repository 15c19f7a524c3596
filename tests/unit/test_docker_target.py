"""TARGET=docker without an engine: the stats sampler's arithmetic, the container limits, the
container-tax summary, and the one-line errors for a bad TARGET, a missing engine and a taken port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from benchmarks import container_tax
from benchmarks.measure import docker_target
from lab import containers

ROOT = Path(__file__).resolve().parents[2]


class FakeContainer:
    """Streams prepared stats frames, as `container.stats(stream=True, decode=True)` does."""

    def __init__(self, name: str, frames: list[dict], release: threading.Event):
        self.name, self.frames, self.release = name, frames, release

    def stats(self, stream: bool, decode: bool):
        assert stream and decode, (
            "non-streaming stats wait for the engine's next sample: stream them"
        )
        yield from self.frames
        self.release.wait(5)


def frame(cpu_seconds: float, usage_mb: float, inactive_mb: float = 0.0) -> dict:
    return {
        "cpu_stats": {"cpu_usage": {"total_usage": int(cpu_seconds * 1e9)}},
        "memory_stats": {
            "usage": int(usage_mb * (1 << 20)),
            "stats": {"total_inactive_file": int(inactive_mb * (1 << 20))},
        },
    }


def test_engine_stats_are_streamed_and_interpolated_per_container():
    release = threading.Event()
    pre = FakeContainer("pre", [{}, frame(10.0, 100, 20), frame(11.0, 120, 20)], release)
    gateway = FakeContainer("gateway", [frame(5.0, 200), frame(7.0, 150)], release)
    with docker_target.EngineStatsSampler([pre, gateway]) as sampler:
        # two readings per container arrive by themselves; replace their arrival times with known ones
        for _ in range(200):
            if all(len(times) == 2 for times, _ in sampler.readings.values()):
                break
            threading.Event().wait(0.01)
        for times, _ in sampler.readings.values():
            times[:] = [100.0, 102.0]
        assert sampler.total_cpu_at(100.0) == pytest.approx(0.0)  # start-up CPU is not load
        assert sampler.total_cpu_at(101.0) == pytest.approx(0.5 + 1.0)
        assert sampler.cpu_between(100.0, 102.0) == pytest.approx(1.0 + 2.0)
        assert sampler.cpu_between(90.0, 200.0) == pytest.approx(3.0)  # clamped to the readings
        processes = {p["name"]: p for p in sampler.processes()}
    release.set()
    assert processes["pre"]["cpu_seconds"] == pytest.approx(1.0)
    assert processes["pre"]["peak_rss_mb"] == pytest.approx(
        100.0
    )  # usage minus inactive page cache
    assert processes["gateway"]["peak_rss_mb"] == pytest.approx(200.0)


def test_every_container_shares_the_budget_cpuset_with_a_quota_of_the_budget():
    limits = containers.Limits.for_budget([0, 1])
    assert limits.cpus == 2.0 and limits.cpuset == "0,1"
    assert containers.Limits.for_budget(None).cpuset is None
    assert limits.memory_for("gateway", "microservices") == containers.MEMORY_LIMITS_MIB["gateway"]
    assert limits.memory_for("gateway", "split") == containers.MEMORY_LIMITS_MIB["monolith"], (
        "a split gateway holds the model"
    )
    described = limits.describe("microservices", ["preprocess", "gateway"])
    assert described["read_only_rootfs"] is True and described["user"] == "10001:10001"


def test_cpus_parse_like_sut_cpus():
    assert containers.parse_cpus("0") == [0]
    assert containers.parse_cpus("0-2,5") == [0, 1, 2, 5]


def test_a_port_already_taken_is_refused_before_anything_starts():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(
            containers.ContainerError, match=rf"port {port} on 127.0.0.1 is already taken.*PORT="
        ):
            containers.check_port(port)


def _bench(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--out", str(tmp_path / "reports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_an_unknown_target_is_one_line_naming_the_choices(tmp_path):
    result = _bench({"TARGET": "dokcer"}, tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert (
        len(errors) == 1
        and "unknown TARGET='dokcer'" in errors[0]
        and "local, docker, kind" in errors[0]
    )
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_the_docker_target_without_an_engine_is_one_line_saying_what_to_do(tmp_path):
    result = _bench({"TARGET": "docker", "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}, tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert "TARGET=docker needs a Docker engine" in errors[0] and "Start one" in errors[0]


def _results(capacity: float, p50: float, cpu_per_1k: float, hops: dict[str, float]) -> dict:
    return {
        "architectures": {
            "microservices": {
                "capacity_rps": capacity,
                "p50_at_capacity_ms": p50,
                "p99_at_capacity_ms": p50 * 4,
                "cpu_seconds_per_1k": cpu_per_1k,
                "stages_ms": {"pre": 0.05, **hops},
            }
        }
    }


def test_the_container_tax_puts_both_targets_side_by_side(tmp_path):
    runs = {}
    for target, capacity, cpu, hop in (("local", 100.0, 8.0, 1.0), ("docker", 80.0, 10.0, 2.0)):
        runs[target] = []
        for repetition in range(2):
            run = tmp_path / "runs" / f"{target}-r{repetition}" / f"stamp-{target}-r{repetition}"
            run.mkdir(parents=True)
            document = _results(capacity + repetition, 5.0, cpu, {"hop_pre": hop, "hop_infer": hop})
            (run / "results.json").write_text(json.dumps(document))
            (run.parent / "latest").symlink_to(run.name)  # what the bench leaves beside each run
            runs[target].append(run)
    assert container_tax._run_dirs(tmp_path) == runs
    summary = container_tax.summarise_runs(runs)
    local, docker = summary["microservices"]["local"], summary["microservices"]["docker"]
    assert local["capacity_rps"] == 100.5 and docker["capacity_rps"] == 80.5
    assert local["hop_ms_under_load"] == 2.0 and local["hops"] == 2
    assert docker["cpu_ms_per_request"] == 10.0
    document = {
        "run": {
            "sut_cpus": [0],
            "vcpus": 1,
            "docker_limits": "--cpus 1",
            "image": "servinglab:x",
            "pairs": 2,
            "quick": True,
            "started_at": "now",
            "duration_s": 1.0,
        },
        "under_load": summary,
        "idle": {
            "microservices": {
                "local": {"latency_p50_ms": 7.0, "per_hop_p50_ms": 1.2},
                "docker": {"latency_p50_ms": 13.0, "per_hop_p50_ms": 2.4},
            }
        },
    }
    text = container_tax.markdown(document)
    assert "| microservices | local | 100 |" in text and "| microservices | docker | 80 |" in text
    assert "| microservices | **tax** | -20% |" in text
    assert "docker (bridge) | 13.00 | 2.400 |" in text and "local (loopback)" in text


class FakeProxy:
    """A psutil.Process stand-in for the engine's userland proxy: 1 CPU-second per call."""

    def __init__(self):
        self.calls = 0

    def oneshot(self):
        import contextlib

        return contextlib.nullcontext()

    def cpu_times(self):
        from types import SimpleNamespace

        self.calls += 1
        return SimpleNamespace(user=self.calls * 0.5, system=self.calls * 0.5)

    def memory_info(self):
        from types import SimpleNamespace

        return SimpleNamespace(rss=10 << 20)


def test_the_userland_proxy_s_cpu_is_counted_with_the_containers():
    release = threading.Event()
    entry = FakeContainer("entry", [frame(1.0, 50)], release)
    proxy = FakeProxy()
    with docker_target.EngineStatsSampler([entry], {"docker-proxy:8000/pid-1": proxy}) as sampler:
        for _ in range(500):
            if proxy.calls >= 3:
                break
            threading.Event().wait(0.01)
    release.set()
    names = {p["name"]: p for p in sampler.processes()}
    assert names["docker-proxy:8000/pid-1"]["cpu_seconds"] >= 2.0
    assert names["docker-proxy:8000/pid-1"]["peak_rss_mb"] == pytest.approx(10.0)
    times, totals = sampler.readings["docker-proxy:8000/pid-1"]
    assert sampler.cpu_between(times[0], times[-1]) == pytest.approx(totals[-1] - totals[0])
