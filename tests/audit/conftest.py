"""Audit-scheme fixtures: one embedded chain per module, AuditJobs deployed at a chosen audit rate on its
own registries, one `exact` model served by six staked nodes. Accounts: 0 deploys, 1 is the user, 2 the
keeper, 3..8 the nodes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

from veriml import schemes
from veriml.chain.backends import Chain, embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, deploy
from veriml.schemes import audit
from veriml.schemes.audit import AuditJobs
from veriml.verify.commitment import commitment, new_salt

PRICE = 10**15
STAKE = 10 * 10**18
MODEL = keccak(b"veriml/test/audit-model")
INPUT = keccak(b"veriml/test/audit-input")
RIGHT = keccak(b"the right answer")
WRONG = keccak(b"a cheap wrong answer")
WINDOW = 5


def config(audit_bps: int) -> DeployConfig:
    return DeployConfig(unbond_delay_blocks=300, slash_bps=5_000, burn_bps=2_000).with_scheme(
        "audit", commit_window_blocks=WINDOW, reveal_window_blocks=WINDOW, audit_bps=audit_bps
    )


@dataclass
class AuditNet:
    chain: Chain
    c: Contracts
    jobs: AuditJobs

    @property
    def user(self) -> LocalAccount:
        return self.chain.accounts[1]

    @property
    def keeper(self) -> LocalAccount:
        return self.chain.accounts[2]

    def account(self, address: str) -> LocalAccount:
        return next(a for a in self.chain.accounts if a.address == address)

    def submit(self) -> int:
        job_id, _ = self.jobs.submit(self.user, MODEL, INPUT)
        return job_id

    def commit(self, job_id: int, node: str, digest: bytes) -> bytes:
        salt = new_salt()
        c = commitment(self.chain.chain_id, self.jobs.address, job_id, node, digest, salt)
        self.jobs.commit(self.account(node), job_id, c)
        return salt

    def to_commit(self, digest: bytes = RIGHT) -> tuple[int, str, bytes]:
        """A job submitted, assigned and committed by its executor; (job id, executor, salt)."""
        job_id = self.submit()
        self.jobs.assign(self.keeper, job_id)
        ex = self.jobs.job(job_id).executor
        return job_id, ex, self.commit(job_id, ex, digest)

    def books(self) -> None:
        t = self.jobs.totals()
        assert t["balance"] == t["escrow"] + t["bonds"] + t["credits"]


def make_net(audit_bps: int) -> AuditNet:
    schemes.register(audit.SPEC)
    chain = embedded_chain()
    c = Contracts(chain, deploy(chain, chain.accounts[0], config(audit_bps), schemes=("audit",)))
    c.register_model(chain.accounts[0], MODEL, keccak(b"w"), "exact", 0, PRICE)
    for a in chain.accounts[3:9]:
        c.register_node(a, STAKE, "http://127.0.0.1:1", b"", [MODEL])
    return AuditNet(chain, c, c.scheme("audit"))


@pytest.fixture(scope="module")
def never():
    net = make_net(0)
    yield net
    net.chain.close()
    schemes.unregister("audit")


@pytest.fixture(scope="module")
def always():
    net = make_net(10_000)
    yield net
    net.chain.close()
    schemes.unregister("audit")
