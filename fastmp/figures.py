"""Reproduce the paper's figures: ``run_figure(name, ...)`` writes ``NAME.csv`` and
``NAME.png`` and returns the table as a :class:`pandas.DataFrame`.

=========  ===========================================================================
name       setting (Appendix E.2)
=========  ===========================================================================
``fig2a``  LRNN, learn ``W``; ``T = n/2, b = 1, d = 4, m = n/2`` (``r = d m = 2n``);
           ``k = r/(Tb) = 4 .. n`` used rows
``fig2b``  same with ``d = n/4`` (``r = n^2/8``); ``k = 1 .. n`` (skipping ``k`` with
           ``r > k n``: no allocation exists); ``k < n/4`` is minimal by Theorem 3.4
           (decided by :func:`fastmp.classify` on one allocation with the row cap
           lifted, not sampled: ``mp = 0``, interval ``[0, 0]``, method
           ``"theory (Theorem 3.4)"``), ``k = n/4`` maximal by Theorem 3.5
``fig3a``  LinearFFN ``(4, n, n, 6)``, ``m = 4``, ``r = 24`` = 8 weights in each of the
           three layers, at most ``m`` per row and ``d`` per column (Theorem 4.1's
           budgets); ``k`` limits the rows used in ``W2`` and ``W3`` and the *columns*
           used in ``W1`` (App. E.2)
``b11``    the six two-weight allocations of Appendix B.1.1: certified search next to
           the exact discriminant oracle and the paper's values
``fig3b``  ShallowReLU ``q = 6, d = 4, m = 6``, learn ``r = dm = 24`` weights of ``W1`` over
           ``k = d .. n`` rows (:func:`fastmp.relu_experiments.fig3b_rows`: exact
           activation-pattern decision or certified pattern search; misses of the
           search are budget-limited, ``starts`` per trial); default ``ns = (8, 12)``
``fig3c``  ShallowReLU on labelled data (scikit-learn's digits; Adam, a match = all
           ``m = 30`` samples classified correctly; :func:`fastmp.relu_experiments.fig3c_rows`);
           ``ns`` are hidden widths (default ``(64,)``), ``k`` a geometric sweep
=========  ===========================================================================

**Sampling of allocations.** The paper randomises an allocation for *each trial*
(App. E.2). A point ``(n, k)`` draws ``n_alloc = min(trials, 50)`` allocations and gives
each ``trials // n_alloc`` trials (one more to the first ``trials % n_alloc``);
allocation ``i`` and its trials use streams derived from ``(seed, figure, n, k, i)`` by
:class:`numpy.random.SeedSequence`, and the matches of all allocations are pooled
(Wilson interval on the pooled counts). Every point depends only on its own seeds, so
the result is the same for any number of ``workers``.

**Execution.** Each allocation of a point is one batch (a theory point or a ``b11``
allocation is one batch) of the engine of :mod:`fastmp.sweeps`: batches run in this
process, in ``workers`` processes or on Dask (``client=``/``scheduler=``), stream to
``out/NAME.batches.jsonl`` as they finish, and a rerun with the same arguments resumes
from there (``out/NAME.manifest.json`` holds the arguments). A new figure plugs in with
:func:`register_figure`.

**fig3a's k.** ``k`` used rows per layer (columns for ``W1``), capped by what the layer
has: ``W1`` (n x 4) uses ``min(k, 4)`` columns, ``W3`` (6 x n) ``min(k, 6)`` rows. A layer
holds 8 weights, so it cannot use more than 8 rows: for ``k > 8`` the 8 weights are
placed at random within the first ``k`` rows (``use_all=False``), for ``k <= 8`` every one
of the ``k`` rows holds at least one weight. Column ``layer_k`` records the effective
limits ``W1 cols / W2 rows / W3 rows``.

**Search budget.** Polynomial points run the certified Newton search with exactly
``starts`` random starts per unmatched trial (``adaptive=False``; a trial stops at its
first certified root). The library's adaptive stop judges one call's trials together;
here a call holds one allocation's few trials (often one), so it would stop every miss at
64 starts whatever ``starts`` is. A miss means "no root found with this budget": MP of
polynomial points is a certified lower bound that can grow with ``starts``.

**b11.** The certified search and the oracle run on the same seed, hence on the same
draws trial by trial (column ``disagree`` counts trials where they differ: a miss of
the search is a trial the oracle matches and the search does not). All six allocations
share that seed (common random numbers).
"""
from __future__ import annotations

import math
import numbers
import os
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

FIGURES = ("fig2a", "fig2b", "fig3a", "fig3b", "fig3c", "b11")
#: figures that are computed (the others raise NotImplementedError)
IMPLEMENTED = ("fig2a", "fig2b", "fig3a", "fig3b", "fig3c", "b11")
DEFAULT_NS = (8, 12, 16)
#: at most this many random allocations per point
MAX_ALLOCATIONS = 50
#: Appendix B.1.1's reported MP (the row/column ones meet Theorem 3.5: MP = 1)
PAPER_B11 = {"diagonal": 0.74, "off_diagonal": 0.83, "row1": 1.0, "row2": 1.0,
             "col1": 1.0, "col2": 1.0}
#: fig3a: Figure 3a's network (q, d), samples m and weights per layer
FIG3A_Q, FIG3A_D, FIG3A_M, FIG3A_PER_LAYER = 4, 6, 4, 8

#: leading columns of every CSV, in this order
COLUMNS = ("figure", "n", "k", "frac_rows", "mp", "ci_low", "ci_high", "trials", "matches",
           "undecided", "method")

_NOT_IMPLEMENTED = {}


# ---------------------------------------------------------------------------- validation
def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"run_figure: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"run_figure: {name} must be >= {minimum}, got {value}")
    return int(value)


def _check_name(name):
    known = list(FIGURES) + [n for n in REGISTRY if n not in FIGURES]
    if not isinstance(name, str) or name.lower() not in known:
        raise ValueError(f"unknown figure {name!r}; choose one of {', '.join(known)}")
    name = name.lower()
    if name not in REGISTRY:
        raise NotImplementedError(_NOT_IMPLEMENTED[name])
    return name


def _ns_sequence(ns, default):
    """``ns`` (or ``default`` for None) as a tuple of distinct positive integers."""
    ns = default if ns is None else ns
    try:
        ns = tuple(ns)
    except TypeError:
        raise TypeError(f"run_figure: ns must be a sequence of integers, got {ns!r}") from None
    if not ns:
        raise ValueError("run_figure: ns is empty")
    out = []
    for n in ns:
        n = _check_int("every n in ns", n, 1)
        if n in out:
            raise ValueError(f"run_figure: n = {n} given twice in ns")
        out.append(n)
    return tuple(out)


def _check_ns(name, ns):
    if name == "b11":
        if ns is not None:
            raise ValueError("figure b11 has no n list (its network is LRNN(n=2, T=2, b=1, d=1))")
        return (2,)
    ns = _ns_sequence(ns, DEFAULT_NS)
    for n in ns:
        if name == "fig2a" and (n % 2 or n < 4):
            raise ValueError(f"figure fig2a needs even n >= 4 (T = n/2, k from 4 rows), "
                             f"got n = {n}")
        if name == "fig2b" and (n % 4 or n < 8):
            raise ValueError(f"figure fig2b needs n a multiple of 4 and >= 8 (d = n/4, "
                             f"r = n^2/8 >= n), got n = {n}")
        if name == "fig3a" and n < max(FIG3A_Q, FIG3A_D):
            raise ValueError(f"figure fig3a needs n >= {max(FIG3A_Q, FIG3A_D)} (hidden layers no "
                             f"narrower than q = {FIG3A_Q} and d = {FIG3A_D}), got n = {n}")
    return ns


def _prepare_out(out):
    """Create ``out`` if missing and check that a file can be written in it."""
    from .sweeps import prepare_dir

    return prepare_dir(out, who="run_figure")


# ---------------------------------------------------------------------------- seeds
def _point_seeds(seed, figure, n, k, index):
    """``(rng of the allocation, seed of its trials)`` from ``(seed, figure, n, k, index)``."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(figure.encode()), int(n), int(k),
                                 int(index)])
    alloc_ss, trial_ss = ss.spawn(2)
    trial_seed = int(trial_ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return np.random.default_rng(alloc_ss), trial_seed


def _split_trials(trials):
    n_alloc = min(trials, MAX_ALLOCATIONS)
    base, extra = divmod(trials, n_alloc)
    return [base + (i < extra) for i in range(n_alloc)]


# ---------------------------------------------------------------------------- settings
def _fig2_model(figure, n):
    import fastmp

    d = 4 if figure == "fig2a" else n // 4
    net = fastmp.LRNN(n=n, T=n // 2, b=1, d=d)
    m = n // 2
    return net, d * m, m


def _fig2_kmin(figure, n):
    net, r, _ = _fig2_model(figure, n)
    return -(-r // (net.T * net.b))


def _fig3a_model(n):
    import fastmp

    return fastmp.LinearFFN((FIG3A_Q, n, n, FIG3A_D))


def _fig3a_limits(net, k):
    """Effective limits (W1 columns, W2 rows, W3 rows) for ``k``."""
    return (min(k, net.param_shapes["W1"][1]), min(k, net.param_shapes["W2"][0]),
            min(k, net.param_shapes["W3"][0]))


def _fig3a_layouts(net, k):
    """``[(name, shape, limit, axis, row_cap, col_cap)]`` of the three layers."""
    lims = _fig3a_limits(net, k)
    axes = (1, 0, 0)
    return [(name, net.param_shapes[name], lim, ax, FIG3A_M, FIG3A_D)
            for name, lim, ax in zip(("W1", "W2", "W3"), lims, axes)]


def _fig3a_feasible(net, k):
    r = FIG3A_PER_LAYER
    for _, (rows, cols), lim, axis, row_cap, col_cap in _fig3a_layouts(net, k):
        # weights fit in `lim` lines along `axis` and in the other dimension, within caps
        if axis == 0:
            along_cap, other, other_cap = row_cap, cols, col_cap
        else:
            along_cap, other, other_cap = col_cap, rows, row_cap
        if r > lim * min(along_cap, other) or r > other * min(other_cap, lim):
            return False
    return True


def _fig3a_allocation(net, k, rng):
    from .allocation import Allocation
    from .generators import random_mask

    masks = {}
    for name, shape, lim, axis, row_cap, col_cap in _fig3a_layouts(net, k):
        masks[name] = random_mask(shape, FIG3A_PER_LAYER, rng, k=lim, axis=axis,
                                  row_cap=row_cap, col_cap=col_cap,
                                  use_all=lim <= FIG3A_PER_LAYER)
    return Allocation(net, masks)


def _points(name, ns, trials, seed, starts, ks):
    """The independent work items of a figure, in table order."""
    keep = None if ks is None else set(ks)
    pts = []
    common = dict(figure=name, trials=trials, seed=seed, starts=starts)
    if name == "b11":
        from .generators import B11_NAMES
        return [dict(common, n=2, k=None, allocation=a) for a in B11_NAMES]
    for n in ns:
        if name in ("fig2a", "fig2b"):
            net, r, _ = _fig2_model(name, n)
            # fig2b: below r/(Tb) rows; skip k where r weights do not even fit in k rows
            k0 = _fig2_kmin(name, n) if name == "fig2a" else max(1, -(-r // n))
            krange = range(k0, n + 1)
        else:
            net = _fig3a_model(n)
            krange = [k for k in range(1, n + 1) if _fig3a_feasible(net, k)]
        for k in krange:
            if keep is None or k in keep:
                pts.append(dict(common, n=n, k=k))
    if not pts:
        raise ValueError(f"run_figure: no point of {name} left with ks = {sorted(keep)}")
    return pts


# ---------------------------------------------------------------------------- one point
def _row(spec, **kw):
    n, k = spec["n"], spec["k"]
    row = {"figure": spec["figure"], "n": n,
           "k": np.nan if k is None else k,
           "frac_rows": np.nan if k is None else k / n}
    row.update(kw)
    return row


def _alloc_batch(spec, index, net, make_allocation, m):
    """Trials of allocation ``index`` of a pooled point: one batch of the engine."""
    from .estimators import match_probability

    t0 = time.perf_counter()
    t = _split_trials(spec["trials"])[index]
    rng, trial_seed = _point_seeds(spec["seed"], spec["figure"], spec["n"], spec["k"], index)
    alloc = make_allocation(rng)
    res = match_probability(net, alloc, m=m, trials=t, seed=trial_seed,
                            starts=spec["starts"], adaptive=False)
    return dict(figure=spec["figure"], n=spec["n"], k=spec["k"], alloc_index=index,
                trials=res.trials, matches=res.matches, undecided=res.ambiguous,
                method=res.method, max_starts=int(res.budget.get("max_starts", 0)),
                half_matches=_matches_within(res, spec["starts"] // 2),
                seconds=time.perf_counter() - t0)


def _pooled(records, r, m):
    """Pool the allocation batches of one point (in allocation order)."""
    from .estimators import wilson_interval

    records = sorted(records, key=lambda rec: rec["alloc_index"])
    matches = sum(rec["matches"] for rec in records)
    done = sum(rec["trials"] for rec in records)
    half = sum(rec["half_matches"] for rec in records)
    lo, hi = wilson_interval(matches, done)
    return dict(mp=matches / done, ci_low=lo, ci_high=hi, trials=done, matches=matches,
                undecided=sum(rec["undecided"] for rec in records),
                method="+".join(sorted({rec["method"] for rec in records})),
                n_alloc=len(records), r=r, m=m,
                max_starts=max(rec["max_starts"] for rec in records),
                mp_half_starts=half / done,
                seconds=math.fsum(rec["seconds"] for rec in records))


def _matches_within(res, budget):
    """Matches the Newton search had found within ``budget`` starts (the largest power of
    two of its ``mp_by_starts`` curve not above it); all matches for other methods."""
    curve = res.budget.get("mp_by_starts")
    if res.method != "newton" or not curve:
        return res.matches
    keys = [k for k in curve if int(k) <= budget]
    return int(round(curve[max(keys, key=int)] * res.trials)) if keys else 0


def _fig2_theory_batch(spec):
    """Below r/(Tb) rows no allocation respects Tb per row: Theorem 3.4 says minimal.
    Confirmed on one allocation with the row cap lifted (no sampling needed)."""
    from .generators import random_in_rows
    from .theory import classify

    name, n, k = spec["figure"], spec["n"], spec["k"]
    net, r, m = _fig2_model(name, n)
    t0 = time.perf_counter()
    rng, _ = _point_seeds(spec["seed"], name, n, k, 0)
    alloc = random_in_rows(net, "W", r, k, rng, row_cap=n)
    c = classify(net, alloc, m=m)
    if c.kind != "minimal":
        raise RuntimeError(f"{name}: allocation on k = {k} < r/(Tb) rows of n = {n} was "
                           f"classified {c.kind!r}, expected minimal (Theorem 3.4)")
    return dict(figure=name, n=n, k=k, method=f"theory ({c.rule})",
                seconds=time.perf_counter() - t0)


def _fig2_alloc_batch(arg):
    from .generators import random_in_rows

    spec, index = arg
    net, r, m = _fig2_model(spec["figure"], spec["n"])
    k = spec["k"]
    return _alloc_batch(spec, index, net, lambda rng: random_in_rows(net, "W", r, k, rng), m)


def _fig2_batches(spec):
    if spec["k"] < _fig2_kmin(spec["figure"], spec["n"]):
        return [(_fig2_theory_batch, spec, 0)]  # decided by theory: no trials to run
    return [(_fig2_alloc_batch, (spec, i), t) for i, t in enumerate(_split_trials(spec["trials"]))]


def _fig2_row(spec, records):
    net, r, m = _fig2_model(spec["figure"], spec["n"])
    extra = dict(model=repr(net), T=net.T, d=net.d)
    if len(records) == 1 and records[0]["method"].startswith("theory"):
        rec = records[0]
        return _row(spec, mp=0.0, ci_low=0.0, ci_high=0.0, trials=spec["trials"], matches=0,
                    undecided=0, method=rec["method"], n_alloc=1, r=r, m=m, max_starts=0,
                    mp_half_starts=0.0, seconds=rec["seconds"], **extra)
    return _row(spec, **_pooled(records, r, m), **extra)


def _fig3a_alloc_batch(arg):
    spec, index = arg
    net = _fig3a_model(spec["n"])
    k = spec["k"]
    return _alloc_batch(spec, index, net, lambda rng: _fig3a_allocation(net, k, rng), FIG3A_M)


def _fig3a_batches(spec):
    return [(_fig3a_alloc_batch, (spec, i), t) for i, t in enumerate(_split_trials(spec["trials"]))]


def _fig3a_row(spec, records):
    net = _fig3a_model(spec["n"])
    res = _pooled(records, 3 * FIG3A_PER_LAYER, FIG3A_M)
    lims = "/".join(str(v) for v in _fig3a_limits(net, spec["k"]))
    return _row(spec, **res, model=repr(net), d=net.d, layer_k=lims)


def _b11_batch(spec):
    from .estimators import match_probability, wilson_interval
    from .generators import b11_allocations
    from .theory.b11 import b11_statuses

    name, trials, seed = spec["allocation"], spec["trials"], spec["seed"]
    alloc = b11_allocations()[name]
    t0 = time.perf_counter()
    res = match_probability(alloc.model, alloc, trials=trials, seed=seed, method="newton",
                            starts=spec["starts"], adaptive=False)
    oracle = b11_statuses(name, trials, seed)  # = fastmp.theory.b11.b11_mp, trial by trial
    ok = int(oracle.sum())
    olo, ohi = wilson_interval(ok, trials)
    return dict(mp=res.mp, ci_low=res.ci_low, ci_high=res.ci_high, trials=res.trials,
                matches=res.matches, undecided=res.ambiguous, method=res.method,
                allocation=name, oracle_mp=ok / trials, oracle_ci_low=olo, oracle_ci_high=ohi,
                oracle_matches=ok,
                disagree=int(np.count_nonzero((res.status == 1) != oracle)),
                paper_mp=PAPER_B11[name], r=alloc.r, m=2,
                max_starts=int(res.budget.get("max_starts", 0)),
                mp_half_starts=_matches_within(res, spec["starts"] // 2) / trials,
                model=repr(alloc.model),
                seconds=time.perf_counter() - t0)


def _b11_batches(spec):
    return [(_b11_batch, spec, spec["trials"])]


def _b11_row(spec, records):
    (rec,) = records
    return _row(spec, **{k: v for k, v in rec.items() if k != "key"})


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class FigureDef:
    """How a figure is computed, for :func:`run_figure`.

    ``batches(spec)`` lists the independent batches of one point as ``(fn, arg,
    trials)`` (``trials``: the Monte Carlo trials it runs, for the progress bar's rate
    and time left) -- ``fn`` a module-level function (it runs in worker processes or on Dask)
    returning a flat dict of JSON values; ``row(spec, records)`` turns the point's batch
    records into its CSV row (plain JSON values: the records may come back from the
    batch log of an earlier, interrupted run). ``points(ns, trials, seed, starts, ks)``
    lists the points (dicts with at least ``figure, n, k``; default: :func:`_points`),
    ``check_ns(ns)`` validates the sizes (default: :func:`_check_ns`), ``title`` heads
    the plot.
    """

    batches: Callable
    row: Callable
    points: Optional[Callable] = None
    check_ns: Optional[Callable] = None
    title: Optional[str] = None


# ---------------------------------------------------------------------------- ReLU figures
# One batch per point: the rows come from fastmp.relu_experiments (which draws each
# point's allocations and trials from (seed, figure, n, k, index) itself).
FIG3B_NS = (8, 12)
FIG3C_NS = (64,)


def _relu_check_ns(default):
    return lambda ns: _ns_sequence(ns, default)


def _fig3b_points(ns, trials, seed, starts, ks):
    from .relu_experiments import FIG3B, _ks
    q, d, m = FIG3B["q"], FIG3B["d"], FIG3B["m"]
    pts = []
    for n in ns:
        if n < d:
            raise ValueError(f"figure fig3b needs n >= d = {d}, got n = {n}")
        for k in _ks(n, q, d, m, d * m, None):
            if ks is None or k in ks:
                pts.append(dict(figure="fig3b", n=n, k=k, trials=trials, seed=seed,
                                starts=starts))
    if not pts:
        raise ValueError(f"run_figure: no point of fig3b left with ks = {sorted(ks)}")
    return pts


def _fig3c_points(ns, trials, seed, starts, ks):
    from .data import load_dataset
    X, y = load_dataset("digits", None)
    q, d, m = X.shape[0], int(y.max()) + 1, 30
    kmin = -(-(d * m) // q)
    pts = []
    for n in ns:
        if n < kmin:
            raise ValueError(f"figure fig3c needs n >= {kmin} (r = dm = {d * m} weights in rows "
                             f"of {q}), got n = {n}")
        sweep = sorted(set(int(round(x)) for x in np.geomspace(kmin, n, 6)))
        for k in sweep:
            if ks is None or k in ks:
                pts.append(dict(figure="fig3c", n=n, k=k, trials=trials, seed=seed,
                                starts=starts))
    if not pts:
        raise ValueError(f"run_figure: no point of fig3c left with ks = {sorted(ks)}")
    return pts


def _relu_point_batch(spec):
    """One Figure 3b/3c point (a batch of the engine): its row as plain JSON values."""
    from .relu_experiments import fig3b_rows, fig3c_rows
    if spec["figure"] == "fig3b":
        row = fig3b_rows(spec["trials"], spec["seed"], ns=(spec["n"],), ks=[spec["k"]],
                         starts=spec["starts"])[0]
    else:
        row = fig3c_rows(spec["trials"], spec["seed"], n=spec["n"], ks=[spec["k"]])[0]
    return {key: (v.item() if isinstance(v, np.generic) else v) for key, v in row.items()}


def _relu_batches(spec):
    return [(_relu_point_batch, spec, spec["trials"])]


def _relu_row(spec, records):
    row = dict(records[0])
    row.setdefault("undecided", 0)
    return row


#: figure name -> how to compute it; a new figure registers here (:func:`register_figure`)
REGISTRY = {
    "fig2a": FigureDef(_fig2_batches, _fig2_row),
    "fig2b": FigureDef(_fig2_batches, _fig2_row),
    "fig3a": FigureDef(_fig3a_batches, _fig3a_row),
    "b11": FigureDef(_b11_batches, _b11_row),
    "fig3b": FigureDef(_relu_batches, _relu_row, _fig3b_points, _relu_check_ns(FIG3B_NS),
                       "Figure 3b: ShallowReLU q = 6, d = 4, m = 6, learn r = 24 weights of W1"),
    "fig3c": FigureDef(_relu_batches, _relu_row, _fig3c_points, _relu_check_ns(FIG3C_NS),
                       "Figure 3c: ShallowReLU on digits (Adam), m = 30, r = dm weights of W1"),
}


def register_figure(name, batches, row, *, points=None, check_ns=None, title=None):
    """Add (or replace) figure ``name`` (see :class:`FigureDef`): ``run_figure(name)``
    and ``fastmp figure NAME`` then compute it on the batch engine (workers, Dask,
    resume, progress) and plot it as MP against ``frac_rows`` per ``n``."""
    if not isinstance(name, str) or not name or name != name.lower():
        raise ValueError(f"register_figure: name must be a lower-case string, got {name!r}")
    REGISTRY[name] = FigureDef(batches, row, points, check_ns, title)


def _tasks(points):
    """``(key, fn, arg, trials)`` of every batch; key ``"point/batch"``."""
    tasks, owner = [], {}
    for p, spec in enumerate(points):
        for b, (fn, arg, trials) in enumerate(REGISTRY[spec["figure"]].batches(spec)):
            key = f"{p}/{b}"
            tasks.append((key, fn, arg, trials))
            owner[key] = p
    return tasks, owner


# ---------------------------------------------------------------------------- plotting
_TITLES = {
    "fig2a": "Figure 2a: LRNN, learn W; T = n/2, b = 1, d = 4, m = n/2 (r = 2n)",
    "fig2b": "Figure 2b: LRNN, learn W; T = n/2, b = 1, d = n/4, m = n/2 (r = n²/8)",
    "fig3a": "Figure 3a: linear FFN 4-n-n-6, m = 4, r = 24 (8 per layer)",
    "b11": "Appendix B.1.1: LRNN(n=2, T=2, b=1, d=1), m = 2, two weights of W",
}


def _plot(df, name, path, trials):
    # The object-oriented API renders with the Agg canvas without touching pyplot's
    # global backend (safe headless and inside a user's interactive session).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    if name == "b11":
        x = np.arange(len(df))
        w = 0.27
        for off, col, lo, hi, label in (
                (-w, "mp", "ci_low", "ci_high", "certified search (fastmp)"),
                (0.0, "oracle_mp", "oracle_ci_low", "oracle_ci_high", "discriminant oracle"),
                (w, "paper_mp", None, None, "paper")):
            y = df[col].to_numpy(float)
            err = None
            if lo is not None:
                err = np.vstack([y - df[lo].to_numpy(float), df[hi].to_numpy(float) - y])
            ax.bar(x + off, y, w, yerr=err, capsize=3, label=label)
        ax.set_xticks(x, df["allocation"].tolist())
        ax.set_xlabel("allocation of the two learnable weights")
    else:
        for i, (n, sub) in enumerate(df.groupby("n", sort=True)):
            color = f"C{i}"
            xs = sub["frac_rows"].to_numpy(float)
            ax.fill_between(xs, sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float),
                            color=color, alpha=0.2, linewidth=0)
            ax.plot(xs, sub["mp"].to_numpy(float), "o-", color=color, label=f"n = {n}",
                    markersize=4)
            theory = sub["method"].str.startswith("theory").to_numpy()
            if theory.any():
                ax.plot(xs[theory], sub["mp"].to_numpy(float)[theory], "x", color=color,
                        markersize=8)
        if name == "fig2b":
            ax.axvline(0.25, color="0.3", linestyle="--", linewidth=1,
                       label="k/n = 1/4 (r/(Tb) rows, Theorem 3.5)")
            ax.plot([], [], "x", color="0.3", label="minimal by Theorem 3.4 (not sampled)")
        what = "rows" if name != "fig3a" else "rows per layer (columns in W1)"
        ax.set_xlabel(f"fraction of {what} used, k/n")
        ax.set_xlim(0, 1.02)
    ax.set_ylabel("match probability (95% Wilson band)")
    title = REGISTRY[name].title or _TITLES.get(name, name)
    ax.set_title(f"{title}\n{trials} trials per point", fontsize=10)
    if name == "b11":
        ax.set_ylim(0, 1.22)
        ax.legend(fontsize=8, loc="upper center", ncol=3)
    else:
        ax.set_ylim(-0.03, 1.05)
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------- public API
def run_figure(name, trials=1000, seed=0, out=".", workers=1, progress=None, *, ns=None,
               ks=None, starts=64, client=None, scheduler=None, connect_timeout=None,
               show_progress=False, restart=False):
    """Compute figure ``name`` and write ``out/NAME.csv`` and ``out/NAME.png``.

    The work runs on the engine of :mod:`fastmp.sweeps`: every allocation of a point
    (every point, for theory points and ``b11``) is a batch, appended to
    ``out/NAME.batches.jsonl`` as it finishes; the arguments go to
    ``out/NAME.manifest.json``. Rerunning with the same arguments resumes (finished
    batches are read back, not recomputed); different arguments into the same ``out``
    are an error unless ``restart=True``.

    Parameters
    ----------
    name : {"fig2a", "fig2b", "fig3a", "fig3b", "fig3c", "b11"}
    trials : int
        Monte Carlo trials per point (pooled over ``min(trials, 50)`` random allocations).
    seed : int
        Every point's allocations and trials derive from ``(seed, name, n, k, index)``.
    out : path
        Output directory (created if missing).
    workers : int
        Batches run in that many spawned processes when ``> 1`` (a script must then call
        ``run_figure`` under ``if __name__ == "__main__":``); results do not depend on it.
    progress : callable, optional
        ``progress(done_points, total_points)`` first with the points already finished,
        then after every point that finishes.
    ns : sequence of int, optional
        Network sizes (default ``(8, 12, 16)``; not for ``b11``).
    ks : iterable of int, optional
        Only these ``k`` (for quick runs); default all.
    starts : int
        Budget of the certified Newton search: random starts per unmatched trial (not
        adaptive, so the budget is exactly this); misses are budget-limited.
    client, scheduler, connect_timeout
        Run the batches on Dask: a ``distributed.Client``, or the address of a scheduler
        (``"tcp://host:8786"``) answering within ``connect_timeout`` seconds (default 10).
    show_progress : bool or None
        Progress bar (batches, trials/s, time left) on stderr; None: when it is a terminal.
    restart : bool
        Discard batches of an earlier run of this figure in ``out`` instead of resuming.

    Returns
    -------
    pandas.DataFrame
        One row per point; columns :data:`COLUMNS` first, then ``n_alloc`` (allocations
        drawn), ``r``, ``m``, ``max_starts`` (largest Newton budget used, 0 where none),
        ``mp_half_starts`` (MP the search had reached with half the starts: close to
        ``mp`` when the budget is saturating), ``seconds`` (summed over the batches)
        and figure-specific ones. ``df.attrs["csv"]``, ``df.attrs["png"]`` hold the
        paths written, ``batches_run`` / ``batches_resumed`` what was computed now /
        found finished on disk.
    """
    import pandas as pd

    from .executors import CONNECT_TIMEOUT, make_executor
    from .sweeps import BatchLog, atomic_write, make_progress, run_batches

    name = _check_name(name)
    trials = _check_int("trials", trials, 1)
    seed = _check_int("seed", seed, 0)
    workers = _check_int("workers", workers, 1)
    starts = _check_int("starts", starts, 1)
    if progress is not None and not callable(progress):
        raise TypeError("run_figure: progress must be callable(done_points, total_points)")
    fdef = REGISTRY[name]
    ns = fdef.check_ns(ns) if fdef.check_ns is not None else _check_ns(name, ns)
    if ks is not None:
        if name == "b11":
            raise ValueError("figure b11 has no k")
        ks = [_check_int("every k in ks", k, 1) for k in ks]
    points = (fdef.points or (lambda *a: _points(name, *a)))(ns, trials, seed, starts, ks)
    tasks, owner = _tasks(points)
    path = _prepare_out(out)
    total = len(points)
    args = {"kind": "figure", "figure": name, "trials": trials, "seed": seed,
            "ns": list(ns), "ks": None if ks is None else sorted(set(ks)), "starts": starts}

    remaining = [0] * total
    for key in owner.values():
        remaining[key] += 1
    timeout = CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
    # connect first: an unreachable scheduler leaves nothing behind
    with make_executor(workers if len(tasks) > 1 else 1, client=client, scheduler=scheduler,
                       timeout=timeout) as executor, BatchLog(path, name, args,
                                                              restart=restart) as log:
        for key in log.records:
            if key in owner:
                remaining[owner[key]] -= 1
        done = [sum(1 for r in remaining if r == 0)]
        if progress is not None:
            progress(done[0], total)

        def on_record(key, rec):
            p = owner[key]
            remaining[p] -= 1
            if remaining[p] == 0:
                done[0] += 1
                if progress is not None:
                    progress(done[0], total)

        bar = make_progress(show_progress, len(tasks), sum(t[3] for t in tasks),
                            f"fastmp figure {name}")
        try:
            ran = run_batches(log, tasks, executor, bar, on_record)
        finally:
            if bar is not None:
                bar.close()
        records = dict(log.records)

    by_point = [[] for _ in range(total)]
    for key, rec in records.items():
        if key in owner:
            by_point[owner[key]].append(rec)
    rows = [REGISTRY[spec["figure"]].row(spec, by_point[p]) for p, spec in enumerate(points)]
    df = pd.DataFrame(rows)
    ordered = list(COLUMNS) + [c for c in df.columns if c not in COLUMNS and c != "seconds"]
    df = df[ordered + ["seconds"]]
    if df["k"].notna().all():
        df["k"] = df["k"].astype(int)
    csv_path = os.path.join(path, f"{name}.csv")
    png_path = os.path.join(path, f"{name}.png")
    atomic_write(csv_path, lambda fh: df.to_csv(fh, index=False))
    try:
        _plot(df, name, png_path, trials)
    except OSError as exc:
        raise ValueError(f"cannot write to {path}: {exc.strerror or exc}") from None
    df.attrs.update(csv=csv_path, png=png_path, batches=log.path, manifest=log.manifest_path,
                    batches_run=ran, batches_resumed=len(tasks) - ran)
    return df
