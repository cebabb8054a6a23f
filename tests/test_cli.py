from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from walsrec.cli import build_parser, main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _csv(tmp_path, text):
    p = tmp_path / "in.csv"
    p.write_text(text)
    return str(p)


def test_prepare_prints_a_summary(tmp_path, capsys):
    src = _csv(tmp_path, "user,item,rating\na,x,1\nb,y,2\na,y,3\nb,x,1\n")
    code, out, err = _run(
        capsys,
        "prepare",
        src,
        "--out",
        str(tmp_path / "o"),
        "--rating-col",
        "rating",
        "--eval-fraction",
        "0.25",
        "--seed",
        "1",
    )
    assert code == 0
    assert "prepare: reading inputs" in err
    assert "rows read                       4" in out
    assert "train interactions" in out and (tmp_path / "o" / "meta.json").is_file()


BAD_INPUTS = [
    (
        "user,item\na,x\n",
        ["--rating-col", "score"],
        r"in.csv: column 'score' not found; the columns are 'user', 'item'.",
    ),
    (
        "user,item,rating\na,x,1\nb,x,abc\n",
        ["--rating-col", "rating"],
        r"in.csv, line 3, column 'rating': the rating 'abc' is not a number.",
    ),
    (
        "user,item,rating\na,x,NaN\n",
        ["--rating-col", "rating"],
        r"in.csv, line 2, column 'rating': the rating nan is not a finite number.",
    ),
    (
        "user,item,rating\na,x,inf\n",
        ["--rating-col", "rating"],
        r"in.csv, line 2, column 'rating': the rating inf is not a finite number.",
    ),
    (
        "user,item,rating\na,x,-3\n",
        ["--rating-col", "rating", "--rating-transform", "log1p"],
        r"in.csv, line 2, column 'rating': the rating -3.0 is negative, which the rating "
        "transform cannot take.",
    ),
    (
        "user,item\na,x\nb,y\n",
        ["--min-item-interactions", "2"],
        r"No interactions are left after filtering (2 distinct pairs read; "
        "min_user_interactions=1, min_item_interactions=2).",
    ),
    (
        'user,item\n"a\nb",x\n',
        [],
        r"in.csv, line 2, column 'user': the id 'a\nb' contains a newline or NUL character; "
        "ids must be one line.",
    ),
]


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("walsrec prepare: error: ")
    return lines[0]


# issue 15: each was a traceback (exit 1) or an error naming the wrong place
BAD_BYTES = [
    (
        "in.csv",
        b"user,item,rating\na,x,1\n\xff1,y,2\n",
        r"in.csv, line 3, column 'user': the value b'\xff1' is not UTF-8 text; convert the "
        "file to UTF-8.",
    ),
    (
        "in.csv.gz",
        b"user,item,rating\na,x,1\n",
        r"in.csv.gz: the name says gzip, but the file does not start as a gzip file does (its "
        "first bytes are b'user'); rename it without the compression suffix if it is not "
        "compressed.",
    ),
    (
        "in.csv",
        b"user,item,rating\na,x,1\nb,y,9007199254740993\n",
        r"in.csv, line 3, column 'rating': the rating '9007199254740993' is an integer beyond "
        "2**53, which float64 cannot hold exactly; give it as a floating-point number (such "
        "as 1.5e16) to have it rounded.",
    ),
    (
        "in.csv",
        b'user,item,rating,note\na,x,1,"two\nlines"\n\nb,y,1e39,\n',
        r"in.csv, line 5, column 'rating': the rating '1e39' is beyond float32's range "
        "(magnitudes up to 3.4e38), in which ratings are stored.",
    ),
    (
        "in.csv",
        b"user,item,rating\na,x,3e38\na,x,3e38\n",
        r"User 'a', item 'x': its 2 rows combine (duplicates='sum', rating transform 'none') "
        "to 6e+38, beyond float32's range (magnitudes up to 3.4e38), in which ratings are "
        "stored.",
    ),
]


@pytest.mark.parametrize("name,data,message", BAD_BYTES)
def test_bad_files_exit_2_with_one_line(tmp_path, capsys, name, data, message):
    src = tmp_path / name
    src.write_bytes(data)
    out = str(tmp_path / "o")
    code, _out, err = _run(
        capsys, "prepare", str(src), "--out", out, "--quiet", "--rating-col", "rating"
    )
    assert code == 2
    assert _one_error_line(err).endswith(message)
    assert sorted(os.listdir(tmp_path)) == [name]


def test_ratings_beyond_float32_are_skipped_with_on_bad_rows_skip(tmp_path, capsys):
    src = _csv(tmp_path, "user,item,rating\na,x,1\nb,y,1e39\nc,y,-1e308\n")
    args = ["prepare", src, "--out", str(tmp_path / "o"), "--quiet", "--rating-col", "rating"]
    code, out, err = _run(capsys, *args, "--on-bad-rows", "skip")
    assert code == 0, err
    assert "bad rows skipped                2  (rating beyond float32 range: 2)" in out


def test_os_errors_exit_2_with_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    src = _csv(tmp_path, "user,item\na,x\n")
    # DATA_DIR under a file: the operating system refuses to create it
    code, _out, err = _run(capsys, "prepare", src, "--out", f"{src}/o", "--quiet")
    assert code == 2
    assert _one_error_line(err).endswith(
        f"{src}/o: cannot write the prepared data ([Errno 17] File exists: '{src}')"
    )
    # an input that cannot be read (simulated: root reads every file)
    import walsrec.data.readers as readers

    def refuse(path):
        raise PermissionError(13, "Permission denied", path)

    with monkeypatch.context() as m:
        m.setattr(readers, "_open_raw", refuse)
        code, _out, err = _run(capsys, "prepare", src, "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2
    assert _one_error_line(err).endswith(f"error: {src}: Permission denied")
    # a full file system (simulated: numpy's short write names no file)
    import walsrec.data.prepare as prepare_module

    def short_write(*args):
        raise OSError("89990 requested and 26592 written")

    monkeypatch.setattr(prepare_module, "_write", short_write)
    code, _out, err = _run(capsys, "prepare", src, "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2
    assert _one_error_line(err).endswith(
        f"error: {tmp_path / 'o'}: cannot write the prepared data (89990 requested and 26592 "
        "written: a short write, is the file system full?)"
    )
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def _run_without_file_privileges(*argv) -> tuple[int, str]:
    """``walsrec ARGV`` in a child that permission bits apply to, even when run as root
    (CI runs as root): root's capabilities to bypass them are dropped from its bounding
    set with util-linux's setpriv."""
    cmd = [sys.executable, "-m", "walsrec", *argv]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without util-linux's setpriv to drop privileges")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, proc.stderr


def test_an_input_in_an_unsearchable_folder_or_a_folder_as_input_is_named(tmp_path):
    folder = tmp_path / "undir"
    folder.mkdir()
    src = _csv(folder, "user,item\na,x\n")
    folder.chmod(0)
    try:
        code, err = _run_without_file_privileges(
            "prepare", src, "--out", str(tmp_path / "o"), "--quiet"
        )
    finally:
        folder.chmod(0o755)
    assert code == 2
    assert _one_error_line(err).endswith(f"error: {src}: Permission denied")
    code, err = _run_without_file_privileges(
        "prepare", str(folder), "--out", str(tmp_path / "o"), "--quiet"
    )
    assert code == 2
    assert f"Input {str(folder)!r} is a directory; give its files, or a glob" in err


def test_unreadable_input_and_read_only_parent_exit_2(tmp_path):
    src = _csv(tmp_path, "user,item\na,x\n")
    os.chmod(src, 0)
    code, err = _run_without_file_privileges(
        "prepare", src, "--out", str(tmp_path / "o"), "--quiet"
    )
    assert code == 2
    assert src in _one_error_line(err) and "Permission denied" in err
    os.chmod(src, 0o644)
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    code, err = _run_without_file_privileges("prepare", src, "--out", str(parent / "o"), "--quiet")
    assert code == 2
    assert str(parent / "o") in _one_error_line(err), err
    assert "Permission denied" in err


@pytest.mark.parametrize("text,extra,message", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, text, extra, message):
    src = _csv(tmp_path, text)
    code, _out, err = _run(capsys, "prepare", src, "--out", str(tmp_path / "o"), "--quiet", *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("walsrec prepare: error: ")
    assert lines[0].endswith(message)
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]  # nothing left behind


def test_skip_bad_rows_says_how_many(tmp_path, capsys):
    src = _csv(tmp_path, "user,item,rating\na,x,1\nb,x,abc\nc,y\n")
    code, out, _ = _run(
        capsys,
        "prepare",
        src,
        "--out",
        str(tmp_path / "o"),
        "--quiet",
        "--rating-col",
        "rating",
        "--on-bad-rows",
        "skip",
    )
    assert code == 0
    assert (
        "bad rows skipped                2  (rating not a number: 1, wrong number of "
        "fields: 1)" in out
    )


def test_every_command_has_help_with_an_example():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {"prepare", "demo"}
    for name, cmd in sub.choices.items():
        assert cmd.description, name
        assert "example" in (cmd.epilog or ""), name
        assert f"walsrec {name}" in cmd.epilog, name


def test_python_dash_m_and_no_command():
    proc = subprocess.run(
        [sys.executable, "-m", "walsrec", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("walsrec ")
    proc = subprocess.run([sys.executable, "-m", "walsrec"], capture_output=True, text=True)
    assert proc.returncode == 2 and "prepare" in proc.stdout


def test_import_is_fast_and_lazy():
    code = (
        "import sys, time; t = time.perf_counter(); import walsrec; "
        "d = time.perf_counter() - t; "
        "assert 'numba' not in sys.modules and 'scipy' not in sys.modules, sys.modules.keys(); "
        "print(d)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) < 1.0


def test_demo_runs_twice(tmp_path, capsys):
    work = str(tmp_path / "demo")
    for _ in range(2):
        code, out, err = _run(capsys, "demo", "--workdir", work, "--interactions", "5000")
        assert code == 0, err
        assert "train interactions" in out
    assert (tmp_path / "demo" / "data" / "meta.json").is_file()


def test_public_names_resolve():
    import walsrec

    assert set(walsrec.__all__) == set(walsrec._LAZY) | {"__version__"}
    for name in walsrec.__all__:
        assert getattr(walsrec, name) is not None


def test_train_unobserved_weight_takes_a_number_or_auto(capsys):
    parser = build_parser()
    common = ["train", "--data", "d", "--model-dir", "m"]
    assert parser.parse_args([*common, "--unobserved-weight", "auto"]).unobserved_weight == "auto"
    assert parser.parse_args([*common, "--unobserved-weight", "0.25"]).unobserved_weight == 0.25
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*common, "--unobserved-weight", "lots"])
    assert exc.value.code == 2
    assert "expected a number or 'auto', got 'lots'" in capsys.readouterr().err


def test_train_alpha_takes_auto_and_unobserved_mass_a_positive_number(capsys):
    parser = build_parser()
    common = ["train", "--data", "d", "--model-dir", "m"]
    args = parser.parse_args([*common, "--alpha", "auto", "--unobserved-mass", "12.5"])
    assert (args.alpha, args.unobserved_mass) == ("auto", 12.5)
    assert parser.parse_args([*common, "--alpha", "3"]).alpha == 3.0
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*common, "--unobserved-mass", "0"])
    assert exc.value.code == 2
    assert "must be a number > 0, got 0.0" in capsys.readouterr().err


def test_train_regularization_takes_auto_or_a_number(capsys):
    parser = build_parser()
    common = ["train", "--data", "d", "--model-dir", "m"]
    assert parser.parse_args(common).regularization is None  # the config's default: auto
    assert parser.parse_args([*common, "--regularization", "auto"]).regularization == "auto"
    assert parser.parse_args([*common, "--regularization", "0.02"]).regularization == 0.02
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*common, "--regularization", "some"])
    assert exc.value.code == 2
    assert "expected a number or 'auto', got 'some'" in capsys.readouterr().err


def test_train_default_bm25_on_negative_values_says_which_setting(tmp_path, capsys):
    csv = tmp_path / "signed.csv"
    rows = [f"u{u},i{i},{(-1) ** (u + i) * 0.5}" for u in range(6) for i in range(5)]
    csv.write_text("user,item,rating\n" + "\n".join(rows) + "\n")
    data = tmp_path / "data"
    prep = ["prepare", str(csv), "--out", str(data), "--eval-fraction", "0", "--rating-col"]
    assert main([*prep, "rating"]) == 0
    capsys.readouterr()
    code = main(["train", "--data", str(data), "--model-dir", str(tmp_path / "m"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "confidence='bm25' needs non-negative values in 'user_items'. Got -0.5" in err[0]
    assert "--confidence constant" in err[0]
    constant = ["--confidence", "constant", "--sweeps", "1"]
    # the refused run left no settings behind: the corrected command starts afresh there
    assert not (tmp_path / "m" / "config.json").exists()
    code = main(["train", "--data", str(data), "--model-dir", str(tmp_path / "m"), *constant])
    assert code == 0


# ------------------------------------------ issue 15: the probe's and review's findings
TIME_ARGS = ["--time-col", "ts", "--split", "time", "--eval-fraction", "0.5"]


@pytest.mark.parametrize(
    "text,message",
    [
        (  # named line 2 ('100'), "neither a number nor a timestamp"
            "user,item,rating,ts\n1,10,3,100\n2,11,5,2020-13-45\n",
            r"in.csv, line 3, column 'ts': the time '2020-13-45' is neither a number (Unix "
            "seconds) nor a timestamp such as 2026-01-02T15:04:05.",
        ),
        (  # accepted
            "user,item,rating,ts\n1,10,3,100\n2,11,5,nan\n",
            r"in.csv, line 3, column 'ts': the time nan is not a finite number.",
        ),
    ],
)
def test_bad_times_exit_2_with_one_line(tmp_path, capsys, text, message):
    src = _csv(tmp_path, text)
    out = str(tmp_path / "o")
    code, _out, err = _run(
        capsys, "prepare", src, "--out", out, "--quiet", "--rating-col", "rating", *TIME_ARGS
    )
    assert code == 2
    assert _one_error_line(err).endswith(message)


@pytest.mark.parametrize("split", ["time", "random"])
def test_a_date_time_column_prepares(tmp_path, capsys, split):
    # was a traceback: "Unsupported cast from date32[day] to int64", exit 1
    src = _csv(
        tmp_path, "user,item,rating,ts\n1,10,3,2020-01-01\n1,11,3,2020-01-03\n2,11,5,2020-01-02\n"
    )
    args = ["--rating-col", "rating", *TIME_ARGS[:2], "--split", split, "--eval-fraction", "0.5"]
    code, out, err = _run(capsys, "prepare", src, "--out", str(tmp_path / "o"), "--quiet", *args)
    assert code == 0, err
    assert "rows read                       3" in out


def test_uint64_rating_beyond_2_63_exits_2_or_is_skipped(tmp_path, capsys):
    # was ArrowInvalid "Integer value 9223372036854775808 not in range", exit 1
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = str(tmp_path / "u.parquet")
    table = pa.table(
        {"user": [1, 2], "item": [10, 11], "rating": pa.array([1, 2**63], pa.uint64())}
    )
    pq.write_table(table, src)
    args = ["prepare", src, "--out", str(tmp_path / "o"), "--quiet", "--rating-col", "rating"]
    code, _out, err = _run(capsys, *args)
    assert code == 2
    assert _one_error_line(err).endswith(
        "u.parquet, row 2, column 'rating': the rating 9223372036854775808 is an integer "
        "beyond 2**53, which float64 cannot hold exactly; give it as a floating-point number "
        "(such as 1.5e16) to have it rounded."
    )
    code, out, err = _run(capsys, *args, "--on-bad-rows", "skip")
    assert code == 0, err
    assert "bad rows skipped                1  (integer rating beyond 2**53: 1)" in out


def test_combined_rating_beyond_float32_is_skipped_with_on_bad_rows_skip(tmp_path, capsys):
    # exited 2 with "User '2', item '11': its 2 rows combine ... to 6e+38" even with skip
    src = _csv(tmp_path, "user,item,rating\n1,10,3\n2,11,3e38\n2,11,3e38\n2,12,1\n")
    args = ["prepare", src, "--out", str(tmp_path / "o"), "--quiet", "--rating-col", "rating"]
    code, out, err = _run(capsys, *args, "--on-bad-rows", "skip")
    assert code == 0, err
    assert "bad rows skipped                2  (combined rating beyond float32 range: 2)" in out


def test_deeply_nested_json_line_exits_2_with_one_line(tmp_path, capsys):
    # 200,000 levels, unbalanced: a RecursionError traceback; balanced: a segmentation fault
    for i, tail in enumerate(["", "]" * 200_000]):
        src = tmp_path / f"in{i}.jsonl"
        src.write_text('{"user":' + "[" * 200_000 + tail + ',"item":1}\n')
        code, _out, err = _run(capsys, "prepare", str(src), "--out", str(tmp_path / "o"), "--quiet")
        assert code == 2
        assert _one_error_line(err).endswith(
            f"in{i}.jsonl, line 1: JSON nested deeper than 256 levels (arrays and objects "
            "within each other); a line of interactions is one object of plain fields."
        )


def test_the_parser_loads_no_numerical_library():
    """``walsrec --help`` (and every usage error) answers without numpy, scipy, numba or
    pyarrow: the parser reads its rules and choices from modules that import none."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom walsrec.cli.main import build_parser\n"
        "build_parser()\n"
        "print(sorted(x for x in ('numpy', 'scipy', 'numba', 'pyarrow') if x in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
