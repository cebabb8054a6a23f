"""A real cluster from the command line, as on Kubernetes, YARN or an HPC queue: ``dask
scheduler`` and two ``dask worker`` processes (no LocalCluster, no nanny to restart a
killed worker), then walsrec's commands against the scheduler's address (prepare, train,
evaluate, predict), one worker killed mid-train. docs/scaling.md ("A cluster from the
command line") gives the recipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

DASK = str(Path(sys.executable).with_name("dask"))
WALSREC = [sys.executable, "-m", "walsrec"]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(condition, what: str, timeout: float = 60.0, every: float = 0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _walsrec(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([*WALSREC, *args], capture_output=True, text=True, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"walsrec {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two workers, each a process of its own, started like a batch
    system's jobs; killed at the end."""
    sched_file = tmp_path / "scheduler.json"
    procs = {
        "scheduler": _start(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sched_file)],
            tmp_path / "scheduler.log",
        )
    }  # fmt: skip
    _wait_for(lambda: sched_file.is_file() and sched_file.stat().st_size > 0, "the scheduler")
    for name in ("a", "b"):
        procs[name] = _start(
            [DASK, "worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
             "--no-nanny", "--memory-limit", "2GiB", "--name", name,
             "--local-directory", str(tmp_path / f"worker-{name}")],
            tmp_path / f"worker-{name}.log",
        )  # fmt: skip
    address = json.loads(sched_file.read_text())["address"]
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
    try:
        yield address, procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_flow_on_a_cluster_started_from_the_command_line(cluster, data_dir, tmp_path):
    address, procs = cluster
    # prepare: the conftest's DATA_DIR (one process), from its rows cut into two files
    import pyarrow.csv as pcsv

    rows = pcsv.read_csv(data_dir.parent / "v.csv")
    half = rows.num_rows // 2
    parts = [tmp_path / "v-0.csv", tmp_path / "v-1.csv"]
    pcsv.write_csv(rows.slice(0, half), parts[0])
    pcsv.write_csv(rows.slice(half), parts[1])
    prepared = _walsrec("prepare", *map(str, parts), "--out", str(tmp_path / "data"),
                        "--user-col", "visitor_id", "--item-col", "article_id",
                        "--rating-col", "session_duration", "--rating-transform",
                        "scaled-median", "--eval-fraction", "0.2", "--split", "user",
                        "--dask", address)  # fmt: skip
    assert "read 20,000 rows from 2 file(s)" in prepared.stderr
    for name in ("vocab/users.txt", "vocab/items.txt", "train/native/user_items.data.npy",
                 "eval/users_for_item-00000-of-00001.tfrecord"):  # fmt: skip
        assert (tmp_path / "data" / name).read_bytes() == (data_dir / name).read_bytes(), name
    data_dir = tmp_path / "data"

    settings = ["--data", str(data_dir), "--embedding-dim", "6", "--dtype", "float64",
                "--regularization", "0.05", "--sweeps", "14", "--eval-every", "7",
                "--threads", "1", "--seed", "5", "--item-item", "off", "--quiet"]  # fmt: skip
    _walsrec("train", *settings, "--model-dir", str(tmp_path / "one"))

    model_dir = tmp_path / "model"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    train = subprocess.Popen(
        [*WALSREC, "train", *settings, "--model-dir", str(model_dir), "--dask", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # after the second sweep's checkpoint, while later sweeps run: SIGKILL worker b
    second = model_dir / "checkpoints" / "step-000000004"
    _wait_for(lambda: second.is_dir() or train.poll() is not None, "the second checkpoint", 120)
    assert train.poll() is None, "the run ended before a worker could be killed"
    procs["b"].send_signal(signal.SIGKILL)
    procs["b"].wait()
    out, err = train.communicate(timeout=180)
    assert train.returncode == 0, f"{out}\n{err}"
    assert "Trained 14 sweeps" in out
    exported = Path(out.split("Exported ", 1)[1].split()[0])
    assert exported.parent == model_dir / "export"

    from walsrec.serving.export import read_export

    one, on_dask = read_export(tmp_path / "one"), read_export(exported)
    assert on_dask.meta["format_version"] == 2  # written by the workers
    for x, y in (
        (one.user_factors, on_dask.user_factors),
        (one.item_factors, on_dask.item_factors),
    ):
        assert np.abs(x - y).max() / np.abs(x).max() < 1e-6

    # evaluate and predict on the one worker left
    done = _walsrec("evaluate", "--model", str(model_dir), "--data", str(data_dir),
                    "--dask", address, "--json")  # fmt: skip
    here = json.loads(_walsrec("evaluate", "--model", str(tmp_path / "one"), "--data",
                               str(data_dir), "--ease", "no", "--json").stdout)  # fmt: skip
    there = json.loads(done.stdout)
    assert there["model"]["ndcg@10"] == pytest.approx(here["model"]["ndcg@10"], rel=1e-6)
    _walsrec("predict", "--model", str(model_dir), "--out", str(tmp_path / "top"), "--k", "5",
             "--format", "course", "--dask", address, "--partitions", "3")  # fmt: skip
    _walsrec("predict", "--model", str(tmp_path / "one"), "--out", str(tmp_path / "one.txt"),
             "--k", "5", "--format", "course", "--quiet")  # fmt: skip
    shards = sorted((tmp_path / "top").glob("part-*"))
    assert len(shards) == 3
    lines = [line for s in shards for line in s.read_text().splitlines()]
    assert lines == (tmp_path / "one.txt").read_text().splitlines()
