"""Batch prediction on Dask: users scored in partitions on the workers, one shard each."""

from __future__ import annotations

import os
import time
from pathlib import Path

from walsrec.distributed import _tasks, cluster, layout
from walsrec.errors import InvalidParameterError

__all__ = ["predict_dask"]

_EXT = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet", "course": "txt"}


def predict_dask(
    client,
    model: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    k: int = 10,
    format: str = "csv",
    partitions: int | None = None,
    exclude_seen: bool = True,
    n_jobs: int | None = 1,
) -> dict:
    """Top-``k`` items of every user, written by the workers as shards in parallel.

    Each task reads its contiguous range of users from the export on shared storage (their
    factors, ids and training rows, with every item's factors: from an export the workers
    wrote, only the blocks of that range; nothing of the export passes through the
    client), ranks them with :meth:`~walsrec.serving.model.Recommender.recommend_indices`
    and writes ``out_dir/part-PPPPP-of-NNNNN.EXT`` in the format of
    :func:`walsrec.serving.predict.predict` (a csv shard carries its own header); the
    shards, in order, hold exactly the lines of the single-machine file.

    Parameters
    ----------
    client : distributed.Client
    model : path
        An export or model directory, readable by every worker at this path.
    out_dir : path
        A directory on shared storage (created if absent).
    k : int, default=10
    format : {"csv", "jsonl", "parquet", "course"}, default="csv"
    partitions : int, optional
        Shards; default two per worker.
    exclude_seen : bool, default=True
    n_jobs : int or None, default=1
        Threads of each task on its worker.

    Returns
    -------
    dict
        ``out_dir``, ``shards`` (paths), ``users``, ``k``, ``format``, ``seconds``.
    """
    from walsrec._checks import check_int, check_k, check_option
    from walsrec.serving.export import read_model_json, resolve_export
    from walsrec.serving.predict import FORMATS

    started = time.perf_counter()
    k = check_k(k, "predict_dask")
    owner = "parameter of predict_dask"
    check_option(format, "format", owner, FORMATS, rule=f"one of {list(FORMATS)}")
    path = resolve_export(model)
    n_users = int(read_model_json(path / "model.json")["counts"]["n_users"])
    workers = cluster.workers(client)
    parts = partitions or 2 * max(1, len(workers))
    ranges = layout.bounds(n_users, check_int(parts, "partitions", owner, 1))
    parts = len(ranges)
    out = Path(out_dir).absolute()  # the workers' working directories differ
    export = Path(path).absolute()
    inputs = [export]
    if export.parent.name == "export":  # MODEL_DIR/export/<version>: its model directory
        inputs.append(export.parent.parent)
    for inp in inputs:
        if out == inp or inp in out.parents:
            raise InvalidParameterError(
                f"The 'out_dir' argument of predict_dask must not be the export or model "
                f"directory or lie inside it ({inp}). Got {str(out_dir)!r} instead."
            )
    out.mkdir(parents=True, exist_ok=True)
    shards = [str(out / f"part-{p:05d}-of-{parts:05d}.{_EXT[format]}") for p in range(parts)]
    futures = [
        client.submit(
            _tasks.predict_shard,
            str(Path(path).resolve()),
            shard,
            lo,
            hi,
            k,
            format,
            exclude_seen,
            n_jobs,
            pure=False,
            retries=2,
        )
        for shard, (lo, hi) in zip(shards, ranges, strict=True)
    ]
    users = sum(client.gather(futures))
    return {
        "out_dir": str(out),
        "shards": shards,
        "users": int(users),
        "k": k,
        "format": format,
        "seconds": round(time.perf_counter() - started, 3),
    }
