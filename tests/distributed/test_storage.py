"""Workers read the native files by path, ``file://`` URL or any fsspec protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from walsrec.data.prepare import load_prepared
from walsrec.distributed._storage import npy_rows, npy_shape
from walsrec.distributed.wals import DaskWALS, native_source
from walsrec.errors import DataFormatError
from walsrec.model.wals import WALS

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("distributed")
from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402
from fsspec.implementations.local import LocalFileSystem  # noqa: E402

PROTOCOL = "walsrecrange"


class RangeOnlyFS(LocalFileSystem):
    """A non-local filesystem as walsrec sees it (another protocol than "file"): files can
    only be read whole when small (JSON) or by byte range; opening one is an error, so
    memory-mapping or streaming a whole array cannot pass unnoticed."""

    protocol = PROTOCOL
    ranged_bytes = 0

    def _open(self, path, mode="rb", **kwargs):
        raise AssertionError(f"{path} opened whole; expected byte-range reads")

    def cat_file(self, path, start=None, end=None, **kwargs):
        path = self._strip_protocol(path)
        with open(path, "rb") as f:
            if start is None:
                assert path.endswith(".json"), f"{path} read whole"
                return f.read()
            f.seek(start)
            out = f.read(end - start)
        type(self).ranged_bytes += len(out)
        return out


def _register():
    fsspec.register_implementation(PROTOCOL, RangeOnlyFS, clobber=True)


def _ranged_bytes(dask_worker=None) -> int:
    return int(fsspec.get_filesystem_class(PROTOCOL).ranged_bytes)


class Register(WorkerPlugin):
    """A worker plugin: the workers import this module (it is on their sys.path, as the
    tests' root is on pytest's) and register the filesystem, restarted workers too."""

    def setup(self, worker):
        _register()


@pytest.fixture(scope="module")
def range_fs(client):
    """RangeOnlyFS registered here and on every worker."""
    _register()
    client.register_plugin(Register(), name=PROTOCOL)
    yield PROTOCOL
    client.unregister_worker_plugin(PROTOCOL)


@pytest.fixture(scope="module")
def user_items(data_dir):
    return load_prepared(data_dir).train.user_items


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(a).max())


def test_npy_rows_by_byte_range_equals_numpy(tmp_path):
    _register()
    rng = np.random.default_rng(0)
    for arr in (rng.standard_normal((9, 3)).astype(np.float32), np.arange(11, dtype=np.int64)):
        np.save(tmp_path / "a.npy", arr)
        url = f"{PROTOCOL}://{tmp_path}/a.npy"
        before = RangeOnlyFS.ranged_bytes
        np.testing.assert_array_equal(npy_rows(url, 2, 7, expect_len=arr.shape[0]), arr[2:7])
        # the two header reads and the five rows, nothing else
        header = (tmp_path / "a.npy").stat().st_size - arr.nbytes
        assert RangeOnlyFS.ranged_bytes - before == 12 + header + arr[2:7].nbytes
        assert npy_rows(url, 4, 4).shape == (0, *arr.shape[1:])
        assert npy_shape(url) == arr.shape
        # the local path and file:// URL (memory-mapped) agree
        for local in (str(tmp_path / "a.npy"), f"file://{tmp_path}/a.npy"):
            np.testing.assert_array_equal(npy_rows(local, 2, 7), arr[2:7])
    with pytest.raises(DataFormatError, match=r"a\.npy: 11 rows where its metadata gives 12"):
        npy_rows(f"{PROTOCOL}://{tmp_path}/a.npy", 0, 2, expect_len=12)
    raw = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:-8])
    with pytest.raises(DataFormatError, match=r"t\.npy: rows 5:11 end past the end of the file"):
        npy_rows(f"{PROTOCOL}://{tmp_path}/t.npy", 5, 11)
    (tmp_path / "b.npy").write_bytes(b"not an array at all")
    with pytest.raises(DataFormatError, match=r"b\.npy: not a \.npy file"):
        npy_rows(f"{PROTOCOL}://{tmp_path}/b.npy", 0, 1)
    with pytest.raises(DataFormatError, match=r"c\.npy: missing"):
        npy_rows(f"{PROTOCOL}://{tmp_path}/c.npy", 0, 1)


def test_fit_through_a_file_url(client, data_dir, user_items):
    params = dict(embedding_dim=4, sweeps=2, random_state=6, dtype="float64", n_jobs=1)
    ref = WALS(**params).fit(user_items)
    source = native_source(f"file://{data_dir}")
    assert source.rows_dir == f"file://{data_dir}/train/native"
    model = DaskWALS(client=client, partitions=3, **params).fit(source)
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=1e-6)


def test_fit_through_a_non_local_filesystem(client, range_fs, data_dir, user_items, tmp_path):
    """Every worker reads its partitions by byte range: together, each file about once."""
    params = dict(embedding_dim=4, sweeps=2, random_state=6, dtype="float64", n_jobs=1)
    ref = WALS(**params).fit(user_items)
    before = sum(client.run(_ranged_bytes).values())
    model = DaskWALS(client=client, partitions=3, **params).fit(f"{range_fs}://{data_dir}")
    assert model.source_.cols_dir.startswith(f"{range_fs}://")
    assert _rel(ref.user_factors_, model.user_factors_) < 1e-6
    assert _rel(ref.item_factors_, model.item_factors_) < 1e-6
    np.testing.assert_allclose(model.loss_, ref.loss_, rtol=1e-6)
    read = sum(client.run(_ranged_bytes).values()) - before
    native = Path(data_dir) / "train" / "native"
    size = sum(p.stat().st_size for p in native.glob("*.npy"))
    # 2 sides x 3 partitions x 3 files: two header reads each; indptr slices overlap by one
    assert size * 0.95 < read < size + 18 * 200
    # factors saved on that filesystem load back into the workers the same way
    np.save(tmp_path / "u.npy", ref.user_factors_)
    np.save(tmp_path / "v.npy", ref.item_factors_)
    model.load_factors(f"{range_fs}://{tmp_path}/u.npy", f"{range_fs}://{tmp_path}/v.npy")
    np.testing.assert_array_equal(model.user_factors_, ref.user_factors_)
    assert model.loss() == pytest.approx(ref.loss(user_items), rel=1e-9)
