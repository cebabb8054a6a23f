from __future__ import annotations

import pytest


def local_client(n_workers: int = 2, processes: bool = True):
    """A Client of a LocalCluster (one thread per worker), closed with the generator."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=n_workers, processes=processes, threads_per_worker=1, dashboard_address=":0"
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="session")
def client():
    """Two real worker processes, one thread each (not the synchronous scheduler), shared
    by every test of tests/distributed."""
    yield from local_client()


@pytest.fixture
def own_client():
    """Two worker processes of the test's own, for a test that kills one: the shared
    cluster then never depends on a nanny bringing a killed worker back (once in CI the
    restarted worker was closed again and the session's cluster stayed at one worker)."""
    yield from local_client()
