"""The HTTP service: FastAPI app over a :class:`~walsrec.serving.model.Recommender`.

Endpoints: ``GET /recommendations/{user_id}``, ``POST /recommendations`` (fold-in),
``GET /similar/{item_id}``, ``GET /health``, ``GET /model``; OpenAPI at ``/docs``.

The model is loaded and its kernels compiled in the app's lifespan, never at import or on
the first request. Given a model directory, a :class:`ModelWatcher` thread polls
MODEL_DIR/export; a newer export is loaded and warmed up in that thread, then swapped in
by replacing one reference. Each request reads that reference once and uses its local copy
throughout, so requests in flight finish on the model they started with. A broken export
(any error while loading, checking or warming it up) is logged in one line and skipped, and
retried only if its files change, while the old model serves; ``GET /model`` lists it with
the reason, without server paths. An export whose factors are so large that scores could
overflow float32 is refused in the same way.

Requests are computed inline on the event loop: a recommendation takes a few tens of
microseconds (a sequential top-k kernel that scores items by decreasing norm and stops
early), less than a hop to a worker thread would cost, and every request's kernels then
run on one thread. Every kernel is sequential and releases the GIL (the fold-in's solve
runs its parts through :func:`walsrec._threads.run_parts`), so kernels are safe from any
thread, the reload thread's warm-up of a new export included.

Client mistakes are never a 500: an unknown user or item is 404, a bad parameter 422, a
body over the limit 413, each with a short ``detail``. A fold-in with nothing to fold in
(no interaction names an item the model knows) is a 422 naming the unknown items, or, with
the "popular" fallback, the most popular items marked ``"fallback": true`` as for an unknown
user. Ids may contain any character, ``/`` included (sent as ``%2F``: the last path
parameter takes the rest of the path). Answers never show server paths or exception texts;
the log has them.

A fold-in that fails because of the interactions' values is a 422 naming the values: values
so large that the new user's system cannot be solved in float32 or that its scores
overflow, negative values for a model that weighs entries by their values. (The loaded model
itself is sound: load_model bounds its factors and its warm-up folds a user in.) Scores that
are not finite for a stored user or item are the model's fault: a 500.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field

from walsrec.errors import (
    InvalidParameterError,
    SingularSystemError,
    UnknownIdError,
    WalsrecError,
)

__all__ = ["ModelWatcher", "ServiceSettings", "create_app", "run"]

log = logging.getLogger("walsrec.serving")


@dataclass
class ServiceSettings:
    """Settings of the HTTP service.

    Parameters
    ----------
    model : path
        An export directory (served as is) or a model directory (its newest export,
        and MODEL_DIR/export is watched for newer ones).
    poll_interval : float, default=2.0
        Seconds between checks of MODEL_DIR/export; 0 disables hot reload.
    max_interactions : int, default=10000
        Largest fold-in request; more interactions are refused with 413.
    max_k : int, default=1000
        Largest k a request may ask for (422 above).
    fallback : {None, "popular"}, default=None
        Answer unknown users (404 otherwise), and new users whose interactions name no
        item the model knows (422 otherwise), with the most popular items.
    max_body_bytes : int or None, default=None
        Largest request body; default 200 bytes per allowed interaction plus 64 KiB.
    """

    model: str
    poll_interval: float = 2.0
    max_interactions: int = 10_000
    max_k: int = 1000
    fallback: str | None = None
    max_body_bytes: int | None = None

    @property
    def body_limit(self) -> int:
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return 200 * self.max_interactions + 65_536


# --------------------------------------------------------------------------- hot reload


def _signature(path: Path) -> tuple:
    """Names, sizes and modification times of an export's files (to notice a rewrite)."""
    out = []
    try:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                st = f.stat()
                out.append((str(f.relative_to(path)), st.st_size, st.st_mtime_ns))
    except OSError:
        pass
    return tuple(out)


# an absolute path left in a message after the export's own prefix is removed
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s'\"()\[\]:,;/]+/)+([^\s'\"()\[\]:,;/]*)")


def _public_reason(exc: BaseException, path: Path) -> str:
    """Why an export was refused, fit for clients: one line, file names but no server paths.

    A walsrec error names the file and the rule broken; paths inside the export become
    relative to it ("model.json: ..."), any other absolute path keeps only its last part.
    Anything else is an internal failure: only its type is shown (the log has the rest).
    """
    if not isinstance(exc, WalsrecError):
        return f"unexpected {type(exc).__name__} while loading (see the service log)."
    text = str(exc)
    for root in dict.fromkeys((str(path), str(path.resolve()), os.path.realpath(path))):
        text = text.replace(root + os.sep, "").replace(root, path.name)
    text = _ABSOLUTE_PATH.sub(r"\1", text)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


class ModelWatcher:
    """Holds the active model and swaps in newer exports from MODEL_DIR/export.

    ``current`` is the active :class:`~walsrec.serving.model.Recommender`; it is replaced
    by a single assignment, never modified, so a reader that took a reference keeps a
    consistent model. ``skipped`` maps the name of each export that was refused to the
    reason (one line, no server paths); such an export is tried again only when its files
    change (names, sizes or modification times).
    """

    def __init__(self, source: str, poll_interval: float = 2.0) -> None:
        self.source = Path(source)
        self.poll_interval = float(poll_interval)
        self.current = None
        self.loaded_at: float | None = None
        self.skipped: dict[str, str] = {}  # export name -> why it was skipped
        self._failed: dict[str, tuple] = {}  # export name -> signature when it failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one check at a time
        if (self.source / "model.json").is_file():
            self.export_root = None  # an export given directly: served as is
        elif (self.source / "export").is_dir() or not self.source.is_dir():
            self.export_root = self.source / "export"
        else:
            self.export_root = self.source

    @staticmethod
    def _number(path: Path) -> int:
        return int(path.name) if path.name.isdigit() else -1

    @staticmethod
    def _load(path: Path):
        """Load, check and warm up one export; raises whatever goes wrong."""
        from walsrec.serving.model import load_model

        model = load_model(path)
        model.warm_up()
        return model

    def load_initial(self) -> None:
        """Load (and warm up) the newest complete export; raise if there is none.

        Newer exports that fail to load are skipped, as in :meth:`check_once`, so a broken
        newest export does not keep the service from starting on the previous one.
        """
        from walsrec.serving.export import list_exports, resolve_export

        if self.export_root is None:
            candidates = [self.source]
        else:
            candidates = list(reversed(list_exports(self.export_root)))
            if not candidates:
                candidates = [resolve_export(self.source)]  # raises the clear error
        error = None
        for path in candidates:
            try:
                self._activate(self._load(path))
            except Exception as exc:
                if self.export_root is None:
                    raise
                self._skip(path, exc)
                error = error or exc
                continue
            return
        raise error

    def _activate(self, model) -> None:
        # everything that may fail comes before the swap (e.g. an unusable version)
        log.info(
            "serving export %s (version %s): %d users, %d items, embedding_dim %d",
            model.path,
            model.version,
            model.n_users,
            model.n_items,
            model.embedding_dim,
        )
        self.loaded_at = time.time()
        self.current = model

    def _skip(self, path: Path, exc: Exception) -> None:
        self._failed[path.name] = _signature(path)
        self.skipped[path.name] = _public_reason(exc, path)
        active = self.current.version if self.current is not None else None
        keeping = f"keeping version {active}" if active is not None else "nothing loaded yet"
        if isinstance(exc, WalsrecError):
            # one line: the export, what the service keeps, and why (with the full path)
            why = " ".join(str(exc).split())
            log.warning("refused export %s (%s): %s", path, keeping, why)
        else:
            log.error(
                "refused export %s (%s): unexpected %s",
                path,
                keeping,
                type(exc).__name__,
                exc_info=exc,
            )

    def check_once(self) -> bool:
        """Load the newest export newer than the active one, if any; True when swapped."""
        if self.export_root is None:
            return False
        from walsrec.serving.export import list_exports

        with self._lock:
            active = self._number(self.current.path) if self.current is not None else -1
            try:
                newer = [p for p in list_exports(self.export_root) if self._number(p) > active]
            except OSError as exc:
                log.warning("cannot list %s: %s", self.export_root, exc)
                return False
            for path in reversed(newer):
                failed = self._failed.get(path.name)
                if failed is not None and failed == _signature(path):
                    continue  # still the same broken files
                try:
                    self._activate(self._load(path))
                except Exception as exc:  # a broken export must never stop the service
                    self._skip(path, exc)
                    continue
                self._failed.pop(path.name, None)
                self.skipped.pop(path.name, None)
                return True
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.check_once()
            except Exception:  # pragma: no cover - check_once already catches load errors
                log.exception("checking for a new export failed")

    def start(self) -> None:
        """Start the polling thread (if a model directory is watched and polling is on)."""
        if self.export_root is None or self.poll_interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="walsrec-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


# --------------------------------------------------------------------------- request bodies


class InteractionIn(BaseModel):
    item: str | int = Field(description="the item's original id")
    value: float = Field(1.0, allow_inf_nan=False, description="the interaction's value")


class FoldInRequest(BaseModel):
    interactions: list[InteractionIn] = Field(description="the new user's interactions")
    k: int = Field(10, ge=1, description="number of items")
    exclude_seen: bool = Field(True, description="leave out the interaction items")
    fallback: Literal["popular"] | None = Field(
        None,
        description="answer with the most popular items when no interaction names an item "
        "the model knows (default: the service's --fallback)",
    )


class ItemScore(BaseModel):
    item: str
    score: float


class RecommendationsOut(BaseModel):
    user: str | None = None
    version: int
    fallback: bool = False
    ignored: list[str] | None = None
    items: list[ItemScore]


class SimilarOut(BaseModel):
    item: str
    version: int
    metric: str
    items: list[ItemScore]


def _finite_or_none(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


class _ScoresNotFinite(Exception):
    """A model answered with a score that is not finite (its factors overflow float32)."""

    def __init__(self, model, what: str) -> None:
        super().__init__(what)
        self.model = model
        self.what = what


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _fold_in_refusal(model, pairs: list[tuple[str, float]], exc: Exception | None) -> str:
    """The 422 detail for a fold-in that failed because of the interactions' values.

    ``exc`` is the walsrec error the fold-in raised, or None when it answered scores that
    are not finite. Computed only when a fold-in failed, so it costs nothing otherwise.
    """
    totals: dict[str, float] = {}
    for item, value in pairs:  # repeated items add up, as in the fold-in
        totals[item] = totals.get(item, 0.0) + value
    ids = list(totals)
    known = model.items.indices(ids) >= 0 if ids else np.zeros(0, dtype=bool)
    if not known.any():  # refused before solving: nothing to fold in
        return _nothing_to_fold_in(ids)
    values = np.array([totals[i] for i in ids], dtype=np.float64)[known]
    largest = float(np.max(np.abs(values), initial=0.0))
    if exc is None:
        why = "the new user's scores overflow float32"
    elif isinstance(exc, SingularSystemError) or not largest < _FLOAT32_MAX:
        why = "the new user's least-squares system cannot be solved in float32"
    elif isinstance(exc, InvalidParameterError) and values.size and values.min() < 0:
        return (
            "The interactions' values must be non-negative for this model (it weighs "
            f"interactions by their values). Got {float(values.min()):.6g} instead."
        )
    else:  # no other cause is known: the library's reason, on one line
        return f"The interactions cannot be folded in: {' '.join(str(exc).split())}"
    return (
        f"The interactions' values are too large to fold in (largest {largest:.3g}, repeated "
        f"items added up): {why}. Send values on the scale of the training data."
    )


def _nothing_to_fold_in(unknown: list[str]) -> str:
    """The 422 detail for a fold-in whose interactions name no item the model knows."""
    from walsrec.serving.model import quote_ids

    if not unknown:
        return "No interactions: nothing to fold in."
    ids = "ids" if len(unknown) > 1 else "id"
    return (
        f"Unknown item {ids} {quote_ids(unknown)}: no interaction names an item the model "
        "knows, nothing to fold in."
    )


def _json(payload: Any, status: int = 200) -> Response:
    # json.dumps of plain lists and dicts: FastAPI's encoder would walk every value again
    return Response(
        json.dumps(payload, ensure_ascii=False, allow_nan=False),
        status_code=status,
        media_type="application/json",
    )


class _BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._refuse(send)
                    return
        received = 0
        limit = self.limit

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # an HTTPException: FastAPI re-raises it from its body reader as is
                    raise HTTPException(413, f"Request body larger than {limit} bytes.")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": f"Request body larger than {self.limit} bytes."}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _param(name: str, where: str, schema: dict, description: str) -> dict:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


def _parse_bool(text: str | None, name: str) -> bool:
    if text is None:
        return True
    value = text.lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise InvalidParameterError(f"The {name!r} parameter must be a boolean. Got {text!r} instead.")


def _short_validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "; ".join(parts) or "Invalid request."


# --------------------------------------------------------------------------- the app


def create_app(settings: ServiceSettings, watcher: ModelWatcher | None = None) -> FastAPI:
    """The FastAPI application serving ``settings.model``.

    Parameters
    ----------
    settings : ServiceSettings
    watcher : ModelWatcher, optional
        A watcher to use instead of a new one (its model is loaded in the lifespan if it
        has none yet).

    Returns
    -------
    fastapi.FastAPI
    """
    from threadpoolctl import threadpool_limits

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # One BLAS thread per product: requests are sub-millisecond matrix-vector products,
        # where waking BLAS threads costs more than it saves.
        limiter = threadpool_limits(limits=1, user_api="blas")
        w = watcher or ModelWatcher(settings.model, settings.poll_interval)
        if w.current is None:
            w.load_initial()
        app.state.watcher = w
        w.start()
        try:
            yield
        finally:
            w.stop()
            limiter.restore_original_limits()

    app = FastAPI(
        title="walsrec",
        summary="WALS recommendations: top-k, fold-in of new users, similar items.",
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, limit=settings.body_limit)
    _add_error_handlers(app)
    _add_status_routes(app)
    # The GET endpoints parse their few query parameters themselves: FastAPI's generic
    # parameter validation cost more than the recommendation itself (0.4 ms a request).
    # The parameters are declared for the OpenAPI page.
    _add_recommendation_routes(app, settings)
    _add_similar_routes(app, settings)
    return app


def _current(request: Request):
    """The active model: read once per request, which uses it throughout."""
    return request.app.state.watcher.current


def _finite(result, m, what: str):
    # a few values: cheaper than letting json.dumps fail into a bare 500
    if not np.isfinite(result.scores).all():
        raise _ScoresNotFinite(m, what)
    return result


def _check_k(k: int, max_k: int) -> None:
    if k > max_k:
        raise InvalidParameterError(
            f"The 'k' parameter must be an int in [1, {max_k}]. Got {k} instead."
        )


def _parse_k(text: str | None, max_k: int) -> int:
    if text is None:
        return 10
    try:
        k = int(text)
    except ValueError:
        k = None
    if k is None or not 1 <= k <= max_k:
        raise InvalidParameterError(
            f"The 'k' parameter must be an int in [1, {max_k}]. Got {text!r} instead."
        )
    return k


def _add_error_handlers(app: FastAPI) -> None:
    """Client mistakes as 404 or 422 with a short detail; scores that are not finite as 500."""

    @app.exception_handler(UnknownIdError)
    async def _unknown(request: Request, exc: UnknownIdError):
        return _json({"detail": str(exc)}, 404)

    @app.exception_handler(InvalidParameterError)
    async def _invalid(request: Request, exc: InvalidParameterError):
        return _json({"detail": str(exc)}, 422)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return _json({"detail": _short_validation_detail(exc)}, 422)

    reported: set[tuple[int, str]] = set()

    @app.exception_handler(_ScoresNotFinite)
    async def _not_finite(request: Request, exc: _ScoresNotFinite):
        version = exc.model.version
        if (version, exc.what) not in reported:  # once per model and endpoint, not per request
            reported.add((version, exc.what))
            log.error(
                "export %s (version %s) gives scores that are not finite for %s: its factors "
                "overflow float32",
                exc.model.path,
                version,
                exc.what,
            )
        detail = (
            f"The model (version {version}) gives scores that are not finite (NaN or infinity) "
            "for this request: its factors overflow float32."
        )
        return _json({"detail": detail}, 500)


def _add_status_routes(app: FastAPI) -> None:
    """``GET /health`` and ``GET /model``."""

    @app.get("/health", summary="Liveness and the active model version")
    async def health(request: Request):
        return _json({"status": "ok", "version": _current(request).version})

    @app.get("/model", summary="The active model: version, creation time, counts, metrics")
    async def model_info(request: Request):
        w = request.app.state.watcher
        m = w.current
        info = m.describe()
        info.pop("path", None)  # names only: no server paths in answers
        info["export"] = m.path.name
        info["loaded_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(w.loaded_at))
        info["watching"] = w.export_root is not None
        info["skipped_exports"] = dict(w.skipped)
        return _json(_finite_or_none(info))


def _add_recommendation_routes(app: FastAPI, settings: ServiceSettings) -> None:
    """``GET /recommendations/{user_id}`` (known users) and ``POST /recommendations``
    (fold-in of a new user)."""
    max_k = settings.max_k
    max_n = settings.max_interactions

    @app.get(
        "/recommendations/{user_id:path}",
        response_model=RecommendationsOut,
        summary="Top-k items for a known user",
        responses={404: {"description": "Unknown user id"}, 422: {"description": "Bad k"}},
        openapi_extra={
            "parameters": [
                _param("user_id", "path", {"type": "string"}, "the user's original id"),
                _param("k", "query", {"type": "integer", "minimum": 1, "maximum": max_k,
                                      "default": 10}, "number of items"),
                _param("exclude_seen", "query", {"type": "boolean", "default": True},
                       "leave out the user's training items"),
                _param("fallback", "query", {"type": "string", "enum": ["popular"]},
                       "answer an unknown user with the most popular items"),
            ]
        },
    )  # fmt: skip
    async def recommend(request: Request):
        user_id = request.path_params["user_id"]
        q = request.query_params
        k = _parse_k(q.get("k"), max_k)
        exclude_seen = _parse_bool(q.get("exclude_seen"), "exclude_seen")
        fallback = q.get("fallback", settings.fallback)
        if fallback not in (None, "popular"):
            raise InvalidParameterError(
                f"The 'fallback' parameter must be 'popular'. Got {fallback!r} instead."
            )
        m = _current(request)
        result = m.recommend(user_id, k=k, exclude_seen=exclude_seen, fallback=fallback)
        _finite(result, m, "recommendations")
        return _json(
            {
                "user": user_id,
                "version": m.version,
                "fallback": result.fallback,
                "items": result.to_list(),
            }
        )

    @app.post(
        "/recommendations",
        response_model=RecommendationsOut,
        summary="Top-k items for a new user from their interactions (fold-in)",
        responses={
            413: {"description": "Too many interactions"},
            422: {
                "description": "Bad k, no known item (without the fallback), or values that "
                "cannot be folded in"
            },
        },
    )
    async def recommend_new_user(request: Request, body: FoldInRequest):
        _check_k(body.k, max_k)
        if len(body.interactions) > max_n:
            return _json(
                {"detail": f"Too many interactions: {len(body.interactions)} (at most {max_n})."},
                413,
            )
        m = _current(request)
        pairs = [(str(x.item), x.value) for x in body.interactions]
        fallback = body.fallback or settings.fallback
        try:
            # values too large overflow on the way (warnings); the outcome is checked below
            with np.errstate(over="ignore", invalid="ignore"):
                result = m.recommend_for_interactions(
                    pairs, k=body.k, exclude_seen=body.exclude_seen, fallback=fallback
                )
        except WalsrecError as exc:  # the model is sound (it folded in at warm-up): the values
            raise InvalidParameterError(_fold_in_refusal(m, pairs, exc)) from None
        if not np.isfinite(result.scores).all():
            # load_model bounds the served factors' scores: the client's values did it
            raise InvalidParameterError(_fold_in_refusal(m, pairs, None))
        return _json(
            {
                "version": m.version,
                "fallback": result.fallback,
                "ignored": result.ignored,
                "items": result.to_list(),
            }
        )


def _add_similar_routes(app: FastAPI, settings: ServiceSettings) -> None:
    """``GET /similar/{item_id}``."""
    max_k = settings.max_k

    @app.get(
        "/similar/{item_id:path}",
        response_model=SimilarOut,
        summary="Items most similar to an item",
        responses={404: {"description": "Unknown item id"}, 422: {"description": "Bad k"}},
        openapi_extra={
            "parameters": [
                _param("item_id", "path", {"type": "string"}, "the item's original id"),
                _param("k", "query", {"type": "integer", "minimum": 1, "maximum": max_k,
                                      "default": 10}, "number of items"),
                _param("metric", "query", {"type": "string", "enum": ["cosine", "dot"],
                                           "default": "cosine"}, "similarity of the factors"),
                _param("method", "query", {"type": "string", "enum": ["factors", "item-item"],
                                           "default": "factors"},
                       "the factors, or the hybrid's item-item weights (EASE's B)"),
            ]
        },
    )  # fmt: skip
    async def similar(request: Request):
        item_id = request.path_params["item_id"]
        q = request.query_params
        k = _parse_k(q.get("k"), max_k)
        metric = q.get("metric", "cosine")
        method = q.get("method", "factors")
        m = _current(request)
        result = m.similar_items(item_id, k=k, metric=metric, method=method)
        _finite(result, m, "similar items")
        return _json(
            {"item": item_id, "version": m.version, "metric": metric, "items": result.to_list()}
        )


def run(
    settings: ServiceSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve with uvicorn until interrupted (``walsrec serve``)."""
    import uvicorn

    from walsrec.serving.export import resolve_export

    resolve_export(settings.model)  # a wrong path is one clear error, before uvicorn starts
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # no loadable export is one clear error too (exit 2), not a failed lifespan's traceback
    watcher = ModelWatcher(settings.model, settings.poll_interval)
    watcher.load_initial()
    uvicorn.run(
        create_app(settings, watcher=watcher),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
    )
