"""The HTTP service: a test client for the contract, and the real server process for the
rest (answers against brute force, hot reload, a corrupt export, concurrent clients)."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.data.vocabulary import Vocabulary
from walsrec.serving.export import list_exports, read_export, write_export

from .conftest import make_export

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from walsrec.serving.app import ModelWatcher, ServiceSettings, create_app  # noqa: E402
from walsrec.serving.model import load_model  # noqa: E402


def brute_top(export_path: Path, user_index: int, k: int) -> list[str]:
    """Top-k item ids of a user from the export's files, seen items excluded."""
    ex = read_export(export_path)
    scores = ex.item_factors.astype(np.float64) @ ex.user_factors[user_index].astype(np.float64)
    seen = set(ex.user_items[user_index].indices.tolist())
    order = sorted((j for j in range(len(scores)) if j not in seen), key=lambda j: (-scores[j], j))
    return [ex.items.id(j) for j in order[:k]]


# --------------------------------------------------------------------------- test client


@pytest.fixture
def client(tmp_path):
    make_export(tmp_path)
    app = create_app(ServiceSettings(str(tmp_path), poll_interval=0, max_interactions=50))
    with TestClient(app) as c:
        yield c


def test_recommendations_match_brute_force(client):
    m = client.app.state.watcher.current
    for user in (0, 3, 39):
        r = client.get(f"/recommendations/u{user}", params={"k": 5})
        assert r.status_code == 200
        body = r.json()
        assert body["version"] == m.version and body["fallback"] is False
        assert [x["item"] for x in body["items"]] == brute_top(m.path, user, 5)


def test_client_mistakes_are_404_422_413_never_500(client):
    r = client.get("/recommendations/nobody")
    assert (r.status_code, r.json()) == (404, {"detail": "Unknown user id 'nobody'."})
    assert client.get("/similar/nothing").json() == {"detail": "Unknown item id 'nothing'."}
    for k in ("0", "-1", "x", "1001"):
        r = client.get("/recommendations/u1", params={"k": k})
        assert r.status_code == 422, k
        assert isinstance(r.json()["detail"], str)
    assert client.get("/recommendations/u1?k=0").json() == {
        "detail": "The 'k' parameter must be an int in [1, 1000]. Got '0' instead."
    }
    assert client.get("/recommendations/u1?exclude_seen=maybe").status_code == 422
    assert client.get("/recommendations/u1?fallback=random").status_code == 422
    assert client.get("/similar/i1?metric=l2").status_code == 422
    too_many = {"interactions": [{"item": "i1"}] * 51}
    r = client.post("/recommendations", json=too_many)
    assert r.status_code == 413 and "at most 50" in r.json()["detail"]
    huge = b'{"interactions": [' + b'{"item": "i1"},' * 20_000 + b'{"item": "i2"}]}'
    r = client.post("/recommendations", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    for bad in (b"{oops", b'{"interactions": [{"item": "i1", "value": "nan"}]}', b"[]"):
        r = client.post(
            "/recommendations", content=bad, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, bad


def test_unknown_user_falls_back_to_popular_when_asked(client):
    m = client.app.state.watcher.current
    body = client.get("/recommendations/nobody", params={"fallback": "popular", "k": 3}).json()
    assert body["fallback"] is True
    assert [x["item"] for x in body["items"]] == m.popular(3).items


def test_fold_in_and_similar(client):
    m = client.app.state.watcher.current
    payload = {"interactions": [{"item": "i2", "value": 2.0}, {"item": 99}, {"item": "i5"}], "k": 4}
    body = client.post("/recommendations", json=payload).json()
    assert body["ignored"] == ["99"]
    want = m.recommend_for_interactions([("i2", 2.0), ("99", 1.0), ("i5", 1.0)], k=4)
    assert [x["item"] for x in body["items"]] == want.items
    sim = client.get("/similar/i3", params={"k": 3, "metric": "dot"}).json()
    assert [x["item"] for x in sim["items"]] == m.similar_items("i3", k=3, metric="dot").items


def test_fold_in_with_no_known_item_is_a_422_naming_the_items(client):
    # Regression: 200 with the first items by index, every score 0.0, beside "ignored"
    end = ": no interaction names an item the model knows, nothing to fold in."
    cases = [
        ([{"item": "zzz", "value": 1.0}], "Unknown item id 'zzz'" + end),
        ([{"item": "zzz"}, {"item": 7}, {"item": "zzz"}], "Unknown item ids 'zzz', '7'" + end),
        (
            [{"item": f"x{i}"} for i in range(9)],
            "Unknown item ids 'x0', 'x1', 'x2', 'x3', 'x4' and 4 more" + end,
        ),
        ([], "No interactions: nothing to fold in."),
    ]
    for interactions, detail in cases:
        r = client.post("/recommendations", json={"interactions": interactions, "k": 5})
        assert (r.status_code, r.json()) == (422, {"detail": detail})
    assert client.get("/health").status_code == 200


def test_fold_in_with_no_known_item_falls_back_to_popular_when_asked(tmp_path, client):
    m = client.app.state.watcher.current
    # per request, in the body (the GET's query parameter's twin)
    payload = {"interactions": [{"item": "zzz"}], "k": 3, "fallback": "popular"}
    body = client.post("/recommendations", json=payload).json()
    assert body == {
        "version": m.version,
        "fallback": True,
        "ignored": ["zzz"],
        "items": m.popular(3).to_list(),
    }
    r = client.post("/recommendations", json={**payload, "fallback": "random"})
    assert r.status_code == 422 and r.json()["detail"].startswith("body.fallback: ")
    # for the whole service
    make_export(tmp_path / "other")
    settings = ServiceSettings(str(tmp_path / "other"), poll_interval=0, fallback="popular")
    with TestClient(create_app(settings)) as c:
        m = c.app.state.watcher.current
        for interactions in ([{"item": "zzz", "value": 1.0}], []):
            body = c.post("/recommendations", json={"interactions": interactions, "k": 5}).json()
            assert body == {
                "version": m.version,
                "fallback": True,
                "ignored": [x["item"] for x in interactions],
                "items": m.popular(5).to_list(),
            }
        # one known item: a fold-in, as without the fallback
        payload = {"interactions": [{"item": "i2"}, {"item": "zzz"}], "k": 3}
        body = c.post("/recommendations", json=payload).json()
        assert body["fallback"] is False and body["ignored"] == ["zzz"]
        want = m.recommend_for_interactions([("i2", 1.0)], k=3)
        assert [x["item"] for x in body["items"]] == want.items


def test_model_and_docs(client):
    info = client.get("/model").json()
    m = client.app.state.watcher.current
    assert info["version"] == m.version and info["counts"]["n_users"] == 40
    assert info["metrics"] == {"ndcg@10": 0.5} and info["created"]
    assert client.get("/health").json() == {"status": "ok", "version": m.version}
    assert client.get("/docs").status_code == 200
    assert "/recommendations/{user_id}" in client.get("/openapi.json").json()["paths"]


def test_watcher_skips_a_broken_newest_export_and_takes_a_later_good_one(tmp_path):
    first = make_export(tmp_path, seed=1)
    w = ModelWatcher(str(tmp_path), poll_interval=0)
    w.load_initial()
    assert w.current.path == first
    broken = tmp_path / "export" / str(int(first.name) + 10)
    shutil.copytree(first, broken)
    (broken / "vocab" / "users.txt").write_text("only-one\n")
    assert w.check_once() is False
    assert w.current.path == first and broken.name in w.skipped
    assert w.check_once() is False  # not retried while its files are unchanged
    good = make_export(tmp_path, seed=2)
    assert int(good.name) > int(broken.name)
    assert w.check_once() is True and w.current.path == good


def test_service_starts_on_the_previous_export_when_the_newest_is_broken(tmp_path):
    good = make_export(tmp_path, seed=1)
    broken = tmp_path / "export" / str(int(good.name) + 5)
    shutil.copytree(good, broken)
    (broken / "item_factors.npy").write_bytes(b"")
    w = ModelWatcher(str(tmp_path), poll_interval=0)
    w.load_initial()
    assert w.current.path == good and broken.name in w.skipped


# ids: any text, "/" included


TRICKY_IDS = [
    "a/b",
    "a%2Fb",
    "a",
    "x/recommendations",
    "/lead",
    "trail/",
    "q?x=1#f",
    "sp ace",
    "é/ü",
]


def _export_with_ids(model_dir, ids, seed=0):
    rng = np.random.default_rng(seed)
    n = len(ids)
    return write_export(
        model_dir,
        user_factors=rng.standard_normal((n, 3)).astype(np.float32),
        item_factors=rng.standard_normal((n, 3)).astype(np.float32),
        users=Vocabulary(ids, "users"),
        items=Vocabulary(ids, "items"),
        user_items=sp.csr_matrix((n, n)),
        hyperparameters={"embedding_dim": 3, "unobserved_weight": 0.1, "regularization": 0.1},
    )


def test_ids_with_slashes_and_reserved_characters_are_answered(tmp_path):
    # Regression: "/recommendations/{user_id}" did not match an id holding "/" (sent as
    # %2F, which the server decodes before routing): 404 Not Found for a known user.
    path = _export_with_ids(tmp_path, [i for i in TRICKY_IDS if "%" not in i])
    m = load_model(path)
    with TestClient(create_app(ServiceSettings(str(tmp_path), poll_interval=0))) as c:
        for i in m.users.to_list():
            r = c.get(f"/recommendations/{quote(i, safe='')}", params={"k": 3})
            assert r.status_code == 200, (i, r.text)
            assert r.json()["user"] == i
            assert [x["item"] for x in r.json()["items"]] == m.recommend(i, k=3).items
            r = c.get(f"/similar/{quote(i, safe='')}", params={"k": 2, "metric": "dot"})
            assert r.status_code == 200, (i, r.text)
            assert r.json()["item"] == i
            assert [x["item"] for x in r.json()["items"]] == m.similar_items(
                i, 2, metric="dot"
            ).items
        # "/" is part of the id: a prefix or a longer path is another (unknown) id
        for unknown in ("a/b/c", "a/", "x"):
            r = c.get(f"/recommendations/{quote(unknown, safe='')}")
            assert (r.status_code, r.json()) == (404, {"detail": f"Unknown user id {unknown!r}."})
        r = c.get("/recommendations/a/b", params={"k": 1})  # an unencoded "/" works as well
        assert r.status_code == 200 and r.json()["user"] == "a/b"
        assert (
            c.post("/recommendations", json={"interactions": [{"item": "a/b"}]}).status_code == 200
        )


@contextmanager
def _uvicorn(app):
    """``app`` served by uvicorn on a free port, in a thread (its real path decoding)."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: server.started, 60), "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_server_decodes_an_encoded_slash_once(tmp_path):
    # Two users "a/b" and "a%2Fb": %2F is a slash, %252F a literal "%2F". Starlette's test
    # client decodes twice, so this runs under uvicorn.
    _export_with_ids(tmp_path, TRICKY_IDS)
    with _uvicorn(create_app(ServiceSettings(str(tmp_path), poll_interval=0))) as port:
        for raw, want in (
            ("a%2Fb", "a/b"),
            ("a%252Fb", "a%2Fb"),
            ("x%2Frecommendations", "x/recommendations"),
            ("%2Flead", "/lead"),
            ("trail%2F", "trail/"),
        ):
            status, body = _get(port, f"/recommendations/{raw}?k=2")
            assert (status, body["user"]) == (200, want), raw
            status, body = _get(port, f"/similar/{raw}?k=2")
            assert (status, body["item"]) == (200, want), raw


# --------------------------------------------------------------------------- broken exports


def _break_json(path):
    (path / "model.json").write_text('{"format_version": 1, "version": ')


def _break_version(path):
    meta = json.loads((path / "model.json").read_text())
    meta["version"] = "abc"
    (path / "model.json").write_text(json.dumps(meta))


def _break_factors(path):
    f = path / "item_factors.npy"
    f.write_bytes(f.read_bytes()[:-20])


def _overflow_factors(path):
    for name in ("user_factors.npy", "item_factors.npy"):  # finite, but u·v overflows float32
        np.save(path / name, np.load(path / name) * np.float32(1e20))


BREAKAGES = {
    # name: (how, words the public reason must contain)
    "invalid-json": (_break_json, "model.json: not valid JSON"),
    # refused by read_export's schema check of model.json; before it, the service swapped
    # it in and then failed every request on its version (int("abc"))
    "version-abc": (_break_version, "model.json: version: Input should be a valid integer"),
    "truncated-factors": (_break_factors, "item_factors.npy: "),
    "overflowing-factors": (_overflow_factors, "too large to score in float32"),
}


def _newer_copy(good: Path, offset: int) -> Path:
    path = good.parent / str(int(good.name) + offset)
    shutil.copytree(good, path)
    return path


def _every_endpoint_answers_with(c, version):
    assert c.get("/health").json() == {"status": "ok", "version": version}
    for method, url, body in (
        ("GET", "/model", None),
        ("GET", "/recommendations/u1?k=3", None),
        ("GET", "/similar/i1?k=3", None),
        ("POST", "/recommendations", {"interactions": [{"item": "i2"}], "k": 3}),
    ):
        r = c.request(method, url, json=body)
        assert r.status_code == 200, (url, r.text)
        assert r.json()["version"] == version, url


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_newer_export_is_refused_and_every_endpoint_keeps_the_old_model(
    tmp_path, monkeypatch, caplog, breakage
):
    how, reason_words = BREAKAGES[breakage]
    good = make_export(tmp_path, seed=1)
    loads = []
    real_load = load_model
    monkeypatch.setattr(
        "walsrec.serving.model.load_model", lambda p: loads.append(Path(p).name) or real_load(p)
    )
    with TestClient(create_app(ServiceSettings(str(tmp_path), poll_interval=0))) as c:
        w = c.app.state.watcher
        version = w.current.version
        broken = _newer_copy(good, 7)
        how(broken)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="walsrec.serving"):
            assert w.check_once() is False
        assert w.current.path == good
        _every_endpoint_answers_with(c, version)
        # one line naming the export; the public reason has file names but no server paths
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and str(broken) in lines[0] and "\n" not in lines[0], lines
        reason = c.get("/model").json()["skipped_exports"][broken.name]
        assert reason_words in reason and str(tmp_path) not in reason, reason
        # remembered: the same files are not loaded again on the next polls
        n = len(loads)
        assert w.check_once() is False and w.check_once() is False
        assert len(loads) == n
        # tried again once its files change, and a good newer export is then taken
        newest = make_export(tmp_path, seed=2)
        assert w.check_once() is True and w.current.path == newest
        _every_endpoint_answers_with(c, w.current.version)
        assert c.get("/model").json()["skipped_exports"] == {broken.name: reason}


def test_an_unexpected_error_while_loading_is_logged_with_traceback_and_kept_private(
    tmp_path, monkeypatch, caplog
):
    good = make_export(tmp_path, seed=1)
    real_load = load_model

    def load(path):
        if Path(path).name != good.name:
            raise RuntimeError(f"internal detail about {path}")
        return real_load(path)

    monkeypatch.setattr("walsrec.serving.model.load_model", load)
    with TestClient(create_app(ServiceSettings(str(tmp_path), poll_interval=0))) as c:
        w = c.app.state.watcher
        broken = _newer_copy(good, 3)
        with caplog.at_level(logging.WARNING, logger="walsrec.serving"):
            assert w.check_once() is False
        _every_endpoint_answers_with(c, w.current.version)
        [record] = caplog.records
        assert str(broken) in record.getMessage() and "RuntimeError" in record.getMessage()
        assert record.exc_info is not None and "internal detail" in caplog.text  # traceback
        reason = c.get("/model").json()["skipped_exports"][broken.name]
        assert reason == "unexpected RuntimeError while loading (see the service log)."
        assert w.check_once() is False and len(caplog.records) == 1  # not retried


def test_the_service_starts_on_the_previous_export_when_the_newest_has_a_bad_version(tmp_path):
    good = make_export(tmp_path, seed=1)
    _break_version(_newer_copy(good, 2))
    with TestClient(create_app(ServiceSettings(str(tmp_path), poll_interval=0))) as c:
        _every_endpoint_answers_with(c, c.app.state.watcher.current.version)
        assert c.app.state.watcher.current.path == good


def test_model_info_names_the_export_without_server_paths(tmp_path):
    good = make_export(tmp_path, seed=1)
    _break_factors(_newer_copy(good, 1))
    with TestClient(create_app(ServiceSettings(str(tmp_path), poll_interval=0))) as c:
        c.app.state.watcher.check_once()
        r = c.get("/model")
        info = r.json()
        assert info["export"] == good.name and info["version"] == int(good.name)
        assert info["watching"] is True and "path" not in info
        assert str(tmp_path) not in r.text and "/tmp" not in r.text


def test_model_info_shows_metrics_that_are_not_finite_as_null(tmp_path):
    # json.dumps(allow_nan=False) refused a NaN metric in model.json: /model was a bare 500
    path = make_export(tmp_path, seed=1)
    meta = json.loads((path / "model.json").read_text())
    meta["metrics"] = {"auc": float("nan"), "ndcg@10": 0.5}
    (path / "model.json").write_text(json.dumps(meta))
    with TestClient(create_app(ServiceSettings(str(path), poll_interval=0))) as c:
        r = c.get("/model")
        assert r.status_code == 200 and r.json()["metrics"] == {"auc": None, "ndcg@10": 0.5}


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_scores_that_are_not_finite_are_a_short_500_not_garbage(tmp_path, caplog):
    # load_model refuses such an export; a model built directly shows the service's last guard
    from walsrec.serving.export import read_export
    from walsrec.serving.model import Recommender

    path = make_export(tmp_path, seed=1)
    _overflow_factors(path)
    w = ModelWatcher(str(path), poll_interval=0)
    w.current, w.loaded_at = Recommender(read_export(path)), time.time()
    detail = (
        f"The model (version {w.current.version}) gives scores that are not finite (NaN or "
        "infinity) for this request: its factors overflow float32."
    )
    with TestClient(create_app(ServiceSettings(str(path), poll_interval=0), watcher=w)) as c:
        with caplog.at_level(logging.ERROR, logger="walsrec.serving"):
            for _ in range(2):
                for url in ("/recommendations/u1?k=30", "/similar/i1?k=29&metric=dot"):
                    r = c.get(url)
                    assert (r.status_code, r.json()) == (500, {"detail": detail}), url
        assert len(caplog.records) == 2  # once per model and endpoint, not per request
        assert c.get("/health").status_code == 200


@pytest.fixture(scope="module")
def linear_values_model_dir(data_dir, tmp_path_factory):
    """MODEL_DIR of a model trained with confidence "linear" and targets "values"."""
    from walsrec.training import train

    model_dir = tmp_path_factory.mktemp("linear") / "model"
    train(
        data=str(data_dir),
        model_dir=str(model_dir),
        confidence="linear",
        targets="values",
        sweeps=2,
        embedding_dim=8,
        threads=1,
    )
    return model_dir


TOO_LARGE = (
    r"The interactions' values are too large to fold in \(largest {}, repeated items added "
    r"up\): the new user's {}\. Send values on the scale of the training data\."
)


def test_fold_in_values_too_large_for_float32_are_a_422_naming_them(linear_values_model_dir):
    # Regression: a value of 3.16e16 or more made the fold-in's solve raise
    # SingularSystemError, unhandled: a bare 500
    settings = ServiceSettings(str(linear_values_model_dir), poll_interval=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        m = c.app.state.watcher.current
        item = m.items.id(0)
        ok = c.post("/recommendations", json={"interactions": [{"item": item, "value": 2.0}]})
        assert ok.status_code == 200
        unsolvable = TOO_LARGE.format(r"{}", "least-squares system cannot be solved in float32")
        for values, shown in (
            ([3.16e16], "3.16e\\+16"),
            ([1e38], "1e\\+38"),
            ([1e39], "1e\\+39"),  # beyond float32 itself
            ([3e38, 3e38], "6e\\+38"),  # repeated items add up beyond float32
        ):
            payload = {"interactions": [{"item": item, "value": v} for v in values]}
            r = c.post("/recommendations", json=payload)
            assert r.status_code == 422, values
            assert re.fullmatch(unsolvable.format(shown), r.json()["detail"]), r.json()
        # an unknown item's value is ignored, as the item is
        payload = {"interactions": [{"item": item, "value": 1.0}, {"item": "?", "value": 1e39}]}
        r = c.post("/recommendations", json=payload)
        assert r.status_code == 200 and r.json()["ignored"] == ["?"]
        r = c.post("/recommendations", json={"interactions": [{"item": item, "value": -1.0}]})
        assert r.status_code == 422
        assert r.json()["detail"] == (
            "The interactions' values must be non-negative for this model (it weighs "
            "interactions by their values). Got -1 instead."
        )
        assert c.get("/health").status_code == 200


def test_fold_in_scores_that_overflow_are_a_422_naming_the_values(tmp_path):
    # Regression: a fold-in whose factor is finite but whose scores overflow float32 was
    # the _ScoresNotFinite 500 that blames the model's factors; here they are sound (item
    # i0's factor is short, so a large value on it makes a long user factor)
    item_factors = np.zeros((6, 2), dtype=np.float32)
    item_factors[0] = [1e-2, 0.0]
    item_factors[1:] = [100.0, 1.0]
    path = write_export(
        tmp_path,
        user_factors=np.ones((3, 2), dtype=np.float32),
        item_factors=item_factors,
        users=Vocabulary(["u0", "u1", "u2"], "users"),
        items=Vocabulary([f"i{j}" for j in range(6)], "items"),
        user_items=sp.csr_matrix(np.eye(3, 6)),
        hyperparameters={
            "embedding_dim": 2,
            "unobserved_weight": 0.0,
            "regularization": 1e-6,
            "confidence": "constant",
            "targets": "values",
        },
    )
    with TestClient(create_app(ServiceSettings(str(path), poll_interval=0))) as c:
        r = c.post("/recommendations", json={"interactions": [{"item": "i0", "value": 1e34}]})
        assert r.status_code == 200  # scores near 1e38: still finite
        r = c.post("/recommendations", json={"interactions": [{"item": "i0", "value": 1e35}]})
        assert r.status_code == 422
        detail = TOO_LARGE.format("1e\\+35", "scores overflow float32")
        assert re.fullmatch(detail, r.json()["detail"]), r.json()


# --------------------------------------------------------------------------- real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, timeout: float = 10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def _wait_for(predicate, seconds: float, step: float = 0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="module")
def server(trained_model_dir, tmp_path_factory):
    """``python -m walsrec serve`` on a copy of the trained MODEL_DIR, on a free port."""
    model_dir = tmp_path_factory.mktemp("served") / "model"
    shutil.copytree(trained_model_dir, model_dir)
    port = _free_port()
    log_path = model_dir.parent / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "walsrec", "serve", "--model", str(model_dir),
             "--host", "127.0.0.1", "--port", str(port), "--poll-interval", "0.3",
             "--max-interactions", "100", "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:

        def up():
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                return _get(port, "/health", timeout=1.0)[0] == 200
            except OSError:
                return False

        assert _wait_for(up, 90, 0.2), log_path.read_text()
        yield port, model_dir, proc, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_server_answers_equal_brute_force(server):
    port, model_dir, _, _ = server
    ex = read_export(model_dir)
    for user in (0, 5, 77, len(ex.users) - 1):
        uid = ex.users.id(user)
        status, body = _get(port, f"/recommendations/{uid}?k=10")
        assert status == 200
        assert [x["item"] for x in body["items"]] == brute_top(
            model_dir / "export" / str(body["version"]), user, 10
        )
    assert _get(port, "/recommendations/no-such-user")[0] == 404
    assert _get(port, f"/recommendations/{ex.users.id(0)}?k=0")[0] == 422
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"interactions": [{"item": ex.items.id(0)}] * 101}).encode()
    conn.request("POST", "/recommendations", body, {"content-type": "application/json"})
    assert conn.getresponse().status == 413
    conn.close()


def _client_loop(port, user_ids, item_ids, n, errors, versions, seed):
    rng = np.random.default_rng(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i in range(n):
            kind = i % 3
            if kind == 0:
                conn.request("GET", f"/recommendations/{rng.choice(user_ids)}?k=10")
            elif kind == 1:
                body = {"interactions": [{"item": str(x)} for x in rng.choice(item_ids, 5)]}
                conn.request(
                    "POST", "/recommendations", json.dumps(body),
                    {"content-type": "application/json"},
                )  # fmt: skip
            else:
                conn.request("GET", f"/similar/{rng.choice(item_ids)}?k=5")
            r = conn.getresponse()
            payload = r.read()
            if r.status != 200:
                errors.append((r.status, payload[:200]))
            else:
                versions.add(json.loads(payload)["version"])
    except Exception as exc:  # reported by the test, not lost in the thread
        errors.append(repr(exc))
    finally:
        conn.close()


def _clients(port, model_dir, threads=8, n=50):
    ex = read_export(model_dir)
    users, items = ex.users.to_list(), ex.items.to_list()
    errors, versions = [], set()
    pool = [
        threading.Thread(target=_client_loop, args=(port, users, items, n, errors, versions, s))
        for s in range(threads)
    ]
    return pool, errors, versions


def test_concurrent_clients_get_no_errors(server):
    port, model_dir, proc, log_path = server
    pool, errors, _versions = _clients(port, model_dir)
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in pool)
    assert errors == [], log_path.read_text()[-2000:]
    assert proc.poll() is None


def _new_export(model_dir: Path, base: Path, scale: float) -> Path:
    """An export with the vocabularies of ``base`` and its item factors permuted, rescaled."""
    ex = read_export(base)
    rng = np.random.default_rng(int(scale * 100))
    return write_export(
        model_dir,
        user_factors=ex.user_factors,
        item_factors=ex.item_factors[rng.permutation(len(ex.items))] * scale,
        users=Vocabulary(ex.users.ids, "users"),
        items=Vocabulary(ex.items.ids, "items"),
        user_items=ex.user_items,
        hyperparameters=ex.meta["hyperparameters"],
        metrics={"note": scale},
    )


def test_hot_reload_under_load_and_a_corrupt_export_is_skipped(server):
    port, model_dir, proc, log_path = server
    old = _get(port, "/model")[1]["version"]
    old_path = model_dir / "export" / str(old)

    # a new export while clients are running: no errors, answers from the old or new one
    pool, errors, versions = _clients(port, model_dir, threads=4, n=60)
    for t in pool:
        t.start()
    new_path = _new_export(model_dir, old_path, 2.0)
    new = int(new_path.name)
    assert new > old
    changed = _wait_for(lambda: _get(port, "/model")[1]["version"] == new, 15)
    for t in pool:
        t.join(timeout=120)
    assert changed, log_path.read_text()[-2000:]
    assert errors == []
    assert versions <= {old, new}
    ex = read_export(new_path)
    _status, body = _get(port, f"/recommendations/{ex.users.id(3)}?k=10")
    assert body["version"] == new and [x["item"] for x in body["items"]] == brute_top(
        new_path, 3, 10
    )

    # a corrupt export (truncated user_factors.npy) in a newer numbered directory
    corrupt = model_dir / "export" / str(new + 100)
    shutil.copytree(new_path, corrupt)
    f = corrupt / "user_factors.npy"
    f.write_bytes(f.read_bytes()[:-64])
    assert _wait_for(lambda: corrupt.name in _get(port, "/model")[1]["skipped_exports"], 15)
    info = _get(port, "/model")[1]
    assert info["version"] == new
    assert "user_factors.npy" in info["skipped_exports"][corrupt.name]
    assert _get(port, f"/recommendations/{ex.users.id(3)}?k=10")[1]["version"] == new

    # and a good one after it is taken
    newest = _new_export(model_dir, new_path, 3.0)
    assert int(newest.name) > int(corrupt.name)
    assert _wait_for(lambda: _get(port, "/health")[1]["version"] == int(newest.name), 15)
    assert [p.name for p in list_exports(model_dir / "export")][-2:] == [corrupt.name, newest.name]
    assert proc.poll() is None


def test_an_export_given_directly_is_served_without_watching(tmp_path):
    path = make_export(tmp_path, seed=3)
    with TestClient(create_app(ServiceSettings(str(path), poll_interval=0.1))) as c:
        info = c.get("/model").json()
        assert info["watching"] is False and info["export"] == path.name
        make_export(tmp_path, seed=4)
        assert c.app.state.watcher.check_once() is False


def test_serve_with_a_wrong_path_is_one_line_and_exit_2(tmp_path, capsys):
    from walsrec.cli import main

    code = main(["serve", "--model", str(tmp_path / "nothing"), "--port", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "neither an export" in err
