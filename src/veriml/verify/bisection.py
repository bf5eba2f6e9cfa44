"""The optimistic scheme's dispute game, off-chain: the rules `OptimisticJobs.sol` enforces, as pure functions.

A dispute is over the states 0..P of a trace (P = `padded_steps(steps)`). The challenger agrees with state
`lo` (state 0 is fixed by the job's input) and disagrees with state `hi` (at first: the executor's result).
Each round the executor reveals its hash of state `mid = (lo + hi) // 2` and the challenger agrees (the
error is after `mid`: lo = mid) or disagrees (hi = mid). Since P is a power of two, every dispute takes
exactly log2(P) = ceil(log2(steps)) rounds, then the chain recomputes the one step lo -> lo + 1 and the
executor wins iff it gets the executor's hash of state hi. A party that lets its turn time out loses.

Honest play wins: an honest challenger only agrees with true states and keeps `hi` wrong, so the
recomputed true state differs from the executor's claim; against an honest executor every claimed hash is
true, so the recomputation matches it whatever the challenger answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from veriml.verify.trace import RowBook, State, Trace, padded_steps, step

Winner = Literal["executor", "challenger"]


def rounds_for(steps: int) -> int:
    """Rounds of a dispute over a `steps`-step trace: ceil(log2(steps))."""
    return padded_steps(steps).bit_length() - 1


@dataclass(frozen=True)
class Game:
    """The state of one dispute between two rounds (OptimisticJobs.Dispute without the clock)."""

    lo: int
    hi: int
    h_lo: bytes | None  # None while lo == 0: state 0 is checked against the input instead
    h_hi: bytes
    rounds: int = 0

    @classmethod
    def open(cls, steps: int, result_digest: bytes) -> Game:
        return cls(0, padded_steps(steps), None, result_digest)

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) // 2

    @property
    def done(self) -> bool:
        """Narrowed to one step: the next move is the on-chain check."""
        return self.hi - self.lo == 1

    def after(self, agree: bool, h_mid: bytes) -> Game:
        """The game after the challenger answered the executor's hash of state `mid`."""
        if self.done:
            raise ValueError("the dispute is at one step; no more rounds")
        if agree:
            return Game(self.mid, self.hi, h_mid, self.h_hi, self.rounds + 1)
        return Game(self.lo, self.mid, self.h_lo, h_mid, self.rounds + 1)


def should_challenge(result_digest: bytes, truth: Trace, steps: int) -> bool:
    """Whether a watcher with the true trace disputes a result posted with `steps` steps: the true state at
    the end of the bisected range is not the one the result digest names."""
    return truth.hash_at(padded_steps(steps)) != result_digest


def one_step_winner(state_lo: State, rows: RowBook, h_hi: bytes) -> Winner:
    """The on-chain verdict: the executor wins iff stepping the agreed state gives its claimed hash."""
    return "executor" if step(state_lo, rows).hash == h_hi else "challenger"


@dataclass(frozen=True)
class Outcome:
    """How a dispute played out: the step it narrowed to, the rounds, each round's answer, the winner."""

    winner: Winner
    step: int  # the disputed transition lo -> lo + 1
    rounds: int
    answers: tuple[bool, ...]


def play(
    claimed: Sequence[bytes],
    truth: Sequence[bytes],
    judge: Callable[[int, bytes], bool] | None = None,
) -> Outcome:
    """Play a whole dispute between an executor whose state hashes are `claimed` (states 0..P) and an honest
    challenger whose true hashes are `truth`. `judge(lo, h_hi)` is the one-step check (True: the executor's
    hash is right); by default it compares with `truth[lo + 1]`, which is what stepping the true state gives."""
    padded = len(claimed) - 1
    if padded < 1 or padded & (padded - 1):
        raise ValueError("a claimed trace has P + 1 hashes with P a power of two")
    game = Game(0, padded, None, claimed[-1])
    answers = []
    while not game.done:
        agree = truth[game.mid] == claimed[game.mid]
        answers.append(agree)
        game = game.after(agree, claimed[game.mid])
    right = judge(game.lo, game.h_hi) if judge is not None else truth[game.lo + 1] == game.h_hi
    return Outcome("executor" if right else "challenger", game.lo, game.rounds, tuple(answers))
