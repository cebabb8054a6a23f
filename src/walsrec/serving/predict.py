"""Batch prediction: top-k for every user (or a list of users) into a file.

The course's batch prediction wrote ``batch_pred.txt``: one line per user index, the item
indices of its top k comma-separated, best first. That is ``format="course"`` here; the
other formats carry the original ids and the scores:

- ``csv``: header ``user,rank,item,score``, one row per recommended item;
- ``jsonl``: one object per user, ``{"user": ID, "items": [...], "scores": [...]}``;
- ``parquet``: the columns of ``csv`` (user and item as strings, rank int32, score float32).

Users are processed in chunks (one GEMM and one parallel top-k per chunk), so memory stays
bounded whatever the number of users. The file is written under a temporary name beside
the target and renamed when complete. It may be neither a directory nor inside the export
it is predicted from, nor inside the DATA_DIR that export was trained on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from walsrec._files import check_output_file
from walsrec.errors import DataFormatError, InvalidParameterError, UnknownIdError

__all__ = ["FORMATS", "model_inputs", "predict", "read_user_ids"]

FORMATS = ("csv", "jsonl", "parquet", "course")


def read_user_ids(path: str | os.PathLike) -> list[str]:
    """User ids from a text file, one per line (blank lines skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such file.") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc}).") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def model_inputs(model) -> list[str]:
    """What a prediction file must not overwrite: the export directory of ``model`` (a
    loaded model, or an export or model directory), and the DATA_DIR it was trained on when
    its model.json records one that exists here."""
    from walsrec.serving.export import resolve_export
    from walsrec.serving.model import Recommender

    if not isinstance(model, Recommender):
        return [str(resolve_export(model))]
    found = [str(model.path)]
    data = (model.meta.get("training") or {}).get("data")
    if isinstance(data, str) and "://" not in data and Path(data).is_dir():
        found.append(data)
    return found


class _Writer:
    """Streams chunks of (users, items, scores) into one of the formats."""

    def __init__(self, path: Path, fmt: str, model) -> None:
        self.fmt = fmt
        self.model = model
        self.item_ids = model.items.ids
        self.user_ids = model.users.ids
        self.path = path
        self._parquet = None
        self._file = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            schema = pa.schema(
                [("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()),
                 ("score", pa.float32())]
            )  # fmt: skip
            self._parquet = pq.ParquetWriter(path, schema)
        else:
            self._file = open(path, "w", encoding="utf-8", newline="\n")
            if fmt == "csv":
                self._file.write("user,rank,item,score\n")

    def write(self, users: np.ndarray, items: np.ndarray, scores: np.ndarray) -> None:
        if self.fmt == "course":
            lines = []
            for row in items.tolist():
                lines.append(",".join(str(j) for j in row if j >= 0))
            self._file.write("\n".join(lines) + "\n" if lines else "")
            return
        valid = items >= 0
        if self.fmt == "jsonl":
            uid = self.user_ids.take(pa.array(users)).to_pylist()
            iid_all = self.item_ids.take(pa.array(items[valid])).to_pylist()
            counts = valid.sum(axis=1)
            out = []
            pos = 0
            for u, n, srow in zip(uid, counts.tolist(), scores.tolist(), strict=True):
                out.append(
                    json.dumps(
                        {"user": u, "items": iid_all[pos : pos + n], "scores": srow[:n]},
                        ensure_ascii=False,
                    )
                )
                pos += n
            self._file.write("\n".join(out) + "\n" if out else "")
            return
        width = items.shape[1]
        rows = np.repeat(users, valid.sum(axis=1))
        table = pa.table(
            {
                "user": self.user_ids.take(pa.array(rows)),
                "rank": pa.array(np.tile(np.arange(1, width + 1, dtype=np.int32), len(users))[
                    valid.ravel()
                ]),
                "item": self.item_ids.take(pa.array(items[valid])),
                "score": pa.array(scores[valid].astype(np.float32)),
            }
        )  # fmt: skip
        if self.fmt == "parquet":
            self._parquet.write_table(table)
        else:
            import pyarrow.csv as pcsv

            buf = pa.BufferOutputStream()
            pcsv.write_csv(table, buf, write_options=pcsv.WriteOptions(include_header=False))
            self._file.write(buf.getvalue().to_pybytes().decode("utf-8"))

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._file is not None:
            self._file.close()


def predict(
    model,
    out: str | os.PathLike,
    *,
    k: int = 10,
    format: str = "csv",
    users: list[str] | None = None,
    exclude_seen: bool = True,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
    progress: bool | Callable[[int], None] = False,
) -> dict:
    """Write the top-``k`` items of every user (or of ``users``) to ``out``.

    Parameters
    ----------
    model : Recommender or path
        A loaded model, or an export / model directory to load.
    out : path
        The file to write (replaced atomically). Neither a directory nor inside the export
        or the DATA_DIR it was trained on (:class:`~walsrec.errors.InvalidParameterError`).
    k : int, default=10
    format : {"csv", "jsonl", "parquet", "course"}, default="csv"
        See the module docstring. ``course`` writes item indices, one line per user, in
        the order of the users (user index order by default).
    users : list of str, optional
        Original user ids; an unknown one raises :class:`~walsrec.errors.UnknownIdError`
        before anything is written. Default: every user, in index order.
    exclude_seen : bool, default=True
        Leave out each user's training items.
    n_jobs : int or None, default=None
        Threads for the GEMM and the top-k (None: all cores).
    chunk_size : int, optional
        Users per chunk (default: about 32 MiB of scores per chunk).
    progress : bool or callable, default=False
        True shows a tqdm bar on stderr; a callable receives the number of users done
        after each chunk.

    Returns
    -------
    dict
        ``out``, ``format``, ``users`` (count), ``k``, ``seconds``.
    """
    import time

    from walsrec._checks import check_k, check_option
    from walsrec.serving.model import Recommender, load_model

    started = time.perf_counter()
    k = check_k(k, "predict")
    check_option(format, "format", "parameter of predict", FORMATS, rule=f"one of {list(FORMATS)}")
    if not isinstance(model, Recommender):
        check_output_file(out, inputs=model_inputs(model), parameter="out")  # before loading
        model = load_model(model)
    check_output_file(out, inputs=model_inputs(model), parameter="out")
    if users is None:
        user_idx = np.arange(model.n_users, dtype=np.int64)
    else:
        user_idx = model.users.indices([str(u) for u in users])
        if (user_idx < 0).any():
            bad = int(np.flatnonzero(user_idx < 0)[0])
            raise UnknownIdError(
                f"Unknown user id {str(users[bad])!r} (line {bad + 1} of the users list)."
            )
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise InvalidParameterError(
            f"The 'out' parameter of predict must be a file in an existing directory. "
            f"Got {str(out)!r} instead."
        )
    write_top_k(
        model,
        out,
        user_idx,
        k=k,
        format=format,
        exclude_seen=exclude_seen,
        n_jobs=n_jobs,
        chunk_size=chunk_size,
        progress=progress,
    )
    return {
        "out": str(out),
        "format": format,
        "users": int(user_idx.size),
        "k": k,
        "seconds": round(time.perf_counter() - started, 3),
    }


def write_top_k(
    model,
    out: Path,
    user_idx: np.ndarray,
    *,
    k: int,
    format: str,
    exclude_seen: bool = True,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
    progress: bool | Callable[[int], None] = False,
) -> None:
    """Top-``k`` of the users ``user_idx`` (indices) of a loaded ``Recommender`` into ``out``.

    The writing loop behind :func:`predict` and the Dask back end's shards: chunks of users
    ranked in parallel, streamed to a temporary file renamed to ``out`` when complete.
    Arguments are not validated here; :func:`predict` does that.
    """
    width = min(k, model.n_items)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    writer = _Writer(tmp, format, model)
    bar = None
    if progress is True:  # after the writer, so a writer that fails leaves no bar open
        from tqdm.auto import tqdm

        bar = tqdm(
            total=int(user_idx.size), desc="predict", unit="user", dynamic_ncols=True, disable=None
        )
    try:
        done = 0
        # a few chunks per thread at a time: parallel, and memory stays bounded
        from walsrec._threads import resolve_n_jobs

        bounds = model.chunks(user_idx.size, chunk_size)
        step = bounds[0][1] * 4 * resolve_n_jobs(n_jobs) if bounds else 1
        for start in range(0, user_idx.size, step):
            chunk = user_idx[start : start + step]
            items, scores = model.recommend_indices(
                chunk,
                width,
                exclude_seen=exclude_seen,
                n_jobs=n_jobs,
                chunk_size=chunk_size,
            )
            writer.write(chunk, items, scores)
            done += chunk.size
            if bar is not None:
                bar.update(chunk.size)
            elif callable(progress):
                progress(done)
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
