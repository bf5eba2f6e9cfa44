"""The element level: scalar float32 recomputation in `repops`' order gives the tensor kernels' bits, and a
lie in one element is narrowed to its chunk and loses at the chunk referee."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from veriml.training.data import digits
from veriml.training.element import CHUNK, element_value, needs, settle_chunk, supports
from veriml.training.graph import execute
from veriml.training.mlp import TrainConfig, init_state, schedule, step_program, step_sources, train_step
from veriml.verify.pinpoint import first_difference

SGD = TrainConfig(sizes=(64, 24, 10), batch=16, dropout=0.25)
ADAM = TrainConfig(sizes=(64, 24, 10), batch=16, optimizer="adam", lr=0.003)
BLOCK = TrainConfig(arch="block", sizes=(64, 10), batch=4, d_model=8, d_ff=12, optimizer="adam", lr=0.003)


@pytest.fixture(scope="module")
def data():
    return digits()[0]


def _values(cfg: TrainConfig, data, step: int = 1):
    state = train_step(cfg, init_state(cfg), data, 0)[0]  # a step in, so moments and momentum are non-zero
    program = step_program(cfg, step)
    values, _ = execute(program, step_sources(state, data, schedule(cfg, data, step)))
    return program, values


@pytest.mark.parametrize("cfg", [SGD, ADAM, BLOCK], ids=["sgd-dropout", "adam", "block"])
def test_scalar_elements_equal_the_tensor_kernels(data, cfg: TrainConfig) -> None:
    program, values = _values(cfg, data)
    checked = 0
    rng = np.random.default_rng(0)
    for node in program.nodes:
        if not supports(node):
            continue
        ins = [values[n].numpy() for n in node.inputs]
        shapes = [tuple(x.shape) for x in ins]
        out = values[node.output].numpy().reshape(-1)
        picks = range(out.size) if out.size <= 64 else rng.choice(out.size, 64, replace=False)
        for e in picks:
            get = {(p, f): ins[p].reshape(-1)[f] for p, f in needs(node, shapes, int(e))}
            got = element_value(node, shapes, int(e), get)
            assert np.float32(got).view(np.int32) == out[e].view(np.int32), (node.op, node.output, e)
            checked += 1
    assert checked > 200


def test_one_wrong_element_narrowed_to_its_chunk_and_loses(data) -> None:
    cfg = ADAM
    state = init_state(cfg)
    program = step_program(cfg, 0)
    name, element = "grad:l0.weight", 37
    index = program.producer()[name]

    def lie(i: int, t: torch.Tensor) -> torch.Tensor:
        if i != index:
            return t
        t = t.clone()
        t.view(-1)[element] += 1e-3
        return t

    sources = step_sources(state, data, schedule(cfg, data, 0))
    honest_v, honest = execute(program, sources, trace=True)
    liar_v, liar = execute(program, sources, trace=True, tamper=lie)
    assert first_difference(liar.tree, honest.tree).index == index
    node = program.nodes[index - len(program.sources)]
    producer = program.producer()
    in_recs = [honest.records[producer[n]] for n in node.inputs]
    inputs = [honest_v[n].numpy() for n in node.inputs]
    where, ruling = settle_chunk(node, inputs, liar_v[name].numpy(), honest_v[name].numpy(),
                                 liar.records[index], honest.records[index], in_recs)  # fmt: skip
    assert where.index == element // CHUNK
    assert where.rounds == int(np.ceil(np.log2(-(-honest_v[name].numel() // CHUNK))))
    assert ruling.winner == "b"
    # the same from the other side
    _, ruling = settle_chunk(node, inputs, honest_v[name].numpy(), liar_v[name].numpy(),
                             honest.records[index], liar.records[index], in_recs)  # fmt: skip
    assert ruling.winner == "a"
