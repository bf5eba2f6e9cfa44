"""Dishonest node behaviours, as data: a `Fault` picks which hook of `NodeDaemon` misbehaves.

- WRONG_OUTPUT: skips the model and commits a cheap made-up answer (the lazy or malicious worker).
- NO_SHOW: is drawn but never commits (griefing, or simply offline).
- BAD_REVEAL: commits honestly, then reveals a digest that does not match its commitment.
"""

from __future__ import annotations

from enum import Enum

from veriml.chain.contracts import JobView
from veriml.errors import InvalidPrompt
from veriml.jobspec import TextParams, TextResult
from veriml.node.daemon import NodeDaemon
from veriml.node.state import JobRecord
from veriml.verify.digest import tokens_digest


class Fault(Enum):
    HONEST = "honest"
    WRONG_OUTPUT = "wrong-output"
    NO_SHOW = "no-show"
    BAD_REVEAL = "bad-reveal"


class FaultyNode(NodeDaemon):
    """A node that misbehaves as its `fault` says and is otherwise an ordinary node."""

    def __init__(self, *args: object, fault: Fault, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fault = fault
        self.honest = fault is Fault.HONEST

    def execute(self, job: JobView) -> TextResult:
        if self.fault is Fault.WRONG_OUTPUT:
            # Answer without running the model: repeat one byte as many times as asked.
            try:
                n = TextParams.decode(job.params).max_new_tokens or 48
            except InvalidPrompt:
                n = 48
            return TextResult(tokens=(ord("?"),) * n)
        return super().execute(job)

    def will_commit(self, job: JobView) -> bool:
        return self.fault is not Fault.NO_SHOW

    def reveal_values(self, rec: JobRecord) -> tuple[bytes, bytes]:
        digest, salt = super().reveal_values(rec)
        if self.fault is Fault.BAD_REVEAL:
            return tokens_digest([0]), salt
        return digest, salt
