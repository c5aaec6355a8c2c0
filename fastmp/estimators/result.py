"""The result of an MP estimate and its confidence interval."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

_Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes, trials, z=_Z95):
    """Wilson score interval for a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or
    1 matches: with 1000 trials and 1000 matches the interval is [0.9962, 1].
    """
    if trials <= 0:
        raise ValueError("wilson_interval: trials must be positive")
    if not 0 <= successes <= trials:
        raise ValueError("wilson_interval: need 0 <= successes <= trials")
    p = successes / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # exact endpoints where the estimate sits on the boundary
    if successes == 0:
        lo = 0.0
    if successes == trials:
        hi = 1.0
    return lo, hi


@dataclass(frozen=True)
class MPResult:
    """Estimated match probability ``MP(A, m)`` (Definition 2.3).

    ``mp = matches / trials``; ``ci_low``/``ci_high`` is the Wilson 95% interval.
    ``refined`` counts trials whose floating-point decision fell in the ambiguous band
    (see :class:`fastmp.Tolerances`) and were re-decided in exact arithmetic;
    ``ambiguous`` counts trials left undecided -- never counted as matches: for
    polynomial allocations, the *near-misses* (Newton converged, no certified root).
    ``budget`` describes the search (starts used, MP as a function of the number of
    starts, how roots were certified) for polynomial methods.
    ``status`` holds one code per trial (0 no match, 1 match, 2 ambiguous).
    """

    mp: float
    matches: int
    trials: int
    ci_low: float
    ci_high: float
    ambiguous: int
    m: int
    r: int
    seed: int
    method: str
    backend: str
    model: str
    allocation: str
    refined: int = 0
    budget: dict = field(default_factory=dict)
    seconds: float = 0.0
    status: np.ndarray = field(default=None, repr=False, compare=False)

    @classmethod
    def from_status(cls, status, **kw):
        status = np.asarray(status, dtype=np.int8)
        trials = int(status.size)
        matches = int(np.count_nonzero(status == 1))
        lo, hi = wilson_interval(matches, trials)
        return cls(mp=matches / trials, matches=matches, trials=trials, ci_low=lo, ci_high=hi,
                   ambiguous=int(np.count_nonzero(status == 2)), status=status, **kw)

    @property
    def budget_limited(self):
        """For a root search: ``True`` when its last doubling of the starts per trial still
        raised MP by more than one trial's worth (MP had not levelled off: more starts,
        e.g. ``starts=4 * max_starts``, would likely find more roots); ``False`` when it
        had; ``None`` for exact methods (nothing to add)."""
        curve = self.budget.get("mp_by_starts") if self.budget else None
        if not curve:
            return None
        curve = {int(k): v for k, v in curve.items()}  # keys are str after a JSON trip
        ks = sorted(curve)
        if len(ks) < 2:
            return True
        return (curve[ks[-1]] - curve[ks[-2]]) * self.trials > 1.0

    def to_dict(self):
        """Plain dict (JSON-serialisable; the per-trial ``status`` array is left out)."""
        d = asdict(self)
        d.pop("status")
        d["budget_limited"] = self.budget_limited
        return d

    def __str__(self):
        text = (f"MP = {self.mp:.4f}  [{self.ci_low:.4f}, {self.ci_high:.4f}]  "
                f"({self.matches}/{self.trials} matches, {self.refined} decided exactly, "
                f"{self.ambiguous} undecided; "
                f"m={self.m}, r={self.r}, method={self.method}, backend={self.backend})")
        if self.budget_limited:
            text += ("\n  budget-limited: the last doubling of the starts still raised MP; "
                     "more starts would likely find more roots")
        return text
