"""A shared in-process network for the end-to-end tests, rolled back to a clean chain around each test."""

from __future__ import annotations

import pytest

from veriml.sim.faults import Fault
from veriml.sim.network import LocalNetwork, NodeSpec


@pytest.fixture(scope="module")
def honest_net():
    with LocalNetwork.start([NodeSpec() for _ in range(5)]) as net:
        yield net


def fresh_network(*faults: Fault, **kwargs) -> LocalNetwork:  # noqa: ANN003
    """A network with one node per fault (HONEST for honest ones)."""
    return LocalNetwork.start([NodeSpec(fault=f) for f in faults], **kwargs)
