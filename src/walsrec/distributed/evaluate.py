"""Held-out evaluation on the Dask workers, next to the factors and the training rows.

Under ``walsrec train --dask`` the client would otherwise memory-map both matrices and
gather both factor matrices at every evaluation. :func:`evaluate_dask` instead has every
user partition's worker score its users against the item factors (the item blocks moved
worker to worker), with the partition's own training rows excluded, and send back sums: the
client adds them up. The result is :func:`walsrec.metrics.evaluate`'s, to float64 rounding
(the means are summed partition by partition).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from walsrec.distributed import _storage, _tasks, layout
from walsrec.distributed.sources import location, native_meta, native_source, tfrecord_source
from walsrec.errors import DataFormatError, InvalidParameterError

__all__ = [
    "evaluate_dask",
    "evaluate_export_dask",
    "evaluate_parts_dask",
    "evaluate_popularity_dask",
]


def _heldout_parts(model, data, eval_rows, name: str = "user_items") -> list:
    """The held-out matrix in the model's user partitions, loaded (once) on their workers."""
    if (data is None) == (eval_rows is None):
        raise InvalidParameterError(
            "evaluate_dask needs exactly one of 'data' (a DATA_DIR or a folder of native "
            "matrices) and 'eval_rows' (items_for_user TFRecord files). Got "
            f"data={data!r}, eval_rows={eval_rows!r}."
        )
    key = ("data", str(data), name) if data is not None else ("rows", repr(eval_rows))
    cache = getattr(model, "_heldout", None)
    if cache is not None and cache[0] == key and cache[1] is model._sides:
        return cache[2]
    lay = model._layout
    cl = model._cluster
    n_users, n_items = model.source_.shape
    if data is not None:
        directory = location(data)
        if _storage.isdir(_storage.join(directory, "eval", "native")):
            directory = _storage.join(directory, "eval", "native")
        meta = native_meta(directory, name)
        if tuple(meta["shape"]) != (n_users, n_items):
            raise DataFormatError(
                f"{_storage.join(directory, name + '.json')}: shape {meta['shape']} is not "
                f"the training matrix's {[n_users, n_items]}."
            )
        parts = layout.load_native_parts(cl, lay, directory, name, "user", int(meta["nnz"]))
    else:
        src = tfrecord_source(eval_rows, eval_rows, n_users, n_items)
        shards = layout.parse_side(cl, src.rows_files, src.rows_url, n_items, n_users, cl.workers())
        parts = layout.assemble_side(cl, shards, lay, "user")
    if sum(layout.part_nnz(cl, parts, lay.placement["user"])) == 0:
        raise InvalidParameterError(
            "The held-out data of evaluate_dask must have at least one stored entry. Got 0 instead."
        )
    model._heldout = (key, model._sides, parts)
    return parts


def evaluate_dask(
    model,
    data: str | os.PathLike | None = None,
    *,
    eval_rows: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    name: str = "user_items",
    k: int = 10,
    metrics: Iterable[str] | None = None,
    n_jobs: int | None = None,
    ndcg_gain: str = "binary",
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Held-out metrics of a fitted :class:`DaskWALS`, computed on its workers.

    Each user partition's worker scores its users against all item factors (the item
    blocks are sent to it worker to worker), excludes the partition's training items, ranks
    with :mod:`walsrec.metrics`' kernels and returns sums; the client receives per
    partition a few floats and a bit per item (coverage). No factor matrix and no data
    passes through the client. The held-out partitions stay on the workers for later calls
    with the same ``data``/``eval_rows``.

    Parameters
    ----------
    model : DaskWALS
        Opened and initialized (fitted, or between half-steps under ``train``).
    data : path or fsspec URL, optional
        A prepared DATA_DIR (its ``eval/native``) or a folder holding the held-out matrix
        as native files named ``name``, on storage every worker reads.
    eval_rows : str, path or list, optional
        Or: held-out items_for_user TFRecord files (paths, globs or URLs).
    name : str, default "user_items"
        The held-out matrix's name in ``data`` (``"eval"`` in train's MODEL_DIR/cache).
    k, metrics, n_jobs, ndcg_gain, chunk_size
        As :func:`walsrec.metrics.evaluate` (``n_jobs``: threads of each task).

    Returns
    -------
    dict of str to float
        Keyed as :func:`walsrec.metrics.evaluate`'s answer, in the same order.

    Examples
    --------
    >>> model = DaskWALS(32, client=client, sweeps=10).fit("/shared/DATA_DIR")  # doctest: +SKIP
    >>> evaluate_dask(model, "/shared/DATA_DIR", k=10)["ndcg@10"]  # doctest: +SKIP
    """
    return _evaluate(
        model, "evaluate_dask", data, eval_rows, name, k, metrics, n_jobs, ndcg_gain, chunk_size
    )[0]


def evaluate_popularity_dask(
    model,
    data: str | os.PathLike | None = None,
    *,
    eval_rows: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    name: str = "user_items",
    k: int = 10,
    metrics: Iterable[str] | None = None,
    n_jobs: int | None = None,
    ndcg_gain: str = "binary",
    chunk_size: int | None = None,
) -> dict[str, float]:
    """The most-popular baseline's held-out metrics, on the workers of an opened
    :class:`DaskWALS`: :func:`walsrec.metrics.evaluate_scorer` of
    :func:`walsrec.metrics.popularity_baseline` (items scored by their number of training
    users, ties to the lower index), computed as :func:`evaluate_dask` computes the model's,
    each item partition's counts standing in for its factors. Arguments as
    :func:`evaluate_dask`'s."""
    return _evaluate(
        model,
        "evaluate_popularity_dask",
        data,
        eval_rows,
        name,
        k,
        metrics,
        n_jobs,
        ndcg_gain,
        chunk_size,
        popularity=True,
    )[0]


def evaluate_parts_dask(
    model,
    heldout: list,
    *,
    k: int = 10,
    metrics: Iterable[str] | None = None,
    n_jobs: int | None = None,
    ndcg_gain: str = "binary",
    chunk_size: int | None = None,
) -> dict[str, float]:
    """:func:`evaluate_dask` of held-out data already on the workers: ``heldout`` holds a
    task result per user partition of ``model`` (CSR rows of that partition, global item
    indices), e.g. a validation split's held-out part."""
    if len(heldout) != len(model._bounds["user"]):
        raise InvalidParameterError(
            "The 'heldout' argument of evaluate_parts_dask must hold one partition per user "
            f"partition of the model ({len(model._bounds['user'])}). Got {len(heldout)} instead."
        )
    return _evaluate(
        model, "evaluate_parts_dask", None, None, None, k, metrics, n_jobs, ndcg_gain,
        chunk_size, parts=heldout,
    )[0]  # fmt: skip


def _evaluate(
    model,
    owner,
    data,
    eval_rows,
    name,
    k,
    metrics,
    n_jobs,
    ndcg_gain,
    chunk_size,
    popularity=False,
    parts=None,
) -> tuple[dict[str, float], int]:
    """The metrics and the number of users they average over."""
    from walsrec.metrics.partial import check_request, combine

    if popularity:
        model._check_open(owner)
    else:
        model._check_initialized(owner)
    k, names, chunk_size = check_request(k, metrics, chunk_size, owner)
    if parts is None:
        parts = _heldout_parts(model, data, eval_rows, name)
    if popularity:
        item_blocks = [
            model._submit(_tasks.popularity_block, side, worker=w)
            for side, w in zip(model._sides["item"], model._placement["item"], strict=True)
        ]
        user_blocks = [
            model._submit(_tasks.ones_block, hi - lo, worker=w)
            for (lo, hi), w in zip(model._bounds["user"], model._placement["user"], strict=True)
        ]
    else:
        item_blocks, user_blocks = model._blocks["item"], model._blocks["user"]
    results = model._gather(
        [
            model._submit(
                _tasks.evaluate_part,
                side,
                block,
                part,
                lo,
                k,
                names,
                ndcg_gain,
                chunk_size,
                n_jobs,
                *item_blocks,
                worker=w,
            )
            for side, block, part, (lo, _), w in zip(
                model._sides["user"],
                user_blocks,
                parts,
                model._bounds["user"],
                model._placement["user"],
                strict=True,
            )
        ]
    )
    for r in results:
        model._count("bytes_from_workers", r["sums"], r["covered"])
    metrics = combine(results, names, k, model.source_.shape[1])
    return metrics, int(sum(r["n_eval"] for r in results))


def evaluate_export_dask(
    client, model: str | os.PathLike, data: str | os.PathLike, *, k: int = 10, n_jobs=None
) -> dict:
    """:func:`walsrec.evaluation.evaluate_export` on a Dask cluster, without EASE: the
    export's factors (row blocks or ``.npy`` files) and the DATA_DIR's train and eval
    matrices are read by the workers, each user partition scored there
    (:func:`evaluate_dask`, :func:`evaluate_popularity_dask`); this process reads
    model.json, the DATA_DIR's meta.json and item vocabulary, and compares the user
    vocabularies by the SHA-256 a worker computes of each, streaming."""
    from walsrec._files import json_safe
    from walsrec.data.prepare import check_prepared
    from walsrec.data.vocabulary import Vocabulary
    from walsrec.distributed.wals import DaskWALS
    from walsrec.metrics import metric_names
    from walsrec.serving.export import read_model_json, resolve_export

    root = resolve_export(model)
    meta = read_model_json(root / "model.json")
    if meta.get("item_item") is not None:
        raise InvalidParameterError(
            f"The export {root} blends WALS with EASE's item-item weights (the hybrid), which "
            "evaluate scores in one process: run it without --dask (the workers would score "
            "the WALS part alone)."
        )
    data = check_prepared(data)
    if not (data / "eval" / "native" / "user_items.json").is_file():
        raise DataFormatError(
            f"{data} has no eval split; prepare it with --eval-fraction to evaluate."
        )
    source = native_source(data)
    counts = meta["counts"]
    sizes = {
        "users": (counts["n_users"], source.shape[0]),
        "items": (counts["n_items"], source.shape[1]),
    }
    for name, (ours, theirs) in sizes.items():
        if ours != theirs:
            raise DataFormatError(
                f"The model {root} and {data} have different {name} vocabularies "
                f"({ours:,} against {theirs:,} ids); evaluate on the DATA_DIR the model was "
                "trained on."
            )
    blocks = (root / "vocab" / "users").is_dir()
    ours_users = root / "vocab" / ("users" if blocks else "users.txt")
    digests = client.gather(
        [
            client.submit(_tasks.text_digest, str(ours_users.absolute()), pure=False),
            client.submit(
                _tasks.text_digest, str((data / "vocab" / "users.txt").absolute()), pure=False
            ),
        ]
    )
    same_items = Vocabulary.load(root / "vocab" / "items.txt", "items") == Vocabulary.load(
        data / "vocab" / "items.txt", "items"
    )
    if digests[0] != digests[1] or not same_items:
        name = "users" if digests[0] != digests[1] else "items"
        raise DataFormatError(
            f"The model {root} and {data} have different {name} vocabularies (the same "
            "number of ids, not the same ids); evaluate on the DATA_DIR the model was "
            "trained on."
        )
    dim = int(counts["embedding_dim"])
    factors = [
        root / name if blocks else root / f"{name}.npy" for name in ("user_factors", "item_factors")
    ]
    dtype = _factor_dtype(factors[0])
    wals = DaskWALS(dim, client=client, dtype=dtype, n_jobs=n_jobs).open(source)
    wals.load_factors(*factors)
    targets = meta.get("hyperparameters", {}).get("targets", "values")
    names = metric_names(k, targets=targets)
    scores, users = _evaluate(
        wals, "evaluate_export_dask", data, None, "user_items", k, names, n_jobs, "binary", None
    )
    baseline = evaluate_popularity_dask(
        wals, data, k=k, metrics=metric_names(k, targets="binary"), n_jobs=n_jobs
    )
    return {
        "export": str(root),
        "data": str(data),
        "k": k,
        "targets": targets,
        "users_evaluated": users,
        "model": json_safe(scores),
        "most-popular": json_safe(baseline),
    }


def _factor_dtype(path) -> str:
    """float32 or float64: the dtype of an export's factors (a manifest's or a header's)."""
    from walsrec.data.row_blocks import is_row_blocks, open_row_blocks

    if is_row_blocks(path):
        return str(open_row_blocks(path, "dense").dtype)
    from walsrec._files import load_npy

    return str(load_npy(path, mmap=True).dtype)
