"""The sequencer: a durable queue between the HTTP API and the chain.

A request accepted is a row in SQLite before the client hears "accepted"; from then on it is answered
or refunded, across restarts. One worker thread does all chain work, in rounds:

1. sync the index of market events (one log query over the new blocks);
2. submit up to `submit_batch` queued requests from the gateway's funded account through the SDK
   (`Client`), up to `max_inflight` in flight; a small batch per round keeps step 4 coming round soon;
3. run the `between` hook (an in-process network steps its nodes there);
4. help open jobs along: assign once due, finalize once every reveal is in or the reveal window closed.
   Our own jobs are assigned at once (each right after the next submission has mined a block past its
   own, the last of a batch here): the draw's randomness is the submit block's hash, which expires
   256 blocks later (refunded, never assigned), and under load anvil mines a block per transaction, so
   256 blocks is seconds. Everything else waits `help_after` seconds due, since live nodes usually do it
   themselves and a race costs both sides;
5. settle requests whose job is final: fetch the output from a winner, check it against the agreed digest
   (the SDK's `fetch_output`), store the answer, charge the key what the job cost, release the rest.

States: queued -> submitting -> submitted -> settled, or -> failed (nothing was spent: the reservation is
released). A row left `submitting` by a crash is matched on restart against the chain's JobSubmitted
events (same account, model and input hash, after the recorded block), so a job is never paid twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from veriml.client.sdk import Client
from veriml.errors import ChainError, NetworkError, VerificationError, VerimlError
from veriml.gateway import keys as keymod
from veriml.gateway.database import Database
from veriml.gateway.index import ChainIndex
from veriml.gateway.keys import KeyInfo, KeyStore
from veriml.gateway.problem import ApiError, from_veriml
from veriml.gateway.request import Catalog, JobRequest, ModelEntry, flatten, job_input
from veriml.gateway.response import Settlement
from veriml.models import zoo

log = logging.getLogger("veriml.gateway")

QUEUED, SUBMITTING, SUBMITTED, SETTLED, FAILED = "queued", "submitting", "submitted", "settled", "failed"
OPEN_STATES = (QUEUED, SUBMITTING, SUBMITTED)
FETCH_ATTEMPTS = 20  # rounds a verified job's output may be unavailable before the request fails
CATALOG_EVERY = 10.0  # seconds between refreshes of the served models (prices, node counts)
WITHDRAW_EVERY = 5.0  # seconds between withdrawals of the gateway's refunds


@dataclass(frozen=True)
class RequestRow:
    """A request as the queue holds it."""

    id: str
    key_id: str
    request: JobRequest
    state: str
    fee: int
    created: float
    job_id: int | None
    tx: str | None
    progress: dict[str, Any] | None
    settlement: Settlement | None

    @property
    def done(self) -> bool:
        return self.state in (SETTLED, FAILED)


class Sequencer:
    """Accepts requests, queues them durably, runs them as jobs and records the verified results."""

    def __init__(
        self,
        db: Database,
        client: Client,
        between: Callable[[], object] | None = None,
        explorer: str = "",
        pause: float = 0.05,
        max_pause: float = 0.25,
        max_inflight: int = 256,
        help_all: bool = True,
        lock: threading.RLock | None = None,
        help_after: float = 0.0,
        submit_batch: int = 16,
    ) -> None:
        self.db = db
        self.client = client
        self.contracts = client.contracts
        self.between = between
        self.explorer = explorer
        self.pause = pause
        self.max_pause = max(pause, max_pause)
        self.max_inflight = max_inflight
        self.help_all = help_all
        self.help_after = help_after
        self.submit_batch = submit_batch
        self._due_since: dict[int, float] = {}  # job id -> when it was first seen due (monotonic)
        self.lock = lock or threading.RLock()  # every chain access from any thread goes through it
        self.keys = KeyStore(db)
        self.index = ChainIndex(db, self.contracts)
        self.listeners: list[Callable[[str], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._catalog_at = 0.0
        self._withdraw_at = 0.0
        self._fetch_failures: dict[str, int] = {}
        self.errors = 0  # rounds that raised (logged); a test can assert none did
        with self.lock:
            self.catalog = self._read_catalog()

    # ---- the HTTP side (no chain access) ----
    def accept(self, key: KeyInfo, req: JobRequest, idempotency: str | None = None) -> str:
        """Queue a checked request for `key`; returns its id. An idempotency key repeats an earlier
        request's id instead of queueing a second job."""
        if idempotency is not None:
            if not isinstance(idempotency, str) or not 1 <= len(idempotency) <= 200 or not idempotency.isprintable():
                raise ApiError(400, "Idempotency-Key must be 1..200 printable characters", param="Idempotency-Key")
            row = self.db.one("SELECT id FROM requests WHERE key_id = ? AND idempotency = ?", (key.id, idempotency))
            if row is not None:
                return str(row["id"])
        entry = self.catalog.models.get(req.model)
        if entry is None:
            raise ApiError(503, f"{req.model} is no longer served", "server_error", "model", "no_nodes")
        fee = entry.price_wei * req.n
        request_id = "req_" + secrets.token_hex(12)
        now = time.time()
        with self.db.transaction() as conn:
            keymod.admit(conn, key.id, fee, now)
            conn.execute(
                "INSERT INTO requests (id, key_id, idempotency, kind, payload, state, fee, created, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (request_id, key.id, idempotency, req.kind, req.to_json(), QUEUED, str(fee), now, now),
            )
        return request_id

    def get(self, request_id: str) -> RequestRow | None:
        row = self.db.one("SELECT * FROM requests WHERE id = ?", (request_id,))
        return None if row is None else _row(row)

    def requests(self, key_id: str | None = None, limit: int = 100) -> list[RequestRow]:
        sql, args = "SELECT * FROM requests", ()
        if key_id is not None:
            sql, args = sql + " WHERE key_id = ?", (key_id,)
        return [_row(r) for r in self.db.query(sql + " ORDER BY created DESC LIMIT ?", (*args, limit))]

    def counts(self) -> dict[str, int]:
        return {r["state"]: int(r["c"]) for r in self.db.query("SELECT state, COUNT(*) c FROM requests GROUP BY state")}

    # ---- the worker ----
    def start(self) -> Sequencer:
        """Recover what a previous run left open, then run rounds on a background thread."""
        with self.lock:
            self.index.sync()
            self._recover()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="veriml-sequencer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        # Idle rounds back off from `pause` to `max_pause`: each costs a few RPCs, and 20 a second while jobs
        # sat waiting on nodes were 6% of a core (a devnet mines a block only every half second when idle).
        # A request accepted while idle waits at most `max_pause` to be picked up.
        pause = self.pause
        while not self._stop.is_set():
            try:
                busy = self.run_round()
            except Exception:  # noqa: BLE001 - the worker must outlive any one round (a chain hiccup, a bug)
                self.errors += 1
                log.exception("sequencer round failed; retrying")
                busy = False
            pause = self.pause if busy else min(pause * 2, self.max_pause)
            if not busy:
                self._stop.wait(pause)

    def run_round(self) -> bool:
        """One round (see the module docstring); True if anything happened."""
        with self.lock:
            now = time.monotonic()
            if now - self._catalog_at > CATALOG_EVERY:
                self.catalog = self._read_catalog()
            touched = self.index.sync()
            submitted = self._submit_queued()
            if self.between is not None and (submitted or self._busy()):
                self.between()
                touched |= self.index.sync()
            poked = self._help_along()
            if poked:
                touched |= self.index.sync()
            settled = self._settle()
            self._progress(touched)
            if now - self._withdraw_at > WITHDRAW_EVERY:
                self._withdraw_at = now
                self.client.withdraw()
        return bool(submitted or poked or settled or touched)

    def _busy(self) -> bool:
        """Whether any job is open on the market or any request of ours is in flight."""
        if self.index.open_jobs():
            return True
        return self.db.one("SELECT 1 FROM requests WHERE state IN (?, ?, ?) LIMIT 1", OPEN_STATES) is not None

    def _read_catalog(self) -> Catalog:
        """The shipped models registered on this chain, their prices and how many nodes serve each."""
        self._catalog_at = time.monotonic()
        models = {}
        for name in zoo.list_models():
            m = zoo.manifest(name)
            mid = m.model_id()
            if not self.contracts.model_exists(mid):
                continue
            models[name] = ModelEntry(name, m, self.contracts.model(mid).price, len(self.contracts.candidates(mid)))
        return Catalog(models)

    def _submit_queued(self) -> int:
        inflight = self.db.one("SELECT COUNT(*) c FROM requests WHERE state IN (?, ?)", (SUBMITTING, SUBMITTED))
        room = min(self.max_inflight - int(inflight["c"]), self.submit_batch)
        if room <= 0:
            return 0
        rows = self.db.query("SELECT * FROM requests WHERE state = ? ORDER BY created LIMIT ?", (QUEUED, room))
        previous = None
        for r in rows:
            row = _row(r)
            head = self.contracts.chain.block_number()
            self._set(row.id, state=SUBMITTING, submit_from=head)
            try:
                job_id, tx = self._send(row.request, row.fee)
            except VerimlError as e:
                # Refused before any coin moved (validation, a revert in the pre-flight call): refund the key.
                err = from_veriml(e)
                log.warning("request %s not submitted: %s", row.id, e)
                self._fail(row, err.message, err.status)
                continue
            self._set(row.id, state=SUBMITTED, job_id=job_id, tx=tx)
            self._notify(row.id)
            if previous is not None:
                self._assign(previous)  # its submit block is behind us now: the draw can happen
            previous = job_id
        return len(rows)

    def _assign(self, job_id: int) -> None:
        """Assign one of our jobs right away (see step 4); a node that got there first is no error."""
        try:
            self.contracts.assign(self.client.account, job_id)
        except ChainError as e:
            if getattr(e, "reason", None) != "JobMarket: job not awaiting assignment":
                log.warning("could not assign job %s: %s", job_id, e)

    def _send(self, req: JobRequest, fee: int) -> tuple[int, str]:
        c, m, n = self.client, req.model, req.n
        if req.kind == "embeddings":
            return c.submit_embeddings(m, req.texts or [], n, fee)
        if req.kind == "image":
            return c.submit_image(m, req.label or "", req.seed or 0, n, fee)
        if req.task == "chat":
            msgs = req.messages if req.messages is not None else [{"role": "user", "content": req.prompt or ""}]
            return c.submit_chat(m, msgs, n, req.max_new_tokens, req.seed, fee)
        prompt = req.prompt if req.prompt is not None else flatten(req.messages or [])
        return c.submit_text(m, prompt, n, req.max_new_tokens, req.seed, fee)

    def _help_along(self) -> int:
        """Assign or finalize the open jobs that are due (ours, or every job when `help_all`)."""
        head = self.contracts.chain.block_number()
        ours = {int(r["job_id"]) for r in self.db.query("SELECT job_id FROM requests WHERE state = ?", (SUBMITTED,))}
        done = 0
        now = time.monotonic()
        open_jobs = self.index.open_jobs()
        since = self._due_since
        for gone in since.keys() - {job["job_id"] for job in open_jobs}:
            del since[gone]
        for job in open_jobs:
            if not self.help_all and job["job_id"] not in ours:
                continue
            due = (job["status"] == "submitted" and head > job["submit_block"]) or (
                job["status"] == "assigned"
                and (
                    job["reveals"] == job["n"] or (job["reveal_deadline"] is not None and head > job["reveal_deadline"])
                )
            )
            if not due:
                since.pop(job["job_id"], None)
                continue
            # A job leaves `since` while nothing is due (assigned, reveals pending): assign and finalize each wait.
            first = since.setdefault(job["job_id"], now)
            assign_ours = job["status"] == "submitted" and job["job_id"] in ours
            if now - first < self.help_after and not assign_ours:
                continue
            try:
                if self.client.poke(job["job_id"]) is not None:
                    done += 1
            except ChainError as e:
                log.warning("could not help job %s along: %s", job["job_id"], e)
        return done

    def _settle(self) -> int:
        rows = self.db.query(
            "SELECT r.* FROM requests r JOIN jobs j ON j.job_id = r.job_id"
            " WHERE r.state = ? AND j.status IN ('verified', 'disputed', 'refunded')",
            (SUBMITTED,),
        )
        for r in rows:
            row = _row(r)
            assert row.job_id is not None
            report = self.index.report(row.job_id, self.explorer)
            report["request_id"] = row.id
            text = document = None
            if report["status"] == "verified":
                try:
                    doc = self.client.fetch_output(self.contracts.quorum.job(row.job_id), tuple(report["agree"]))
                except (VerificationError, NetworkError) as e:
                    tries = self._fetch_failures.get(row.id, 0) + 1
                    self._fetch_failures[row.id] = tries
                    if tries < FETCH_ATTEMPTS:
                        continue  # a winner's endpoint may be down for a moment
                    report["status"], report["reason"] = "failed", str(e)
                    report["http_status"] = 502
                else:
                    text, document = getattr(doc, "text", None), doc.encode()
                    report["error"] = doc.error
            self._finish(row, report, text, document)
        return len(rows)

    def _finish(self, row: RequestRow, report: dict[str, Any], text: str | None, document: bytes | None) -> None:
        paid = int(report.get("fee_paid", 0))
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE requests SET state = ?, result = ?, text = ?, document = ?, updated = ? WHERE id = ?",
                (SETTLED, json.dumps(report), text, document, time.time(), row.id),
            )
            keymod.settle(conn, row.key_id, row.fee, paid)
        self._fetch_failures.pop(row.id, None)
        self._notify(row.id)

    def _fail(self, row: RequestRow, reason: str, status: int) -> None:
        report = {
            "request_id": row.id,
            "job_id": None,
            "scheme": row.request.scheme,
            "n": row.request.n,
            "status": "failed",
            "reason": reason,
            "http_status": status,
            "fee": str(row.fee),
            "refund": str(row.fee),
            "fee_paid": "0",
            "txs": {},
        }
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE requests SET state = ?, result = ?, updated = ? WHERE id = ?",
                (FAILED, json.dumps(report), time.time(), row.id),
            )
            keymod.settle(conn, row.key_id, row.fee, 0)
        self._notify(row.id)

    def _progress(self, touched: set[int]) -> None:
        """Refresh the progress report of every open request whose job moved."""
        if not touched:
            return
        marks = ",".join("?" * len(touched))
        rows = self.db.query(
            f"SELECT id, job_id FROM requests WHERE state = ? AND job_id IN ({marks})", (SUBMITTED, *touched)
        )
        for r in rows:
            report = self.index.report(int(r["job_id"]), self.explorer)
            report["request_id"] = r["id"]
            self._set(r["id"], progress=json.dumps(report))
            self._notify(r["id"])

    def _recover(self) -> None:
        """Resolve rows a previous run left `submitting`: found on-chain -> submitted, else queued again."""
        claimed = {int(r["job_id"]) for r in self.db.query("SELECT job_id FROM requests WHERE job_id IS NOT NULL")}
        me = self.client.address
        for r in self.db.query("SELECT * FROM requests WHERE state = ?", (SUBMITTING,)):
            row = _row(r)
            want = "0x" + hashlib.sha256(job_input(row.request)).hexdigest()
            mid = "0x" + self.catalog.models[row.request.model].manifest.model_id().hex()
            match = None
            for job in self.db.query(
                "SELECT job_id FROM jobs WHERE user = ? AND model_id = ? AND submit_block >= ? ORDER BY job_id",
                (me, mid, int(r["submit_from"] or 0)),
            ):
                jid = int(job["job_id"])
                submitted = next(e for e in self.index.events(jid) if e.name == "JobSubmitted")
                if jid not in claimed and submitted.args["inputHash"] == want:
                    match = (jid, submitted.tx)
                    break
            if match is None:
                self._set(row.id, state=QUEUED)
                log.info("request %s was not on-chain; queued again", row.id)
            else:
                claimed.add(match[0])
                self._set(row.id, state=SUBMITTED, job_id=match[0], tx=match[1])
                log.info("request %s found on-chain as job %s", row.id, match[0])

    # ---- helpers ----
    def _set(self, request_id: str, **cols: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        self.db.execute(
            f"UPDATE requests SET {sets}, updated = ? WHERE id = ?", (*cols.values(), time.time(), request_id)
        )

    def _notify(self, request_id: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(request_id)
            except Exception:  # noqa: BLE001 - a closed event loop must not stop the worker
                log.debug("listener failed", exc_info=True)

    # ---- non-custodial reads ----
    def job_result(self, job_id: int) -> dict[str, Any]:
        """Any market job's report (and, once verified, its output checked against the agreed digest)."""
        report = self.index.report(job_id, self.explorer)
        if report["status"] == "unknown":
            # A job submitted straight to the chain may be newer than the index: read the new blocks once.
            with self.lock:
                self.index.sync()
            report = self.index.report(job_id, self.explorer)
        if report["status"] == "unknown":
            raise ApiError(404, f"no job {job_id} on this market (yet)", "not_found_error", "job_id", "unknown_job")
        if report["status"] == "verified":
            with self.lock:
                doc = self.client.fetch_output(self.contracts.quorum.job(job_id), tuple(report["agree"]))
            report["output"] = getattr(doc, "text", None)
            report["error"] = doc.error
            if doc.error is None and not getattr(doc, "png", None):
                report["document"] = json.loads(doc.encode())
        return report


def _row(r: Any) -> RequestRow:
    settlement = None
    if r["result"] is not None:
        settlement = Settlement(r["id"], int(r["created"]), json.loads(r["result"]), r["text"], r["document"])
    return RequestRow(
        r["id"],
        r["key_id"],
        JobRequest.from_json(r["payload"]),
        r["state"],
        int(r["fee"]),
        float(r["created"]),
        None if r["job_id"] is None else int(r["job_id"]),
        r["tx"],
        None if r["progress"] is None else json.loads(r["progress"]),
        settlement,
    )
