"""Figure 2a of the paper with its own estimator (fsolve from random starts), at n = 8.

    PYTHONPATH=. python bench/fig2a_baseline.py [--trials 50] [--starts 400] [--fast-starts 50]

Setting (Appendix E.2): LRNN with T = n/2, b = 1, d = 4, m = n/2, so r = d m = 2n
learnable recurrent weights, placed at random within exactly the first k rows with at
most Tb weights per row and Td per column (Theorem 3.4's budgets); a fresh allocation per
trial, as in the paper. k runs from r/(Tb) = 4 (every used row then holds exactly Tb
weights: Theorem 3.5, MP = 1 in theory) up to n.

For every k the table gives MP, the 95% Wilson interval and seconds per trial of
``bench/fsolve_baseline.fsolve_mp``, once with ``--starts`` (the paper's 400) and once
with ``--fast-starts``. Both runs use the same draws and allocations per trial (and the
same initial points: the 50-start run sees the first 50 of the 400).

At k = r/(Tb) the script also builds the (generically unique) real root of each trial by
the linear construction behind Theorem 3.5 (lifted system of Lemma 3.3: the equations of
unused rows and D F = Y are linear in F; then every used row is a linear system in its
own Tb weights), and reports how many trials have a verified root and how far it lies
from the scale of the random starts, so fsolve misses there are known to be misses.

One BLAS thread (set before numpy is imported): the timings are single-core.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastmp  # noqa: E402
from fastmp import generators  # noqa: E402
from fsolve_baseline import DEFAULT_TOL, fsolve_mp, fsolve_trial  # noqa: E402


def theorem35_root(model, mask, m, seed, trial):
    """Real root ``x`` (entries of ``W[mask]``, row-major) of a row-wise Theorem-3.5
    allocation for trial ``(seed, trial)``, or ``None`` if a linear step is singular.

    With ``f_j = W^j B`` (j = 1..T), matching on generic X (Tb x m of full rank, m = Tb)
    is ``D f_j = D* W*^j B*``. Unused rows give ``f_{j+1}[i] = W0[i] f_j`` (linear in F),
    ``f_1[i] = W0[i] B``; with D f_j = M_j that is n T linear equations in the n T entries
    of F. Each used row then gives ``f_j[i] = W[i] f_{j-1}`` (f_0 = B), Tb linear
    equations in its Tb unknown weights.
    """
    teacher, student, X = model.trial_draws(seed, trial, m)
    n, T, b = model.n, model.T, model.b
    if b != 1:
        raise NotImplementedError("theorem35_root: b = 1 only")
    W0, B, D = student["W"], student["B"][:, 0], student["D"]
    Ws, Bs, Ds = teacher["W"], teacher["B"][:, 0], teacher["D"]
    used = mask.any(axis=1)
    # targets M_j = D* W*^j B*
    M, v = [], Bs
    for _ in range(T):
        v = Ws @ v
        M.append(Ds @ v)
    N = n * T  # unknown F[:, j], j = 0..T-1 stands for f_{j+1}; index j*n + i
    rows, rhs = [], []
    for j in range(T):
        blk = np.zeros((model.d, N))
        blk[:, j * n:(j + 1) * n] = D
        rows.append(blk)
        rhs.append(M[j])
    for i in np.flatnonzero(~used):
        for j in range(T):
            row = np.zeros(N)
            row[j * n + i] = 1.0
            if j == 0:
                rhs.append(np.array([W0[i] @ B]))
            else:
                row[(j - 1) * n:j * n] -= W0[i]
                rhs.append(np.array([0.0]))
            rows.append(row[None, :])
    A, c = np.vstack(rows), np.concatenate(rhs)
    if A.shape[0] != N or np.linalg.cond(A) > 1e12:
        return None
    f = np.linalg.solve(A, c).reshape(T, n)
    prev = np.vstack([B, f[:-1]])  # f_{j-1}, j = 1..T, with f_0 = B
    x = []
    for i in np.flatnonzero(used):
        cols = np.flatnonzero(mask[i])
        # f_j[i] = W0[i, ~cols] f_{j-1}[~cols] + W[i, cols] f_{j-1}[cols]
        free = np.ones(n, bool)
        free[cols] = False
        G = prev[:, cols]
        g = f[:, i] - prev[:, free] @ W0[i, free]
        if G.shape[0] != G.shape[1] or np.linalg.cond(G) > 1e12:
            return None
        x.append(np.linalg.solve(G, g))
    return np.concatenate(x)


def check_root(model, mask, m, seed, trial, x):
    teacher, student, X = model.trial_draws(seed, trial, m)
    Y = model.forward(teacher, X)
    W = student["W"].copy()
    W[mask] = x
    w = dict(student, W=W)
    return float(np.max(np.abs(model.forward(w, X) - Y))) / max(1.0, float(np.max(np.abs(Y))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 5, 6, 8])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--starts", type=int, default=400)
    ap.add_argument("--fast-starts", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0, help="draws seed (fastmp's trial_draws)")
    ap.add_argument("--alloc-seed", type=int, default=1)
    ap.add_argument("--start-seed", type=int, default=2)
    ap.add_argument("--tol", type=float, default=DEFAULT_TOL)
    ap.add_argument("--loose-tol", type=float, default=1e-6,
                    help="also report MP had this (looser) tolerance been used")
    args = ap.parse_args(argv)

    n = args.n
    T, b, d = n // 2, 1, 4
    m = n // 2
    r = d * m
    model = fastmp.LRNN(n=n, T=T, b=b, d=d)
    k_min = r // (T * b)
    print(f"Figure 2a baseline: {model}, m = {m}, r = {r}, k_min = r/(Tb) = {k_min}; "
          f"{args.trials} trials per k, fsolve (finite differences), tol = {args.tol:g} "
          f"x max(1, ||Y||_inf), 1 thread")

    def alloc_for(k):
        return lambda t: generators.random_in_rows(
            model, "W", r, k, rng=np.random.default_rng([args.alloc_seed, k, t]))

    results = {}
    t_all = time.perf_counter()
    for starts in (args.starts, args.fast_starts):
        for k in args.ks:
            res = fsolve_mp(model, alloc_for(k), m=m, trials=args.trials, seed=args.seed,
                            starts=starts, tol=args.tol, start_seed=args.start_seed)
            results[starts, k] = res
            print(f"  done starts={starts:4d} k={k}: MP {res['mp']:.2f} "
                  f"({res['seconds']:.1f} s)", flush=True)

    loose = args.loose_tol
    print()
    print(f"{'k':>3} {'Thm3.5':>6} | {'starts':>6} {'MP':>5} {'95% CI':>14} {'s/trial':>8} "
          f"{'MP@' + format(loose, 'g'):>9} {'med win':>7} | fsolve ier counts (all starts)")
    for k in args.ks:
        for starts in (args.starts, args.fast_starts):
            res = results[starts, k]
            hits = [s for s, ok in zip(res["starts_used"], res["matched"]) if ok]
            med = f"{int(np.median(hits))}" if hits else "-"
            # exact: a missed trial ran all its starts, so any converged start within
            # `loose` of a root would have matched under that tolerance
            n_loose = sum(ok or (br == br and br <= loose)
                          for ok, br in zip(res["matched"], res["best_rejected"]))
            print(f"{k:>3} {'yes' if k == k_min else 'no':>6} | {starts:>6} {res['mp']:>5.2f} "
                  f"[{res['ci_low']:.2f}, {res['ci_high']:.2f}] "
                  f"{res['seconds_per_trial']:>8.3f} {n_loose / res['trials']:>9.2f} {med:>7} | "
                  f"{dict(sorted(res['statuses'].items()))}")
    print(f"total {time.perf_counter() - t_all:.1f} s")

    if k_min in args.ks:
        gen = alloc_for(k_min)
        res400 = results[args.starts, k_min]
        verified, resid, size_hit, size_miss, from_root = 0, [], [], [], 0
        for t in range(args.trials):
            mask = gen(t).mask("W")
            assert (mask.sum(axis=1)[:k_min] == T * b).all()
            x = theorem35_root(model, mask, m, args.seed, t)
            if x is None:
                continue
            rel = check_root(model, mask, m, args.seed, t, x)
            resid.append(rel)
            verified += rel <= 1e-6
            size = float(np.max(np.abs(x))) * np.sqrt(n)  # in units of the start std
            (size_hit if res400["matched"][t] else size_miss).append(size)
            # does fsolve, started AT the root, accept it under our criterion?
            ok, _, _ = fsolve_trial(model, {"W": mask}, m, args.seed, t, starts=1,
                                    tol=args.tol, x0=x)
            from_root += ok
        miss = res400["trials"] - res400["matches"]
        print(f"\nk = {k_min} (Theorem 3.5, MP = 1): real root built by the linear construction "
              f"in {len(resid)}/{args.trials} trials, residual <= 1e-6 in {verified} (max "
              f"{max(resid) if resid else float('nan'):.1e}); fsolve started at that root "
              f"accepts it in {from_root}/{len(resid)}; fsolve with {args.starts} random "
              f"starts missed {miss}/{args.trials}.")

        def q(v):
            return (f"median {np.median(v):.0f}, max {np.max(v):.0f} (n = {len(v)})"
                    if v else "-")
        print(f"  root size ||x*||_inf in units of the start std 1/sqrt(n): "
              f"matched trials {q(size_hit)}; missed trials {q(size_miss)}")


if __name__ == "__main__":
    main()
