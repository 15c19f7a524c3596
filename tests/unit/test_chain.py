"""The chained topology's links (`microservices.chain`): which stage may link, and the hop arithmetic.

`links()` decides from LAB_NEXT_ADDR whether a stage serves `Chain`; postprocess ends the chain and
must refuse one. `close_hop` turns a caller's wall-clock wait into the hop entry of Server-Timing;
on a real in-process chain (three stage servers, threads of this process) every caller's wait
must be exactly accounted for by the next stage's compute, its own wait downstream and the hop.
"""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from microservices.chain import LINKS, close_hop, links
from microservices.convert import batch_to_proto
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.inference.server import create_server as inference_server
from microservices.postprocess.server import create_server as postprocess_server
from microservices.preprocess.server import create_server as preprocess_server
from servinglab import config
from servinglab.contract import STAGES
from servinglab.validation import validate_instances


def settings(**overrides):
    return config.load(environ={}, overrides=overrides)


# --- links(): who may call on -------------------------------------------------------------------


def test_no_next_address_means_no_chain_link_for_any_stage():
    for stage in STAGES:
        assert links(stage, servicer=None, settings=settings()) == []


def test_postprocess_refuses_a_next_stage_it_would_never_call():
    with pytest.raises(RuntimeError, match="LAB_NEXT_ADDR is set for postprocess, which ends"):
        links("postprocess", servicer=None, settings=settings(NEXT_ADDR="127.0.0.1:1"))


@pytest.mark.parametrize("stage", ["preprocess", "inference"])
def test_a_stage_with_a_next_address_serves_chain(stage):
    registered = links(stage, servicer=None, settings=settings(NEXT_ADDR="127.0.0.1:1"))
    assert [name for name, _ in registered] == ["Chain"]
    with futures.ThreadPoolExecutor(max_workers=1) as pool:
        _, register = registered[0]
        register(grpc.server(pool))  # a real server must accept the link as a Chain servicer


def test_every_stage_but_the_last_can_link():
    assert list(LINKS) == list(STAGES[:-1])


# --- close_hop: what a caller's wait leaves for the hop -------------------------------------------


def timing(stage: str, compute_ms: float, downstream_ms: float = 0.0) -> pb.ChainTiming:
    return pb.ChainTiming(stage=stage, compute_ms=compute_ms, downstream_ms=downstream_ms)


def test_the_hop_is_the_wait_less_the_stage_and_what_it_waited_on():
    timings = [timing("inference", 2.0, 5.0), timing("postprocess", 1.0)]
    close_hop(timings, waited_s=0.010)
    assert timings[0].hop_ms == pytest.approx(3.0)
    assert timings[1].hop_ms == 0.0, "only the first stage's hop is the caller's to fill in"


def test_a_wait_shorter_than_the_stage_accounts_gives_no_negative_hop():
    timings = [timing("inference", 2.0, 5.0)]
    close_hop(timings, waited_s=0.006)
    assert timings[0].hop_ms == 0.0


@pytest.fixture(scope="module")
def chain(models_root):
    """preprocess -> inference -> postprocess, each a real stage server on an ephemeral port."""
    base = {"MODEL_DIR": str(models_root)}
    started = []

    def serve(factory, **overrides):
        server, port, _ = factory("127.0.0.1:0", settings(**base, **overrides))
        server.start()
        started.append(server)
        return f"127.0.0.1:{port}"

    try:
        postprocess = serve(postprocess_server)
        inference = serve(inference_server, NEXT_ADDR=postprocess)
        yield serve(preprocess_server, NEXT_ADDR=inference)
    finally:
        for server in started:
            server.stop(None)


def test_every_wait_along_a_real_chain_is_split_into_compute_downstream_and_hop(chain, held_out):
    request = pb.PreprocessRequest(instances=batch_to_proto(validate_instances(held_out[:8])))
    with grpc.insecure_channel(chain) as channel:
        stub = pb_grpc.ChainStub(channel)
        for _ in range(5):  # the first call also connects each channel: its hops are the longest
            response = stub.Transform(request, timeout=10)
    by_stage = {t.stage: t for t in response.timings}
    assert [t.stage for t in response.timings] == list(STAGES)
    assert len(response.result.predictions) == 8
    pre, inf, post = (by_stage[stage] for stage in STAGES)
    assert all(t.compute_ms > 0 for t in response.timings)
    # The gateway fills in the first hop; every later one was filled in by its caller.
    assert pre.hop_ms == 0.0
    assert inf.hop_ms > 0 and post.hop_ms > 0
    # What a stage waited on the next one is that stage's compute, its own wait and the hop.
    assert pre.downstream_ms == pytest.approx(inf.compute_ms + inf.downstream_ms + inf.hop_ms)
    assert inf.downstream_ms == pytest.approx(post.compute_ms + post.hop_ms)
    assert post.downstream_ms == 0.0, "postprocess calls nothing"
