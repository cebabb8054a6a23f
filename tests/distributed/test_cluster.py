from __future__ import annotations

import pytest

from tests.distributed.conftest import local_client
from walsrec.distributed import cluster
from walsrec.distributed.wals import DaskWALS
from walsrec.errors import InvalidParameterError, NoWorkersError
from walsrec.training.loop import train

distributed = pytest.importorskip("distributed")


def test_workers_are_asked_of_the_scheduler_not_read_from_the_clients_cache(client, monkeypatch):
    """The client's periodic refresh leaves ``scheduler_info()`` listing no workers now and
    then (it asks for none); a fit reading it then divided by zero. The workers come from
    the scheduler itself."""
    monkeypatch.setattr(client, "scheduler_info", lambda *a, **k: {"workers": {}})
    found = cluster.workers(client)
    assert len(found) == 2
    assert found == sorted(client.run(lambda: 0))
    assert DaskWALS(client=client)._workers() == found


@pytest.fixture
def no_workers():
    yield from local_client(n_workers=0, processes=False)


def test_a_cluster_without_workers_is_an_error_naming_the_scheduler(
    no_workers, data_dir, monkeypatch, tmp_path
):
    from walsrec.distributed.predict import predict_dask

    monkeypatch.setattr(cluster, "WORKER_WAIT_S", 0.2)
    address = no_workers.scheduler.address
    with pytest.raises(NoWorkersError, match=rf"cluster at {address} has no workers \(waited"):
        cluster.workers(no_workers)
    with pytest.raises(NoWorkersError, match=r"has no workers"):
        DaskWALS(4, client=no_workers, sweeps=1).fit(data_dir)
    model = train(
        data=str(data_dir), model_dir=str(tmp_path / "m"), embedding_dim=3, sweeps=1, threads=1
    )
    with pytest.raises(NoWorkersError, match=r"has no workers"):
        predict_dask(no_workers, model.model_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_worker_joining_while_waiting_is_used(no_workers, monkeypatch):
    monkeypatch.setattr(cluster, "WORKER_WAIT_S", 60.0)
    no_workers.cluster.scale(1)
    assert len(cluster.workers(no_workers)) == 1


@pytest.mark.parametrize("spec", ["", "  ", "local:0", "local:x"])
def test_parse_dask_refuses_a_bad_setting(spec):
    with pytest.raises(InvalidParameterError, match=r"The 'dask' setting of train must be"):
        cluster.parse_dask(spec)
