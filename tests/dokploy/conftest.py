from __future__ import annotations

from collections.abc import Iterator

import pytest

from stacks.dokploy.simulator import DokploySimulator


@pytest.fixture
def simulator() -> Iterator[DokploySimulator]:
    """A running Dokploy simulator on a free port, with fast deployments."""
    sim = DokploySimulator(deploy_seconds=0.1, queue_delay=0.01).start()
    try:
        yield sim
    finally:
        sim.stop()
