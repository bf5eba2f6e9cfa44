"""What every node role (quorum, optimistic, zk) does the same way: stake once, then step until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount

from veriml.chain.contracts import Contracts
from veriml.errors import NetworkError

log = logging.getLogger("veriml.node")


def register_once(
    contracts: Contracts, account: LocalAccount, stake: int, endpoint: str, pubkey: bytes, model_ids: Sequence[bytes]
) -> bool:
    """Stake and announce the served models, unless already registered; True if it registered now."""
    if contracts.node(account.address).registered:
        return False
    contracts.register_node(account, stake, endpoint, pubkey, list(model_ids))
    return True


def run_steps(step: Callable[[], Iterable[Any]], who: str, stop: threading.Event, poll_interval: float) -> None:
    """Call `step` until `stop` is set, logging its actions; a step the network failed is retried next time."""
    while not stop.is_set():
        try:
            for a in step():
                log.info("%s job %s %s %s", a.node[:10], a.job_id, a.what, a.detail)
        except NetworkError as e:  # the chain or a blob service is briefly unreachable
            log.warning("%s: step failed, retrying: %s", who[:10], e)
        except Exception:  # noqa: BLE001 - discovery or a withdrawal failed: never exit the loop for it
            log.exception("%s: step failed, retrying", who[:10])
        stop.wait(poll_interval)
