"""``fastmp.figures.run_figure`` and ``fastmp figure``: the figures' tables and plots,
the theory-decided transition of Figure 2b, seeding (independent of the number of
workers) and the one-line error contract of the command line."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fastmp
from fastmp import figures
from fastmp.cli import main
from fastmp.figures import COLUMNS, run_figure

REQUIRED = ["figure", "n", "k", "frac_rows", "mp", "ci_low", "ci_high", "trials", "matches",
            "method", "undecided", "seconds"]

TINY = {
    "fig2a": dict(ns=(8,)),
    "fig2b": dict(ns=(8,)),
    "fig3a": dict(ns=(6,)),
    "b11": {},
}


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_line_error(capsys, *argv, contains=""):
    rc, out, err = _cli(capsys, *argv)
    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmp: error: "), err
    assert "Traceback" not in err
    assert contains.lower() in err.lower(), err
    return lines[0]


# ---------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", sorted(TINY))
def test_figure_writes_csv_and_png(name, tmp_path):
    calls = []
    df = run_figure(name, trials=4, seed=0, out=tmp_path,
                    progress=lambda d, t: calls.append((d, t)), **TINY[name])
    csv, png = tmp_path / f"{name}.csv", tmp_path / f"{name}.png"
    assert df.attrs["csv"] == str(csv) and df.attrs["png"] == str(png)
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = pd.read_csv(csv)
    for col in REQUIRED:
        assert col in back.columns, col
    assert list(back.columns) == list(df.columns)
    assert len(back) == len(df) > 0
    assert (back["figure"] == name).all()
    assert (back["trials"] == 4).all()
    assert np.allclose(back["mp"], back["matches"] / back["trials"])
    assert ((back["ci_low"] <= back["mp"]) & (back["mp"] <= back["ci_high"])).all()
    assert (back["undecided"] <= back["trials"] - back["matches"]).all()
    np.testing.assert_allclose(back["mp"], df["mp"])
    # progress: (0, total) first, then every point once
    total = len(df)
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == list(range(total + 1))
    if name == "b11":
        assert back["k"].isna().all() and back["frac_rows"].isna().all()
        assert list(back["allocation"]) == list(fastmp.generators.B11_NAMES)
        assert list(back["paper_mp"]) == [0.74, 0.83, 1, 1, 1, 1]
        assert "oracle_mp" in back.columns
    else:
        np.testing.assert_allclose(back["frac_rows"], back["k"] / back["n"])


def test_fig2a_points_and_pooled_allocations(tmp_path):
    df = run_figure("fig2a", trials=3, out=tmp_path, ns=(8,))
    assert list(df["k"]) == [4, 5, 6, 7, 8]          # from r/(Tb) = 2n/(n/2) = 4 rows to n
    assert (df["n_alloc"] == 3).all()                 # one allocation per trial (App. E.2)
    assert (df["r"] == 16).all() and (df["m"] == 4).all() and (df["d"] == 4).all()
    # k = 4 rows of Tb = 4 weights each meet Theorem 3.5: its constructive solver
    assert df.loc[df["k"] == 4, "method"].item().startswith("theorem35")
    assert df.loc[df["k"] == 4, "mp"].item() == 1.0


def test_allocations_per_point_are_grouped_deterministically():
    assert figures._split_trials(4) == [1, 1, 1, 1]
    split = figures._split_trials(1003)
    assert len(split) == 50 and sum(split) == 1003 and split[:3] == [21] * 3 and split[3] == 20
    a_rng, a_seed = figures._point_seeds(0, "fig2a", 8, 5, 0)
    b_rng, b_seed = figures._point_seeds(0, "fig2a", 8, 5, 0)
    assert a_seed == b_seed and 0 <= a_seed < 2**63
    assert a_rng.integers(2**62) == b_rng.integers(2**62)
    others = {figures._point_seeds(*key)[1] for key in
              [(1, "fig2a", 8, 5, 0), (0, "fig2b", 8, 5, 0), (0, "fig2a", 12, 5, 0),
               (0, "fig2a", 8, 6, 0), (0, "fig2a", 8, 5, 1)]}
    assert a_seed not in others and len(others) == 5
    # the allocations of different indices differ
    net = fastmp.LRNN(n=8, T=4, b=1, d=4)
    rngs = [figures._point_seeds(0, "fig2a", 8, 6, i)[0] for i in range(5)]
    masks = [fastmp.generators.random_in_rows(net, "W", 16, 6, rng).mask("W") for rng in rngs]
    assert len({m.tobytes() for m in masks}) > 1
    for m in masks:
        rows = m.sum(axis=1)
        assert m.sum() == 16 and (rows[:6] >= 1).all() and not rows[6:].any() and rows.max() <= 4


def test_fig3a_allocations_honour_theorem41_budgets():
    net = figures._fig3a_model(8)
    ks = [k for k in range(1, 9) if figures._fig3a_feasible(net, k)]
    assert ks == list(range(2, 9))                    # 8 weights, <= m = 4 per row
    rng = np.random.default_rng(1)
    for k in ks:
        alloc = figures._fig3a_allocation(net, k, rng)
        w1, w2, w3 = (alloc.mask(p) for p in ("W1", "W2", "W3"))
        for mask in (w1, w2, w3):
            assert mask.sum() == 8
            assert mask.sum(axis=1).max() <= 4 and mask.sum(axis=0).max() <= 6
        # W1: k limits the columns; W2, W3: the rows
        assert not w1[:, min(k, 4):].any() and (w1[:, :min(k, 4)].sum(axis=0) >= 1).all()
        assert not w2[k:].any() and (w2[:k].sum(axis=1) >= 1).all()
        assert not w3[min(k, 6):].any()


# ---------------------------------------------------------------------------- Figure 2b
def test_fig2b_sharp_transition_at_a_quarter_of_the_rows(tmp_path):
    df = run_figure("fig2b", trials=20, seed=3, out=tmp_path, ns=(8, 12), ks=(1, 2, 3))
    got = {(int(r.n), int(r.k)) for r in df.itertuples()}
    # n = 12: r = 18 weights do not fit in one row of 12: no such point
    assert got == {(8, 1), (8, 2), (8, 3), (12, 2), (12, 3)}
    for row in df.itertuples():
        quarter = row.n // 4
        if row.k < quarter:
            assert row.mp == 0 and row.matches == 0 and row.trials == 20
            assert row.method.startswith("theory") and "3.4" in row.method
        elif row.k == quarter:
            assert row.mp == 1 and row.matches == 20 and row.undecided == 0
            assert row.method.startswith("theorem35")
    png = tmp_path / "fig2b.png"
    assert png.stat().st_size > 1000


@pytest.mark.slow
def test_fig2b_transition_n16(tmp_path):
    df = run_figure("fig2b", trials=50, seed=1, out=tmp_path, ns=(16,), ks=(2, 3, 4))
    assert list(df["mp"]) == [0.0, 0.0, 1.0]
    assert list(df["method"][:2]) == ["theory (Theorem 3.4)"] * 2


# ---------------------------------------------------------------------------- workers
def test_workers_do_not_change_results(tmp_path):
    kw = dict(trials=4, seed=11, ns=(8,), ks=(2, 3, 5))
    one = run_figure("fig2b", out=tmp_path / "w1", workers=1, **kw)
    calls = []
    two = run_figure("fig2b", out=tmp_path / "w2", workers=2,
                     progress=lambda d, t: calls.append((d, t)), **kw)
    pd.testing.assert_frame_equal(one.drop(columns="seconds"), two.drop(columns="seconds"))
    assert calls[-1] == (3, 3) and sorted(calls) == calls
    a = pd.read_csv(tmp_path / "w1" / "fig2b.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "w2" / "fig2b.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)


def test_b11_search_agrees_with_oracle(tmp_path):
    df = run_figure("b11", trials=60, seed=2, out=tmp_path)
    assert (df["disagree"] == 0).all()
    np.testing.assert_array_equal(df["mp"], df["oracle_mp"])
    assert (df.loc[2:, "mp"] == 1).all()              # the four Theorem 3.5 allocations


# ---------------------------------------------------------------------------- validation
def test_run_figure_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="fig2a, fig2b, fig3a, fig3b, fig3c, b11"):
        run_figure("fig9", out=tmp_path)
    with pytest.raises(ValueError, match="trials"):
        run_figure("b11", trials=0, out=tmp_path)
    with pytest.raises(TypeError, match="trials"):
        run_figure("b11", trials=2.5, out=tmp_path)
    with pytest.raises(ValueError, match="workers"):
        run_figure("b11", workers=0, out=tmp_path)
    with pytest.raises(ValueError, match="n >= d = 4"):
        run_figure("fig3b", ns=(3,), out=tmp_path)
    with pytest.raises(ValueError, match="fig3c needs n >= 5"):
        run_figure("fig3c", ns=(4,), out=tmp_path)
    with pytest.raises(ValueError, match="no point of fig3b"):
        run_figure("fig3b", ns=(8,), ks=(2,), out=tmp_path)
    with pytest.raises(ValueError, match="multiple of 4"):
        run_figure("fig2b", ns=(10,), out=tmp_path)
    with pytest.raises(ValueError, match="n >= 6"):
        run_figure("fig3a", ns=(4,), out=tmp_path)
    with pytest.raises(ValueError, match="b11"):
        run_figure("b11", ns=(8,), out=tmp_path)
    with pytest.raises(ValueError, match="no point"):
        run_figure("fig2a", ns=(8,), ks=(2,), out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_out_directory_is_created_or_rejected(tmp_path):
    deep = tmp_path / "a" / "b"
    run_figure("b11", trials=1, out=deep)
    assert (deep / "b11.csv").exists() and (deep / "b11.png").exists()
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for bad in (blocker, blocker / "sub"):
        with pytest.raises(ValueError, match="cannot write to"):
            run_figure("b11", trials=1, out=bad)


# ---------------------------------------------------------------------------- CLI
def test_cli_figure(capsys, tmp_path):
    rc, out, err = _cli(capsys, "figure", "fig2b", "--trials", "4", "--ns", "8",
                        "--out", str(tmp_path))
    assert rc == 0, err
    assert (tmp_path / "fig2b.csv").exists() and (tmp_path / "fig2b.png").exists()
    assert f"wrote {tmp_path / 'fig2b.csv'}" in out and f"wrote {tmp_path / 'fig2b.png'}" in out
    assert "theory (Theorem 3.4)" in out and "theorem35" in out
    assert len(pd.read_csv(tmp_path / "fig2b.csv")) == 8


def test_cli_figure_errors(capsys, tmp_path):
    _assert_one_line_error(capsys, "figure", "fig9", "--out", str(tmp_path), contains="fig2a")
    _assert_one_line_error(capsys, "figure", "fig3b", "--ns", "3", "--out", str(tmp_path),
                           contains="n >= d = 4")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _assert_one_line_error(capsys, "figure", "b11", "--trials", "1", "--out", str(blocker / "d"),
                           contains="cannot write to")
    _assert_one_line_error(capsys, "figure", "fig2b", "--ns", "8,x", contains="--ns")
    _assert_one_line_error(capsys, "figure", "fig2b", "--trials", "0", contains="--trials")
    _assert_one_line_error(capsys, "figure", "b11", "--ns", "8", contains="b11")


def test_budget_column_and_exact_starts(tmp_path):
    df = run_figure("fig2a", trials=2, out=tmp_path, ns=(8,), ks=(4, 7), starts=16)
    assert list(df["max_starts"]) == [0, 16]          # theorem35 has no search budget
    assert (df["mp_half_starts"] <= df["mp"]).all()
    assert df.loc[0, "mp_half_starts"] == df.loc[0, "mp"]


# ---------------------------------------------------------------------------- engine
def test_figure_resumes_and_refuses_other_arguments(tmp_path):
    kw = dict(trials=3, seed=4, ns=(8,), ks=(1, 2, 5), out=tmp_path)
    first = run_figure("fig2b", **kw)
    assert first.attrs["batches_run"] == 1 + 3 + 3 and first.attrs["batches_resumed"] == 0
    log = pd.read_json(tmp_path / "fig2b.batches.jsonl", lines=True)
    assert len(log) == 7 and set(log["key"]) == {"0/0", "1/0", "1/1", "1/2", "2/0", "2/1", "2/2"}
    # a run killed after some batches: drop the last two lines, tear the one before
    path = tmp_path / "fig2b.batches.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4]) + lines[4][:9])
    calls = []
    again = run_figure("fig2b", progress=lambda d, t: calls.append((d, t)), **kw)
    assert again.attrs["batches_run"] == 3 and again.attrs["batches_resumed"] == 4
    assert calls[-1] == (3, 3) and calls[0][0] < 3
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), first.drop(columns="seconds"))
    assert run_figure("fig2b", **kw).attrs["batches_run"] == 0
    with pytest.raises(ValueError, match=r"different arguments \(trials: 3 before, 4 now\)"):
        run_figure("fig2b", **dict(kw, trials=4))
    assert run_figure("fig2b", restart=True, **dict(kw, trials=4)).attrs["batches_run"] == 9


def test_figure_on_dask_matches_local_workers(tmp_path):
    distributed = pytest.importorskip("distributed")
    kw = dict(trials=3, seed=8, ns=(6,), ks=(2, 4))
    one = run_figure("fig3a", out=tmp_path / "w1", **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        dask = run_figure("fig3a", out=tmp_path / "dask", client=client, **kw)
    pd.testing.assert_frame_equal(dask.drop(columns="seconds"), one.drop(columns="seconds"))


def test_cli_figure_engine_options_and_errors(capsys, tmp_path):
    argv = ["figure", "b11", "--trials", "2", "--out", str(tmp_path)]
    rc, out, err = _cli(capsys, *argv, "--progress")
    assert rc == 0 and "6/6 batches 100%" in err and "trials/s" in err, err
    rc, out, err = _cli(capsys, *argv)
    assert rc == 0 and err == "" and "resumed 6 finished batches, computed 0" in out
    _assert_one_line_error(capsys, "figure", "b11", "--trials", "3", "--out", str(tmp_path),
                           contains="--restart")
    _assert_one_line_error(capsys, "figure", "b11", "--out", str(tmp_path / "dead"),
                           "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "0.5",
                           contains="cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert not (tmp_path / "dead").exists() or not any((tmp_path / "dead").iterdir())
    _assert_one_line_error(capsys, "figure", "fig2a", "--ns", "7", "--out", str(tmp_path),
                           contains="even n")
    _assert_one_line_error(capsys, "figure", "b11", "--connect-timeout", "0", contains="positive")


def _toy_batch(arg):
    """Batch of the registered toy figure: MP of a full LinearEstimator row (always 1)."""
    spec, index = arg
    net = fastmp.LinearEstimator(q=spec["n"], d=1)
    alloc = fastmp.Allocation(net, {"W": np.ones((1, spec["n"]), bool)})
    res = fastmp.match_probability(net, alloc, trials=2, seed=spec["seed"] + index)
    return dict(matches=res.matches, trials=res.trials)


def test_register_figure_runs_a_new_figure_on_the_engine(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "REGISTRY", dict(figures.REGISTRY))

    def points(ns, trials, seed, starts, ks):
        return [dict(figure="toy", n=n, k=1, trials=trials, seed=seed) for n in ns]

    def batches(spec):
        return [(_toy_batch, (spec, i), 2) for i in range(spec["trials"] // 2)]

    def row(spec, records):
        matches = sum(r["matches"] for r in records)
        trials = sum(r["trials"] for r in records)
        lo, hi = fastmp.wilson_interval(matches, trials)
        return figures._row(spec, mp=matches / trials, ci_low=lo, ci_high=hi, trials=trials,
                            matches=matches, undecided=0, method="linear", seconds=0.0)

    figures.register_figure("toy", batches, row, points=points,
                            check_ns=lambda ns: tuple(ns or (2, 3)), title="toy")
    df = run_figure("toy", trials=4, out=tmp_path)
    assert list(df["n"]) == [2, 3] and (df["mp"] == 1).all() and (df["trials"] == 4).all()
    assert df.attrs["batches_run"] == 4 and (tmp_path / "toy.png").exists()
    with pytest.raises(ValueError, match="fig3c, b11, toy"):
        run_figure("nope", out=tmp_path)


# ---------------------------------------------------------------------------- ReLU figures
def test_fig3b_runs_end_to_end(tmp_path):
    df = run_figure("fig3b", trials=4, ns=(8,), ks=(4, 8), out=tmp_path)
    assert list(df.columns[:len(COLUMNS)]) == list(COLUMNS)
    assert list(df["k"]) == [4, 8] and (df["frac_rows"] == df["k"] / 8).all()
    assert (df["trials"] == 4).all() and ((df["mp"] >= 0) & (df["mp"] <= 1)).all()
    assert (df["ci_low"] <= df["mp"]).all() and (df["mp"] <= df["ci_high"]).all()
    assert set(df["method"]) <= {"relu-exact", "relu-search", "relu-exact+relu-search"}
    assert (tmp_path / "fig3b.csv").exists() and (tmp_path / "fig3b.png").exists()
    # the same arguments again: every point is read back, nothing recomputed
    again = run_figure("fig3b", trials=4, ns=(8,), ks=(4, 8), out=tmp_path)
    assert again.attrs["batches_run"] == 0
    pd.testing.assert_frame_equal(df.drop(columns="seconds"), again.drop(columns="seconds"))


def test_fig3c_runs_end_to_end_on_digits(tmp_path):
    pytest.importorskip("sklearn")
    df = run_figure("fig3c", trials=2, ns=(64,), ks=(5, 64), out=tmp_path)
    assert list(df.columns[:len(COLUMNS)]) == list(COLUMNS)
    assert list(df["k"]) == [5, 64] and (df["trials"] == 2).all()
    assert (df["method"] == "adam-classification").all()
    assert (tmp_path / "fig3c.csv").exists() and (tmp_path / "fig3c.png").exists()
