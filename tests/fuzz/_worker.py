"""The fuzz suite's reader process: reads what a test wrote, and says how that went.

One request per line on stdin (JSON: ``{"kind": ..., "path": ...}``), one answer per line
on stdout: ``{"outcome": "ok"}`` when the data loaded and passed its use,
``{"outcome": "error", "type": ..., "message": ...}`` for a walsrec domain error, or
``{"outcome": "unexpected", ...}`` with the traceback for any other exception. A crash
(a signal, an abort in native code) ends the process: the test sees it die and names
the input. Running the readers here keeps a crash from killing the test runner.
"""

from __future__ import annotations

import json
import sys
import traceback

import numpy as np


def _use_matrix(m) -> None:
    """Correct data: the invariants hold and scipy's own operations run on it."""
    from walsrec.data.native import check_csr

    check_csr(m.indptr, m.indices, m.data, m.shape, "loaded matrix")
    m @ np.ones(m.shape[1], dtype=m.dtype)
    m.T.tocsr().sum()


def _native(path: str) -> None:
    from walsrec.data.native import load_csr

    _use_matrix(load_csr(path, "m"))


def _prepared(path: str) -> None:
    from walsrec.data.prepare import load_prepared
    from walsrec.model.wals import WALS

    data = load_prepared(path)
    _use_matrix(data.train.user_items)
    WALS(embedding_dim=2, sweeps=1, n_jobs=1, random_state=0).fit(data.train.user_items)


def _export(path: str) -> None:
    from walsrec.serving.model import load_model

    model = load_model(path)
    if model.n_users:
        model.recommend(model.users.id(0), k=3)
    if model.n_items:
        model.similar_items(model.items.id(0), k=3)
        model.recommend_for_interactions([(model.items.id(0), 1.0)], k=3)
    model.describe()


def _checkpoint(path: str) -> None:
    from walsrec.training.checkpoints import read_checkpoint

    c = read_checkpoint(path)
    assert np.isfinite(c.user_factors).all() and np.isfinite(c.item_factors).all()


def _tfrecord(path: str) -> None:
    from walsrec.data.tfrecord import read_tfrecords

    _use_matrix(read_tfrecords(path, vocab_size=50))


def _segfault(path: str) -> None:
    """Dies as a crashing reader would (the suite's own test that a crash is caught)."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


READERS = {
    "segfault": _segfault,
    "native": _native,
    "prepared": _prepared,
    "export": _export,
    "checkpoint": _checkpoint,
    "tfrecord": _tfrecord,
}


def main() -> None:
    from walsrec.errors import WalsrecError

    for line in sys.stdin:
        request = json.loads(line)
        try:
            READERS[request["kind"]](request["path"])
            answer = {"outcome": "ok"}
        except WalsrecError as exc:
            answer = {"outcome": "error", "type": type(exc).__name__, "message": str(exc)}
        except BaseException as exc:
            answer = {
                "outcome": "unexpected",
                "type": type(exc).__name__,
                "message": "".join(traceback.format_exception(exc)),
            }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
