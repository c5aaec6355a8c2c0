"""Counter-based random streams: one independent stream per (seed, trial).

Every trial derives its own xoshiro256** states from ``(seed, trial, stream)`` through
SplitMix64 -- one stream per weight matrix -- so a trial's draws never depend on batch
size, thread scheduling, worker count, or on which other matrices were drawn: the same
seed gives the same numbers whether trials run in one batch, in many, or on a cluster. Normals come from the Box–Muller transform, two per pair of uniforms.

All functions are Numba kernels and can be called from users' own ``@njit`` code.
"""
from __future__ import annotations

import numpy as np

from .._config import jit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TRIAL_KEY = np.uint64(0xD1B54A32D192ED03)


@jit
def _splitmix64(x):
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@jit
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@jit
def trial_state(seed, trial, stream=0):
    """xoshiro256** state (4 x uint64) of stream ``stream`` of trial ``trial`` under
    seed ``seed``. Different (seed, trial, stream) give independent streams."""
    key = (_splitmix64(np.uint64(seed)) ^ _splitmix64(np.uint64(trial) * _TRIAL_KEY)
           ^ _splitmix64(np.uint64(stream) * _GOLDEN + np.uint64(1)))
    s = np.empty(4, dtype=np.uint64)
    x = key
    for i in range(4):
        x = x + _GOLDEN
        s[i] = _splitmix64(x)
    return s


@jit
def next_u64(s):
    result = _rotl(s[1] * np.uint64(5), 7) * np.uint64(9)
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


@jit
def next_uniform(s):
    """Uniform on the open interval (0, 1), 53 random bits."""
    return ((next_u64(s) >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@jit
def fill_normal(s, out):
    """Fill the 1-d array ``out`` with i.i.d. N(0, 1) draws (Box–Muller, in pairs)."""
    n = out.shape[0]
    i = 0
    while i < n:
        u1 = next_uniform(s)
        u2 = next_uniform(s)
        r = np.sqrt(-2.0 * np.log(u1))
        a = 2.0 * np.pi * u2
        out[i] = r * np.cos(a)
        if i + 1 < n:
            out[i + 1] = r * np.sin(a)
        i += 2


@jit
def draw_segments(seed, trial, seg_start, seg_scale, need, out):
    """Draw one trial's buffer: segment ``k`` is ``out[seg_start[k]:seg_start[k+1]]``,
    i.i.d. N(0, seg_scale[k]**2), drawn only where ``need[k]``.

    Every segment has its own stream (``trial_state(seed, trial, k)``), so a kernel can
    skip segments it does not need (e.g. the teacher, when the allocated system is
    nonsingular and its right-hand side cannot matter) without changing the others.
    """
    for k in range(seg_scale.shape[0]):
        if not need[k]:
            continue
        s = trial_state(seed, trial, k)
        seg = out[seg_start[k]:seg_start[k + 1]]
        fill_normal(s, seg)
        sc = seg_scale[k]
        for i in range(seg.shape[0]):
            seg[i] *= sc
