"""The slow tier: anvil, a blob service and node processes on loopback, payloads over HTTP."""

from __future__ import annotations

import pytest

from veriml.chain.backends import dev_accounts
from veriml.devnet import FIRST_NODE_ACCOUNT, Devnet, connect_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("devnet")
    with Devnet.start(directory, nodes=3, dishonest=1) as net:
        yield net


def test_a_job_is_verified_across_processes_and_the_cheater_slashed(devnet):
    client = connect_client(devnet.directory)
    # Devnet.start makes the last `dishonest` nodes cheat; node i signs with dev account FIRST_NODE_ACCOUNT + i.
    cheat = dev_accounts()[FIRST_NODE_ACCOUNT + 2].address
    stake = client.contracts.stake_of(cheat)
    job_id, _ = client.submit_text("tiny-gpt", "The for statement", 3, max_new_tokens=16)
    result = client.wait(job_id, timeout=120)
    assert result.status == "verified"
    assert result.slashed == (cheat,)
    assert len(result.agree) == 2 and result.output
    assert client.contracts.stake_of(cheat) < stake


def test_an_all_honest_quorum_of_one_over_http(devnet):
    client = connect_client(devnet.directory)
    job_id, _ = client.submit_text("tiny-gpt", "A class definition", 1, max_new_tokens=8)
    result = client.wait(job_id, timeout=120)
    assert result.status == "verified"
    assert result.output is not None
