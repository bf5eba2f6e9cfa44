"""The client SDK: submit a job, help it along, and get back an output the network has checked.

Every input is validated here before any coin moves, with the same limits the contracts and nodes
apply, so a user sees "prompt is empty" rather than a revert or a refund. The verified output is
fetched from a winning node and checked against the digest the quorum agreed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from web3 import Web3

from veriml import tasks
from veriml.chain import reverts
from veriml.chain.contracts import Contracts
from veriml.errors import (
    FeeTooLow,
    InvalidPrompt,
    InvalidQuorum,
    JobNotSettled,
    NetworkError,
    UnknownModel,
    UserInputError,
    VerificationError,
)
from veriml.gateway.blobstore import BlobStore, open_store
from veriml.jobspec import ImageParams, TextParams, short
from veriml.models import zoo
from veriml.models.manifest import Manifest
from veriml.schemes.quorum import JobStatus, JobView
from veriml.types import BlobKey, JobId
from veriml.verify.digest import digests_match

MAX_QUORUM = 9
MAX_SEED = 2**64 - 1  # what the job params accept
MAX_FEE_WEI = 10**30  # far above any balance: only a guard against absurd numbers


@dataclass(frozen=True)
class JobResult:
    """A settled job and the evidence for it."""

    job_id: JobId
    model: str
    scheme: str
    n: int
    status: str  # verified | disputed | refunded
    output: str | None  # the verified text (None unless verified)
    error: str | None  # the error document the quorum agreed on, if the job itself was invalid
    output_digest: str | None
    assigned: tuple[str, ...]
    committed: tuple[str, ...]
    revealed: tuple[str, ...]
    agree: tuple[str, ...]
    slashed: tuple[str, ...]
    fee: int
    refund: int
    refund_reason: str | None = None
    txs: dict[str, str] = field(default_factory=dict)
    document: bytes | None = field(default=None, repr=False)  # the verified output document (an image's PNG)

    @property
    def fee_paid(self) -> int:
        return self.fee - self.refund

    def to_json(self) -> dict:
        return {
            "id": self.job_id,
            "model": self.model,
            "scheme": self.scheme,
            "n": self.n,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "output_digest": self.output_digest,
            "assigned": list(self.assigned),
            "committed": list(self.committed),
            "revealed": list(self.revealed),
            "agree": list(self.agree),
            "slashed": list(self.slashed),
            "fee_paid": self.fee_paid,
            "refund": self.refund,
            "refund_reason": self.refund_reason,
            "txs": self.txs,
        }


def resolve_model(model: str) -> Manifest:
    """A shipped model's manifest by name, or by 0x-hex model id."""
    if not isinstance(model, str):
        raise UnknownModel(f"model must be a name or a 0x model id, got {type(model).__name__} {short(model)}")
    if model.startswith("0x"):
        try:
            return zoo.manifest(zoo.by_model_id(bytes.fromhex(model[2:])))
        except ValueError:
            raise UnknownModel(f"model id {short(model)} is not hex") from None
    return zoo.manifest(model)


class Client:
    """A user's handle on the network: one account, one chain, one blob store for inputs."""

    def __init__(self, contracts: Contracts, account: LocalAccount, input_store: BlobStore) -> None:
        self.contracts = contracts
        self.account = account
        self.input_store = input_store

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def quorum(self):  # noqa: ANN201 - the QuorumJobs wrapper
        return self.contracts.quorum

    def quote(self, model: str, quorum: int) -> int:
        """The minimum fee for a job: n x the model's on-chain price."""
        manifest = resolve_model(model)
        check_quorum(quorum)
        return self._registered(manifest).price * quorum

    def submit_text(
        self,
        model: str,
        prompt: str | bytes,
        quorum: int = 3,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        fee: int | None = None,
    ) -> tuple[JobId, str]:
        """Validate, upload the prompt, escrow the fee and submit; returns (job id, transaction hash)."""
        manifest = _resolve_task(model, "text-generation")
        data = check_prompt(prompt, manifest.max_prompt_bytes)
        check_int(max_new_tokens, "max_new_tokens", 1, manifest.max_new_tokens)
        check_int(seed, "seed", 0, MAX_SEED)
        return self._submit(manifest, data, TextParams(max_new_tokens, seed).encode(), quorum, fee)

    def submit_image(
        self, model: str, label: str, seed: int = 0, quorum: int = 3, fee: int | None = None
    ) -> tuple[JobId, str]:
        """Validate, upload the class label, escrow the fee and submit; returns (job id, transaction hash)."""
        manifest = _resolve_task(model, "image-generation")
        classes = manifest.architecture.get("classes", [])
        check_int(seed, "seed", 0, MAX_SEED, optional=False)
        if not isinstance(label, str) or label not in classes:
            raise InvalidPrompt(f"unknown class {short(label)}; {manifest.name} draws {', '.join(classes)}")
        data = check_prompt(label, manifest.max_prompt_bytes)
        return self._submit(manifest, data, ImageParams(seed).encode(), quorum, fee)

    def submit_chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        quorum: int = 3,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        fee: int | None = None,
    ) -> tuple[JobId, str]:
        """Validate a chat (a list of {role, content}), upload it, escrow the fee and submit."""
        from veriml.jobspec import chat_input, check_chat_messages

        manifest = _resolve_task(model, "chat")
        data = check_prompt(chat_input(check_chat_messages(messages)), manifest.max_prompt_bytes)
        check_int(max_new_tokens, "max_new_tokens", 1, manifest.max_new_tokens)
        check_int(seed, "seed", 0, MAX_SEED)
        return self._submit(manifest, data, TextParams(max_new_tokens, seed).encode(), quorum, fee)

    def submit_embeddings(
        self, model: str, texts: list[str], quorum: int = 3, fee: int | None = None
    ) -> tuple[JobId, str]:
        """Validate texts to embed, upload them, escrow the fee and submit."""
        from veriml.jobspec import check_embedding_texts, embeddings_input

        manifest = _resolve_task(model, "embeddings")
        data = check_prompt(embeddings_input(check_embedding_texts(texts)), manifest.max_prompt_bytes)
        return self._submit(manifest, data, b"", quorum, fee)

    def _submit(
        self, manifest: Manifest, data: bytes, params: bytes, quorum: int, fee: int | None
    ) -> tuple[JobId, str]:
        """Check the quorum and fee, upload the input, escrow the fee and submit the job."""
        check_quorum(quorum)
        check_int(fee, "fee", 0, MAX_FEE_WEI)
        price = self._registered(manifest).price
        fee = price * quorum if fee is None else fee
        if fee < price * quorum:
            raise FeeTooLow(f"fee {fee} wei is below {quorum} x price {price} = {price * quorum} wei")
        key = self.input_store.put(data)
        job_id, receipt = self.quorum.submit(
            self.account, manifest.model_id(), bytes.fromhex(key), params, quorum, fee
        )
        return job_id, Web3.to_hex(receipt["transactionHash"])

    def _registered(self, manifest: Manifest):  # noqa: ANN202
        mid = manifest.model_id()
        if not self.contracts.model_exists(mid):
            raise UnknownModel(f"model {manifest.name} (0x{mid.hex()[:16]}..) is not registered on this chain")
        return self.contracts.model(mid)

    # ---- following a job ----
    def poke(self, job_id: int) -> str | None:
        """Do whatever anyone may do to move the job on (assign when due, finalize when due)."""
        job = self.quorum.job(job_id)
        head = self.contracts.chain.block_number()
        try:
            if job.status == JobStatus.SUBMITTED and head > job.submit_block:
                self.quorum.assign(self.account, job_id)
                return "assign"
            if job.status == JobStatus.ASSIGNED and (job.reveals == job.n or head > job.reveal_deadline):
                self.quorum.finalize(self.account, job_id)
                return "finalize"
        except reverts.WrongStatus:  # a node got there first
            pass
        return None

    def wait(
        self,
        job_id: int,
        timeout: float = 120.0,
        between: Callable[[], object] | None = None,
        poll: float = 0.2,
    ) -> JobResult:
        """Wait until the job settles and return its checked result.

        `between` runs on every round (the demo steps its in-process nodes there); the client itself only
        pokes the job when nodes leave it idle.
        """
        deadline = time.monotonic() + timeout
        while True:
            if between is not None:
                between()
            job = self.quorum.job(job_id)
            if job.status.final:
                return self.result(job_id)
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status.name.lower()} after {timeout:.0f}s")
            if between is None:
                time.sleep(poll)
            self.poke(job_id)

    def result(self, job_id: int) -> JobResult:
        """The settled job, with the verified output fetched from a winner and checked against the digest."""
        check_job_id(job_id)
        c = self.quorum
        job = c.job(job_id)
        if not job.status.final:
            raise JobNotSettled(f"job {job_id} is not settled yet ({job.status.name.lower()})")
        start = job.submit_block
        ev = lambda name: c.events(name, start, jobId=job_id)  # noqa: E731
        txs = {"submit": Web3.to_hex(ev("JobSubmitted")[0]["transactionHash"])}
        assigned = tuple(c.assigned_nodes(job_id))
        committed = tuple(e["args"]["node"] for e in ev("Committed"))
        revealed = tuple(e["args"]["node"] for e in ev("Revealed"))
        for name, label in (
            ("JobAssigned", "assign"),
            ("JobFinalized", "finalize"),
            ("JobRefunded", "refund"),
        ):
            for e in ev(name):
                txs[label] = Web3.to_hex(e["transactionHash"])
        model_name = _model_name(job)
        if job.status == JobStatus.REFUNDED:
            (r,) = ev("JobRefunded")
            return JobResult(
                job.job_id,
                model_name,
                job.scheme,
                job.n,
                "refunded",
                None,
                None,
                None,
                assigned,
                committed,
                revealed,
                (),
                (),
                job.fee,
                r["args"]["amount"],
                r["args"]["reason"],
                txs,
            )
        (f,) = ev("JobFinalized")
        args = f["args"]
        agree = tuple(args["winners"])
        output = error = digest = document = None
        if job.status == JobStatus.VERIFIED:
            digest = "0x" + job.result_digest.hex()
            doc = self.fetch_output(job, agree)
            output, error, document = (getattr(doc, "text", None), doc.error, doc.encode())
        return JobResult(
            job.job_id,
            model_name,
            job.scheme,
            job.n,
            job.status.name.lower(),
            output,
            error,
            digest,
            assigned,
            committed,
            revealed,
            agree,
            tuple(args["slashed"]),
            job.fee,
            args["refund"],
            None,
            txs,
            document,
        )

    def fetch_output(self, job: JobView, winners: tuple[str, ...]) -> tasks.Output:
        """The output document from the first winner that serves bytes matching the agreed digest.

        "Matching" is the job's policy as the contract applied it: equal digests, or for `phash` a picture
        whose perceptual hash is within the threshold of the agreed one (honest PNGs need not be identical).
        """
        manifest = resolve_model("0x" + job.model_id.hex())
        task = manifest.task
        problems = []
        keys = {
            e["args"]["node"]: bytes(e["args"]["outputKey"]).hex()
            for e in self.quorum.events("Revealed", job.submit_block, jobId=job.job_id)
        }
        for node in winners:
            endpoint = self.contracts.node(node).endpoint
            try:
                doc = tasks.decode(task, open_store(endpoint).get(BlobKey(keys[node])), manifest)
                if digests_match(job.policy, job.threshold, doc.digest(), job.result_digest):
                    return doc
                problems.append(f"{node}: served an output that does not match the digest")
            except (NetworkError, VerificationError, UserInputError, ValueError, KeyError) as e:
                problems.append(f"{node}: {e}")
        raise VerificationError(f"no winner served the verified output of job {job.job_id}: {'; '.join(problems)}")

    def withdraw(self) -> int:
        """Withdraw refunds owed to this account; returns the amount (0 if nothing was owed)."""
        owed = self.quorum.credits(self.address)
        if owed:
            self.quorum.withdraw(self.account)
        return owed


def _model_name(job: JobView) -> str:
    try:
        return zoo.by_model_id(job.model_id)
    except UnknownModel:
        return "0x" + job.model_id.hex()


def _resolve_task(model: str, task: str) -> Manifest:
    """The manifest of `model`, which must serve `task`."""
    manifest = resolve_model(model)
    if manifest.task != task:
        raise UnknownModel(f"model {manifest.name} serves {manifest.task}, not {task}")
    return manifest


def check_prompt(prompt: str | bytes, max_bytes: int) -> bytes:
    """UTF-8 bytes of a prompt, refusing empty or oversized ones."""
    if not isinstance(prompt, str | bytes | bytearray):
        raise InvalidPrompt(f"prompt must be text, got {type(prompt).__name__}")
    try:
        data = prompt.encode("utf-8") if isinstance(prompt, str) else bytes(prompt)
    except UnicodeEncodeError:  # a str holding surrogate escapes: bytes that were not UTF-8 (a shell argument)
        raise InvalidPrompt("prompt is not valid UTF-8") from None
    if not data.strip():
        raise InvalidPrompt("prompt is empty")
    if len(data) > max_bytes:
        raise InvalidPrompt(f"prompt is {len(data)} bytes; this model takes at most {max_bytes}")
    return data


def check_job_id(job_id: object) -> int:
    """A job id: a positive integer (the contracts number jobs from 1)."""
    return check_int(job_id, "job id", 1, 2**64 - 1, optional=False)  # type: ignore[return-value]


def check_int(value: object, name: str, low: int, high: int, optional: bool = True) -> int | None:
    """`value` if it is an int in [low, high] (or None when optional); InvalidPrompt naming `name` if not."""
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidPrompt(f"{name} must be an integer in {low}..{high}, got {short(value)}")
    return value


def check_quorum(n: int) -> int:
    """A quorum size the market accepts: odd, 1..9."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > MAX_QUORUM or n % 2 == 0:
        raise InvalidQuorum(f"quorum must be odd and in 1..{MAX_QUORUM}, got {short(n)}")
    return n
