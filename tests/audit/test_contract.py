"""AuditJobs on the embedded chain: unaudited and audited jobs, liars slashed, windows, books."""

from __future__ import annotations

import pytest

from veriml.chain import reverts
from veriml.schemes.audit import AuditStatus

from .conftest import MODEL, PRICE, RIGHT, WINDOW, WRONG, AuditNet


def test_the_fee_is_the_price_plus_the_pool_share(never: AuditNet):
    assert never.jobs.fee_of(MODEL) == PRICE + PRICE // 10
    with pytest.raises(reverts.FeeBelowPrice):
        never.jobs.submit(never.user, MODEL, RIGHT, b"", PRICE)


def test_unaudited_job_settles_fast_and_pays_the_executor(never: AuditNet):
    net, jobs = never, never.jobs
    pool = jobs.audit_pool()
    job_id, ex, salt = net.to_commit()
    start = jobs.job(job_id).submit_block
    jobs.draw_audit(net.keeper, job_id)
    j = jobs.job(job_id)
    assert j.status == AuditStatus.REVEALING and not j.audited and jobs.auditors_of(job_id) == []
    jobs.reveal(net.account(ex), job_id, RIGHT, salt)
    j = jobs.job(job_id)
    assert j.status == AuditStatus.VERIFIED and jobs.outcome(job_id) == ("verified", RIGHT)
    # submit, assign, commit, draw, reveal: one block each
    assert net.chain.block_number() - start <= 5
    assert jobs.credits(ex) == PRICE
    assert jobs.audit_pool() == pool + PRICE // 10
    assert net.c.node(ex).open_jobs == 0
    net.books()


def test_the_audit_draw_needs_a_later_block_than_the_commit(never: AuditNet):
    net, jobs = never, never.jobs
    job_id = net.submit()
    jobs.assign(net.keeper, job_id)
    ex = jobs.job(job_id).executor
    with pytest.raises(reverts.WrongStatus):  # nothing to draw before the commit
        jobs.draw_audit(net.keeper, job_id)
    net.commit(job_id, ex, RIGHT)
    assert jobs.job(job_id).commit_block == net.chain.block_number()
    # Any later transaction is in a later block; the draw reads the commit block's hash.
    jobs.draw_audit(net.keeper, job_id)
    assert jobs.job(job_id).status == AuditStatus.REVEALING


def test_no_show_executor_is_slashed_and_the_user_compensated(never: AuditNet):
    net, jobs = never, never.jobs
    job_id = net.submit()
    jobs.assign(net.keeper, job_id)
    ex = jobs.job(job_id).executor
    with pytest.raises(reverts.WindowOpen):
        jobs.timeout(net.keeper, job_id)
    stake, before = net.c.stake_of(ex), jobs.credits(net.user.address)
    net.chain.mine(WINDOW + 1)
    with pytest.raises(reverts.CommitWindowClosed):
        net.commit(job_id, ex, RIGHT)
    jobs.timeout(net.keeper, job_id)
    fee = jobs.job(job_id).fee
    assert jobs.job(job_id).status == AuditStatus.FAILED and jobs.outcome(job_id)[0] == "failed"
    assert net.c.stake_of(ex) == stake // 2
    # Whole fee back, plus compensation capped at the fee; the rest of the slash is burned.
    assert jobs.credits(net.user.address) - before == 2 * fee
    net.books()


def test_executor_that_sits_on_the_audit_draw_or_its_reveal_is_slashed(never: AuditNet):
    net, jobs = never, never.jobs
    job_id, ex, _ = net.to_commit()
    net.chain.mine(WINDOW + 1)
    with pytest.raises(reverts.WindowClosedFor):
        jobs.draw_audit(net.keeper, job_id)
    stake = net.c.stake_of(ex)
    jobs.timeout(net.keeper, job_id)
    assert net.c.stake_of(ex) == stake // 2
    job_id, ex, _ = net.to_commit()
    jobs.draw_audit(net.keeper, job_id)
    net.chain.mine(WINDOW + 1)
    stake = net.c.stake_of(ex)
    jobs.timeout(net.keeper, job_id)
    assert jobs.job(job_id).status == AuditStatus.FAILED and net.c.stake_of(ex) == stake // 2
    net.books()


def _audited(net: AuditNet, digest: bytes = RIGHT) -> tuple[int, str, bytes, list[str]]:
    job_id, ex, salt = net.to_commit(digest)
    net.jobs.draw_audit(net.keeper, job_id)
    j = net.jobs.job(job_id)
    assert j.status == AuditStatus.AUDITING and j.audited
    auditors = net.jobs.auditors_of(job_id)
    return job_id, ex, salt, auditors


def test_forced_audit_of_an_honest_executor_passes_and_pays_everyone(always: AuditNet):
    net, jobs = always, always.jobs
    jobs.fund_pool(net.keeper, 10 * PRICE)
    job_id, ex, salt, auditors = _audited(net)
    assert len(auditors) == 2 and ex not in auditors and len(set(auditors)) == 2
    credits = {a: jobs.credits(a) for a in [ex, *auditors]}
    user0 = jobs.credits(net.user.address)
    salts = {a: net.commit(job_id, a, RIGHT) for a in auditors}
    jobs.reveal(net.account(ex), job_id, RIGHT, salt)
    for a, s in salts.items():
        jobs.reveal(net.account(a), job_id, RIGHT, s)
    jobs.finalize(net.keeper, job_id)
    assert jobs.outcome(job_id) == ("verified", RIGHT)
    # The user paid what an unaudited job costs and gets nothing back: the pool paid the auditors.
    assert jobs.job(job_id).fee == jobs.fee_of(MODEL) and jobs.credits(net.user.address) == user0
    assert jobs.credits(ex) - credits[ex] == PRICE
    for a in auditors:
        assert jobs.credits(a) - credits[a] == PRICE  # from the pool
        assert net.c.node(a).open_jobs == 0
    net.books()


def test_cheating_executor_under_audit_is_slashed_and_the_user_refunded(always: AuditNet):
    net, jobs = always, always.jobs
    jobs.fund_pool(net.keeper, 10 * PRICE)
    job_id, ex, salt, auditors = _audited(net, WRONG)
    stake, user0 = net.c.stake_of(ex), jobs.credits(net.user.address)
    credits = {a: jobs.credits(a) for a in auditors}
    salts = {a: net.commit(job_id, a, RIGHT) for a in auditors}
    jobs.reveal(net.account(ex), job_id, WRONG, salt)
    for a, s in salts.items():
        jobs.reveal(net.account(a), job_id, RIGHT, s)
    receipt = jobs.finalize(net.keeper, job_id)
    (ev,) = jobs.receipt_events("JobSettled", receipt)
    assert list(ev["args"]["slashed"]) == [ex] and sorted(ev["args"]["paid"]) == sorted(auditors)
    assert jobs.outcome(job_id) == ("verified", RIGHT)  # the auditors' answer stands
    taken = stake - net.c.stake_of(ex)
    assert taken == stake // 2
    paid_on = taken - taken * 2_000 // 10_000  # less the burned share
    # The user gets the executor's unearned price back (and any dust of the split).
    assert jobs.credits(net.user.address) - user0 == PRICE + paid_on % 2
    for a in auditors:
        assert jobs.credits(a) - credits[a] == PRICE + paid_on // 2
    net.books()


def test_lying_auditor_is_slashed_and_the_executor_paid(always: AuditNet):
    net, jobs = always, always.jobs
    jobs.fund_pool(net.keeper, 10 * PRICE)
    job_id, ex, salt, (liar, honest) = _audited(net)
    stake, ex0 = net.c.stake_of(liar), jobs.credits(ex)
    s_liar, s_honest = net.commit(job_id, liar, WRONG), net.commit(job_id, honest, RIGHT)
    for who, d, s in ((ex, RIGHT, salt), (liar, WRONG, s_liar), (honest, RIGHT, s_honest)):
        jobs.reveal(net.account(who), job_id, d, s)
    jobs.finalize(net.keeper, job_id)
    assert jobs.outcome(job_id) == ("verified", RIGHT)
    taken = stake - net.c.stake_of(liar)
    assert taken == stake // 2
    paid_on = taken - taken * 2_000 // 10_000
    assert jobs.credits(ex) - ex0 == PRICE + paid_on // 2
    net.books()


def test_no_majority_refunds_the_user_and_slashes_only_no_shows(always: AuditNet):
    net, jobs = always, always.jobs
    job_id, ex, salt, (a1, a2) = _audited(net, WRONG)
    s1 = net.commit(job_id, a1, RIGHT)  # a2 never commits
    user0, stakes = jobs.credits(net.user.address), {a: net.c.stake_of(a) for a in (ex, a1, a2)}
    with pytest.raises(reverts.CommitPhaseOpen):
        jobs.reveal(net.account(ex), job_id, WRONG, salt)
    net.chain.mine(WINDOW)
    jobs.reveal(net.account(ex), job_id, WRONG, salt)
    jobs.reveal(net.account(a1), job_id, RIGHT, s1)
    with pytest.raises(reverts.RevealPhaseOpen):
        jobs.finalize(net.keeper, job_id)
    net.chain.mine(WINDOW)
    jobs.finalize(net.keeper, job_id)
    fee = jobs.job(job_id).fee
    assert jobs.outcome(job_id)[0] == "failed"
    assert net.c.stake_of(ex) == stakes[ex] and net.c.stake_of(a1) == stakes[a1]
    assert net.c.stake_of(a2) == stakes[a2] // 2
    assert jobs.credits(net.user.address) - user0 == 2 * fee  # fee + compensation capped at the fee
    net.books()


def test_auditors_see_only_the_executors_commitment_before_they_commit(always: AuditNet):
    net, jobs = always, always.jobs
    job_id, ex, salt, (a1, a2) = _audited(net)
    slot = jobs.slot(job_id, ex)
    assert slot.commitment != bytes(32) and slot.digest == bytes(32) and not slot.revealed
    assert jobs.job(job_id).result_digest == bytes(32)
    # The executor may not reveal while an auditor has yet to commit.
    with pytest.raises(reverts.CommitPhaseOpen):
        jobs.reveal(net.account(ex), job_id, RIGHT, salt)
    s1 = net.commit(job_id, a1, RIGHT)
    with pytest.raises(reverts.CommitPhaseOpen):
        jobs.reveal(net.account(a1), job_id, RIGHT, s1)
    head = jobs.job(job_id).submit_block
    assert jobs.events("Revealed", head, jobId=job_id) == []
    # A commitment replayed by another node does not open for it.
    with pytest.raises(reverts.AlreadyCommitted):
        jobs.commit(net.account(a1), job_id, slot.commitment)
    s2 = net.commit(job_id, a2, RIGHT)
    for who, s in ((ex, salt), (a1, s1), (a2, s2)):
        jobs.reveal(net.account(who), job_id, RIGHT, s)
    jobs.finalize(net.keeper, job_id)
    net.books()


def test_only_drawn_nodes_commit(always: AuditNet):
    net = always
    job_id, ex, _, auditors = _audited(net)
    outsider = next(a.address for a in net.chain.accounts[3:9] if a.address not in (ex, *auditors))
    with pytest.raises(reverts.NotAssigned):
        net.commit(job_id, outsider, RIGHT)
    with pytest.raises(reverts.AlreadyCommitted):
        net.commit(job_id, ex, RIGHT)
