"""A Verde-style dispute over a training segment (arXiv 2502.19405): bisect to the first step on which two
parties' states disagree, then to the first value of that step's trace on which they disagree, then a
referee recomputes that one operator (or checks that one source) and says who is right.

Levels (pure narrowing in `veriml.verify.pinpoint`):
1. both parties replay the segment from an agreed checkpoint and hash the state after every step;
   `bisect_roots` narrows to one step `s` whose start state is agreed;
2. both commit the trace of step `s` (`train_step(trace=True)`: one record per source, per operator and
   the next state's root); `first_difference` finds the first record that differs, so all earlier records,
   hence all of that record's inputs, are agreed;
3. `referee` takes the disputed record of each party with its Merkle proof, and the evidence (the input
   tensors, each with its producing record proved in both traces; or for a source, the tensor proved against
   the agreed checkpoint or dataset root; the batch indices are recomputed from the seed), recomputes the
   true record and rules for whoever claimed it. The referee runs one operator, never a step;
4. where that operator has an element-level check (`veriml.training.element`), the parties' chunk trees of
   its output are descended to the first differing chunk of 16 elements, which the chunk referee recomputes
   from the few input elements it depends on.

The referee returns a `Ruling` (a verdict, not an exception): `neither` when neither claim is the truth or
the evidence does not match what both parties committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from veriml.models.weights import state_dict_root
from veriml.training.checkpoint import Checkpoint, clone_state, state_root
from veriml.training.data import Dataset, batch_indices
from veriml.training.element import ChunkRuling, settle_chunk, supports
from veriml.training.graph import (
    EMPTY,
    Program,
    Record,
    StepTrace,
    Tamper,
    execute,
    inputs_digest,
    root_record,
    source_spec,
    tensor_digest,
    value_chunks,
)
from veriml.training.mlp import NEXT, TrainConfig, schedule, step_program, step_sources, train_step
from veriml.training.trainer import Cheat, CheatKind, apply_cheat
from veriml.verify.merkle import MerkleTree, verify_proof
from veriml.verify.pinpoint import Pinpoint, bisect_roots, first_difference

Winner = Literal["a", "b", "neither"]


# ---- the parties ----
@dataclass(frozen=True)
class Party:
    """How a party computes: honestly, with a solver's `cheat`, or with a wrong value `lie = (step, record,
    delta)` (it adds `delta` to that value of that step and carries on from the result)."""

    cheat: Cheat | None = None
    lie: tuple[int, int, float] | None = None

    def _tamper(self, step: int) -> Tamper | None:
        if self.lie is None or self.lie[0] != step:
            return None
        _, index, delta = self.lie
        return lambda i, t: t + torch.tensor(delta, dtype=t.dtype) if i == index else t

    def next_state(self, cfg: TrainConfig, state: dict[str, Tensor], data: Dataset, step: int) -> dict[str, Tensor]:
        if self.cheat is not None and self.cheat.step == step:
            return apply_cheat(self.cheat, cfg, state, data, step)
        return train_step(cfg, state, data, step, tamper=self._tamper(step))[0]

    def replay(self, cfg: TrainConfig, data: Dataset, start: Checkpoint, steps: int) -> list[dict[str, Tensor]]:
        """The states at steps start.step .. start.step + steps as this party computes them."""
        states = [clone_state(start.state)]
        for s in range(start.step, start.step + steps):
            states.append(self.next_state(cfg, states[-1], data, s))
        return states

    def values(self, cfg: TrainConfig, state: dict[str, Tensor], data: Dataset, step: int) -> dict[str, Tensor]:
        """Every value of `step` from the agreed `state` as this party computes them (its `lie` included)."""
        sources = step_sources(state, data, schedule(cfg, data, step))
        return execute(step_program(cfg, step), sources, tamper=self._tamper(step))[0]

    def trace(self, cfg: TrainConfig, state: dict[str, Tensor], data: Dataset, step: int) -> StepTrace:
        """The trace this party commits for `step` from the agreed `state`."""
        c = self.cheat
        if c is not None and c.step == step:
            if c.kind is CheatKind.OTHER_INDICES:
                idx = (schedule(cfg, data, step) + 1) % len(data)
                tr = train_step(cfg, state, data, step, indices=idx, trace=True)[2]
            else:  # it shows the honest operators but the end state it reported
                tr = train_step(cfg, state, data, step, trace=True)[2]
                last = tr.records[-1]
                claimed = state_root(self.next_state(cfg, state, data, step))
                tr = tr.with_last(Record(last.index, last.op, last.inputs, claimed, last.chunks))
            assert tr is not None
            return tr
        tr = train_step(cfg, state, data, step, trace=True, tamper=self._tamper(step))[2]
        assert tr is not None
        return tr


HONEST = Party()


# ---- the referee ----
@dataclass(frozen=True, eq=False)
class Claim:
    """A party's record at the disputed index, proved against its step-trace root."""

    record: Record
    proof: Sequence[bytes]
    root: bytes

    def proved(self, index: int) -> bool:
        return self.record.index == index and verify_proof(self.proof, self.root, self.record.leaf)


@dataclass(frozen=True, eq=False)
class Opened:
    """An input of the disputed operator: the record that produced it, proved in both parties' traces, and
    the tensor (which must hash to the record's output)."""

    record: Record
    proof_a: Sequence[bytes]
    proof_b: Sequence[bytes]
    tensor: Tensor = field(repr=False)


@dataclass(frozen=True, eq=False)
class Case:
    """What the referee is handed for record `index` of step `step`."""

    cfg: TrainConfig
    step: int
    index: int
    a: Claim
    b: Claim
    start_root: bytes  # the agreed state root before the step
    data_root: bytes
    examples: int  # len(dataset), for the batch schedule
    inputs: tuple[Opened, ...] = ()  # an operator's inputs in order (the root record: every next: value)
    source: Tensor | None = field(default=None, repr=False)  # a disputed state or data source
    source_proof: Sequence[bytes] = ()


@dataclass(frozen=True)
class Ruling:
    """Who claimed the true record; what it was about and why."""

    winner: Winner
    index: int
    name: str
    reason: str


def _name(program: Program, index: int) -> str:
    return program.name_at(index) if index < len(program) else "state_root"


def _true_source(case: Case, program: Program, name: str) -> Record | str:
    if name == "indices":
        t = batch_indices(case.cfg.seed, case.examples, case.cfg.batch, case.step)
    else:
        root = case.data_root if name.startswith("data.") else case.start_root
        if case.source is None or not verify_proof(case.source_proof, root, tensor_digest(name, case.source)):
            return f"the {name} tensor handed over is not in the agreed root"
        t = case.source
    return Record(case.index, source_spec(name), EMPTY, tensor_digest(name, t), value_chunks(name, t))


def _opened_tensors(case: Case, names: Sequence[str], producer: Mapping[str, int]) -> list[Tensor] | str:
    if len(case.inputs) != len(names):
        return f"{len(names)} inputs needed, {len(case.inputs)} handed over"
    out = []
    for name, o in zip(names, case.inputs, strict=True):
        r = o.record
        agreed = verify_proof(o.proof_a, case.a.root, r.leaf) and verify_proof(o.proof_b, case.b.root, r.leaf)
        if r.index != producer[name] or r.index >= case.index or not agreed:
            return f"input {name} is not a record both parties committed before {case.index}"
        if tensor_digest(name, o.tensor) != r.output:
            return f"input {name}'s tensor does not hash to its record"
        out.append(o.tensor)
    return out


def true_record(case: Case) -> Record | str:
    """The record an honest party commits at `case.index`, recomputed from the evidence (or why not)."""
    program = step_program(case.cfg, case.step)
    producer = program.producer()
    s = len(program.sources)
    if case.index < s:
        return _true_source(case, program, program.sources[case.index])
    if case.index < len(program):
        node = program.nodes[case.index - s]
        tensors = _opened_tensors(case, node.inputs, producer)
        if isinstance(tensors, str):
            return tensors
        out = node.apply(tensors)
        ins = inputs_digest([o.record.output for o in case.inputs])
        return Record(case.index, node.spec, ins, tensor_digest(node.output, out), value_chunks(node.output, out))
    if case.index == len(program):
        names = sorted(n for n in program.sources if not n.startswith("data.") and n != "indices")
        tensors = _opened_tensors(case, [NEXT + n for n in names], producer)
        if isinstance(tensors, str):
            return tensors
        root = state_dict_root(dict(zip(names, tensors, strict=True)))
        return root_record(case.index, [o.record.output for o in case.inputs], root)
    return f"record {case.index} is past the end of the step's trace"


def referee(case: Case) -> Ruling:
    """Recompute the disputed record and rule for the party that committed it."""
    name = _name(step_program(case.cfg, case.step), case.index)
    truth = true_record(case)
    if isinstance(truth, str):
        return Ruling("neither", case.index, name, truth)
    a_ok = case.a.proved(case.index) and case.a.record == truth
    b_ok = case.b.proved(case.index) and case.b.record == truth
    if a_ok == b_ok:
        return Ruling("neither", case.index, name, "both claims are right" if a_ok else "neither claim is right")
    return Ruling("a" if a_ok else "b", case.index, name, f"recomputed {name}: it matches {'a' if a_ok else 'b'}")


# ---- the whole dispute ----
@dataclass(frozen=True)
class Outcome:
    """How a dispute went: the step and record it narrowed to, the rounds of each level, the ruling."""

    step: Pinpoint  # index: the disputed step (absolute)
    record: Pinpoint
    ruling: Ruling
    chunk: Pinpoint | None = None  # the element level, when the operator has one and the chunk roots differ
    chunk_ruling: ChunkRuling | None = None


def open_case(
    cfg: TrainConfig,
    data: Dataset,
    state: Mapping[str, Tensor],
    step: int,
    trace_a: StepTrace,
    trace_b: StepTrace,
    index: int,
) -> Case:
    """The case for record `index`, with evidence taken from an honest execution of the step from the agreed
    `state` (anyone can produce it; the referee checks it against what both parties committed)."""
    program = step_program(cfg, step)
    values, _ = execute(program, step_sources(state, data, schedule(cfg, data, step)))
    producer = program.producer()

    def claim(tr: StepTrace) -> Claim:
        return Claim(tr.records[index], tr.tree.proof(index), tr.root)

    def opened(name: str) -> Opened:
        i = producer[name]
        return Opened(trace_a.records[i], trace_a.tree.proof(i), trace_b.tree.proof(i), values[name])

    base = dict(cfg=cfg, step=step, index=index, a=claim(trace_a), b=claim(trace_b), start_root=state_root(state),
                data_root=data.root, examples=len(data))  # fmt: skip
    s = len(program.sources)
    if index < s:
        name = program.sources[index]
        if name == "indices":
            return Case(**base)
        tensors = data.tensors() if name.startswith("data.") else dict(state)
        names = sorted(tensors)
        tree = MerkleTree.from_leaves([tensor_digest(n, tensors[n]) for n in names])
        return Case(**base, source=tensors[name], source_proof=tree.proof(names.index(name)))
    if index < len(program):
        return Case(**base, inputs=tuple(opened(n) for n in program.nodes[index - s].inputs))
    names = sorted(n for n in program.sources if not n.startswith("data.") and n != "indices")
    return Case(**base, inputs=tuple(opened(NEXT + n) for n in names))


def dispute(cfg: TrainConfig, data: Dataset, start: Checkpoint, steps: int, a: Party, b: Party) -> Outcome | None:
    """Play a dispute over `steps` steps from the agreed checkpoint `start` (None: the parties agree)."""
    states_a = a.replay(cfg, data, start, steps)
    states_b = b.replay(cfg, data, start, steps)
    roots_a, roots_b = [state_root(s) for s in states_a], [state_root(s) for s in states_b]
    if roots_a[-1] == roots_b[-1]:
        return None
    at = bisect_roots(roots_a, roots_b)
    step = start.step + at.index
    state = states_a[at.index]  # agreed: the same root in both
    ta, tb = a.trace(cfg, state, data, step), b.trace(cfg, state, data, step)
    where = first_difference(ta.tree, tb.tree)
    ruling = referee(open_case(cfg, data, state, step, ta, tb, where.index))
    out = Outcome(Pinpoint(step, at.rounds), where, ruling)
    program = step_program(cfg, step)
    s, i = len(program.sources), where.index
    ra, rb = ta.records[i], tb.records[i]
    if not s <= i < len(program) or not supports(program.nodes[i - s]) or ra.chunks == rb.chunks:
        return out
    node = program.nodes[i - s]
    va, vb = a.values(cfg, state, data, step), b.values(cfg, state, data, step)
    producer = program.producer()
    in_recs = [ta.records[producer[n]] for n in node.inputs]  # agreed: before the first difference
    inputs = [va[n].numpy() for n in node.inputs]
    c, cr = settle_chunk(node, inputs, va[node.output].numpy(), vb[node.output].numpy(), ra, rb, in_recs)
    return replace(out, chunk=c, chunk_ruling=cr)
