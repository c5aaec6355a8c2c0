"""The ``fastmp`` command line: ``estimate`` and ``classify``, their output forms, and
the one-line error contract (exit status 2, ``fastmp: error: ...``, never a traceback)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmp
from fastmp.cli import Progress, main, model_spec, parse_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIALS = "200"


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys, *argv):
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == 0, err
    assert err == ""
    return json.loads(out)


def assert_error(capsys, *argv, contains=()):
    rc, out, err = run(capsys, *argv)
    assert rc == 2, (out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastmp: error: "), err
    assert "Traceback" not in err
    for word in (contains if isinstance(contains, (tuple, list)) else (contains,)):
        assert word.lower() in err.lower(), err
    return lines[0]


def table_value(out, key):
    for line in out.splitlines():
        if line.startswith(key + " ") or line == key:
            return line[len(key):].strip()
    raise AssertionError(f"no row {key!r} in\n{out}")


# ---------------------------------------------------------------------------- MODEL syntax
@pytest.mark.parametrize("spec, expected", [
    ("estimator:q=4,d=2", fastmp.LinearEstimator(q=4, d=2)),
    ("Linear:Q=4,D=2", fastmp.LinearEstimator(q=4, d=2)),
    ("lrnn:n=8,T=4,b=1,d=2", fastmp.LRNN(n=8, T=4, b=1, d=2)),
    ("LRNN:n=8,t=4,b=1,d=2", fastmp.LRNN(n=8, T=4, b=1, d=2)),
    ("lrnn:8,4,1,2", fastmp.LRNN(n=8, T=4, b=1, d=2)),
    ("ffn:4-16-16-6", fastmp.LinearFFN([4, 16, 16, 6])),
    ("LinearFFN:4,16,16,6", fastmp.LinearFFN([4, 16, 16, 6])),
    ("ffn:widths=4-16-6", fastmp.LinearFFN([4, 16, 6])),
    ("relu:q=6,n=8,d=4", fastmp.ShallowReLU(q=6, n=8, d=4)),
    ("ShallowReLU:d=4,q=6,n=8", fastmp.ShallowReLU(q=6, n=8, d=4)),
])
def test_parse_model(spec, expected):
    model = parse_model(spec)
    assert model == expected
    assert parse_model(model_spec(model)) == model


# ---------------------------------------------------------------------------- estimate
def test_estimate_warmup_full_rows_table(capsys):
    # §2.1 warm-up: q = 2, d = 2, m = 2, every weight learnable -> always a match
    rc, out, err = run(capsys, "estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                       "--trials", TRIALS)
    assert rc == 0, err
    assert err == ""
    assert table_value(out, "MP") == "1.0000"
    assert table_value(out, "matches") == TRIALS
    assert table_value(out, "trials") == TRIALS
    assert table_value(out, "m") == "2"
    assert table_value(out, "r") == "4"
    assert table_value(out, "undecided") == "0"
    assert table_value(out, "95% CI").startswith("[0.98")
    for key in ("model", "allocation", "method", "backend", "seconds"):
        table_value(out, key)
    assert "LinearEstimator(q=2, d=2)" in out
    # mask summary: the rows of W
    lines = out.splitlines()
    w = next(i for i, line in enumerate(lines) if line.strip().startswith("W "))
    assert lines[w].split()[-1] == "11" or lines[w + 1].strip() == "11"


def test_estimate_warmup_short_row_json(capsys):
    # row 2 holds one weight but must fit m = 2 samples -> never a match
    res = run_json(capsys, "estimate", "estimator:q=2,d=2", "--mask", "W=11,10", "--m", "2",
                   "--trials", TRIALS)
    for key in ("mp", "matches", "trials", "ci_low", "ci_high", "ambiguous", "m", "r",
                "method", "backend", "seconds", "model", "allocation"):
        assert key in res
    assert res["mp"] == 0.0
    assert res["matches"] == 0
    assert res["trials"] == int(TRIALS)
    assert res["ci_low"] == 0.0 and 0 < res["ci_high"] < 0.05
    assert res["m"] == 2 and res["r"] == 3
    assert res["allocation"] == {"W": ["11", "10"]}
    assert parse_model(res["model"]) == fastmp.LinearEstimator(q=2, d=2)


def test_estimate_json_full_matches_library(capsys):
    res = run_json(capsys, "estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                   "--trials", TRIALS, "--seed", "5")
    assert res["mp"] == 1.0 and res["matches"] == int(TRIALS)
    assert res["ci_low"] < 1.0 <= res["ci_high"]
    assert res["seed"] == 5


@pytest.mark.parametrize("sep", [",", "/", ";"])
def test_mask_row_separators(capsys, sep):
    res = run_json(capsys, "estimate", "estimator:q=2,d=2", "--mask", f"W=11{sep}10",
                   "--m", "2", "--trials", "20")
    assert res["allocation"] == {"W": ["11", "10"]}


def test_estimate_lrnn_decoder_thm31(capsys):
    res = run_json(capsys, "estimate", "lrnn:n=8,T=4,b=1,d=2", "--alloc", "thm31",
                   "--m", "4", "--trials", TRIALS)
    assert res["mp"] == 1.0
    assert res["m"] == 4 and res["r"] == 8
    assert list(res["allocation"]) == ["D"]
    assert [row.count("1") for row in res["allocation"]["D"]] == [4, 4]


def test_estimate_thm31_default_m_is_row_length(capsys):
    res = run_json(capsys, "estimate", "estimator:q=3,d=2", "--alloc", "thm31",
                   "--trials", "50")
    assert res["m"] == 3 and res["allocation"] == {"W": ["111", "111"]}
    assert res["mp"] == 1.0


def test_estimate_ffn_budget(capsys):
    res = run_json(capsys, "estimate", "ffn:4-16-16-6", "--alloc", "budget", "--param", "W2",
                   "--m", "4", "--alloc-seed", "3", "--trials", TRIALS)
    assert res["r"] == 24 and res["m"] == 4
    assert 0.0 <= res["mp"] <= 1.0
    assert res["matches"] + res["ambiguous"] <= res["trials"]
    mask = np.array([[c == "1" for c in row] for row in res["allocation"]["W2"]])
    assert mask.shape == (16, 16)
    assert mask.sum(axis=1).max() <= 4 and mask.sum(axis=0).max() <= 6  # Theorem 4.1 budgets


def test_estimate_rows_generator(capsys):
    res = run_json(capsys, "estimate", "ffn:4-16-6", "--alloc", "rows", "--param", "W2",
                   "--r", "12", "--k", "6", "--trials", "50")
    mask = np.array([[c == "1" for c in row] for row in res["allocation"]["W2"]])
    assert mask.sum() == 12 and res["m"] == 2
    assert mask[:6].any(axis=1).all() and not mask[6:].any()


def test_estimate_rows_generator_columns(capsys):
    res = run_json(capsys, "estimate", "ffn:4-16-6", "--alloc", "rows", "--param", "W2",
                   "--r", "12", "--k", "3", "--axis", "columns", "--trials", "20")
    mask = np.array([[c == "1" for c in row] for row in res["allocation"]["W2"]])
    assert mask.sum() == 12 and mask[:, :3].any(axis=0).all() and not mask[:, 3:].any()


def test_estimate_full_generator(capsys):
    res = run_json(capsys, "estimate", "lrnn:n=4,T=2,b=1,d=2", "--alloc", "full",
                   "--param", "D", "--trials", TRIALS)
    assert res["allocation"] == {"D": ["1111", "1111"]}
    assert res["m"] == 4 and res["mp"] == 1.0


def test_alloc_seed_defaults_to_seed(capsys):
    a = run_json(capsys, "estimate", "ffn:4-16-6", "--alloc", "rows", "--param", "W2",
                 "--r", "12", "--k", "6", "--trials", "10", "--seed", "7")
    b = run_json(capsys, "estimate", "ffn:4-16-6", "--alloc", "rows", "--param", "W2",
                 "--r", "12", "--k", "6", "--trials", "10", "--seed", "1",
                 "--alloc-seed", "7")
    assert a["allocation"] == b["allocation"]


def test_thm35_generator_polynomial_estimate(capsys):
    # W of an LRNN: polynomial; auto uses Theorem 3.5's constructive solver, certified
    assert main(["estimate", "lrnn:n=4,T=2,b=1,d=1", "--alloc", "thm35", "--trials", "10",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mp"] == 1.0 and out["method"].startswith("theorem35")
    assert main(["estimate", "lrnn:n=4,T=2,b=1,d=1", "--alloc", "thm35", "--trials", "10",
                 "--method", "newton", "--starts", "16"]) == 0
    text = capsys.readouterr().out
    assert "newton" in text and "near-misses" in text


def test_mask_file_json(capsys, tmp_path):
    path = tmp_path / "alloc.json"
    path.write_text(json.dumps({"W": ["11", "10"]}))
    res = run_json(capsys, "estimate", "estimator:q=2,d=2", "--mask-file", str(path),
                   "--m", "2", "--trials", "50")
    assert res["allocation"] == {"W": ["11", "10"]} and res["mp"] == 0.0


def test_mask_file_roundtrips_estimate_json(capsys, tmp_path):
    first = run_json(capsys, "estimate", "lrnn:n=8,T=4,b=1,d=2", "--alloc", "thm31",
                     "--m", "4", "--trials", "20", "--alloc-seed", "11")
    path = tmp_path / "result.json"
    path.write_text(json.dumps(first))
    again = run_json(capsys, "estimate", first["model"], "--mask-file", str(path),
                     "--trials", "20")
    assert again["allocation"] == first["allocation"]
    assert again["matches"] == first["matches"]


def test_mask_file_npz(capsys, tmp_path):
    path = tmp_path / "alloc.npz"
    np.savez(path, D=np.ones((2, 4), dtype=bool))
    res = run_json(capsys, "estimate", "lrnn:n=4,T=2,b=1,d=2", "--mask-file", str(path),
                   "--trials", TRIALS)
    assert res["allocation"] == {"D": ["1111", "1111"]} and res["mp"] == 1.0


def test_mask_file_npy_with_param(capsys, tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.array([[1, 1], [1, 0]]))  # 0/1 integers are accepted
    res = run_json(capsys, "estimate", "estimator:q=2,d=2", "--mask-file", str(path),
                   "--param", "W", "--m", "2", "--trials", "20")
    assert res["allocation"] == {"W": ["11", "10"]}


def test_mask_file_npy_needs_param(capsys, tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.ones((2, 2), dtype=bool))
    assert_error(capsys, "estimate", "estimator:q=2,d=2", "--mask-file", str(path),
                 contains="--param")


def test_progress_forced(capsys):
    rc, out, err = run(capsys, "estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                       "--trials", TRIALS, "--batch-size", "50", "--progress")
    assert rc == 0
    assert "trials/s" in err and "left" in err and f"{TRIALS}/{TRIALS}" in err
    assert table_value(out, "MP") == "1.0000"


def test_no_progress_when_not_a_tty(capsys):
    # capsys' stderr is no TTY: no progress line even for many trials
    rc, out, err = run(capsys, "estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                       "--trials", "20000")
    assert rc == 0 and err == ""
    rc, out, err = run(capsys, "estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                       "--trials", TRIALS, "--no-progress")
    assert rc == 0 and err == ""


def test_progress_indicator_line():
    stream = io.StringIO()
    bar = Progress(100, stream, min_interval=0.0)
    for _ in range(4):
        bar(25)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n")
    assert "100/100 trials" in text and "trials/s" in text


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "estimate" in capsys.readouterr().out
    assert main(["estimate", "-h"]) == 0
    out = capsys.readouterr().out
    assert "--mask" in out and "lrnn:n=8,T=4,b=1,d=2" in out


# ---------------------------------------------------------------------------- errors
ERROR_CASES = {
    "unknown model": (["estimate", "perceptron:q=2", "--mask", "W=1"], "unknown model"),
    "bad dims": (["estimate", "lrnn:n=4,T=8,b=1,d=1", "--mask", "D=1111"], "T*b"),
    "bad dims ffn": (["estimate", "ffn:4-2-6", "--alloc", "full", "--param", "W1"], "width"),
    "missing dim": (["estimate", "lrnn:n=8,T=4,b=1", "--mask", "D=1"], "missing"),
    "unknown dim": (["estimate", "estimator:q=2,d=2,z=1", "--mask", "W=1"], "'z'"),
    "non-integer dim": (["estimate", "estimator:q=two,d=2", "--mask", "W=1"], "integer"),
    "unknown parameter": (["estimate", "estimator:q=2,d=2", "--mask", "X=11,11"], "'X'"),
    "non-01 mask": (["estimate", "estimator:q=2,d=2", "--mask", "W=12,11"], "0 and 1"),
    "ragged mask": (["estimate", "estimator:q=2,d=2", "--mask", "W=11,1"], "lengths"),
    "mask shape": (["estimate", "estimator:q=2,d=2", "--mask", "W=111,111"], "shape"),
    "mask no '='": (["estimate", "estimator:q=2,d=2", "--mask", "11,11"], "PARAM=ROWS"),
    "empty allocation": (["estimate", "estimator:q=2,d=2", "--mask", "W=00,00"], "empty"),
    "unknown generator": (["estimate", "estimator:q=2,d=2", "--alloc", "magic", "--param", "W"],
                          "unknown generator"),
    "missing source": (["estimate", "estimator:q=2,d=2"], "no allocation"),
    "two sources": (["estimate", "estimator:q=2,d=2", "--mask", "W=11,11", "--alloc", "full",
                     "--param", "W"], "exactly one"),
    "negative trials": (["estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                         "--trials", "-5"], "--trials"),
    "zero trials": (["estimate", "estimator:q=2,d=2", "--mask", "W=11,11", "--trials", "0"],
                    "--trials"),
    "non-integer trials": (["estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                            "--trials", "many"], "--trials"),
    "r not divisible by d": (["estimate", "estimator:q=3,d=2", "--mask", "W=111,110"],
                             "--m"),
    "relu W1 and W2 together": (["estimate", "relu:q=2,n=6,d=1",
                                 "--mask", "W1=11,11,11,11,11,11", "--mask", "W2=111111",
                                 "--m", "12"],
                                "not supported"),
    "theorem35 on other allocation": (["estimate", "lrnn:n=4,T=2,b=1,d=1", "--mask",
                                       "W=1000,0100,0000,0000", "--method", "theorem35"],
                                      "Theorem 3.5"),
    "nonexistent mask file": (["estimate", "estimator:q=2,d=2", "--mask-file",
                               "/nonexistent/alloc.json"], "not found"),
    "unknown option": (["estimate", "estimator:q=2,d=2", "--mask", "W=11,11", "--bogus"],
                       "--bogus"),
    "no command": ([], "command"),
    "unknown command": (["plot"], "plot"),
    "missing model": (["estimate"], "MODEL"),
    "bad backend": (["estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                     "--backend", "fortran"], "backend"),
    "rows without r": (["estimate", "ffn:4-16-6", "--alloc", "rows", "--param", "W2"], "--r"),
    "generator without param": (["estimate", "ffn:4-16-6", "--alloc", "full"], "--param"),
    "generator unknown param": (["estimate", "ffn:4-16-6", "--alloc", "full",
                                 "--param", "W9"], "'W9'"),
    "budget without m": (["estimate", "ffn:4-16-6", "--alloc", "budget", "--param", "W1"],
                         "--m"),
    "thm35 on estimator": (["estimate", "estimator:q=2,d=2", "--alloc", "thm35"], "lrnn"),
    "option of other generator": (["estimate", "estimator:q=2,d=2", "--alloc", "full",
                                   "--param", "W", "--by", "rows"], "--by"),
    "generator option without --alloc": (["estimate", "estimator:q=2,d=2",
                                          "--mask", "W=11,11", "--r", "2"], "--r"),
    "impossible rows": (["estimate", "ffn:4-16-6", "--alloc", "rows", "--param", "W2",
                         "--r", "200", "--k", "2"], "cannot place"),
    "thm31 m too large": (["estimate", "estimator:q=2,d=2", "--alloc", "thm31", "--m", "5"],
                          "m = 5"),
    "seed too large": (["estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                        "--seed", str(2**70)], "seed"),
    "sweep without model": (["sweep", "--gen", "thm35"], "--model"),
    "sweep without generator": (["sweep", "--model", "lrnn:n=8,T=4,b=1,d=4"], "--gen"),
    "sweep impossible dims": (["sweep", "--model", "lrnn:n=4,T=8,b=1,d=1", "--gen", "thm35"],
                              "T*b"),
    "sweep unknown generator": (["sweep", "--model", "ffn:4-8-6", "--gen", "magic"],
                                "unknown generator"),
    "sweep generator option": (["sweep", "--model", "ffn:4-8-6", "--gen",
                                "rows:param=W1,k=2,depth=3"], "unknown option"),
    "sweep generator for another model": (["sweep", "--model", "ffn:4-8-6", "--gen", "thm35"],
                                          "does not apply"),
    "sweep bad m": (["sweep", "--model", "ffn:4-8-6", "--gen", "thm31", "--m", "4,x"], "--m"),
    "sweep batch not whole allocations": (["sweep", "--model", "ffn:4-8-6", "--gen", "thm31",
                                           "--batch-size", "10", "--trials-per-alloc", "3"],
                                          "multiple"),
    "figure unknown name": (["figure", "fig9"], "unknown figure"),
    "figure impossible dims": (["figure", "fig2b", "--ns", "10"], "multiple of 4"),
}


@pytest.mark.parametrize("argv, contains", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_errors_are_one_line(capsys, argv, contains):
    assert_error(capsys, *argv, contains=contains)


def test_bad_dims_message_names_the_condition(capsys):
    line = assert_error(capsys, "estimate", "lrnn:n=4,T=8,b=1,d=1", "--mask", "D=1111")
    assert "T*b = 8 exceeds n = 4" in line


def test_relu_beyond_exact_search_runs_the_certified_search(capsys):
    """k m = 72 is beyond the exact decision: the CLI runs the certified pattern search
    (issue 4) and reports it as budget-limited."""
    res = run_json(capsys, "estimate", "relu:q=2,n=6,d=1",
                   "--mask", "W1=11,11,11,11,11,11", "--m", "12", "--trials", "10")
    assert res["method"] == "relu-search" and res["budget"]["budget_limited"]
    assert res["trials"] == 10 and 0.0 <= res["mp"] <= 1.0


def test_bad_json_mask_file(capsys, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert_error(capsys, "estimate", "estimator:q=2,d=2", "--mask-file", str(path),
                 contains="JSON")
    path.write_text(json.dumps(["11", "11"]))
    assert_error(capsys, "estimate", "estimator:q=2,d=2", "--mask-file", str(path),
                 contains="object")
    path.write_text(json.dumps({"V": ["11", "11"]}))
    assert_error(capsys, "estimate", "estimator:q=2,d=2", "--mask-file", str(path),
                 contains="'V'")
    path.write_text(json.dumps({"W": ["1a", "11"]}))
    assert_error(capsys, "estimate", "estimator:q=2,d=2", "--mask-file", str(path),
                 contains="0 and 1")


def test_bad_npz_mask_file(capsys, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, W=np.full((2, 2), 3))
    assert_error(capsys, "estimate", "estimator:q=2,d=2", "--mask-file", str(path),
                 contains="0/1")
    path.write_bytes(b"not a zip file")
    assert_error(capsys, "estimate", "estimator:q=2,d=2", "--mask-file", str(path),
                 contains="npz")


def test_unavailable_backend_is_one_line(capsys):
    # the Cython extension may or may not be built; either way no traceback
    rc, out, err = run(capsys, "estimate", "estimator:q=2,d=2", "--mask", "W=11,11",
                       "--trials", "20", "--backend", "cython", "--json")
    assert "Traceback" not in err
    if rc == 0:
        assert json.loads(out)["mp"] == 1.0
    else:
        assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("fastmp: error: ")


# ---------------------------------------------------------------------------- classify
def _require_classify():
    net = fastmp.LinearEstimator(q=2, d=2)
    alloc = fastmp.Allocation(net, {"W": np.ones((2, 2), dtype=bool)})
    try:
        fastmp.classify(net, alloc)
    except NotImplementedError as exc:
        if str(exc) == "classify is being written":
            pytest.skip("fastmp.classify is not written yet")
        raise


def test_classify_json(capsys):
    _require_classify()
    res = run_json(capsys, "classify", "lrnn:n=8,T=4,b=1,d=2", "--alloc", "thm31", "--m", "4")
    assert {"kind", "rule", "reason", "model", "allocation"} <= set(res)
    assert res["kind"] == "maximal"  # Theorem 3.1: m weights in every decoder row
    assert res["reason"]
    assert list(res["allocation"]) == ["D"]
    assert parse_model(res["model"]) == fastmp.LRNN(n=8, T=4, b=1, d=2)


def test_classify_minimal_json(capsys):
    _require_classify()
    res = run_json(capsys, "classify", "estimator:q=2,d=2", "--mask", "W=11,10", "--m", "2")
    assert res["kind"] == "minimal"


def test_classify_table(capsys):
    _require_classify()
    rc, out, err = run(capsys, "classify", "estimator:q=2,d=2", "--mask", "W=11,11")
    assert rc == 0, err
    assert table_value(out, "kind") in ("maximal", "minimal", "undetermined")
    table_value(out, "rule")
    table_value(out, "reason")
    assert "LinearEstimator(q=2, d=2)" in out


def test_classify_errors_are_one_line(capsys):
    assert_error(capsys, "classify", "estimator:q=2,d=2", "--mask", "W=12,11",
                 contains="0 and 1")
    assert_error(capsys, "classify", "estimator:q=2,d=2", "--trials", "5", "--mask", "W=11,11",
                 contains="--trials")


# ---------------------------------------------------------------------------- subprocess
def _cli(*argv):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    code = "import sys; from fastmp.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                          text=True, env=env, timeout=120)


def test_subprocess_error_and_success():
    bad = _cli("estimate", "lrnn:n=4,T=8,b=1,d=1", "--mask", "D=1111")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith("fastmp: error: ") and len(bad.stderr.splitlines()) == 1
    assert bad.stdout == ""

    good = _cli("estimate", "estimator:q=2,d=2", "--mask", "W=11,11", "--trials", "50",
                "--json")
    assert good.returncode == 0, good.stderr
    assert "Traceback" not in good.stderr
    res = json.loads(good.stdout)
    assert res["mp"] == 1.0 and res["trials"] == 50


def test_sweep_help(capsys):
    assert main(["sweep", "-h"]) == 0
    out = capsys.readouterr().out
    assert "--scheduler" in out and "rows:param=W,k=4" in out and "resume" in out


def test_ctrl_c_stops_a_sweep_with_a_resume_hint_and_loses_nothing(tmp_path, capsys):
    """SIGINT (Ctrl-C) on a sweep running 2 worker processes: exit status 130, one
    line saying how to resume; rerunning computes only the missing batches."""
    import signal
    import time

    argv = ["sweep", "--model", "lrnn:n=8,T=4,b=1,d=4", "--gen", "rows:param=W,k=6",
            "--m", "4", "--trials", "24", "--batch-size", "1", "--starts", "16",
            "--workers", "2", "--out", str(tmp_path)]
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "fastmp", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = tmp_path / "sweep.batches.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if log.exists() and log.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("fastmp: error: interrupted") and "resume" in lines[-1]
    assert "Traceback" not in err
    saved = log.read_bytes().count(b"\n")
    assert 2 <= saved < 24
    assert main(argv[:-4] + ["--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert f"batches: {24 - saved} computed, {saved} resumed" in text
