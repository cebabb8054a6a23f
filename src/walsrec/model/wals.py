"""The WALS estimator: tf.contrib's weighted alternating least squares, on scipy.sparse input.

Objective (``tf.contrib.factorization.WALSMatrixFactorization``'s, exactly, plus two
extensions that reduce to it by default)::

    L = Σ_ij W_ij (A_ij − u_i·v_j)² + Σ_i λ_i ‖u_i‖² + Σ_j λ_j ‖v_j‖²
    W_ij = w0 + R_i·C_j·c(r_ij)  on observed (stored) entries r_ij, target A_ij = r_ij
                                 (``targets="values"``) or 1 (``targets="binary"``)
    W_ij = w0                    elsewhere, target 0
    λ_i  = λ·(count_i + w0·n_items)^ν,   λ_j = λ·(count_j + w0·n_users)^ν

with w0 = ``unobserved_weight``, R = ``row_weights``, C = ``col_weights``, c the
``confidence`` of a value (1 by default; α·r, α·log(1 + r/ε), BM25, TF-IDF: see
``weighting.py``), λ =
``regularization`` and ν = ``regularization_exponent`` (0 gives tf.contrib's plain λ; 1 is
the frequency-scaled regularisation of Rendle et al. 2022, "Revisiting the performance of
iALS"). count_i is the number of stored entries of row i. An optional ``weights`` matrix with
the same sparsity as ``user_items`` replaces w0 + R_i·C_j as the observed weight; with
w0 = 1, ``weights`` = 1 + α·r and targets 1 this is the implicit-feedback model of Hu, Koren
and Volinsky (and of the ``implicit`` library's ALS).

Each half-step solves, for every row i, with G = VᵀV computed once per half-step::

    (w0·G + λ_i I + Σ_{j∈S_i} (W_ij − w0) v_j v_jᵀ) u_i = Σ_{j∈S_i} W_ij A_ij v_j

and the column half-step is the same with U and V swapped. The numba kernels live in
``_kernels.py`` and are imported on first use, so importing walsrec compiles nothing.

How a half-step is solved (``_kernels.py`` has the details):

* G is eigendecomposed once per half-step in float64 (G = Q diag(g) Qᵀ, k×k) and the fixed
  factors rotated (Ṽ = VQ); each row's system becomes diag(w0·g + λ_i) + Σ D_j ṽ_j ṽ_jᵀ with
  D_j = W_ij − w0, and the solutions are rotated back (u = Qũ). Per-row λ_i costs nothing.
* "cholesky": rows with few entries (n_i below about 0.75·k) are solved by Woodbury's
  identity in O(n_i²·k + n_i³); the others by a Cholesky factorisation of the k×k matrix.
  Woodbury needs every D_j ≥ 0 and w0·g + λ_i > 0; rows where that fails use Cholesky.
  A pivot below eps(dtype) × the largest diagonal entry counts as singular and raises
  :class:`~walsrec.errors.SingularSystemError` (as does a system singular by rank, e.g.
  λ = 0 and w0 = 0 with fewer than k interactions); nothing is stored then.
* "cg": ``cg_steps`` conjugate-gradient iterations from the current factors, in the same
  eigenbasis, where the w0·G + λ_i I part of each product is diagonal.
* Every kernel also returns each row's loss terms with its new factors, so ``fit`` records
  the loss after each half-step without another pass over the data. Factors that are not
  finite after a half-step raise SingularSystemError.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec._checks import check_option, param_error
from walsrec._checks import check_weight_vector as _check_weight_vector
from walsrec._checks import is_int as _is_int
from walsrec._checks import is_real as _is_real
from walsrec._threads import resolve_n_jobs
from walsrec.errors import InvalidParameterError, NotFittedError
from walsrec.model import halfstep, weighting
from walsrec.model.halfstep import FixedSide, Side
from walsrec.model.validation import (
    check_entry_weights,
    check_indices,
    check_params,
    check_sparse,
    slice_matrix,
)

__all__ = ["WALS", "BoundData", "run_sweeps"]


# --------------------------------------------------------------------------- validation


def _param_error(name: str, rule: str, value: Any, owner: str = "parameter of WALS") -> str:
    return param_error(name, rule, value, owner)


# --------------------------------------------------------------------------- the estimator


class WALS:
    """Weighted alternating least squares matrix factorization (tf.contrib's WALS).

    Minimises ``Σ_ij W_ij (A_ij − u_i·v_j)² + Σ_i λ_i‖u_i‖² + Σ_j λ_j‖v_j‖²`` over user
    factors U (n_users × k) and item factors V (n_items × k), where W_ij = w0 + R_i·C_j on
    stored entries of ``user_items`` (target: the stored value) and w0 everywhere else
    (target 0), and λ_i = λ·(count_i + w0·n_other)^ν. See the module docstring.

    Parameters
    ----------
    embedding_dim : int, default=32
        k, the number of latent factors.
    unobserved_weight : float, default=0.1
        w0, the weight of every entry, observed or not (tf.contrib's default). 0 gives
        classic matrix completion on the observed entries only.
    regularization : float, default=0.1
        λ. tf.contrib's default was none (0), which makes a row's system singular as soon as
        it has fewer useful interactions than k ("Input matrix is not invertible",
        tensorflow#31248); a small positive default keeps every system solvable. 0 is
        allowed; a singular system then raises :class:`~walsrec.errors.SingularSystemError`.
    regularization_exponent : float, default=0.0
        ν ≥ 0: λ_i = λ·(count_i + w0·n_other)^ν. 0 is tf.contrib's plain λ.
    row_weights, col_weights : float or array of shape (n_users,) / (n_items,), default=1.0
        R and C, non-negative. The observed weight is w0 + R_i·C_j·c(r_ij).
    confidence : {"constant", "linear", "log", "bm25", "tfidf"}, default="constant"
        c(r), the confidence of a stored value r: 1 (tf.contrib), α·r, α·log(1 + r/ε),
        α·BM25(r) or α·TF-IDF(r). See :mod:`walsrec.model.weighting` for the formulas and
        when to use each. BM25 and TF-IDF read statistics of the training matrix, kept as
        ``weighting_stats_`` for folding in new rows.
    alpha : float, default=1.0
        α > 0, the scale of a non-constant confidence.
    epsilon : float, default=1.0
        ε > 0 of confidence="log".
    bm25_k1, bm25_b : float, default=100.0, 0.8
        K1 > 0 and B in [0, 1] of confidence="bm25" (implicit's defaults).
    targets : {"values", "binary"}, default="values"
        A on stored entries: the stored value (tf.contrib; explicit ratings) or 1 (binary
        preference, Hu et al. and implicit), the value then acting only through c(r).
    solver : {"cholesky", "cg"}, default="cholesky"
        "cholesky" solves every row's system exactly; "cg" runs ``cg_steps`` conjugate
        gradient iterations warm-started from the current factors (as implicit's CG).
    cg_steps : int, default=3
        CG iterations per row and half-step (solver="cg" only).
    sweeps : int, default=15
        Sweeps (a row half-step then a column half-step) that ``fit`` runs at most.
    tol : float, default=0.0
        ``fit`` stops early once a sweep changes the loss by less than ``tol`` relative to
        the previous sweep's; 0 always runs ``sweeps`` sweeps.
    init_std : float, default=0.01
        Factors start as N(0, init_std²) draws. tf.contrib drew N(0, 1/k) ("random" init);
        a small start matters little: the first row half-step is exact and only reads V.
    dtype : {"float32", "float64"}, default="float32"
        Dtype of the factors and of the kernels' arithmetic. Gramians are computed in this
        dtype and then used in float64 (eigendecomposition, loss); the loss's reductions are
        accumulated in float64, so a float32 model's loss is accurate to about 1e-6.
    n_jobs : int or None, default=None
        Threads for the kernels (None or -1: all cores). BLAS is capped at one
        thread while kernels run. Results are bitwise identical for any ``n_jobs``.
    random_state : None, int, numpy Generator or RandomState, default=None
        Seeds the initial factors. Same seed → bitwise identical factors.
    callback : callable or None, default=None
        Called as ``callback(sweep, model)`` after every sweep of ``fit`` (``sweep`` counts
        from 1; ``model.loss_[-1]`` is the current loss). Returning True stops ``fit``.
    show_progress : bool, default=False
        Show a tqdm bar over sweeps with the loss (drawn only on a terminal).

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, embedding_dim)
    item_factors_ : ndarray of shape (n_items, embedding_dim)
    loss_ : list of float
        The full objective L after every half-step of ``fit`` (two per sweep).
    rwse_ : float
        Root weighted squared error sqrt(Σ_all W (A − UVᵀ)² / Σ_all W) after ``fit``.
    n_iter_ : int
        Sweeps run by ``fit``.
    weighting_stats_ : WeightingStats
        With confidence="bm25" or "tfidf" only: the statistics of the last training matrix
        (users per item, each user's value sum) that fold-in weighs new rows with.

    Notes
    -----
    For a training loop that updates batches of rows (tf.contrib's steps), call
    ``initialize(n_users, n_items)`` once, then ``update_rows(user_items, rows=batch)`` and
    ``update_cols(user_items, cols=batch)`` any number of times, and ``loss`` to evaluate.
    The Gramian of the fixed side and its eigendecomposition are cached between such calls
    and recomputed when the methods of this class change the factors; after changing
    ``user_factors_``/``item_factors_`` in place yourself, assign them anew (any new array
    object invalidates the cache). Passing ``user_items`` in CSC format to ``update_cols``
    avoids converting it on every call.

    Kernels are serial numba functions that release the GIL, run part by part on Python
    threads (``walsrec._threads.run_parts``): several Python threads may fit or update
    models at once.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from walsrec import WALS
    >>> x = sp.random(50, 40, density=0.1, format="csr", random_state=0)
    >>> model = WALS(embedding_dim=4, sweeps=5, random_state=0).fit(x)
    >>> model.user_factors_.shape, model.item_factors_.shape
    ((50, 4), (40, 4))
    """

    def __init__(
        self,
        embedding_dim=32,
        *,
        unobserved_weight=0.1,
        regularization=0.1,
        regularization_exponent=0.0,
        row_weights=1.0,
        col_weights=1.0,
        confidence="constant",
        alpha=1.0,
        epsilon=1.0,
        bm25_k1=100.0,
        bm25_b=0.8,
        targets="values",
        solver="cholesky",
        cg_steps=3,
        sweeps=15,
        tol=0.0,
        init_std=0.01,
        dtype="float32",
        n_jobs=None,
        random_state=None,
        callback=None,
        show_progress=False,
    ):
        self.embedding_dim = embedding_dim
        self.unobserved_weight = unobserved_weight
        self.regularization = regularization
        self.regularization_exponent = regularization_exponent
        self.row_weights = row_weights
        self.col_weights = col_weights
        self.confidence = confidence
        self.alpha = alpha
        self.epsilon = epsilon
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.targets = targets
        self.solver = solver
        self.cg_steps = cg_steps
        self.sweeps = sweeps
        self.tol = tol
        self.init_std = init_std
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.callback = callback
        self.show_progress = show_progress

    # ------------------------------------------------------------------ parameters

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters, as scikit-learn's ``get_params`` (named by the
        signature of ``WALS.__init__``, as scikit-learn does)."""
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    def set_params(self, **params: Any) -> WALS:
        """Set constructor parameters, as scikit-learn's ``set_params``."""
        from walsrec.model.params import set_params

        return set_params(self, params)

    def _validate_params(self) -> None:
        check_params(self.get_params())

    @property
    def _np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def _check_initialized(self, method: str) -> None:
        if (
            getattr(self, "user_factors_", None) is None
            or getattr(self, "item_factors_", None) is None
        ):
            raise NotFittedError(
                f"This WALS instance is not fitted yet: call 'fit' or 'initialize' before "
                f"'{method}'."
            )

    # ------------------------------------------------------------------ setup

    def initialize(self, n_users: int, n_items: int) -> WALS:
        """Draw random factors for ``n_users`` × ``n_items`` and reset the fit history.

        Use before a loop of ``update_rows``/``update_cols`` steps; ``fit`` calls it itself.

        Parameters
        ----------
        n_users, n_items : int
            The shape of the interaction matrix.

        Returns
        -------
        self
        """
        self._validate_params()
        for name, value in (("n_users", n_users), ("n_items", n_items)):
            if not (_is_int(value) and value >= 0):
                raise InvalidParameterError(
                    _param_error(name, "an int >= 0", value, "argument of WALS.initialize")
                )
        rng = self.random_state
        if not isinstance(rng, np.random.Generator | np.random.RandomState):
            rng = np.random.default_rng(rng)
        k = self.embedding_dim
        dt = self._np_dtype
        self.user_factors_ = (rng.standard_normal((n_users, k)) * self.init_std).astype(dt)
        self.item_factors_ = (rng.standard_normal((n_items, k)) * self.init_std).astype(dt)
        self.loss_ = []
        self.rwse_ = None
        self.n_iter_ = 0
        self._cache = {}
        return self

    def _settings(self) -> halfstep.Settings:
        """What a half-step reads of the parameters (the public half-step's settings)."""
        return halfstep.Settings.of(self.get_params())

    def _n_threads(self) -> int:
        return resolve_n_jobs(self.n_jobs)

    def _side(
        self,
        m: sp.spmatrix,
        weights: sp.spmatrix | None,
        by_rows: bool,
        full_shape: tuple[int, int],
        subset: np.ndarray | None = None,
        stats: weighting.WeightingStats | None = None,
    ) -> Side:
        """Kernel arrays for the row half-step (m CSR) or the column half-step (m CSC); see
        :func:`walsrec.model.halfstep.build_side`."""
        return halfstep.build_side(self._settings(), m, weights, by_rows, full_shape, subset, stats)

    def _confidence(self, values, users, items, stats=None, **overrides) -> np.ndarray | None:
        """c(r) per stored entry (None for confidence="constant"); see ``weighting``.
        ``stats`` default to the kept training statistics (``weighting_stats_``)."""
        if stats is None and weighting.needs_stats(self.confidence):
            stats = getattr(self, "weighting_stats_", None)
            if stats is None:
                raise NotFittedError(
                    f"confidence={self.confidence!r} weighs entries with statistics of the "
                    "training matrix: call 'fit', 'update_rows' or 'update_cols' first."
                )
        return halfstep.confidence(self._settings(), values, users, items, stats=stats, **overrides)

    def _stats_for(self, user_items) -> weighting.WeightingStats | None:
        """BM25/TF-IDF's statistics of ``user_items`` (None when the confidence reads none).

        Computed once per matrix object: the last two are remembered (a batch loop passes
        the same data as CSR to update_rows and as CSC to update_cols)."""
        if not weighting.needs_stats(self.confidence) or not sp.issparse(user_items):
            return None
        cache = self.__dict__.setdefault("_stats_cache", [])
        for ref, nnz, stats in cache:
            if ref() is user_items and nnz == user_items.nnz:
                return stats
        stats = weighting.weighting_stats(user_items)
        try:
            cache.insert(0, (weakref.ref(user_items), user_items.nnz, stats))
            del cache[2:]
        except TypeError:  # not weak-referenceable: compute again next time
            pass
        return stats

    def __getstate__(self) -> dict:
        # the statistics cache holds weak references, which do not pickle
        state = self.__dict__.copy()
        state.pop("_stats_cache", None)
        return state

    def _prepare(
        self, user_items, weights, method: str, by_rows: bool, subset: np.ndarray | None = None
    ) -> Side:
        """Validate ``user_items`` (and ``weights``) and build the kernels' arrays for the
        row half-step (``by_rows``) or the column half-step, of the rows or columns
        ``subset`` only (sliced before validation, so a batch costs O(its entries))."""
        fmt = "csr" if by_rows else "csc"
        full_shape = tuple(user_items.shape) if sp.issparse(user_items) else None
        # BM25/TF-IDF read statistics of the whole matrix (not only of ``subset``); they become
        # the model's (for fold-in) once the call has validated, except for loss/rwse, which
        # weigh a matrix with its own statistics and must not replace the training matrix's.
        stats = self._stats_for(user_items) if weights is None else None
        if subset is not None:
            user_items = slice_matrix(user_items, subset, fmt)
            if weights is not None and sp.issparse(weights):
                if weights.shape != full_shape:
                    raise InvalidParameterError(
                        f"The 'weights' argument of WALS.{method} must have the shape of "
                        f"'user_items' {full_shape}. Got {weights.shape} instead."
                    )
                weights = slice_matrix(weights, subset, fmt)
        m = check_sparse(user_items, "user_items", method, fmt, self._np_dtype)
        full_shape = full_shape or m.shape
        w = None
        if weights is not None:
            w = check_sparse(weights, "weights", method, fmt, self._np_dtype)
            if w.shape != m.shape:
                raise InvalidParameterError(
                    f"The 'weights' argument of WALS.{method} must have the shape of "
                    f"'user_items' {m.shape}. Got {w.shape} instead."
                )
            check_entry_weights(w, m, f"WALS.{method}", by_rows, 0 if subset is None else subset)
        side = self._side(m, w, by_rows, full_shape, subset, stats)
        if stats is not None and method not in ("loss", "rwse"):
            self.weighting_stats_ = stats
        return side

    def _check_shape(self, user_items, method: str, name: str = "user_items") -> None:
        if not sp.issparse(user_items):
            raise TypeError(
                f"The {name!r} argument of WALS.{method} must be a scipy.sparse matrix "
                f"(CSR preferred). Got {type(user_items).__name__} instead."
            )
        shape = user_items.shape
        expected = (self.user_factors_.shape[0], self.item_factors_.shape[0])
        if tuple(shape) != expected:
            raise InvalidParameterError(
                f"The {name!r} argument of WALS.{method} must have shape (n_users, n_items) "
                f"= {expected}, as the model's factors. Got {tuple(shape)} instead."
            )

    # ------------------------------------------------------------------ Gramians (cached)

    def _fixed_state(self, which: str, need_rotation: bool) -> FixedSide:
        """The Gramian (float64) of the user or item factors, its eigendecomposition and
        Ṽ = VQ, cached per side until its factors are replaced."""
        factors = self.user_factors_ if which == "user" else self.item_factors_
        # Factors assigned by hand (without initialize) get a cache too. Entries are built
        # whole and published with one assignment, so a concurrent reader never sees half.
        cache = self.__dict__.setdefault("_cache", {})
        entry = halfstep.fixed_side(factors, need_rotation, self._n_threads(), cache.get(which))
        cache[which] = entry
        return entry

    def _set_factors(self, which: str, factors: np.ndarray) -> None:
        # A new array object invalidates the cached Gramian of that side.
        if which == "user":
            self.user_factors_ = factors
        else:
            self.item_factors_ = factors
        self.__dict__.get("_cache", {}).pop(which, None)

    # ------------------------------------------------------------------ half-steps

    def _solve(
        self,
        side: Side,
        rows: np.ndarray,
        fixed_which: str,
        start: np.ndarray,
        axis: str,
        solver: str | None = None,
        path: str = "auto",
        labels: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """New factors for ``rows`` of one side (not yet stored) and their loss terms; see
        :func:`walsrec.model.halfstep.solve_rows`."""
        fixed = self._fixed_state(fixed_which, need_rotation=True)
        return halfstep.solve_rows(
            self._settings(), side, rows, fixed, start, axis, solver, path, labels
        )

    def update_rows(self, user_items, rows=None, weights=None) -> WALS:
        """Row half-step: re-solve the user factors of ``rows`` with the item factors fixed.

        Parameters
        ----------
        user_items : sparse matrix of shape (n_users, n_items)
            The whole training matrix (CSR preferred); only ``rows`` are read.
        rows : array-like of int or None, default=None
            Users to update; None updates all.
        weights : sparse matrix of shape (n_users, n_items) or None, default=None
            Per-entry observed weights, same sparsity as ``user_items``.

        Returns
        -------
        self
        """
        self._check_initialized("update_rows")
        self._validate_params()
        self._check_shape(user_items, "update_rows")
        target = None
        if rows is not None:
            target = check_indices(rows, user_items.shape[0], "rows", "update_rows")
        side = self._prepare(user_items, weights, "update_rows", by_rows=True, subset=target)
        self._update(side, "user", target=target)
        return self

    def update_cols(self, user_items, cols=None, weights=None) -> WALS:
        """Column half-step: re-solve the item factors of ``cols`` with the user factors fixed.

        Parameters
        ----------
        user_items : sparse matrix of shape (n_users, n_items)
            The whole training matrix; CSC avoids a conversion per call.
        cols : array-like of int or None, default=None
            Items to update; None updates all.
        weights : sparse matrix of shape (n_users, n_items) or None, default=None
            Per-entry observed weights, same sparsity as ``user_items``.

        Returns
        -------
        self
        """
        self._check_initialized("update_cols")
        self._validate_params()
        self._check_shape(user_items, "update_cols")
        target = None
        if cols is not None:
            target = check_indices(cols, user_items.shape[1], "cols", "update_cols")
        side = self._prepare(user_items, weights, "update_cols", by_rows=False, subset=target)
        self._update(side, "item", target=target)
        return self

    def _update(
        self, side: Side, which: str, target: np.ndarray | None = None, path: str = "auto"
    ) -> np.ndarray:
        """Solve every row of ``side`` and store it as factor row ``target[t]`` (None: row t
        of a side covering all rows); returns the kernels' per-row loss terms."""
        current = self.user_factors_ if which == "user" else self.item_factors_
        fixed_which = "item" if which == "user" else "user"
        axis = "row" if which == "user" else "column"
        start = current if target is None else current[target]
        rows = np.arange(side.n_rows, dtype=np.int64)
        new, row_loss = self._solve(side, rows, fixed_which, start, axis, path=path, labels=target)
        if target is None:
            self._set_factors(which, new)
        else:
            current[target] = new  # in place: a batch step must not copy all factors
            self._set_factors(which, current)
        return row_loss

    # ------------------------------------------------------------------ loss

    def _loss_parts(self, side_rows: Side, side_cols_lam: np.ndarray) -> tuple[float, float, float]:
        """(L, data term, Σ_all W) for the current factors; ``side_rows`` is the row orientation."""
        u, v = self.user_factors_, self.item_factors_
        observed = halfstep.observed_loss(self._settings(), side_rows, u, v).sum()
        reg = halfstep.regularization_term(side_rows.lam, u)
        reg += halfstep.regularization_term(side_cols_lam, v)
        return self._assemble_loss(float(observed), reg, side_rows)

    def _assemble_loss(
        self, observed: float, reg: float, side_rows: Side
    ) -> tuple[float, float, float]:
        """(L, data term, Σ_all W); see :func:`walsrec.model.halfstep.assemble_loss`."""
        w0 = float(self.unobserved_weight)
        return halfstep.assemble_loss(
            observed,
            reg,
            w0,
            self._fixed_state("user", need_rotation=False).gram,
            self._fixed_state("item", need_rotation=False).gram,
            self.user_factors_.shape[0] * self.item_factors_.shape[0],
            side_rows.sum_w_excess(w0),
        )

    def _eval(self, user_items, weights, method: str) -> tuple[float, float, float]:
        self._check_initialized(method)
        self._validate_params()
        self._check_shape(user_items, method)
        side = self._prepare(user_items, weights, method, by_rows=True)
        counts_cols = np.bincount(side.indices, minlength=self.item_factors_.shape[0])
        lam_cols = halfstep.lambdas(self._settings(), counts_cols, side.n_rows)
        return self._loss_parts(side, lam_cols)

    def loss(self, user_items, weights=None) -> float:
        """The full objective L of the current factors on ``user_items``.

        Parameters
        ----------
        user_items : sparse matrix of shape (n_users, n_items)
        weights : sparse matrix of shape (n_users, n_items) or None, default=None

        Returns
        -------
        float
            Σ_all W (A − UVᵀ)² + Σ_i λ_i‖u_i‖² + Σ_j λ_j‖v_j‖², computed without densifying.
        """
        return self._eval(user_items, weights, "loss")[0]

    def rwse(self, user_items, weights=None) -> float:
        """Root weighted squared error sqrt(Σ_all W (A − UVᵀ)² / Σ_all W) on ``user_items``.

        Parameters
        ----------
        user_items : sparse matrix of shape (n_users, n_items)
        weights : sparse matrix of shape (n_users, n_items) or None, default=None

        Returns
        -------
        float
            0.0 when Σ_all W is 0.
        """
        _, data, sum_w = self._eval(user_items, weights, "rwse")
        return float(np.sqrt(data / sum_w)) if sum_w > 0 else 0.0

    # ------------------------------------------------------------------ fit

    def fit(self, user_items, weights=None) -> WALS:
        """Fit the factors by ``sweeps`` sweeps (rows, then columns) from a random start.

        Parameters
        ----------
        user_items : sparse matrix of shape (n_users, n_items)
            Observed entries and their targets A (e.g. ratings, or 1 for implicit data).
        weights : sparse matrix of shape (n_users, n_items) or None, default=None
            Per-entry observed weights (same sparsity as ``user_items``), replacing
            w0 + R_i·C_j·c(r_ij) (``targets`` still applies).

        Returns
        -------
        self
        """
        self._validate_params()
        rows_side = self._prepare(user_items, weights, "fit", by_rows=True)
        cols_side = self._prepare(user_items, weights, "fit", by_rows=False)
        n_users, n_items = user_items.shape
        self.initialize(n_users, n_items)
        reg = {"v": halfstep.regularization_term(cols_side.lam, self.item_factors_)}

        def sweep() -> tuple[float, tuple[float, float, float]]:
            # the kernels return each row's observed loss and regularisation terms with its
            # new factors; the other side's terms are the previous half-step's
            terms = self._update(rows_side, "user").sum(axis=0)
            reg["u"] = float(terms[1])
            after_rows = self._assemble_loss(terms[0], reg["u"] + reg["v"], rows_side)[0]
            terms = self._update(cols_side, "item").sum(axis=0)
            reg["v"] = float(terms[1])
            return after_rows, self._assemble_loss(terms[0], reg["u"] + reg["v"], rows_side)

        return self._run_sweeps(sweep, "WALS")

    def _run_sweeps(self, sweep, desc: str) -> WALS:
        return run_sweeps(self, sweep, desc)

    def partial_fit(self, user_items, rows=None, cols=None, weights=None) -> WALS:
        """Take in new users, new items and new interactions without refitting.

        The factors grow to ``user_items``' shape (the rows of new users and items start
        at zero), then the users ``rows`` are solved against the item factors, then the
        items ``cols`` against the updated user factors: exactly the rows
        ``update_rows(user_items, rows=rows)`` and ``update_cols(user_items, cols=cols)``
        compute, and a new user's factors are what ``project_rows`` gives for its history
        (both read the whole row: a user's solve needs its full history and the item
        factors' Gramian, nothing else). Users and items absent from ``rows`` and
        ``cols`` keep their factors.

        Parameters
        ----------
        user_items : sparse matrix of shape (n_users', n_items')
            The whole training matrix, old and new interactions: at least as many users
            and items as the factors have, the model's users and items first, in the same
            order (as ``walsrec prepare --append-to`` keeps them).
        rows, cols : array-like of int or None, default=None
            The users and items to solve; None solves those new to the model (beyond its
            factors). Pass the touched ones too (a user with new interactions), with the
            new ones: :func:`walsrec.training.update.touched` finds both.
        weights : sparse matrix of shape (n_users', n_items') or None, default=None
            Per-entry observed weights, as for ``update_rows``.

        Returns
        -------
        self

        Raises
        ------
        InvalidParameterError
            ``user_items`` has fewer users or items than the factors, or ``row_weights``/
            ``col_weights`` are arrays of another length (set them for the new shape first).
        """
        self._check_initialized("partial_fit")
        self._validate_params()
        if not sp.issparse(user_items):
            raise TypeError(
                "The 'user_items' argument of WALS.partial_fit must be a scipy.sparse matrix "
                f"(CSR preferred). Got {type(user_items).__name__} instead."
            )
        old = (self.user_factors_.shape[0], self.item_factors_.shape[0])
        new = tuple(int(n) for n in user_items.shape)
        if new[0] < old[0] or new[1] < old[1]:
            raise InvalidParameterError(
                "The 'user_items' argument of WALS.partial_fit must have at least the "
                f"model's {old[0]} users and {old[1]} items (new ones appended). Got shape "
                f"{new} instead."
            )
        for name, n in (("row_weights", new[0]), ("col_weights", new[1])):
            w = getattr(self, name)
            if np.ndim(w) == 1 and len(w) != n:
                raise InvalidParameterError(
                    f"The {name!r} parameter of WALS has {len(w)} weights, but partial_fit's "
                    f"'user_items' has {n} {'users' if name == 'row_weights' else 'items'}; "
                    "set_params the weights of the new shape first."
                )
        rows = np.arange(old[0], new[0]) if rows is None else rows
        cols = np.arange(old[1], new[1]) if cols is None else cols
        rows = check_indices(rows, new[0], "rows", "partial_fit")
        cols = check_indices(cols, new[1], "cols", "partial_fit")
        before = (self.user_factors_, self.item_factors_)
        k, dt = self.embedding_dim, self._np_dtype
        try:
            if new[0] > old[0]:
                grown = np.zeros((new[0], k), dtype=dt)
                grown[: old[0]] = self.user_factors_
                self._set_factors("user", grown)
            if new[1] > old[1]:
                grown = np.zeros((new[1], k), dtype=dt)
                grown[: old[1]] = self.item_factors_
                self._set_factors("item", grown)
            if len(rows):
                self.update_rows(user_items, rows=rows, weights=weights)
            if len(cols):
                self.update_cols(user_items, cols=cols, weights=weights)
        except BaseException:  # a refused matrix or weights: the model as it was
            self._set_factors("user", before[0])
            self._set_factors("item", before[1])
            raise
        return self

    def bind(self, user_items, weights=None) -> BoundData:
        """The training matrix bound to this estimator, for a loop of half-steps.

        ``update_rows(user_items)`` validates and weighs the whole matrix at every call (it
        may be another matrix each time); a loop that steps through the same data (a
        training loop, tf.contrib's batches) binds it once instead: the weighted sides
        (W, A, λ per row, BM25's statistics) are built on first use and reused by every
        half-step and loss, as :meth:`fit` does. The factors are the estimator's. The sides
        are rebuilt when the estimator's parameters change.

        Parameters
        ----------
        user_items : sparse matrix of shape (n_users, n_items)
            Not to be modified while bound.
        weights : sparse matrix or None, default=None
            Per-entry observed weights, as :meth:`fit`'s.

        Returns
        -------
        BoundData

        Examples
        --------
        >>> import scipy.sparse as sp
        >>> from walsrec.model.wals import WALS
        >>> x = sp.random(30, 20, density=0.3, format="csr", random_state=0)
        >>> model = WALS(4, random_state=0).initialize(30, 20)
        >>> data = model.bind(x)
        >>> for batch in (range(0, 15), range(15, 30)):
        ...     _ = data.update_rows(rows=list(batch))
        >>> _ = data.update_cols()
        >>> round(data.loss(), 6) == round(model.loss(x), 6)
        True
        """
        self._check_shape(user_items, "bind")
        return BoundData(self, user_items, weights)

    # ------------------------------------------------------------------ fold-in

    def _project(self, new, weights, scalar_weight, by_rows: bool, method: str) -> np.ndarray:
        self._check_initialized(method)
        self._validate_params()
        name = "new_user_items" if by_rows else "new_item_users"
        fixed = self.item_factors_ if by_rows else self.user_factors_
        m = check_sparse(new, name, method, "csr", self._np_dtype)
        if m.shape[1] != fixed.shape[0]:
            raise InvalidParameterError(
                f"The {name!r} argument of WALS.{method} must have {fixed.shape[0]} columns "
                f"(one per {'item' if by_rows else 'user'} of the model). "
                f"Got shape {m.shape} instead."
            )
        wname = "row_weights" if by_rows else "col_weights"
        if scalar_weight is None:
            own = getattr(self, wname)
            scalar_weight = float(own) if _is_real(own) else 1.0
        owner = f"argument of WALS.{method}"
        if not (_is_real(scalar_weight) and np.isfinite(scalar_weight) and scalar_weight >= 0):
            raise InvalidParameterError(
                _param_error(wname, "a non-negative finite float", scalar_weight, owner)
            )
        w = None
        if weights is not None:
            w = check_sparse(weights, "weights", method, "csr", self._np_dtype)
            if w.shape != m.shape or not (
                np.array_equal(w.indptr, m.indptr) and np.array_equal(w.indices, m.indices)
            ):
                raise InvalidParameterError(
                    f"The 'weights' argument of WALS.{method} must have the same shape and "
                    f"sparsity pattern as {name!r}. Got shape {w.shape} with {w.nnz} stored "
                    f"entries against {m.shape} with {m.nnz}."
                )
            if w.data.size and w.data.min() < 0:
                raise InvalidParameterError(
                    f"The 'weights' argument of WALS.{method} must contain non-negative "
                    f"weights. Got {float(w.data.min())!r} instead."
                )
        # Build the side as if the new rows were the model's rows (user_items orientation
        # for rows; item_users for columns), with the scalar weight standing in for R or C.
        other_name = "col_weights" if by_rows else "row_weights"
        other = _check_weight_vector(getattr(self, other_name), other_name, fixed.shape[0])
        dt = self._np_dtype
        settings = self._settings()
        indptr = m.indptr.astype(np.int64, copy=False)
        indices = np.ascontiguousarray(m.indices, dtype=np.int32)
        counts = np.diff(indptr)
        if w is None:
            conf = None
            if self.confidence != "constant":
                # The new rows weigh their entries with the training statistics, except for
                # their own: a new user's value sum, a new item's user count.
                outer = np.repeat(np.arange(m.shape[0]), counts)
                if by_rows:
                    sums = weighting.row_sums(m)
                    conf = self._confidence(m.data, outer, indices, user_sums=sums, where=name)
                else:
                    conf = self._confidence(
                        m.data, indices, outer, item_counts=counts, where=name, transposed=True
                    )
            wdata = halfstep.observed_weights(settings, scalar_weight, other, counts, indices, conf)
        else:
            wdata = np.ascontiguousarray(w.data, dtype=dt)
        side = Side(
            indptr,
            indices,
            wdata,
            halfstep.targets(settings, m.data),
            halfstep.lambdas(settings, counts, fixed.shape[0]),
            fixed.shape[0],
        )
        rows = np.arange(m.shape[0], dtype=np.int64)
        axis = "row" if by_rows else "column"
        start = np.zeros((m.shape[0], self.embedding_dim), dtype=dt)
        fixed_which = "item" if by_rows else "user"
        return self._solve(side, rows, fixed_which, start, axis, "cholesky")[0]

    def project_rows(self, new_user_items, weights=None, row_weights=None) -> np.ndarray:
        """Fold in unseen users: the exact row solve against the fixed item factors.

        tf.contrib's ``project_row_factors``. Always solves exactly, whatever ``solver``.

        Parameters
        ----------
        new_user_items : sparse matrix of shape (n_new, n_items)
            The new users' interactions (targets A).
        weights : sparse matrix of shape (n_new, n_items) or None, default=None
            Per-entry observed weights, same sparsity as ``new_user_items``.
        row_weights : float or None, default=None
            The row weight R of the new users. None uses the model's ``row_weights`` when
            that is a scalar, else 1.0 (tf.contrib's default for projections).

        Returns
        -------
        ndarray of shape (n_new, embedding_dim), the model's dtype
        """
        return self._project(new_user_items, weights, row_weights, True, "project_rows")

    def project_cols(self, new_item_users, weights=None, col_weights=None) -> np.ndarray:
        """Fold in unseen items: the exact column solve against the fixed user factors.

        Parameters
        ----------
        new_item_users : sparse matrix of shape (n_new, n_users)
            One row per new item: the users who interacted with it (targets A).
        weights : sparse matrix of shape (n_new, n_users) or None, default=None
            Per-entry observed weights, same sparsity as ``new_item_users``.
        col_weights : float or None, default=None
            The column weight C of the new items. None uses the model's ``col_weights``
            when that is a scalar, else 1.0.

        Returns
        -------
        ndarray of shape (n_new, embedding_dim), the model's dtype
        """
        return self._project(new_item_users, weights, col_weights, False, "project_cols")

    # ------------------------------------------------------------------ recommendations

    def _check_k(self, k, method: str) -> None:
        if not (_is_int(k) and k >= 1):
            raise InvalidParameterError(
                _param_error("k", "an int >= 1", k, f"argument of WALS.{method}")
            )

    def _check_index(self, index, n: int, name: str, method: str) -> int:
        if not (_is_int(index) and 0 <= index < n):
            raise InvalidParameterError(
                _param_error(name, f"an int in [0, {n})", index, f"argument of WALS.{method}")
            )
        return int(index)

    def _items_arg(self, filter_items, items, n_items: int, method: str) -> np.ndarray:
        """The top-k kernels' ``banned`` mask from the item indices ``filter_items`` and the
        allow list ``items`` (each None or a 1-D array of indices in [0, n_items))."""
        from walsrec.model import topk

        if filter_items is not None:
            filter_items = check_indices(filter_items, n_items, "filter_items", method)
        if items is not None:
            items = check_indices(items, n_items, "items", method)
        return topk.banned_mask(n_items, filter_items, items)

    def recommend(
        self, user_index, user_items, k=10, exclude_seen=True, *, filter_items=None, items=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for one training user by score u_i·v_j, best first.

        Candidates, order and ties follow the ranking rules of :mod:`walsrec.model.topk`,
        shared with :meth:`Recommender.recommend
        <walsrec.serving.model.Recommender.recommend>` (which names items by id where
        this names them by index): score descending, ties by item index ascending.

        Parameters
        ----------
        user_index : int
            The user's row.
        user_items : sparse matrix of shape (n_users, n_items) or (1, n_items)
            The training matrix (or the user's row), for excluding seen items; not read
            (None will do) when ``exclude_seen`` is False.
        k : int, default=10
            Number of items; more than the catalog returns every candidate, ranked.
        exclude_seen : bool, default=True
            Leave out the items stored in the user's row of ``user_items``.
        filter_items : array-like of int, optional
            Item indices never to recommend.
        items : array-like of int, optional
            Allow list: only these item indices may be recommended.

        Returns
        -------
        items : ndarray of int64, shape (n,)
        scores : ndarray of the factors' dtype, shape (n,)
            n = k, or fewer when fewer candidates remain.

        Examples
        --------
        >>> import numpy as np, scipy.sparse as sp
        >>> from walsrec import WALS
        >>> x = sp.csr_matrix(np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]))
        >>> model = WALS(embedding_dim=2, random_state=0).fit(x)
        >>> items, scores = model.recommend(0, x, k=2)  # items 2 and 3, best first
        >>> model.recommend(0, x, k=2, filter_items=[3])[0].tolist()
        [2]
        """
        from walsrec.model import topk

        self._check_initialized("recommend")
        n_users, n_items = self.user_factors_.shape[0], self.item_factors_.shape[0]
        user = self._check_index(user_index, n_users, "user_index", "recommend")
        self._check_k(k, "recommend")
        banned = self._items_arg(filter_items, items, n_items, "recommend")
        excluded = np.zeros(0, dtype=np.int64)
        if exclude_seen:
            if not sp.issparse(user_items):
                raise TypeError(
                    "The 'user_items' argument of WALS.recommend must be a scipy.sparse "
                    f"matrix. Got {type(user_items).__name__} instead."
                )
            if user_items.shape not in ((n_users, n_items), (1, n_items)):
                raise InvalidParameterError(
                    f"The 'user_items' argument of WALS.recommend must have shape "
                    f"{(n_users, n_items)} or {(1, n_items)}. Got {user_items.shape} instead."
                )
            rows = user_items.tocsr()
            row = 0 if user_items.shape[0] == 1 else user
            # sorted, as the kernels walk the gaps between seen items
            excluded = np.unique(rows.indices[rows.indptr[row] : rows.indptr[row + 1]])
        scores = self.item_factors_ @ self.user_factors_[user]
        return topk.top_k(scores, excluded, banned, k)

    def similar_items(
        self, item_index, k=10, *, metric="cosine", filter_items=None, items=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to ``item_index`` (itself excluded), best first.

        Candidates, order and ties follow the ranking rules of :mod:`walsrec.model.topk`,
        shared with :meth:`Recommender.similar_items
        <walsrec.serving.model.Recommender.similar_items>`.

        Parameters
        ----------
        item_index : int
        k : int, default=10
        metric : {"cosine", "dot"}, default="cosine"
            Cosine similarity of the item factors (0 against an all-zero factor) or their
            dot product.
        filter_items : array-like of int, optional
            Item indices never to return.
        items : array-like of int, optional
            Allow list: only these item indices may be returned.

        Returns
        -------
        items : ndarray of int64, shape (n,)
        similarities : ndarray of the factors' dtype, shape (n,)
            n = k, or fewer when fewer candidates remain.
        """
        from walsrec.model import topk

        self._check_initialized("similar_items")
        n_items = self.item_factors_.shape[0]
        item = self._check_index(item_index, n_items, "item_index", "similar_items")
        self._check_k(k, "similar_items")
        metrics = list(topk.METRICS)
        owner = "argument of WALS.similar_items"
        check_option(metric, "metric", owner, metrics, rule=f"one of {metrics}")
        banned = self._items_arg(filter_items, items, n_items, "similar_items")
        v = self.item_factors_
        norms = np.linalg.norm(v, axis=1) if metric == "cosine" else None
        sims = topk.similarity_scores(v, norms, item, metric)
        return topk.top_k(sims, np.array([item]), banned, k)


_PARAM_NAMES = tuple(
    p.name
    for p in inspect.signature(WALS.__init__).parameters.values()
    if p.name != "self" and p.kind is not p.VAR_KEYWORD
)


class BoundData:
    """A training matrix bound to a :class:`WALS` estimator (:meth:`WALS.bind`): the
    half-steps and the loss of the estimator's factors on it, the weighted sides built once.

    The results equal ``model.update_rows(user_items, rows)``,
    ``model.update_cols(user_items, cols)`` and ``model.loss(user_items)`` bit for bit.
    """

    def __init__(self, model: WALS, user_items, weights) -> None:
        self.model = model
        self.user_items = user_items
        self.weights = weights
        self._sides: dict = {}
        self._params: dict | None = None

    def _side(self, by_rows: bool, method: str) -> Side:
        params = self.model.get_params()
        if not _same_params(params, self._params):  # other parameters weigh it otherwise
            self.model._validate_params()
            self._sides, self._params = {}, params
        if by_rows not in self._sides:
            # built as update_rows/update_cols build them (BM25's statistics become the
            # model's), whichever call comes first
            self._sides[by_rows] = self.model._prepare(
                self.user_items,
                self.weights,
                "update_rows" if by_rows else "update_cols",
                by_rows=by_rows,
            )
        return self._sides[by_rows]

    def _step(self, which: str, subset, method: str) -> BoundData:
        model = self.model
        model._check_initialized(method)
        by_rows = which == "user"
        side = self._side(by_rows, method)
        if subset is None:
            model._update(side, which)
            return self
        name = "rows" if by_rows else "cols"
        target = check_indices(subset, side.n_rows, name, method)
        current = model.user_factors_ if by_rows else model.item_factors_
        fixed_which = "item" if by_rows else "user"
        new, _ = model._solve(
            side, target, fixed_which, current[target], "row" if by_rows else "column",
            labels=target,
        )  # fmt: skip
        current[target] = new  # in place, as WALS.update_rows's batches
        model._set_factors(which, current)
        return self

    def update_rows(self, rows=None) -> BoundData:
        """:meth:`WALS.update_rows` on the bound matrix (``rows``: a batch, None: all)."""
        return self._step("user", rows, "update_rows")

    def update_cols(self, cols=None) -> BoundData:
        """:meth:`WALS.update_cols` on the bound matrix (``cols``: a batch, None: all)."""
        return self._step("item", cols, "update_cols")

    def _eval(self, method: str) -> tuple[float, float, float]:
        model = self.model
        model._check_initialized(method)
        side = self._side(True, method)
        counts_cols = np.bincount(side.indices, minlength=model.item_factors_.shape[0])
        lam_cols = halfstep.lambdas(model._settings(), counts_cols, side.n_rows)
        return model._loss_parts(side, lam_cols)

    def loss(self) -> float:
        """:meth:`WALS.loss` of the current factors on the bound matrix."""
        return self._eval("loss")[0]

    def rwse(self) -> float:
        """:meth:`WALS.rwse` of the current factors on the bound matrix."""
        _, data, sum_w = self._eval("rwse")
        return float(np.sqrt(data / sum_w)) if sum_w > 0 else 0.0


def _same_params(a: dict, b: dict | None) -> bool:
    """``get_params`` answers equal, weight vectors compared by value."""
    if b is None or a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
                return False
            if not (x is y or np.array_equal(x, y)):
                return False
        elif not (x is y or x == y):
            return False
    return True


def run_sweeps(model, sweep, desc: str):
    """Run ``sweep()`` up to ``model.sweeps`` times with the bookkeeping every back end
    shares (WALS and DaskWALS).

    ``sweep()`` does a row then a column half-step and returns (loss after the rows,
    (loss, data term, Σ W) after the columns). Records ``loss_``, ``rwse_``, ``n_iter_``;
    shows progress; stops when ``callback`` returns True or the loss changes by less
    than ``tol`` relative.
    """
    progress = None
    if model.show_progress:
        from tqdm.auto import tqdm

        # disable=None: drawn on a terminal only; logs and files get no bar fragments
        progress = tqdm(total=model.sweeps, desc=desc, unit="sweep", disable=None)
    try:
        previous = None
        for n in range(1, model.sweeps + 1):
            after_rows, (current, data, sum_w) = sweep()
            model.loss_.append(after_rows)
            model.loss_.append(current)
            model.n_iter_ = n
            model.rwse_ = float(np.sqrt(data / sum_w)) if sum_w > 0 else 0.0
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{current:.6g}")
            if model.callback is not None and model.callback(n, model) is True:
                break
            if previous is not None and model.tol > 0:
                if abs(previous - current) <= model.tol * abs(previous):
                    break
            previous = current
    finally:
        if progress is not None:
            progress.close()
    return model
