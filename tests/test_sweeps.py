"""Resumable sweeps (``fastmp.sweeps``): the batch log and its resume semantics, the
executors (1 worker, 2 worker processes, a real Dask ``LocalCluster``) giving identical
numbers, a worker lost mid-run costing only its batch, a CLI run killed with SIGKILL and
rerun, and the one-line errors of ``fastmp sweep``."""
from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from fastmp import sweeps
from fastmp.cli import main
from fastmp.executors import ProcessExecutor, SerialExecutor
from fastmp.progress import ProgressBar
from fastmp.sweeps import BatchLog, SweepError, run_batches, sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: two linear points (exact rank decisions: fast) of the middle/first FFN layer
LINEAR = dict(models=["ffn:4-8-8-6"], generators=["budget:param=W2", "budget:param=W1"],
              ms=[4], trials=24, batch_size=6, seed=5)
#: linear points plus a polynomial one (certified Newton search) and a Theorem 3.5 one
MIXED = dict(models=["lrnn:n=8,T=4,b=1,d=4"], generators=["rows:param=W,k=5", "thm35",
                                                          "thm31"],
             ms=[4], trials=6, batch_size=2, seed=3, starts=16)


def _numbers(df):
    """The result columns (everything but timings)."""
    return df.drop(columns=["seconds"]).reset_index(drop=True)


def _batches(path):
    df = pd.read_json(path, lines=True)
    return df.drop(columns=["seconds"]).sort_values("key").reset_index(drop=True)


# ---------------------------------------------------------------------------- library
def test_sweep_writes_tidy_tables_and_resumes(tmp_path):
    df = sweep(out=tmp_path, **LINEAR)
    assert df.attrs["batches_run"] == 8 and df.attrs["batches_resumed"] == 0
    csv = pd.read_csv(tmp_path / "sweep.csv")
    assert list(csv["generator"]) == ["budget:param=W2", "budget:param=W1"]
    for col in sweeps.COLUMNS + ("n_batches", "n_alloc", "seconds"):
        assert col in csv.columns
    assert (csv["trials"] == 24).all() and (csv["n_batches"] == 4).all()
    assert (csv["n_alloc"] == 24).all()                       # one allocation per trial
    assert (csv["mp"] == csv["matches"] / csv["trials"]).all()
    assert ((csv["ci_low"] <= csv["mp"]) & (csv["mp"] <= csv["ci_high"])).all()
    log = pd.read_json(tmp_path / "sweep.batches.jsonl", lines=True)
    assert len(log) == 8 and set(log["key"]) == {f"{p}/{b}" for p in (0, 1) for b in range(4)}
    assert list(log.groupby("point")["matches"].sum()) == list(csv["matches"])
    manifest = json.loads((tmp_path / "sweep.manifest.json").read_text())
    assert manifest["args"]["trials"] == 24 and len(manifest["hash"]) == 64

    again = sweep(out=tmp_path, **LINEAR)
    assert again.attrs["batches_run"] == 0 and again.attrs["batches_resumed"] == 8
    pd.testing.assert_frame_equal(_numbers(again), _numbers(df))
    assert len(pd.read_json(tmp_path / "sweep.batches.jsonl", lines=True)) == 8


def test_results_do_not_depend_on_batch_size(tmp_path):
    a = sweep(out=tmp_path / "a", **LINEAR)
    b = sweep(out=tmp_path / "b", **dict(LINEAR, batch_size=24))
    assert b.attrs["batches_run"] == 2
    pd.testing.assert_frame_equal(_numbers(a).drop(columns="n_batches"),
                                  _numbers(b).drop(columns="n_batches"))


def test_torn_and_missing_batches_are_redone(tmp_path):
    full = sweep(out=tmp_path, **LINEAR)
    path = tmp_path / "sweep.batches.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    # drop two finished batches and leave half a line, as a kill -9 during a write does
    path.write_bytes(b"".join(lines[:5]) + lines[5][:17])
    again = sweep(out=tmp_path, **LINEAR)
    assert again.attrs["batches_run"] == 3 and again.attrs["batches_resumed"] == 5
    assert again.attrs["batches_dropped"] == 1
    pd.testing.assert_frame_equal(_numbers(again), _numbers(full))
    assert len(path.read_bytes().splitlines()) == 8
    assert all(json.loads(line)["key"] for line in path.read_bytes().splitlines())


def test_different_arguments_are_refused_and_restart_discards(tmp_path):
    sweep(out=tmp_path, **LINEAR)
    before = (tmp_path / "sweep.batches.jsonl").read_bytes()
    with pytest.raises(SweepError, match=r"different arguments \(trials: 24 before, 30 now\)"):
        sweep(out=tmp_path, **dict(LINEAR, trials=30))
    assert (tmp_path / "sweep.batches.jsonl").read_bytes() == before   # nothing lost
    df = sweep(out=tmp_path, restart=True, **dict(LINEAR, trials=30))
    assert df.attrs["batches_run"] == 10 and (df["trials"] == 30).all()
    # another name is another run in the same directory
    other = sweep(out=tmp_path, name="other", **LINEAR)
    assert other.attrs["batches_run"] == 8 and (tmp_path / "other.csv").exists()


def test_a_second_writer_is_locked_out(tmp_path):
    with BatchLog(str(tmp_path), "sweep", {"a": 1}):
        with pytest.raises(SweepError, match="another fastmp run"):
            BatchLog(str(tmp_path), "sweep", {"a": 1}).open()
    with BatchLog(str(tmp_path), "sweep", {"a": 1}):  # released on close
        pass


def test_full_disk_is_one_clear_error_and_loses_nothing(tmp_path, monkeypatch):
    full = sweep(out=tmp_path / "ref", **LINEAR)
    real_write, calls = os.write, []

    def write(fd, data):
        calls.append(fd)
        if len(calls) == 4:                 # the 4th batch: half of it fits, then ENOSPC
            real_write(fd, bytes(data)[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(sweeps.os, "write", write)
    with pytest.raises(SweepError, match="cannot write to .*No space left on device"):
        sweep(out=tmp_path / "run", **LINEAR)
    monkeypatch.setattr(sweeps.os, "write", real_write)
    again = sweep(out=tmp_path / "run", **LINEAR)
    assert again.attrs["batches_resumed"] == 3 and again.attrs["batches_dropped"] == 1
    pd.testing.assert_frame_equal(_numbers(again), _numbers(full))


def test_sweep_validates_arguments(tmp_path):
    bad = [
        (dict(generators=["nope"]), "unknown generator"),
        (dict(generators=["rows:param=W2"]), "needs k"),
        (dict(generators=["rows:param=W2,k=x"]), "k must be an integer"),
        (dict(generators=["budget:param=W2,size=3"]), "unknown option"),
        (dict(generators=["thm35"]), "does not apply to ffn:4-8-8-6"),
        (dict(generators=["rows:param=W2,k=1"]), "cannot place r = 24"),
        (dict(ms=[0]), "m must be >= 1"),
        (dict(trials=0), "trials"),
        (dict(batch_size=5, trials_per_alloc=2), "multiple of trials_per_alloc"),
        (dict(models=["ffn:4-8-8-6", "ffn:4-8-8-6"]), "model is given twice"),
        (dict(models=["lrnn:n=2,T=4,b=1,d=1"]), "exceeds n"),
    ]
    for change, message in bad:
        with pytest.raises((ValueError, TypeError), match=message):
            sweep(out=tmp_path / "x", **dict(LINEAR, **change))
    assert not (tmp_path / "x").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SweepError, match="cannot write to"):
        sweep(out=blocker / "sub", **LINEAR)


def test_trials_per_alloc_groups_whole_allocations(tmp_path):
    df = sweep(out=tmp_path, **dict(LINEAR, trials=25, trials_per_alloc=3, batch_size=6))
    assert (df["n_alloc"] == 9).all() and (df["n_batches"] == 5).all()   # 8 x 3 + 1
    assert (df["trials"] == 25).all()
    log = _batches(tmp_path / "sweep.batches.jsonl")
    assert sorted(set(log["first_trial"])) == [0, 6, 12, 18, 24]


# ---------------------------------------------------------------------------- executors
def test_one_worker_two_workers_and_dask_give_identical_results(tmp_path):
    distributed = pytest.importorskip("distributed")
    one = sweep(out=tmp_path / "w1", **MIXED)
    assert [m.split(" ")[0] for m in one["method"]] == ["newton", "theorem35", "linear"]
    two = sweep(out=tmp_path / "w2", workers=2, **MIXED)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        dask = sweep(out=tmp_path / "dask", client=client, **MIXED)
    for other in (two, dask):
        assert other.attrs["batches_run"] == one.attrs["batches_run"] == 9
        pd.testing.assert_frame_equal(_numbers(other), _numbers(one))
    ref = _batches(tmp_path / "w1" / "sweep.batches.jsonl")
    for d in ("w2", "dask"):
        pd.testing.assert_frame_equal(_batches(tmp_path / d / "sweep.batches.jsonl"), ref)


def _square_or_die_once(arg):
    """Task of the worker-loss test: the first attempt at ``value == 3`` kills its own
    process (SIGKILL, as the OOM killer would); every other call returns a record."""
    value, marker = arg
    if value == 3 and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    return {"value": value, "square": value * value, "pid": os.getpid()}


def test_lost_worker_costs_only_its_batch(tmp_path):
    marker = str(tmp_path / "died")
    tasks = [(f"0/{v}", _square_or_die_once, (v, marker), 1) for v in range(8)]
    executor = ProcessExecutor(2)
    with BatchLog(str(tmp_path), "loss", {"k": 1}) as log:
        ran = run_batches(log, tasks, executor)
    assert ran == 8 and executor.lost == 1 and os.path.exists(marker)
    recs = [json.loads(line) for line in (tmp_path / "loss.batches.jsonl").read_text().splitlines()]
    assert sorted(r["value"] for r in recs) == list(range(8))     # each batch exactly once
    assert all(r["square"] == r["value"] ** 2 for r in recs)
    assert len({r["pid"] for r in recs}) >= 2                      # a replacement worker


def test_batch_errors_propagate_without_retry(tmp_path):
    def fail(arg):
        raise ValueError(f"bad batch {arg}")

    with BatchLog(str(tmp_path), "err", {}) as log:
        with pytest.raises(ValueError, match="bad batch 1"):
            run_batches(log, [("0/0", fail, 1, 1)], SerialExecutor())
        assert log.records == {}


# ---------------------------------------------------------------------------- progress
def test_progress_bar_shows_rate_and_time_left():
    stream = io.StringIO()
    bar = ProgressBar(10, 1000, "fastmp sweep", stream, min_interval=0)
    bar.resumed(2, 200)
    for _ in range(8):
        time.sleep(0.002)
        bar.update(1, 100)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 8 and "3/10 batches" in lines[0] and "10/10 batches 100%" in lines[-1]
    assert all("trials/s" in line and line.endswith(" left") for line in lines)
    assert "0s left" in lines[-1]
    assert "?" not in lines[0]               # a time left estimate from the first batch


# ---------------------------------------------------------------------------- CLI
SWEEP_ARGS = ["sweep", "--model", "lrnn:n=8,T=4,b=1,d=4", "--gen", "rows:param=W,k=5",
              "--gen", "rows:param=W,k=6", "--m", "4", "--trials", "16", "--batch-size", "1",
              "--starts", "16", "--seed", "7"]


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(capsys, *argv, contains=""):
    rc, out, err = _cli(capsys, *argv)
    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmp: error: "), err
    assert "Traceback" not in err and contains.lower() in err.lower(), err
    return lines[0]


def test_cli_sweep_runs_and_resumes(capsys, tmp_path):
    argv = ["sweep", "--model", "ffn:4-8-8-6", "--gen", "budget:param=W2", "--m", "4",
            "--trials", "12", "--batch-size", "4", "--out", str(tmp_path)]
    rc, out, err = _cli(capsys, *argv)
    assert rc == 0 and err == "", err
    assert "batches: 3 computed, 0 resumed" in out and f"wrote {tmp_path / 'sweep.csv'}" in out
    rc, out2, err = _cli(capsys, *argv)
    assert rc == 0 and "batches: 0 computed, 3 resumed" in out2
    assert out2.splitlines()[:2] == out.splitlines()[:2]
    rc, out, err = _cli(capsys, *argv, "--progress")
    assert rc == 0 and "3/3 batches 100%" in err and "left" in err


def test_cli_sweep_errors(capsys, tmp_path):
    base = ["sweep", "--model", "ffn:4-8-8-6", "--gen", "budget:param=W2", "--m", "4",
            "--trials", "4", "--out"]
    _one_line_error(capsys, *base, str(tmp_path / "a"), "--scheduler", "tcp://127.0.0.1:9",
                    "--connect-timeout", "0.5", contains="cannot reach the Dask scheduler")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(capsys, *base, str(blocker / "d"), contains="cannot write to")
    _one_line_error(capsys, "sweep", "--model", "lrnn:n=2,T=4,b=1,d=1", "--gen", "thm35",
                    "--out", str(tmp_path / "b"), contains="exceeds n")
    _one_line_error(capsys, "sweep", "--model", "ffn:4-8-8-6", "--gen", "bogus",
                    "--out", str(tmp_path / "b"), contains="unknown generator")
    _one_line_error(capsys, "sweep", "--gen", "thm35", contains="--model")
    _one_line_error(capsys, *base, str(tmp_path / "c"), "--m", "x", contains="--m")
    assert _cli(capsys, *base, str(tmp_path / "c"))[0] == 0
    _one_line_error(capsys, *base[:-2], "5", "--out", str(tmp_path / "c"),
                    contains="different arguments (trials: 4 before, 5 now)")


def _log_lines(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sweep_killed_with_sigkill_resumes_to_the_uninterrupted_rows(capsys, tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "fastmp", *SWEEP_ARGS, "--out", str(killed)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = killed / "sweep.batches.jsonl"
    deadline = time.monotonic() + 120
    try:
        while _log_lines(log) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()   # still running: kill it
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    written = _log_lines(log)
    assert 3 <= written < 32                       # killed part-way through 32 batches
    assert not (killed / "sweep.csv").exists()

    rc, out, err = _cli(capsys, *SWEEP_ARGS, "--out", str(killed))
    assert rc == 0, err
    assert f"batches: {32 - written} computed, {written} resumed" in out
    rc, _, err = _cli(capsys, *SWEEP_ARGS, "--out", str(clean))
    assert rc == 0, err
    pd.testing.assert_frame_equal(_numbers(pd.read_csv(killed / "sweep.csv")),
                                  _numbers(pd.read_csv(clean / "sweep.csv")))
    pd.testing.assert_frame_equal(_batches(killed / "sweep.batches.jsonl"),
                                  _batches(clean / "sweep.batches.jsonl"))


@pytest.mark.slow
def test_lost_dask_worker_costs_only_its_batch(tmp_path):
    """A Dask worker process killed (SIGKILL) while running a batch: the scheduler reruns
    that batch on another worker and every batch is recorded exactly once."""
    distributed = pytest.importorskip("distributed")
    from fastmp.executors import DaskExecutor

    marker = str(tmp_path / "died")
    tasks = [(f"0/{v}", _square_or_die_once, (v, marker), 1) for v in range(8)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        with BatchLog(str(tmp_path), "loss", {"k": 1}) as log:
            ran = run_batches(log, tasks, DaskExecutor(client))
    assert ran == 8 and os.path.exists(marker)
    recs = [json.loads(line) for line in (tmp_path / "loss.batches.jsonl").read_text().splitlines()]
    assert sorted(r["value"] for r in recs) == list(range(8))
    assert all(r["square"] == r["value"] ** 2 for r in recs)


def test_cli_sweep_on_a_scheduler_address(capsys, tmp_path):
    """``--scheduler tcp://...`` connects to a running scheduler (here a LocalCluster's)
    and gives the rows of the local run."""
    distributed = pytest.importorskip("distributed")
    argv = ["sweep", "--model", "ffn:4-8-8-6", "--gen", "budget:param=W2", "--m", "4",
            "--trials", "12", "--batch-size", "4"]
    assert _cli(capsys, *argv, "--out", str(tmp_path / "local"))[0] == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None, protocol="tcp://",
                                  host="127.0.0.1") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        rc, out, err = _cli(capsys, *argv, "--out", str(tmp_path / "dask"),
                            "--scheduler", address, "--connect-timeout", "5")
    assert rc == 0, err
    assert "batches: 3 computed, 0 resumed" in out
    pd.testing.assert_frame_equal(_numbers(pd.read_csv(tmp_path / "dask" / "sweep.csv")),
                                  _numbers(pd.read_csv(tmp_path / "local" / "sweep.csv")))
