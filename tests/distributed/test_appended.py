"""An appended DATA_DIR (ids no longer sorted) trains and serves on Dask as on one machine."""

from __future__ import annotations

import numpy as np
import pytest

from walsrec.data.prepare import load_prepared, prepare
from walsrec.model.wals import WALS

pytest.importorskip("distributed")

from walsrec.distributed.wals import DaskWALS


def _csv(path, rows):
    path.write_text("user,item,r\n" + "".join(f"{u},{i},{r}\n" for u, i, r in rows))
    return str(path)


@pytest.fixture(scope="module")
def appended(tmp_path_factory):
    """A DATA_DIR of 300 users and 40 items, then ids that sort before all of them
    (``a…``, ``0…``) appended after them."""
    root = tmp_path_factory.mktemp("appended")
    rng = np.random.default_rng(0)
    old = [(f"u{rng.integers(300):03d}", f"i{rng.integers(40):02d}", 1 + rng.integers(4))
           for _ in range(3000)]  # fmt: skip
    new = [(f"a{rng.integers(20):02d}", f"0{rng.integers(5)}", 2) for _ in range(200)]
    new += [(f"u{rng.integers(300):03d}", f"0{rng.integers(5)}", 1) for _ in range(200)]
    prepare(_csv(root / "old.csv", old), root / "data", rating_col="r")
    prepare(_csv(root / "new.csv", new), root / "data2", append_to=root / "data")
    return root / "data2"


def test_dask_fits_an_appended_data_dir_as_one_machine(client, appended):
    data = load_prepared(appended)
    users = data.train.users.to_list()
    assert users[:3] == ["u000", "u001", "u002"] and users[-1].startswith("a")  # not sorted
    params = dict(embedding_dim=4, sweeps=3, random_state=1, dtype="float64", n_jobs=1)
    one = WALS(**params).fit(data.train.user_items)
    many = DaskWALS(client=client, partitions=3, **params).fit(str(appended))
    for a, b in ((one.user_factors_, many.user_factors_), (one.item_factors_, many.item_factors_)):
        assert float(np.abs(a - b).max() / np.abs(a).max()) < 1e-6


def test_train_on_dask_serves_the_appended_ids(client, appended, tmp_path):
    from walsrec.serving.model import load_model
    from walsrec.training.loop import train

    train(data=str(appended), model_dir=str(tmp_path / "model"), dask=client.scheduler.address,
          sweeps=2, embedding_dim=3, regularization=0.1, threads=1)  # fmt: skip
    model = load_model(tmp_path / "model")
    data = load_prepared(appended)
    first_new = data.train.users.id(300)
    assert model.users.index(first_new) == 300
    assert len(model.recommend(first_new, k=3).items) == 3
