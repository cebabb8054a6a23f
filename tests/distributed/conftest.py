from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def client():
    """Two real worker processes, one thread each (not the synchronous scheduler), shared
    by every test of tests/distributed."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
