"""``Interactions``: the interaction matrix in both orientations plus its two vocabularies."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from walsrec._checks import check_option
from walsrec.data.native import load_csr, save_csr
from walsrec.data.vocabulary import Vocabulary
from walsrec.errors import DataFormatError, InvalidParameterError, UnknownIdError

__all__ = ["DUPLICATE_POLICIES", "Interactions", "aggregate_duplicates", "to_arrow_table"]

DUPLICATE_POLICIES = ("sum", "max", "mean", "first", "last")


def to_arrow_table(table) -> pa.Table:
    """Accept a pyarrow Table, a pandas DataFrame or a mapping of columns."""
    if isinstance(table, pa.Table):
        return table
    if type(table).__module__.startswith("pandas"):
        return pa.Table.from_pandas(table, preserve_index=False)
    if isinstance(table, dict):
        return pa.table(table)
    raise InvalidParameterError(
        "The 'table' argument must be a pyarrow.Table, a pandas.DataFrame or a dict of "
        f"columns. Got {type(table).__name__} instead."
    )


def aggregate_duplicates(rows, cols, values, n_cols: int, how: str = "sum", times=None):
    """Combine repeated (row, col) pairs.

    Parameters
    ----------
    rows, cols : ndarray of int, shape (n,)
        Pair coordinates, in input order (which defines ``first`` and ``last``).
    values : ndarray of float, shape (n,)
    n_cols : int
        Number of columns (to build one int64 key per pair).
    how : {"sum", "max", "mean", "first", "last"}
    times : ndarray, shape (n,), optional
        Interaction times; a pair's time is its latest.

    Returns
    -------
    rows, cols, values : ndarrays sorted by (row, col), one entry per distinct pair.
    counts : ndarray of int64, how many input rows each pair combines.
    times : ndarray, the latest time of each pair (only when ``times`` is given).
    """
    check_option(how, "duplicates", "parameter", DUPLICATE_POLICIES, one_of=True, show_option=str)
    key = rows.astype(np.int64) * np.int64(n_cols) + cols.astype(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    vals = np.asarray(values, dtype=np.float64)[order]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) if len(key) else key
    counts = np.diff(np.append(starts, len(key))).astype(np.int64)
    if how == "sum":
        out = np.add.reduceat(vals, starts) if len(key) else vals
    elif how == "max":
        out = np.maximum.reduceat(vals, starts) if len(key) else vals
    elif how == "mean":
        out = (np.add.reduceat(vals, starts) / counts) if len(key) else vals
    elif how == "first":
        out = vals[starts]
    else:
        out = vals[starts + counts - 1]
    ukey = key[starts]
    if times is None:
        return ukey // n_cols, ukey % n_cols, out, counts
    t = np.asarray(times)[order]
    latest = np.maximum.reduceat(t, starts) if len(key) else t
    return ukey // n_cols, ukey % n_cols, out, counts, latest


class Interactions:
    """Users × items interactions with their vocabularies.

    Parameters
    ----------
    user_items : scipy.sparse matrix, shape (n_users, n_items)
        Stored as CSR with sorted indices and float32 values.
    users, items : Vocabulary
        Original ids; ``users.ids[i]`` is the user of row ``i``.

    Attributes
    ----------
    user_items : scipy.sparse.csr_matrix (n_users × n_items, float32)
    item_users : scipy.sparse.csr_matrix (n_items × n_users, float32), computed on first use.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from walsrec import Interactions
    >>> t = pa.table({"user": ["a", "a", "b"], "item": ["x", "y", "x"], "rating": [1.0, 2, 3]})
    >>> inter = Interactions.from_table(t, rating_col="rating")
    >>> inter.user_items.toarray()
    array([[1., 2.],
           [3., 0.]], dtype=float32)
    """

    def __init__(self, user_items, users: Vocabulary, items: Vocabulary):
        if not sp.issparse(user_items):
            raise InvalidParameterError(
                "The 'user_items' argument of Interactions must be a scipy.sparse matrix. "
                f"Got {type(user_items).__name__} instead."
            )
        if user_items.shape != (len(users), len(items)):
            raise InvalidParameterError(
                f"The 'user_items' matrix of Interactions must have shape (len(users), "
                f"len(items)) = ({len(users)}, {len(items)}). Got {user_items.shape} instead."
            )
        m = user_items if isinstance(user_items, sp.csr_matrix) else sp.csr_matrix(user_items)
        if m.dtype != np.float32:
            m = m.astype(np.float32)
        if not m.has_sorted_indices:
            m = m.copy()
            m.sort_indices()
        self.user_items = m
        self.users = users
        self.items = items

    def __repr__(self) -> str:
        return f"Interactions(n_users={self.n_users}, n_items={self.n_items}, nnz={self.nnz})"

    @property
    def n_users(self) -> int:
        return self.user_items.shape[0]

    @property
    def n_items(self) -> int:
        return self.user_items.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.user_items.nnz)

    @cached_property
    def item_users(self) -> sp.csr_matrix:
        """The same matrix as items × users CSR (the course's ``users_for_item``)."""
        return self.user_items.T.tocsr()

    @classmethod
    def from_table(
        cls,
        table,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str | None = None,
        *,
        duplicates: str = "sum",
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
    ) -> Interactions:
        """Build from a pyarrow Table, pandas DataFrame or dict of columns.

        Parameters
        ----------
        table : pyarrow.Table, pandas.DataFrame or dict
        user_col, item_col : str
            Id columns; values are converted to text.
        rating_col : str, optional
            Interaction values; without it every interaction is 1.0.
        duplicates : {"sum", "max", "mean", "first", "last"}, default "sum"
            How repeated (user, item) pairs combine.
        users, items : Vocabulary, optional
            Fixed vocabularies (for example a trained model's); an id outside them is an
            error. By default they are built from the table, in sorted order.
        """
        table = to_arrow_table(table)
        for col in (user_col, item_col, rating_col):
            if col is not None and col not in table.column_names:
                raise InvalidParameterError(
                    f"Column {col!r} not found; the table has columns "
                    f"{', '.join(table.column_names)}."
                )
        user_vals = table.column(user_col).cast(pa.string())
        item_vals = table.column(item_col).cast(pa.string())
        for name, col in ((user_col, user_vals), (item_col, item_vals)):
            if col.null_count:
                pos = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0])
                raise DataFormatError(f"Row {pos}, column {name!r}: the id is missing (null).")
        if rating_col is None:
            values = np.ones(table.num_rows, dtype=np.float64)
        else:
            col = table.column(rating_col)
            try:
                values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataFormatError(
                    f"Column {rating_col!r}: values are not numbers ({exc})."
                ) from None
            bad = ~np.isfinite(values)
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise DataFormatError(
                    f"Row {pos}, column {rating_col!r}: the rating {col[pos].as_py()!r} is "
                    "not a finite number."
                )
        users = users if users is not None else Vocabulary.from_values(user_vals, "users")
        items = items if items is not None else Vocabulary.from_values(item_vals, "items")
        rows = users.indices(user_vals)
        cols = items.indices(item_vals)
        for idx, vals, vocab, name in (
            (rows, user_vals, users, user_col),
            (cols, item_vals, items, item_col),
        ):
            if (idx < 0).any():
                pos = int(np.flatnonzero(idx < 0)[0])
                raise UnknownIdError(
                    f"Row {pos}, column {name!r}: the id {vals[pos].as_py()!r} is not in the "
                    f"{vocab.name} vocabulary."
                )
        r, c, v, _ = aggregate_duplicates(rows, cols, values, len(items), duplicates)
        matrix = sp.csr_matrix(
            (v.astype(np.float32), (r, c)), shape=(len(users), len(items)), dtype=np.float32
        )
        return cls(matrix, users, items)

    @classmethod
    def from_files(cls, inputs, user_col="user", item_col="item", rating_col=None, **options):
        """Read CSV/TSV, Parquet or JSON lines files (paths, globs or fsspec URLs).

        ``options`` go to :func:`walsrec.data.readers.read_table` (``delimiter``,
        ``columns``, ``format``) and to :meth:`from_table` (``duplicates``).
        """
        from walsrec.data.readers import read_table

        duplicates = options.pop("duplicates", "sum")
        table = read_table(
            inputs, user_col=user_col, item_col=item_col, rating_col=rating_col, **options
        ).table
        return cls.from_table(
            table, "user", "item", "rating" if rating_col else None, duplicates=duplicates
        )

    @classmethod
    def from_tfrecords(cls, rows_pattern, users: Vocabulary, items: Vocabulary) -> Interactions:
        """Read the course's ``items_for_user`` records with the given vocabularies."""
        from walsrec.data.tfrecord import read_tfrecords

        matrix = read_tfrecords(rows_pattern, vocab_size=len(items), n_rows=len(users))
        return cls(matrix, users, items)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``vocab/users.txt``, ``vocab/items.txt`` and the native matrices.

        The native copy (``native/user_items.*.npy`` and ``native/item_users.*.npy``) loads
        memory-mapped with :meth:`load`.
        """
        directory = Path(directory)
        (directory / "vocab").mkdir(parents=True, exist_ok=True)
        self.users.save(directory / "vocab" / "users.txt")
        self.items.save(directory / "vocab" / "items.txt")
        self.save_matrices(directory / "native")

    def save_matrices(self, directory: str | os.PathLike) -> None:
        """Write only the two orientations as native arrays into ``directory``."""
        save_csr(directory, "user_items", self.user_items)
        save_csr(directory, "item_users", self.item_users)

    @classmethod
    def load(cls, directory: str | os.PathLike, mmap: bool = True) -> Interactions:
        """Load what :meth:`save` wrote; the arrays are memory-mapped unless ``mmap=False``."""
        directory = Path(directory)
        users = Vocabulary.load(directory / "vocab" / "users.txt", "users")
        items = Vocabulary.load(directory / "vocab" / "items.txt", "items")
        return cls.load_matrices(directory / "native", users, items, mmap=mmap)

    @classmethod
    def load_matrices(cls, directory, users: Vocabulary, items: Vocabulary, mmap: bool = True):
        """Load native matrices from ``directory`` with the given vocabularies."""
        user_items = load_csr(directory, "user_items", mmap=mmap)
        if user_items.shape != (len(users), len(items)):
            raise DataFormatError(
                f"{directory}/user_items.json: shape {user_items.shape} does not match the "
                f"vocabularies ({len(users)} users, {len(items)} items)."
            )
        obj = cls.__new__(cls)
        obj.user_items = user_items
        obj.users = users
        obj.items = items
        if (Path(directory) / "item_users.json").is_file():
            item_users = load_csr(directory, "item_users", mmap=mmap)
            if item_users.shape != user_items.shape[::-1] or item_users.nnz != user_items.nnz:
                raise DataFormatError(
                    f"{directory}/item_users.json: shape {item_users.shape} with "
                    f"{item_users.nnz} entries is not the transpose of user_items "
                    f"({user_items.shape}, {user_items.nnz} entries)."
                )
            obj.__dict__["item_users"] = item_users
        # else: computed on first use
        return obj
