"""The sequencer's promises: a request accepted is answered or refunded across a gateway restart, a crash
between paying and recording never pays twice, and many jobs are in flight at once."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from veriml.gateway.harness import LocalGateway
from veriml.gateway.request import JobRequest
from veriml.gateway.sequencer import FAILED, QUEUED, SETTLED, SUBMITTED, SUBMITTING
from veriml.sim.network import NodeSpec


@pytest.fixture(scope="module")
def gw():
    with LocalGateway.start([NodeSpec(), NodeSpec(), NodeSpec()], ("tiny-gpt",), wait_timeout=120) as g:
        yield g


def text_request(prompt: str, n: int = 1) -> JobRequest:
    return JobRequest(kind="completion", model="tiny-gpt", task="text-generation", n=n, prompt=prompt, max_new_tokens=3)


def gateway_jobs(gw) -> list[int]:
    """Ids of the jobs the gateway's account submitted, from the chain itself."""
    c = gw.net.contracts
    with gw.seq.lock:
        events = c.quorum.events("JobSubmitted", 0, user=gw.net.client.address)
    return sorted(e["args"]["jobId"] for e in events)


def wait_settled(gw, ids, timeout=90.0):
    deadline = time.monotonic() + timeout
    while True:
        rows = [gw.seq.get(i) for i in ids]
        if all(r.done for r in rows):
            return rows
        assert time.monotonic() < deadline, [r.state for r in rows]
        time.sleep(0.1)


def test_requests_accepted_before_a_restart_are_answered_after_it(gw):
    key = gw.create_key()
    info = gw.keys.authenticate(f"Bearer {key}")
    before = gateway_jobs(gw)
    gw.seq.stop()  # the worker is gone: nothing is submitted before the "crash"
    ids = [gw.seq.accept(info, text_request(f"The restart statement {i}")) for i in range(3)]
    assert {gw.seq.get(i).state for i in ids} == {QUEUED}
    gw.restart()  # new sequencer, new server, same database
    rows = wait_settled(gw, ids)
    assert [r.state for r in rows] == [SETTLED] * 3
    assert all(r.settlement.status == "verified" for r in rows)
    jobs = [r.job_id for r in rows]
    assert len(set(jobs)) == 3 and sorted(set(gateway_jobs(gw)) - set(before)) == sorted(jobs)  # one job each
    for r in rows:  # and the client can fetch each answer from the new process
        got = httpx.get(f"{gw.url}/v1/veriml/requests/{r.id}", headers={"Authorization": f"Bearer {key}"})
        assert got.status_code == 200 and got.json()["veriml"]["job_id"] == r.job_id
        assert got.json()["choices"][0]["text"] == r.settlement.text
    usage = gw.keys.get(info.id)
    assert usage.reserved == 0 and usage.spent == sum(int(r.settlement.veriml["fee_paid"]) for r in rows)


def test_a_crash_after_paying_is_recovered_from_the_chain_not_paid_twice(gw):
    info = gw.keys.authenticate(f"Bearer {gw.create_key()}")
    gw.seq.stop()
    paid = gw.seq.accept(info, text_request("The crash statement"))
    with gw.seq.lock:
        gw.seq._submit_queued()  # on-chain...
        head = gw.net.chain.block_number()
    job_paid = gw.seq.get(paid).job_id
    assert gw.seq.get(paid).state == SUBMITTED
    # ...then the process dies before recording it: its row still says "submitting". Another request died
    # after being marked "submitting" but before its transaction was sent.
    gw.seq.db.execute("UPDATE requests SET state = ?, job_id = NULL, tx = NULL WHERE id = ?", (SUBMITTING, paid))
    unpaid = gw.seq.accept(info, text_request("The other crash statement"))
    gw.seq.db.execute("UPDATE requests SET state = ?, submit_from = ? WHERE id = ?", (SUBMITTING, head, unpaid))
    before = gateway_jobs(gw)
    gw.restart()
    rows = wait_settled(gw, [paid, unpaid])
    assert rows[0].job_id == job_paid  # found on-chain, not submitted again
    assert rows[1].job_id != job_paid  # not on-chain after its mark: submitted now, once
    assert sorted(set(gateway_jobs(gw)) - set(before)) == [rows[1].job_id]
    assert all(r.state == SETTLED for r in rows)


@pytest.mark.slow
def test_many_jobs_in_flight_at_once(gw):
    key = gw.create_key()
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=120)
    results: dict[int, object] = {}

    def ask(i: int) -> None:
        results[i] = client.completions.create(
            model="tiny-gpt", prompt=f"The parallel statement {i}", max_tokens=3, extra_body={"veriml": {"n": 3}}
        )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 6
    reports = [r.model_extra["veriml"] for r in results.values()]
    assert all(v["status"] == "verified" for v in reports)
    submits = sorted(v["blocks"]["submit"] for v in reports)
    finals = sorted(v["blocks"]["finalize"] for v in reports)
    assert submits[-1] < finals[0], (submits, finals)  # every job was submitted before the first one settled


def test_a_request_refused_at_submission_is_failed_and_refunded(gw):
    info = gw.keys.authenticate(f"Bearer {gw.create_key()}")
    # An empty prompt (the API refuses it earlier; the SDK refuses it again at submission, before paying).
    rid = gw.seq.accept(info, JobRequest(kind="completion", model="tiny-gpt", task="text-generation", n=3, prompt=""))
    (row,) = wait_settled(gw, [rid])
    assert row.state == FAILED and row.settlement.veriml["status"] == "failed"
    assert "empty" in row.settlement.veriml["reason"]
    assert gw.keys.get(info.id).reserved == 0 and gw.keys.get(info.id).spent == 0
