"""No module imports another package's private names (the layers themselves are
import-linter's contract in pyproject.toml, run by `make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "walsrec"

# Private imports across packages that remain (none: the Dask back end uses the public
# half-step of model/halfstep.py and metrics/partial.py); this set may only shrink.
DEBT: set[tuple[str, str, str]] = set()


def _package(parts: tuple[str, ...]) -> str | None:
    """walsrec's sub-package a dotted name (without 'walsrec') lies in; None for the
    root's own modules (shared base modules such as walsrec._files)."""
    return parts[0] if len(parts) > 1 else None


def _private_imports_across_packages() -> set[tuple[str, str, str]]:
    found = set()
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        own = _package(rel.with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            parts = node.module.split(".")
            if parts[0] != "walsrec" or len(parts) < 2:
                continue
            target = parts[1] if len(parts) > 2 or not parts[1].startswith("_") else None
            if target is None or target == own:
                continue
            for alias in node.names:
                private_name = alias.name.startswith("_") and not alias.name.startswith("__")
                if private_name or any(p.startswith("_") for p in parts[2:]):
                    found.add((rel.as_posix(), node.module, alias.name))
    return found


def test_no_private_name_is_imported_across_packages():
    found = _private_imports_across_packages()
    new = found - DEBT
    assert not new, f"private names imported across packages: {sorted(new)}"
    paid = DEBT - found
    assert not paid, f"no longer imported: remove from DEBT in tests/test_layers.py: {sorted(paid)}"


def test_the_scan_sees_a_private_import(tmp_path, monkeypatch):
    pkg = tmp_path / "walsrec"
    (pkg / "serving").mkdir(parents=True)
    (pkg / "serving" / "x.py").write_text("from walsrec.model.wals import _Side\n")
    (pkg / "model").mkdir()
    (pkg / "model" / "y.py").write_text("from walsrec.model.wals import _Side\n")
    (pkg / "z.py").write_text("from walsrec._files import load_npy\n")
    monkeypatch.setitem(globals(), "SRC", pkg)
    assert _private_imports_across_packages() == {("serving/x.py", "walsrec.model.wals", "_Side")}


def _private_names_defined(tree: ast.AST) -> set[str]:
    """Underscore names a module gives its classes: methods and ``self._x = ...``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in ast.walk(node):
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.Attribute) and isinstance(item.ctx, ast.Store):
                    if isinstance(item.value, ast.Name) and item.value.id == "self":
                        names.add(item.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _private_model_attributes_used_outside() -> set[tuple[str, str]]:
    """(module, name) where a module outside model/ reads or writes an underscore attribute
    that model/'s classes define (on anything but ``self``), unless its own package defines
    that name too (e.g. DaskWALS's own ``_check_initialized``)."""
    trees = {
        p.relative_to(SRC): ast.parse(p.read_text(encoding="utf-8")) for p in SRC.rglob("*.py")
    }
    by_package: dict[str | None, set[str]] = {}
    for rel, tree in trees.items():
        by_package.setdefault(_package(rel.with_suffix("").parts), set()).update(
            _private_names_defined(tree)
        )
    model_names = by_package.get("model", set())
    found = set()
    for rel, tree in trees.items():
        own = _package(rel.with_suffix("").parts)
        if own == "model":
            continue
        suspect = model_names - by_package.get(own, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in suspect:
                if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                    found.add((rel.as_posix(), node.attr))
    return found


def test_no_module_outside_model_touches_a_model_objects_private_attribute():
    found = _private_model_attributes_used_outside()
    assert not found, f"underscore attributes of model/ objects used elsewhere: {sorted(found)}"


def test_the_attribute_scan_sees_a_private_attribute(tmp_path, monkeypatch):
    pkg = tmp_path / "walsrec"
    (pkg / "model").mkdir(parents=True)
    (pkg / "model" / "wals.py").write_text(
        "class WALS:\n    def _solve(self):\n        self._cache = {}\n"
    )
    (pkg / "distributed").mkdir()
    (pkg / "distributed" / "tasks.py").write_text(
        "def f(model):\n    model._cache = {}\n    return model._solve()\n"
    )
    (pkg / "serving").mkdir()
    (pkg / "serving" / "ok.py").write_text(
        "class R:\n    def _solve(self):\n        return 1\n\ndef g(r):\n    return r._solve()\n"
    )
    monkeypatch.setitem(globals(), "SRC", pkg)
    assert _private_model_attributes_used_outside() == {
        ("distributed/tasks.py", "_cache"),
        ("distributed/tasks.py", "_solve"),
    }
