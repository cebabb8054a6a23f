"""TrainConfig declares each setting once, in its field's metadata: the rule validate
checks, and the ``walsrec train`` flag (and so docs/cli/train.md) made from it."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from walsrec.cli import build_parser
from walsrec.cli.training import CLI_ONLY
from walsrec.errors import InvalidParameterError
from walsrec.training.config import IDENTITY_KEYS, TrainConfig, load_config, option

ROOT = Path(__file__).resolve().parents[2]
TRAIN_DOCS = ROOT / "docs" / "cli" / "train.md"
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")}


def test_every_setting_has_a_flag_with_help_and_a_docs_entry():
    options = _options(_train_parser())
    docs = TRAIN_DOCS.read_text()
    for name, field in FIELDS.items():
        flag = option(name)
        assert flag in options, f"TrainConfig.{name} has no walsrec train {flag}"
        action = options[flag]
        assert action.dest == name
        assert action.default is None, f"{flag}: not given must mean the file's or the default"
        assert action.help and action.help == field.metadata["help"], flag
        assert "{default}" not in action.help, flag
        assert f"| `{flag}`" in docs, f"docs/cli/train.md does not document {flag}"


def test_every_flag_is_a_setting_or_a_documented_command_option():
    options = _options(_train_parser())
    docs = TRAIN_DOCS.read_text()
    settings = {option(name) for name in FIELDS}
    assert set(options) == settings | set(CLI_ONLY)
    for flag in CLI_ONLY:
        assert options[flag].dest not in FIELDS
        assert options[flag].help, flag
        assert f"| `{flag}`" in docs, f"docs/cli/train.md does not document {flag}"


def test_docs_cli_pages_are_what_the_generator_writes(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # the generator's width; restored after the test
    spec = importlib.util.spec_from_file_location("generate_cli", ROOT / "docs" / "generate_cli.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    parsers, helps = generate._subparsers(build_parser())
    for name, parser in parsers.items():
        page = (ROOT / "docs" / "cli" / f"{name}.md").read_text()
        assert page == generate.page(name, helps[name] or "", parser), (
            f"docs/cli/{name}.md is stale: run '.venv/bin/python docs/generate_cli.py'"
        )


def test_flags_parse_as_the_rules_say(capsys):
    parser = build_parser()
    common = ["train", "--data", "d", "--model-dir", "m"]
    args = parser.parse_args(
        [*common, "--embedding-dim", "8", "--init-std", "0.5", "--solver", "cg", "--seed", "-3"]
    )
    assert (args.embedding_dim, args.init_std, args.solver, args.seed) == (8, 0.5, "cg", -3)
    assert parser.parse_args([*common, "--alpha", "auto"]).alpha == "auto"
    args = parser.parse_args([*common, "--col-weights-from-counts", "log"])
    assert args.col_weights_from_counts == "log"
    for bad, said in (
        (["--embedding-dim", "8.5"], "argument --embedding-dim: invalid int value: '8.5'"),
        (["--solver", "lu"], "argument --solver: invalid choice: 'lu'"),
        (["--targets", "none"], "argument --targets: invalid choice: 'none'"),
    ):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*common, *bad])
        assert exc.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize("name", [n for n, f in FIELDS.items() if f.metadata["rule"] is not None])
def test_every_declared_rule_is_checked_and_named(name):
    with pytest.raises(
        InvalidParameterError,
        match=rf"^The '{name}' setting of train must be .+\. Got \[1\] instead\.$",
    ):
        load_config(model_dir="m", data="d", **{name: [1]})


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(seed="1"), r"The 'seed' setting of train must be an int\. Got '1' instead\.$"),
        (dict(num_rows=0), r"'num_rows' setting of train must be an int >= 1\. Got 0 instead"),
        (dict(threads=True), r"'threads' setting of train must be an int >= 1\. Got True"),
        (dict(init_std=0.0), r"'init_std' setting of train must be a finite number > 0\."),
        (dict(col_weight_factor=0), r"'col_weight_factor' .* must be a finite number > 0\."),
        (dict(row_weights=float("inf")), r"'row_weights' .* finite number >= 0\. Got inf"),
        (dict(dtype="float16"), r"'dtype' setting of train must be 'float32' or 'float64'\."),
        (dict(epsilon=0.0), r"'epsilon' setting of train must be a finite float > 0\. Got 0\.0"),
        (
            dict(confidence="bm"),
            r"'confidence' setting of train must be one of 'constant', 'linear', 'log', "
            r"'bm25', 'tfidf'\. Got 'bm' instead\.",
        ),
        (
            dict(early_stopping_metric="ndcg@5", k=4),
            r"'early_stopping_metric' setting of train must be one of precision@4, recall@4, "
            r"map@4, ndcg@4, auc, coverage, rmse, loss, rwse\. Got 'ndcg@5' instead\.",
        ),
        (
            dict(early_stopping_metric="auc", data=None, train_rows="r", train_cols="c"),
            r"'early_stopping_metric' setting of train is 'auc', a held-out metric, but there "
            r"is no eval data",
        ),
    ],
)
def test_messages_name_the_setting_the_rule_and_the_value(kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        load_config(**{"model_dir": "m", "data": "d", **kw})


def test_none_passes_for_optional_settings_only():
    cfg = load_config(model_dir="m", data="d", num_rows=None, threads=None)
    assert cfg.num_rows is None and cfg.threads is None
    with pytest.raises(InvalidParameterError, match=r"'embedding_dim' .* Got None instead"):
        TrainConfig(model_dir="m", data="d", embedding_dim=None).validate()


def test_numpy_numbers_are_stored_as_python_numbers():
    cfg = TrainConfig(
        model_dir="m", data="d", embedding_dim=np.int64(16), init_std=np.float32(0.5)
    ).validate()
    assert type(cfg.embedding_dim) is int and type(cfg.init_std) is float
    assert json.loads(json.dumps(cfg.to_dict()))["embedding_dim"] == 16


def test_the_identity_settings_are_declared_in_the_fields():
    assert set(IDENTITY_KEYS) == {
        *("data", "train_rows", "train_cols", "eval_rows", "eval_cols", "num_rows", "num_cols"),
        *("embedding_dim", "unobserved_weight", "unobserved_mass", "regularization"),
        *("regularization_exponent", "row_weights", "col_weights", "col_weights_from_counts"),
        *("col_weight_factor", "col_weight_exponent", "confidence", "alpha", "epsilon"),
        *("bm25_k1", "bm25_b", "targets", "solver", "cg_steps", "dtype", "seed", "batch_size"),
        "init_std",
        *("item_item", "blend_weight", "item_regularization"),
    }
