"""What the parties can learn: the executor's view up to its commit does not depend on whether the job will
be audited (the decision is drawn from the commit block's hash), and the audit rate is what p says."""

from __future__ import annotations

import dataclasses
import math

import pytest

from veriml.schemes.audit import AuditStatus

from .conftest import RIGHT, AuditNet, make_net


@pytest.fixture(scope="module")
def half():
    from veriml import schemes

    net = make_net(5_000)
    yield net
    net.chain.close()
    schemes.unregister("audit")


def _executor_view(net: AuditNet, job_id: int) -> tuple:
    """Everything the executor can read about its job before it commits, with the job's own id and block
    numbers made relative (they differ between any two jobs, audited or not)."""
    jobs = net.jobs
    j = jobs.job(job_id)
    me, base = j.executor, j.submit_block
    view = dataclasses.replace(j, job_id=0, submit_block=0, deadline=j.deadline - base, executor="me")
    events = []
    for name in ("JobSubmitted", "CandidatesFrozen", "JobAssigned", "Committed", "AuditDrawn", "Revealed"):
        for ev in jobs.events(name, base, jobId=job_id):
            args = {k: v for k, v in ev["args"].items() if k != "jobId"}
            if "executor" in args:
                args["executor"] = "me" if args["executor"] == me else args["executor"]
            if "commitDeadline" in args:
                args["commitDeadline"] -= base
            events.append((name, ev["blockNumber"] - base, tuple(sorted(args.items(), key=str))))
    slot = jobs.slot(job_id, me)
    return view, tuple(events), slot, jobs.auditors_of(job_id), jobs.voters(job_id)[1:]


def test_the_executor_sees_the_same_before_its_commit_audited_or_not(half: AuditNet):
    net, jobs = half, half.jobs
    views: dict[bool, set] = {True: set(), False: set()}
    for _ in range(16):
        job_id = net.submit()
        jobs.assign(net.keeper, job_id)
        before = _executor_view(net, job_id)
        ex = jobs.job(job_id).executor
        net.commit(job_id, ex, RIGHT)
        # Up to and including its commit transaction nothing about the audit exists on chain.
        assert jobs.job(job_id).audited is False and jobs.auditors_of(job_id) == []
        jobs.draw_audit(net.keeper, job_id)
        audited = jobs.job(job_id).status == AuditStatus.AUDITING
        views[audited].add(repr(before))
    assert views[True] and views[False], "p = 50%: both kinds of job should occur in 16"
    assert views[True] == views[False] and len(views[True]) == 1


def _binomial_interval(n: int, p: float, alpha: float = 1e-3) -> tuple[int, int]:
    """The central interval [lo, hi] holding at least 1 - alpha of Binomial(n, p)."""
    pmf = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    lo, acc = 0, 0.0
    while acc + pmf[lo] <= alpha / 2:
        acc += pmf[lo]
        lo += 1
    hi, acc = n, 0.0
    while acc + pmf[hi] <= alpha / 2:
        acc += pmf[hi]
        hi -= 1
    return lo, hi


def test_measured_audit_rate_at_2000_bps_is_within_its_binomial_interval():
    from veriml import schemes

    net = make_net(2_000)
    try:
        jobs, n = net.jobs, 200
        audited = 0
        for _ in range(n):
            job_id, _, _ = net.to_commit()
            jobs.draw_audit(net.keeper, job_id)
            audited += jobs.job(job_id).audited
        lo, hi = _binomial_interval(n, 0.2)
        print(f"audited {audited} of {n} at p = 20% (99.9% interval {lo}..{hi})")
        assert lo <= audited <= hi
    finally:
        net.chain.close()
        schemes.unregister("audit")
