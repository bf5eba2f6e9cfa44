"""Per-job payoffs of every scheme for honest and adversarial nodes: closed forms and a vectorised Monte Carlo.

Pure: no chain, no web3, no torch; numpy is imported only by the Monte Carlo functions, so the closed forms
(and `veriml params`, built on them) run on the light base install. Money is in ETH as floats.

The quantity every check is about is an adversary's **gain**: its expected profit per job when it deviates,
minus its expected profit per job when it is honest. A deviation is deterred when its gain is negative.

Audit (Proof of Sampling, Zhang et al., arXiv 2405.00295). The paper's body was not in the stored public
material this module was written against (only its abstract: "a pure strategy Nash Equilibrium" that makes
rational participants honest), so the condition the issue quotes, p > C / ((1 - r)(R + S)), was re-derived
here rather than trusted: an asserter that cheats saves C; it is audited with probability p; a colluding
auditor (share r) never reports it, so with one auditor a lie is caught with probability p (1 - r), and a
caught liar forfeits the reward R and loses the slash S. Its gain is C - p (1 - r)(R + S), negative exactly
when the quoted inequality holds, so the quote agrees with the model for k = 1 and a perfect arbitration.
This module generalises it to k auditors (caught unless all k collude: 1 - r^k) and an arbitration panel of
m nodes that must hold an honest majority: gain = C - p (1 - r^k) h_m (R + S), with h_m = P(Bin(m, r) < m/2).

Slash routing (issue 10, item 3): a share `burn` of every slash is burned (or sent to a treasury); the rest
goes to the parties that did the work that exposed it. The self-challenge and self-griefing attacks below
price exactly what an attacker recovers through its own second account.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from veriml.errors import UserInputError

Scheme = Literal["quorum", "optimistic", "zk", "audit"]
Adversary = Literal["lazy", "random", "copier", "colluding", "bribed_auditor", "sometimes"]
SCHEMES: tuple[Scheme, ...] = ("quorum", "optimistic", "zk", "audit")
ADVERSARIES: tuple[Adversary, ...] = ("lazy", "random", "copier", "colluding", "bribed_auditor", "sometimes")
MIN_JOBS = 100_000


class InvalidEconomics(UserInputError):
    """Raised when market parameters are out of range (negative price, p outside [0, 1], r above 1/3, ...)."""


@dataclass(frozen=True)
class Market:
    """One model's market: prices, costs, stakes and every scheme's knobs (ETH, probabilities in [0, 1])."""

    fee: float = 0.003  # what the user pays per job (R for a single executor)
    compute: float = 0.0005  # an honest execution's cost to a node (C: what a cheat saves)
    cheap: float = 0.0  # a lazy/random output's cost
    gas: float = 0.0002  # a node's gas per job (commit, reveal or post)
    dispute_gas: float = 0.0085  # gas of a whole optimistic dispute, for the challenger side (issue 10, C)
    stake: float = 2.0
    slash_bps: int = 5000
    burn_bps: int = 1000  # share of every slash burned / sent to the treasury
    collusion: float = 0.0  # r: share of other drawn nodes in the adversary's coalition (at most 1/3)
    quorum_n: int = 3
    audit_p: float = 0.05
    audit_k: int = 2
    audit_pool_bps: int = 1000  # share of every fee paid into the audit pool
    arbiters: int = 5  # the quorum that settles an audit mismatch
    watchers: int = 2  # optimistic: independent watchers
    watch_p: float = 0.5  # probability a watcher re-executes a given job
    cheat_rate: float = 0.3  # the "sometimes" adversary cheats on this share of its jobs
    bribe: float | None = None  # per auditor; None: the asserter's whole exposure (R + S) / k

    def __post_init__(self) -> None:
        for name in ("fee", "compute", "cheap", "gas", "dispute_gas", "stake"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise InvalidEconomics(f"{name} must be a finite number >= 0, got {v!r}")
        for name in ("slash_bps", "burn_bps", "audit_pool_bps"):
            v = getattr(self, name)
            if not 0 <= v <= 10_000:
                raise InvalidEconomics(f"{name} must be in 0..10000 basis points, got {v!r}")
        for name in ("audit_p", "watch_p", "cheat_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InvalidEconomics(f"{name} must be a probability in [0, 1], got {v!r}")
        if not 0.0 <= self.collusion <= 1 / 3 + 1e-12:
            raise InvalidEconomics(f"collusion share r must be in [0, 1/3], got {self.collusion!r}")
        if self.quorum_n < 1 or self.quorum_n % 2 == 0:
            raise InvalidEconomics(f"quorum n must be odd and >= 1, got {self.quorum_n!r}")
        for name in ("audit_k", "arbiters", "watchers"):
            if getattr(self, name) < 1:
                raise InvalidEconomics(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.cheap > self.compute:
            raise InvalidEconomics(
                f"a cheap output ({self.cheap}) cannot cost more than an honest one ({self.compute})"
            )

    @property
    def slash(self) -> float:
        """S: what one caught node loses."""
        return self.stake * self.slash_bps / 10_000

    @property
    def burn(self) -> float:
        return self.burn_bps / 10_000

    @property
    def saved(self) -> float:
        """C in the paper: the compute a cheat saves."""
        return self.compute - self.cheap

    @property
    def bribe_per_auditor(self) -> float:
        return (self.fee + self.slash) / self.audit_k if self.bribe is None else self.bribe

    def with_(self, **changes: object) -> Market:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo mean over `jobs` independent jobs, its standard error and 95% normal interval [lo, hi]."""

    mean: float
    sem: float
    jobs: int

    @property
    def lo(self) -> float:
        return self.mean - 1.96 * self.sem

    @property
    def hi(self) -> float:
        return self.mean + 1.96 * self.sem

    def contains(self, x: float, z: float = 1.96) -> bool:
        """Whether x lies within z standard errors of the mean (z = 1.96: the 95% interval)."""
        # The slack only absorbs float rounding when every sample is equal (a zero-width interval).
        eps = 1e-12 * max(1.0, abs(x))
        return abs(x - self.mean) <= z * self.sem + eps


# ---------------------------------------------------------------------------------------------- closed forms


def binom_tail_majority(m: int, r: float) -> float:
    """P(a coalition of share r holds a strict majority of m independent draws)."""
    return sum(math.comb(m, j) * r**j * (1 - r) ** (m - j) for j in range(m // 2 + 1, m + 1))


def applicable(scheme: Scheme, adversary: Adversary) -> bool:
    """Whether an adversary has a move in a scheme (a bribed auditor needs auditors)."""
    return not (adversary == "bribed_auditor" and scheme != "audit")


def honest_profit(scheme: Scheme, m: Market) -> float:
    """An honest node's expected profit per job it is drawn for (the baseline every gain is measured from)."""
    if scheme == "quorum":
        return m.fee / m.quorum_n - m.compute - m.gas
    if scheme == "audit":
        return m.fee * (1 - m.audit_pool_bps / 10_000) - m.compute - m.gas
    return m.fee - m.compute - m.gas


def audit_detection(m: Market, r: float | None = None) -> float:
    """P(an audited lie is exposed and upheld): some auditor outside the coalition, then an honest arbitration."""
    r = m.collusion if r is None else r
    return (1 - r**m.audit_k) * (1 - binom_tail_majority(m.arbiters, r))


def optimistic_detection(m: Market) -> float:
    """P(some non-colluding watcher re-executes a job and challenges a wrong output)."""
    return 1 - (1 - m.watch_p * (1 - m.collusion)) ** m.watchers


def _quorum_wrong_gain(m: Market, r: float) -> float:
    """Gain of committing a wrong output that the coalition's other drawn members (each w.p. r) echo."""
    n, s, b = m.quorum_n, m.slash, m.burn
    e_win = 0.0
    for j in range(n):  # j other coalition members among the n - 1 others
        pj = math.comb(n - 1, j) * r**j * (1 - r) ** (n - 1 - j)
        w = j + 1
        if w > n / 2:
            e_win += pj * (m.fee / w + (1 - b) * s * (n - w) / w)
        else:
            e_win += pj * (-s)
    return e_win - m.cheap - m.gas - honest_profit("quorum", m)


def gain(scheme: Scheme, adversary: Adversary, m: Market) -> float:
    """Exact expected gain per job of `adversary` over honesty in `scheme` (negative: deterred)."""
    if not applicable(scheme, adversary):
        raise InvalidEconomics(f"adversary {adversary!r} has no move in scheme {scheme!r}")
    r = m.collusion
    if adversary == "sometimes":
        # Cheats on a share f of its jobs as the lazy node would, honest on the rest; linear in f.
        return m.cheat_rate * gain(scheme, "lazy", m)
    if scheme == "quorum":
        if adversary in ("lazy", "random"):
            # A lazy node alone (no coalition) or a random one (matches nobody) is outvoted and slashed.
            return _quorum_wrong_gain(m, 0.0)
        if adversary == "colluding":
            return _quorum_wrong_gain(m, r)
        # copier: commit-reveal hides the others' answers, so it copies a coalition member drawn beside it
        # (correct output, no compute) and otherwise commits a guess that is outvoted.
        q = 1 - (1 - r) ** (m.quorum_n - 1)
        return q * m.compute + (1 - q) * _quorum_wrong_gain(m, 0.0)
    if scheme == "zk":
        # The verifier contract rejects an invalid proof with certainty (soundness error ~0): always caught.
        return m.saved - (m.fee + m.slash)
    if scheme == "optimistic":
        # Only the colluding adversary has watchers in its coalition; a copier has nothing to copy before its
        # own post, so its guess is a wrong output like the lazy one.
        pd = optimistic_detection(m if adversary == "colluding" else m.with_(collusion=0.0))
        return m.saved - pd * (m.fee + m.slash)
    # audit
    reward = m.fee * (1 - m.audit_pool_bps / 10_000)
    if adversary == "bribed_auditor":
        # An auditor paid to echo the asserter's lie saves its compute and takes the bribe; it is exposed when
        # another auditor is honest (then arbitration slashes it and it loses its audit fee).
        audit_fee = m.fee * (m.audit_pool_bps / 10_000) / max(m.audit_p * m.audit_k, 1e-12)
        audit_fee = min(audit_fee, m.fee * 10)  # the pool pays per audit; capped so p -> 0 stays finite
        exposed = (1 - r ** (m.audit_k - 1)) * (1 - binom_tail_majority(m.arbiters, r)) if m.audit_k > 1 else 0.0
        return m.bribe_per_auditor + m.compute - exposed * (m.slash + audit_fee)
    if adversary == "copier":
        # Blind audits: an auditor never sees the asserter's answer; as asserter it has nothing to copy.
        return m.saved - m.audit_p * audit_detection(m, 0.0) * (reward + m.slash)
    det = audit_detection(m, r if adversary == "colluding" else 0.0)
    return m.saved - m.audit_p * det * (reward + m.slash)


# ------------------------------------------------------------------------------------------ slash-routing attacks


def self_challenge_gain(m: Market, value: float | None = None) -> float:
    """Optimistic executor + its puppet challenger: gain over honesty of posting wrong outputs and, when a
    watcher would challenge, front-running it with the puppet (issue 10, C).

    `value` is what an accepted wrong result is worth to the attacker (default: the fee). Caught, the coalition
    loses the fee, the burned share of the slash and the dispute's gas; uncaught, it keeps the saved compute
    and the value."""
    v = m.fee if value is None else value
    pd = optimistic_detection(m.with_(collusion=0.0))
    return m.saved + (1 - pd) * v - pd * (m.fee + m.burn * m.slash + m.dispute_gas)


def self_grief_gain(m: Market, no_shows: int | None = None, puppets: int = 1) -> float:
    """Quorum submitter that makes its own job's honest drawn nodes miss a window, with `puppets` of its nodes
    drawn and showing: its fee comes back (compensation capped at the fee), the no-shows' slash minus the burn
    goes to the nodes that showed. Its cost: the grief's gas plus the puppets' compute and gas."""
    k = m.quorum_n - puppets if no_shows is None else no_shows
    pool = (1 - m.burn) * m.slash * k
    received = pool if puppets > 0 else 0.0  # with no puppets the submitter gets only its (capped) fee back
    return received - m.dispute_gas - puppets * (m.compute + m.gas)


def min_burn(attack: Literal["self_challenge", "self_grief"], m: Market, **kw: object) -> float:
    """Smallest burn share in [0, 1] (to 1 bp) that makes the attack's gain negative; 1.0 if none does."""
    f = self_challenge_gain if attack == "self_challenge" else self_grief_gain
    for bps in range(0, 10_001):
        if f(m.with_(burn_bps=bps), **kw) < 0:  # type: ignore[arg-type]
            return bps / 10_000
    return 1.0


# -------------------------------------------------------------------------------------------------- Monte Carlo


def _estimate(samples: object) -> Estimate:
    import numpy as np

    x = np.asarray(samples, dtype=np.float64)
    return Estimate(float(x.mean()), float(x.std(ddof=1)) / math.sqrt(x.size), int(x.size))


def simulate(scheme: Scheme, adversary: Adversary, m: Market, jobs: int = MIN_JOBS, seed: int = 0) -> Estimate:
    """Monte Carlo of the adversary's gain per job over `jobs` independent jobs (one vectorised draw each)."""
    import numpy as np

    if jobs < 2:
        raise InvalidEconomics(f"jobs must be >= 2, got {jobs}")
    if not applicable(scheme, adversary):
        raise InvalidEconomics(f"adversary {adversary!r} has no move in scheme {scheme!r}")
    rng = np.random.default_rng(seed)
    base = honest_profit(scheme, m)
    r = m.collusion
    cheats = rng.random(jobs) < m.cheat_rate if adversary == "sometimes" else np.ones(jobs, dtype=bool)
    lazy_like = "lazy" if adversary == "sometimes" else adversary

    if scheme == "quorum":
        n, s, b = m.quorum_n, m.slash, m.burn
        r_eff = r if lazy_like == "colluding" else 0.0
        allies = rng.binomial(n - 1, r, jobs) if lazy_like == "copier" else rng.binomial(n - 1, r_eff, jobs)
        wrong = allies + 1
        wins = wrong > n / 2
        paid = np.where(wins, m.fee / wrong + (1 - b) * s * (n - wrong) / wrong, -s)
        dev = paid - m.cheap - m.gas - base
        if lazy_like == "copier":
            lose = -s - m.cheap - m.gas - base
            dev = np.where(allies > 0, m.compute, lose)
        return _estimate(np.where(cheats, dev, 0.0))
    if scheme == "zk":
        return _estimate(np.where(cheats, m.saved - (m.fee + m.slash), 0.0))
    if scheme == "optimistic":
        rr = r if lazy_like == "colluding" else 0.0
        checks = (rng.random((jobs, m.watchers)) < m.watch_p) & (rng.random((jobs, m.watchers)) >= rr)
        caught = checks.any(axis=1)
        return _estimate(np.where(cheats, m.saved - caught * (m.fee + m.slash), 0.0))
    # audit
    reward = m.fee * (1 - m.audit_pool_bps / 10_000)
    arb_majority = rng.binomial(m.arbiters, r, jobs) > m.arbiters / 2
    if lazy_like == "bribed_auditor":
        audit_fee = min(m.fee * (m.audit_pool_bps / 10_000) / max(m.audit_p * m.audit_k, 1e-12), m.fee * 10)
        others_bribed = (rng.random((jobs, m.audit_k - 1)) < r).all(axis=1)
        exposed = ~others_bribed & ~arb_majority
        return _estimate(m.bribe_per_auditor + m.compute - exposed * (m.slash + audit_fee))
    rr = r if lazy_like == "colluding" else 0.0
    audited = rng.random(jobs) < m.audit_p
    all_collude = (rng.random((jobs, m.audit_k)) < rr).all(axis=1)
    arb_bad = rng.binomial(m.arbiters, rr, jobs) > m.arbiters / 2
    caught = audited & ~all_collude & ~arb_bad
    return _estimate(np.where(cheats, m.saved - caught * (reward + m.slash), 0.0))


def simulate_self_challenge(m: Market, jobs: int = MIN_JOBS, seed: int = 0, value: float | None = None) -> Estimate:
    """Monte Carlo of `self_challenge_gain`: per job, does some watcher check (then the puppet front-runs)?"""
    import numpy as np

    v = m.fee if value is None else value
    rng = np.random.default_rng(seed)
    caught = (rng.random((jobs, m.watchers)) < m.watch_p).any(axis=1)
    return _estimate(m.saved + np.where(caught, -(m.fee + m.burn * m.slash + m.dispute_gas), v))
