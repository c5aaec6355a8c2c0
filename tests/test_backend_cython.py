"""The Cython/LAPACK decision (fastmp._ext._lapack) against the Numba one
(fastmp.kernels.decide): identical statuses on systems whose pivot ratios and residuals
lie far from every threshold, and the expected status on each kind of system.

The extension is built by ``pip install``; nothing here compiles anything.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmp._config import AMBIGUOUS, DEFAULT_TOLERANCES, MATCH, NEED_RHS, NO_MATCH
from fastmp._ext import _lapack
from fastmp.kernels import decide as nb

TOL = DEFAULT_TOLERANCES.as_tuple()
RANK_LO, RANK_HI, RES_LO, RES_HI = TOL
#: A pivot ratio in the middle (log scale) of the ambiguous band of the defaults.
MID_RANK_BAND = np.sqrt(RANK_LO * RANK_HI)
#: A residual in the middle (log scale) of the ambiguous band of the defaults.
MID_RES_BAND = np.sqrt(RES_LO * RES_HI)


def statuses(C, rhs, scale, tol=TOL, **kwargs):
    """Statuses from both backends; asserts they are identical and returns them."""
    C = np.asarray(C, dtype=np.float64)
    rhs = np.asarray(rhs, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    s_cy = np.full(C.shape[0], -7, dtype=np.int8)
    s_nb = np.full(C.shape[0], -7, dtype=np.int8)
    _lapack.decide_batch(C, rhs, scale, *tol, s_cy, **kwargs)
    nb.decide_batch(C, rhs, scale, *tol, s_nb)
    np.testing.assert_array_equal(s_cy, s_nb)
    return s_cy


def numba_one(C, rhs, scale, tol=TOL):
    return nb.decide_inplace(
        np.array(C, dtype=np.float64), np.array(rhs, dtype=np.float64), float(scale), *tol,
        np.empty(C.shape[1]),
    )


def gaussian(rng, B, M, N):
    return rng.standard_normal((B, M, N))


def in_range(rng, C):
    """rhs = C w for Gaussian w, and the scale ||C||_F ||w|| of what it was made from."""
    w = rng.standard_normal(C.shape[:1] + C.shape[2:])
    rhs = np.einsum("bij,bj->bi", C, w)
    return rhs, np.linalg.norm(C, axis=(1, 2)) * np.linalg.norm(w, axis=1)


def random_rhs(rng, C):
    rhs = rng.standard_normal(C.shape[:2])
    return rhs, np.linalg.norm(rhs, axis=1)


def low_rank(rng, B, M, N, r):
    """Products of Gaussian M x r and r x N matrices: rank r structurally."""
    return rng.standard_normal((B, M, r)) @ rng.standard_normal((B, r, N))


def near_singular(rng, B, N, ratio):
    """U diag(1, ..., 1, ratio) V^T with Haar-random orthogonal U, V."""
    out = np.empty((B, N, N))
    s = np.ones(N)
    s[-1] = ratio
    for b in range(B):
        U, _ = np.linalg.qr(rng.standard_normal((N, N)))
        V, _ = np.linalg.qr(rng.standard_normal((N, N)))
        out[b] = (U * s) @ V.T
    return out


def orthogonal_columns(rng, B, M, N):
    """Q diag(d) with orthonormal Q (M x N) and d from 1 to 2: R = diag(d) up to order,
    so the smallest kept pivot ratio is exactly 0.5 (1.0 for N == 1)."""
    out = np.empty((B, M, N))
    d = np.linspace(1.0, 2.0, N) if N > 1 else np.ones(1)
    for b in range(B):
        Q, _ = np.linalg.qr(rng.standard_normal((M, N)))
        out[b] = Q * rng.permutation(d)
    return out, d.min() / d.max()


def orthogonal_to_range(C, rng):
    """Unit vectors u[b] with C[b]^T u[b] = 0 (needs M > rank)."""
    out = np.empty(C.shape[:2])
    for b in range(C.shape[0]):
        Q, _ = np.linalg.qr(C[b], mode="complete")
        k = np.linalg.matrix_rank(C[b])
        u = Q[:, k:] @ rng.standard_normal(C.shape[1] - k)
        out[b] = u / np.linalg.norm(u)
    return out


# --- the module itself -----------------------------------------------------------------


def test_status_codes_agree_with_config():
    assert (_lapack.NO_MATCH, _lapack.MATCH, _lapack.AMBIGUOUS) == (NO_MATCH, MATCH, AMBIGUOUS)
    assert isinstance(_lapack.OPENMP, bool)


# --- (a) square Gaussian systems: full rank, so every rhs is in the range -------------


def test_random_square_gaussian_all_match():
    rng = np.random.default_rng(20250301)
    C = gaussian(rng, 2000, 8, 8)
    rhs, scale = random_rhs(rng, C)
    assert np.all(statuses(C, rhs, scale) == MATCH)


@pytest.mark.parametrize("N", [1, 2, 3, 24, 60])
def test_random_square_gaussian_sizes(N):
    rng = np.random.default_rng(N)
    C = gaussian(rng, 100, N, N)
    rhs, scale = random_rhs(rng, C)
    assert np.all(statuses(C, rhs, scale) == MATCH)


# --- (b) structurally singular square systems -----------------------------------------


@pytest.mark.parametrize("factor", [1.0, -0.37])
def test_duplicated_column(factor):
    rng = np.random.default_rng(7)
    C = gaussian(rng, 300, 10, 10)
    C[:, :, 6] = factor * C[:, :, 2]
    rhs, scale = random_rhs(rng, C)
    assert np.all(statuses(C, rhs, scale) == NO_MATCH)
    rhs, scale = in_range(rng, C)
    assert np.all(statuses(C, rhs, scale) == MATCH)


@pytest.mark.parametrize("N, r", [(6, 5), (12, 7), (30, 1), (24, 20)])
def test_rank_deficient_product(N, r):
    rng = np.random.default_rng(100 * N + r)
    C = low_rank(rng, 200, N, N, r)
    rhs, scale = random_rhs(rng, C)
    assert np.all(statuses(C, rhs, scale) == NO_MATCH)
    rhs, scale = in_range(rng, C)
    assert np.all(statuses(C, rhs, scale) == MATCH)


# --- (c) rectangular systems ----------------------------------------------------------


@pytest.mark.parametrize("M, N", [(12, 7), (40, 24), (5, 1)])
def test_overdetermined(M, N):
    rng = np.random.default_rng(M * N)
    C = gaussian(rng, 300, M, N)
    rhs, scale = in_range(rng, C)
    assert np.all(statuses(C, rhs, scale) == MATCH)
    rhs, scale = random_rhs(rng, C)
    assert np.all(statuses(C, rhs, scale) == NO_MATCH)


@pytest.mark.parametrize("M, N", [(7, 12), (24, 40), (1, 5)])
def test_underdetermined_full_row_rank(M, N):
    rng = np.random.default_rng(M * N + 1)
    C = gaussian(rng, 300, M, N)
    rhs, scale = random_rhs(rng, C)
    assert np.all(statuses(C, rhs, scale) == MATCH)


def test_overdetermined_rank_deficient():
    rng = np.random.default_rng(11)
    C = low_rank(rng, 200, 15, 9, 4)
    rhs, scale = in_range(rng, C)
    assert np.all(statuses(C, rhs, scale) == MATCH)
    rhs, scale = random_rhs(rng, C)
    assert np.all(statuses(C, rhs, scale) == NO_MATCH)


# --- (d) the ambiguous bands ----------------------------------------------------------


@pytest.mark.parametrize("N", [2, 5, 16, 40])
def test_near_singular_is_ambiguous(N):
    # sigma_min / sigma_max in the middle of (rank_lo, rank_hi); with column pivoting the
    # last pivot ratio stays within a small factor of it (measured: 1x to 4.2x up to
    # N = 64), far inside the band's three orders of magnitude.
    rng = np.random.default_rng(N)
    C = near_singular(rng, 100, N, MID_RANK_BAND)
    rhs, scale = random_rhs(rng, C)
    assert np.all(statuses(C, rhs, scale) == AMBIGUOUS)
    rhs, scale = in_range(rng, C)  # consistent or not: near-singular is never a match
    assert np.all(statuses(C, rhs, scale) == AMBIGUOUS)
    status, rank, rho_min, residual = _lapack.decide_one(C[0], rhs[0], scale[0], *TOL)
    assert (status, rank) == (AMBIGUOUS, N - 1)


def test_near_singular_outside_band():
    # the same construction, with the ratio moved below rank_lo or above rank_hi
    rng = np.random.default_rng(3)
    C = near_singular(rng, 50, 8, RANK_LO / 1e3)
    rhs, scale = in_range(rng, C)
    assert np.all(statuses(C, rhs, scale) == MATCH)
    C = near_singular(rng, 50, 8, RANK_HI * 1e3)
    rhs, scale = random_rhs(rng, C)
    assert np.all(statuses(C, rhs, scale) == MATCH)  # full rank


def test_residual_in_ambiguous_band():
    # the decision's residual is rho_min * ||tail|| / scale; rho_min is 0.5 here
    rng = np.random.default_rng(5)
    C, rho_min = orthogonal_columns(rng, 200, 14, 9)
    base, scale = in_range(rng, C)
    u = orthogonal_to_range(C, rng)
    for res, expected in [(MID_RES_BAND, AMBIGUOUS), (RES_HI * 30, NO_MATCH),
                          (RES_LO / 30, MATCH)]:
        rhs = base + (res / rho_min * scale)[:, None] * u
        assert np.all(statuses(C, rhs, scale) == expected), res
    cy = _lapack.decide_one(C[0], rhs[0], scale[0], *TOL)
    assert cy[2] == pytest.approx(rho_min, rel=1e-12)
    assert cy[3] == pytest.approx(RES_LO / 30, rel=1e-3)


def test_residual_is_relative_to_kept_conditioning():
    # the same tail is a mismatch for a well-conditioned system and ambiguous (within
    # rounding of a consistent one) for a badly conditioned one
    rng = np.random.default_rng(8)
    C, _ = orthogonal_columns(rng, 50, 10, 6)
    C[:, :, 0] *= 1e-5  # rho_min = 1e-5 / 2
    base, _ = in_range(rng, C)
    rhs = base + 1e-7 * orthogonal_to_range(C, rng)
    assert np.all(statuses(C, rhs, np.ones(50)) == AMBIGUOUS)  # res = 5e-13
    C[:, :, 0] *= 1e5
    rhs = np.einsum("bij,bj->bi", C, rng.standard_normal((50, 6)))
    rhs += 1e-7 * orthogonal_to_range(C, rng)
    assert np.all(statuses(C, rhs, np.ones(50)) == NO_MATCH)  # res = 5e-8


def test_scale_and_unscaled_residual():
    rng = np.random.default_rng(6)
    C, rho_min = orthogonal_columns(rng, 50, 10, 6)
    base, _ = in_range(rng, C)
    rhs = base + MID_RES_BAND / rho_min * orthogonal_to_range(C, rng)
    for scale, expected in [(1.0, AMBIGUOUS), (0.0, AMBIGUOUS), (-1.0, NEED_RHS),
                            (1e-4, NO_MATCH), (1e4, MATCH)]:
        got = statuses(C, rhs, np.full(50, scale))
        assert np.all(got == expected), scale


# --- (e) the zero matrix --------------------------------------------------------------


@pytest.mark.parametrize("M, N", [(6, 6), (9, 4), (3, 8), (1, 1)])
def test_zero_matrix(M, N):
    rng = np.random.default_rng(0)
    C = np.zeros((20, M, N))
    rhs = rng.standard_normal((20, M))
    assert np.all(statuses(C, rhs, np.ones(20)) == NO_MATCH)
    assert np.all(statuses(C, np.zeros((20, M)), np.ones(20)) == MATCH)
    status, rank, rho_min, residual = _lapack.decide_one(C[0], rhs[0], 2.0, *TOL)
    assert (status, rank, rho_min) == (NO_MATCH, 0, 1.0)
    assert residual == pytest.approx(np.linalg.norm(rhs[0]) / 2.0, rel=1e-14)


# --- the single-system twin -----------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: (gaussian(rng, 1, 9, 9)[0], rng.standard_normal(9)),
        lambda rng: (low_rank(rng, 1, 12, 8, 5)[0], rng.standard_normal(12)),
        lambda rng: (gaussian(rng, 1, 4, 7)[0], rng.standard_normal(4)),
        lambda rng: (near_singular(rng, 1, 6, MID_RANK_BAND)[0], rng.standard_normal(6)),
        lambda rng: (np.zeros((3, 5)), rng.standard_normal(3)),
    ],
    ids=["square", "low-rank", "wide", "near-singular", "zero"],
)
def test_decide_one_matches_decide_inplace(make):
    rng = np.random.default_rng(42)
    C, rhs = make(rng)
    scale = float(np.linalg.norm(rhs))
    cy = _lapack.decide_one(C, rhs, scale, *TOL)
    ref = numba_one(C, rhs, scale)
    assert cy[:2] == tuple(ref[:2])  # status, rank
    assert cy[2] == pytest.approx(ref[2], rel=1e-8)  # smallest kept pivot ratio
    assert cy[3] == pytest.approx(ref[3], rel=1e-8, abs=1e-14)  # residual / scale


# --- inputs, layouts, threads ---------------------------------------------------------


def test_inputs_not_modified():
    rng = np.random.default_rng(9)
    C = low_rank(rng, 50, 10, 8, 6)
    rhs, scale = random_rhs(rng, C)
    copies = C.copy(), rhs.copy(), scale.copy()
    statuses(C, rhs, scale)
    _lapack.decide_one(C[0], rhs[0], scale[0], *TOL)
    for before, after in zip(copies, (C, rhs, scale)):
        np.testing.assert_array_equal(before, after)


def test_read_only_and_non_contiguous_inputs():
    rng = np.random.default_rng(10)
    C = gaussian(rng, 40, 9, 9)
    C[:, :, 4] = C[:, :, 1]
    rhs, scale = in_range(rng, C)
    rhs[::2] = rng.standard_normal((20, 9))  # half inconsistent
    expected = statuses(C, rhs, scale)
    assert np.array_equal(expected[::2], np.full(20, NO_MATCH))
    assert np.array_equal(expected[1::2], np.full(20, MATCH))

    views = [np.asfortranarray(C), rhs.copy(order="F"), scale.copy()]
    for a in views:
        a.flags.writeable = False
    got = np.empty(40, dtype=np.int8)
    _lapack.decide_batch(*views, *TOL, got)
    np.testing.assert_array_equal(got, expected)
    got = np.empty(20, dtype=np.int8)
    _lapack.decide_batch(C[::2], rhs[::2], scale[::2], *TOL, got)
    np.testing.assert_array_equal(got, expected[::2])


@pytest.mark.parametrize("n_threads", [2, 0])
def test_threads_do_not_change_statuses(n_threads):
    rng = np.random.default_rng(12)
    C = low_rank(rng, 301, 12, 12, 11)
    rhs, scale = random_rhs(rng, C)
    rhs[::3], scale[::3] = in_range(rng, C[::3])
    serial = statuses(C, rhs, scale)
    threaded = statuses(C, rhs, scale, n_threads=n_threads)
    np.testing.assert_array_equal(serial, threaded)


def test_empty_batch_and_empty_systems():
    status = np.empty(0, dtype=np.int8)
    _lapack.decide_batch(np.empty((0, 3, 3)), np.empty((0, 3)), np.empty(0), *TOL, status)
    # no unknowns: the residual is ||rhs||; no equations: nothing to violate
    rhs = np.array([[1.0, 2.0], [0.0, 0.0]])
    assert list(statuses(np.empty((2, 2, 0)), rhs, np.ones(2))) == [NO_MATCH, MATCH]
    assert list(statuses(np.empty((2, 0, 3)), np.empty((2, 0)), np.ones(2))) == [MATCH] * 2


@pytest.mark.parametrize(
    "shapes",
    [
        ((4, 3, 3), (4, 2), (4,), (4,)),
        ((4, 3, 3), (3, 3), (4,), (4,)),
        ((4, 3, 3), (4, 3), (5,), (4,)),
        ((4, 3, 3), (4, 3), (4,), (3,)),
    ],
)
def test_shape_mismatch_raises(shapes):
    c, r, s, st_ = shapes
    with pytest.raises(ValueError):
        _lapack.decide_batch(np.zeros(c), np.zeros(r), np.ones(s), *TOL,
                             np.empty(st_, dtype=np.int8))


def test_wrong_dtypes_raise():
    with pytest.raises(ValueError):  # buffer dtype mismatch
        _lapack.decide_batch(np.zeros((2, 3, 3), dtype=np.float32), np.zeros((2, 3)),
                             np.ones(2), *TOL, np.empty(2, dtype=np.int8))
    with pytest.raises(ValueError):
        _lapack.decide_batch(np.zeros((2, 3, 3)), np.zeros((2, 3)), np.ones(2), *TOL,
                             np.empty(2, dtype=np.int64))


# --- shapes and ranks explored by hypothesis ------------------------------------------


# example count, deadline and derandomisation come from the profile in conftest.py
@given(
    M=st.integers(1, 12),
    N=st.integers(1, 12),
    r=st.integers(0, 12),
    consistent=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_backends_agree_on_low_rank_systems(M, N, r, consistent, seed):
    r = min(r, M, N)
    rng = np.random.default_rng(seed)
    C = low_rank(rng, 8, M, N, r)
    rhs, scale = in_range(rng, C) if consistent else random_rhs(rng, C)
    got = statuses(C, rhs, scale)
    expected = MATCH if consistent or r == M else NO_MATCH
    # A product of Gaussian factors is near-singular now and then (see Tolerances);
    # such a system may be ambiguous, but both backends must still say so.
    for b in range(8):
        rho_min = _lapack.decide_one(C[b], rhs[b], scale[b], *TOL)[2]
        if rho_min > 1e-4:
            assert got[b] == expected


def test_match_rho_floor_agrees_with_config():
    from fastmp._config import MATCH_RHO_FLOOR
    assert _lapack.MATCH_RHO_FLOOR == MATCH_RHO_FLOOR


def test_ill_conditioned_small_inconsistency_is_never_a_match():
    # rho_min = 1e-8 and a true relative tail of 3e-8: the noise-relative residual
    # (3e-16) looks consistent, but the tail is far above what the floored test accepts
    # -> ambiguous (exact re-decision), never a match. The case met in a structurally
    # rank-deficient LinearFFN layer (tests/test_linear_exact.py).
    rng = np.random.default_rng(21)
    C, _ = orthogonal_columns(rng, 50, 10, 6)
    C[:, :, 0] *= 2e-8  # rho_min = 1e-8
    base, _ = in_range(rng, C)
    rhs = base + 3e-8 * orthogonal_to_range(C, rng)
    assert np.all(statuses(C, rhs, np.ones(50)) == AMBIGUOUS)
    # the same system with a consistent rhs is not called a mismatch either
    assert not np.any(statuses(C, base, np.ones(50)) == NO_MATCH)


@pytest.mark.parametrize("N", [1, 3, 8, 24, 40])
def test_screen_settles_only_nonsingular_systems(N):
    rng = np.random.default_rng(N)
    B = 37  # not a multiple of the lane count
    C = rng.standard_normal((B, N, N))
    sing = np.arange(B) % 3 == 0
    for b in np.flatnonzero(sing):  # exactly rank-deficient: a column repeated, or a zero row
        if N > 1 and b % 2:
            C[b, :, -1] = C[b, :, 0] * 0.5
        else:
            C[b, -1, :] = 0.0
    status = np.full(B, -7, dtype=np.int8)
    done = _lapack.screen_batch(np.ascontiguousarray(C), DEFAULT_TOLERANCES.screen, status)
    assert not np.any(done[sing])
    assert np.all(status[sing] == -7)
    assert np.all(status[done] == MATCH)
    # Gaussian matrices are well conditioned far above the screen almost always
    assert done[~sing].mean() > 0.9
    # what the screen settles, the QR decision calls a match too
    rhs = rng.standard_normal((B, N))
    full = statuses(C[done], rhs[done], np.linalg.norm(rhs[done], axis=1))
    assert np.all(full == MATCH)


def test_screen_rejects_near_singular_and_bad_shapes():
    rng = np.random.default_rng(3)
    C = near_singular(rng, 16, 12, RANK_HI)
    status = np.zeros(16, dtype=np.int8)
    assert not _lapack.screen_batch(np.ascontiguousarray(C), DEFAULT_TOLERANCES.screen, status).any()
    with pytest.raises(ValueError, match="square"):
        _lapack.screen_batch(np.zeros((2, 3, 4)), 1e-8, np.zeros(2, np.int8))
    with pytest.raises(ValueError, match="status has length"):
        _lapack.screen_batch(np.zeros((2, 3, 3)), 1e-8, np.zeros(3, np.int8))


@pytest.mark.parametrize("N", [2, 7, 24])
def test_screen_condition_estimate_brackets_the_true_one(N):
    # Hager's estimate of ||A^-1||_1 is a lower bound and rarely off by more than n:
    # true rcond <= estimate <= n * true rcond
    rng = np.random.default_rng(100 + N)
    B = 21
    C = rng.standard_normal((B, N, N)) * np.logspace(0, 6, N)[None, None, :]
    rc = np.empty(B)
    _lapack.screen_batch(C, 1e-8, np.zeros(B, np.int8), rcond=rc)
    true = np.array([1.0 / np.linalg.cond(c, 1) for c in C])
    assert np.all(rc >= true * (1 - 1e-8))
    assert np.all(rc <= true * N * 1.000001)


def test_lu_batch_pivots_equal_lapack():
    # the screen's lane-wise LU is LAPACK's partial pivoting: same pivots, same |u_ii|
    import scipy.linalg as sl
    rng = np.random.default_rng(4)
    C = rng.standard_normal((13, 9, 9))  # 13: a partly filled last group of lanes
    ref = [np.abs(np.diag(sl.lu_factor(c)[0])).min() for c in C]
    np.testing.assert_allclose(_lapack.lu_batch(C), ref, rtol=1e-12)
