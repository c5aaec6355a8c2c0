"""Point rows of the paper's ReLU figures (Figure 3b: random data, teacher-student;
Figure 3c: real labelled data), for ``fastmp figure fig3b/fig3c`` and for users' loops.

Both return lists of dicts with the keys ``figure, n, k, frac_rows, mp, ci_low, ci_high,
trials, matches, method`` (plus ``r, m, q, d, criterion, budget_limited, seconds``), one
per ``(n, k)`` point, ``frac_rows = k / n``. As in Appendix E.2 every trial draws its own
allocation of ``r`` weights over exactly the first ``k`` rows of ``W1`` (at most ``m``
per row and ``d`` per column: Theorem 4.1's budgets, as for Figure 3a); results depend
only on the arguments and ``seed``.

``fig3b_rows``: ShallowReLU with ``q = 6, d = 4, m = 6`` (Appendix E.2), ``r = dm = 24``,
``k = d .. min(n, r)`` (below ``d`` rows Lemma D.3 leaves no pattern on non-degenerate
draws). Each trial is decided by ``match_probability`` (``method="auto"``: the exact
activation-pattern decision where ``k m <= 20``, else the certified pattern search).
Search misses are budget-limited: the row says so.

``fig3c_rows``: labels from a data set (scikit-learn's digits by default; MNIST from idx
files with ``data="mnist", data_path=...``), ``d`` = number of classes, ``q`` = input
size, ``r = dm`` learnable weights in ``W1``, Adam training; a match = every one of the
``m`` samples classified correctly (:mod:`fastmp.estimators.relu_data`). The paper ran
MNIST with ``n = m = 1000``; the defaults here are a small digits version.
"""
from __future__ import annotations

import time
import zlib

import numpy as np

FIG3B = dict(q=6, d=4, m=6)
COLUMNS = ("figure", "n", "k", "frac_rows", "mp", "ci_low", "ci_high", "trials", "matches",
           "method")


def _check_pos(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"relu_experiments: {name} must be a positive integer, got {value!r}")
    return int(value)


def _rng_and_seed(seed, figure, n, k, index):
    ss = np.random.SeedSequence([int(seed), zlib.crc32(figure.encode()), int(n), int(k),
                                 int(index)])
    a, b = ss.spawn(2)
    return np.random.default_rng(a), int(b.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _w1_allocation(net, r, k, m, rng):
    from .allocation import Allocation
    from .generators import random_mask

    return Allocation(net, {"W1": random_mask(net.param_shapes["W1"], r, rng, k=k,
                                              row_cap=min(m, net.q), col_cap=net.d)})


def _ks(n, q, d, m, r, ks):
    cap = min(m, q)
    full = [k for k in range(d, min(n, r) + 1) if k * cap >= r and q * min(d, k) >= r]
    if ks is None:
        return full
    bad = sorted(set(ks) - set(full))
    if bad:
        raise ValueError(f"relu_experiments: k = {bad} not possible at n = {n} (possible: "
                         f"{full[0]}..{full[-1]})")
    return sorted(set(ks))


def fig3b_rows(trials, seed, ns=(8, 12), ks=None, allocations=None, starts=256,
               method="auto", progress=None):
    """Figure 3b points: ``[row dict]`` over ``n in ns`` and ``k`` used rows (default every
    feasible ``k`` from ``d``). ``allocations`` (default ``min(trials, 50)``) random
    allocations per point share the trials; ``starts`` is the search budget per trial."""
    import fastmp

    trials, seed, starts = _check_pos("trials", trials), int(seed), _check_pos("starts", starts)
    q, d, m = FIG3B["q"], FIG3B["d"], FIG3B["m"]
    r = d * m
    n_alloc = min(trials, 50 if allocations is None else _check_pos("allocations", allocations))
    rows = []
    for n in ns:
        n = _check_pos("n", n)
        net = fastmp.ShallowReLU(q=q, n=n, d=d)
        for k in _ks(n, q, d, m, r, ks):
            t0 = time.perf_counter()
            matches = done = amb = 0
            methods = set()
            base, extra = divmod(trials, n_alloc)
            for i in range(n_alloc):
                t = base + (i < extra)
                rng, tseed = _rng_and_seed(seed, "fig3b", n, k, i)
                alloc = _w1_allocation(net, r, k, m, rng)
                res = fastmp.match_probability(net, alloc, m=m, trials=t, seed=tseed,
                                               method=method, starts=starts)
                matches += res.matches
                done += res.trials
                amb += res.ambiguous
                methods.add(res.method)
                if progress is not None:
                    progress(t)
            lo, hi = fastmp.wilson_interval(matches, done)
            searched = "relu-search" in methods
            rows.append({"figure": "fig3b", "n": n, "k": k, "frac_rows": k / n,
                         "mp": matches / done, "ci_low": lo, "ci_high": hi, "trials": done,
                         "matches": matches, "method": "+".join(sorted(methods)),
                         "undecided": amb, "r": r, "m": m, "q": q, "d": d,
                         "starts": starts if searched else 0,
                         "budget_limited": searched,
                         "criterion": ("exact decision" if not searched else
                                       "certified matches; misses are budget-limited "
                                       f"({starts} Newton starts per trial)"),
                         "n_alloc": n_alloc, "seconds": time.perf_counter() - t0})
    return rows


def fig3c_rows(trials, seed, n=64, m=30, ks=None, data="digits", data_path=None,
               steps=500, lr=0.05, allocations=None, progress=None):
    """Figure 3c points on labelled data (``r = dm`` learnable weights of ``W1`` over
    ``k`` rows; ``d`` = number of classes, ``q`` = input size). Default ``ks``: a
    geometric sweep from the fewest rows that can hold ``r`` weights to ``n``."""
    import fastmp
    from .data import load_dataset
    from .estimators.relu_data import run_classification

    trials, seed = _check_pos("trials", trials), int(seed)
    n, m, steps = _check_pos("n", n), _check_pos("m", m), _check_pos("steps", steps)
    X, y = load_dataset(data, data_path)
    q, d = X.shape[0], int(y.max()) + 1
    if m > X.shape[1]:
        raise ValueError(f"fig3c_rows: m = {m} exceeds the {X.shape[1]} samples of {data}")
    net = fastmp.ShallowReLU(q=q, n=n, d=d)
    r = d * m
    row_cap = q
    kmin = -(-r // row_cap)
    if kmin > n:
        raise ValueError(f"fig3c_rows: r = dm = {r} weights do not fit in n = {n} rows of {q}")
    if ks is None:
        ks = sorted(set(int(round(x)) for x in np.geomspace(kmin, n, 6)))
    ks = [int(k) for k in ks]
    if any(k < kmin or k > n for k in ks):
        raise ValueError(f"fig3c_rows: every k must lie in {kmin}..{n}, got {ks}")
    rows = []
    for k in ks:
        t0 = time.perf_counter()

        def make(rng, k=k):
            from .allocation import Allocation
            from .generators import random_mask
            return Allocation(net, {"W1": random_mask((n, q), r, rng, k=k, row_cap=row_cap)})

        _, tseed = _rng_and_seed(seed, "fig3c", n, k, 0)
        out = run_classification(net, X, y, m, trials, tseed, make_allocation=make,
                                 steps=steps, lr=lr, progress=progress)
        rows.append({"figure": "fig3c", "n": n, "k": k, "frac_rows": k / n, "mp": out["mp"],
                     "ci_low": out["ci_low"], "ci_high": out["ci_high"],
                     "trials": out["trials"], "matches": out["matches"],
                     "method": out["method"], "r": r, "m": m, "q": q, "d": d, "data": data,
                     "criterion": out["criterion"], "budget_limited": True,
                     "seconds": time.perf_counter() - t0})
    return rows


def plot_rows(rows, path=None, ax=None, title=None):
    """MP against the fraction of used rows, one line per ``n`` with its Wilson band.
    Saves to ``path`` if given; returns the matplotlib axes."""
    import matplotlib
    if ax is None and path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("plot_rows: no rows")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    for n in sorted({r["n"] for r in rows}):
        sub = sorted((r for r in rows if r["n"] == n), key=lambda r: r["frac_rows"])
        x = [r["frac_rows"] for r in sub]
        ax.plot(x, [r["mp"] for r in sub], marker="o", label=f"n = {n}")
        ax.fill_between(x, [r["ci_low"] for r in sub], [r["ci_high"] for r in sub], alpha=0.2)
    ax.set_xlabel("fraction of rows used (k / n)")
    ax.set_ylabel("match probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or rows[0]["figure"])
    ax.legend()
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120)
        if own:
            plt.close(ax.figure)
    return ax
