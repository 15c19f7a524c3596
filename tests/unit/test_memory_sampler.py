"""PSS sampling of real processes: a parent and a forked child sharing one big buffer.

The buffer is written by the parent before the fork, so both map the same physical pages: each
process's RSS includes all of it, while PSS charges half to each. Summing RSS counts the buffer
twice; summing PSS counts it once. When the child then writes the buffer, copy-on-write gives it
private pages, which USS and the PSS sum must show.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from benchmarks.measure import memory
from lab.supervisor import ProcessSpec, Supervisor

BUFFER_MIB = 64
BUFFER = BUFFER_MIB * memory.MIB

# Parent: fill a buffer (every page written, so resident), fork, and report both pids. On each
# line of stdin the child writes its whole copy (breaking copy-on-write) and both report "done";
# EOF ends both.
FORKING_SCRIPT = textwrap.dedent(
    f"""
    import os, sys
    buffer = bytearray(b"\\x01") * {BUFFER}
    child = os.fork()
    if child == 0:
        for line in sys.stdin:
            buffer[:] = b"\\x02" * len(buffer)
            print("written", flush=True)
        os._exit(0)
    print(os.getpid(), child, flush=True)
    os.waitpid(child, 0)
    """
)


@pytest.fixture
def forked_pair():
    process = subprocess.Popen(
        [sys.executable, "-c", FORKING_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        parent, child = (int(pid) for pid in process.stdout.readline().split())
        yield process, parent, child
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_pss_counts_pages_shared_after_fork_once(forked_pair):
    _, parent, child = forked_pair
    snapshot = memory.process_memory([("parent", parent), ("child", child)], children=False)
    assert [p.pid for p in snapshot.processes] == [parent, child]
    for process in snapshot.processes:
        assert process.memory.rss >= BUFFER  # each maps the whole buffer
        assert process.memory.pss < process.memory.rss
    total = snapshot.total
    # Summing RSS counts the shared buffer twice; PSS once: the difference is at least most of it.
    assert total.rss - total.pss > 0.8 * BUFFER
    assert total.pss > BUFFER  # the buffer is still there, once
    # Nothing private to the child yet: it has written nothing since the fork.
    child_memory = snapshot.processes[1].memory
    assert child_memory.uss < 0.2 * BUFFER


def test_copy_on_write_shows_in_uss_and_the_pss_sum(forked_pair):
    process, parent, child = forked_pair
    before = memory.process_memory({"parent": parent, "child": child}, children=False)
    process.stdin.write("write\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "written"
    after = memory.process_memory({"parent": parent, "child": child}, children=False)
    child_after = next(p.memory for p in after.processes if p.name == "child")
    assert child_after.uss > 0.9 * BUFFER  # the child now has its own copy
    assert after.total.pss - before.total.pss > 0.8 * BUFFER  # two copies now, one before


def test_children_are_found_and_grouped_under_their_root(forked_pair):
    _, parent, child = forked_pair
    snapshot = memory.process_memory([("pair", parent)])
    assert {p.pid for p in snapshot.processes} == {parent, child}
    assert {p.group for p in snapshot.processes} == {"pair"}
    assert {p.name for p in snapshot.processes} == {"pair", "pair/child-1"}
    assert snapshot.by_group()["pair"] == snapshot.total
    document = snapshot.as_dict()
    assert document["total"]["pss_mib"] == round(snapshot.total.pss / memory.MIB, 2)
    assert len(document["processes"]) == 2


def test_an_exited_process_is_left_out_not_an_error():
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(finished.stdout)
    with pytest.raises(memory.MemoryReadError):
        memory.read_memory(pid)
    assert memory.process_memory([("gone", pid)]).processes == ()


def test_deployment_memory_reads_every_supervised_process(tmp_path):
    # Lives until the supervisor stops it on leaving the block.
    script = tmp_path / "hold.py"
    script.write_text("import time\ntime.sleep(600)\n")
    with Supervisor(log_dir=tmp_path) as supervisor:
        spec = ProcessSpec("holder", [sys.executable, str(script)], {}, ready=lambda: True)
        holder = supervisor.start(spec)
        snapshot = memory.deployment_memory(supervisor)
        assert [p.pid for p in snapshot.processes] == [holder.pid]
        assert snapshot.processes[0].memory.pss > 0


def test_roles_and_memory_per_replica():
    def process(group, name, pss):
        return memory.ProcessMemory(group, name, 1, memory.Memory(rss=2 * pss, pss=pss, uss=pss))

    snapshot = memory.MemorySnapshot(
        (
            process("gunicorn-gateway", "gunicorn-gateway", 10),
            process("gunicorn-gateway", "gunicorn-gateway/child-1", 100),
            process("inference-0", "inference-0", 300),
            process("inference-1", "inference-1", 100),
            process("postprocess", "postprocess", 50),
        )
    )
    assert [memory.role_of(g) for g in ("gunicorn-monolith", "inference-1", "postprocess")] == [
        "monolith",
        "inference",
        "postprocess",
    ]
    replicas = memory.per_replica(snapshot)
    assert replicas["gateway"].pss == 110  # a master and its workers are one replica
    assert replicas["inference"].pss == 200  # the mean of two replicas
    assert replicas["postprocess"].rss == 100
    assert snapshot.total.pss == 560 and snapshot.total.rss == 1120
