"""Allocations of learnable weights (Definition 2.1): one boolean mask per parameter."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .models.base import Model


class Allocation:
    """The set of learnable weights of a student, as ``{parameter name: bool mask}``.

    Parameters not named are entirely frozen. Masks are copied and made read-only.

    >>> import numpy as np, fastmp
    >>> net = fastmp.LinearEstimator(q=2, d=2)
    >>> fastmp.Allocation(net, {"W": np.ones((2, 2), bool)}).r
    4
    """

    def __init__(self, model, masks):
        if not isinstance(model, Model):
            raise TypeError(f"Allocation: model must be a fastmp model, got {type(model).__name__}")
        if not isinstance(masks, Mapping):
            raise TypeError("Allocation: masks must be a dict {parameter name: bool array}, "
                            f"got {type(masks).__name__}")
        self.model = model
        clean = {}
        for name, mask in masks.items():
            if name not in model.param_shapes:
                raise ValueError(
                    f"Allocation: unknown parameter {name!r} for {type(model).__name__}; "
                    f"its parameters are {', '.join(model.param_names)}")
            arr = np.asarray(mask)
            if arr.dtype != np.bool_:
                raise TypeError(
                    f"Allocation: mask of {name!r} must be boolean, got dtype {arr.dtype} "
                    "(use mask.astype(bool) if 0/1 values are meant)")
            if arr.shape != model.param_shapes[name]:
                raise ValueError(
                    f"Allocation: mask of {name!r} has shape {arr.shape}, parameter "
                    f"{name!r} of {model!r} has shape {model.param_shapes[name]}")
            arr = arr.copy()
            arr.setflags(write=False)
            clean[name] = arr
        if sum(int(a.sum()) for a in clean.values()) == 0:
            raise ValueError("Allocation: empty allocation (no learnable weight); "
                             "MP of an empty allocation is not defined")
        # keep model order; drop masks without learnable weights
        self.masks = {n: clean[n] for n in model.param_names if n in clean and clean[n].any()}

    # ------------------------------------------------------------------ queries
    @property
    def r(self):
        """Number of learnable weights |A|."""
        return int(sum(int(a.sum()) for a in self.masks.values()))

    @property
    def params(self):
        """Names of the parameters holding learnable weights, in model order."""
        return tuple(self.masks)

    def mask(self, name):
        """Mask of ``name`` (all False for a parameter without learnable weights)."""
        if name in self.masks:
            return self.masks[name]
        return np.zeros(self.model.param_shapes[name], dtype=bool)

    def row_counts(self, name):
        return self.mask(name).sum(axis=1)

    def col_counts(self, name):
        return self.mask(name).sum(axis=0)

    @property
    def linear_param(self):
        """The parameter name if the allocation's system is linear (all learnable weights
        in one parameter the model is linear in), else ``None``."""
        if len(self.masks) == 1:
            (name,) = self.masks
            if name in self.model.linear_params:
                return name
        return None

    def default_m(self):
        """``m = r / d`` (equations = unknowns), the paper's setting MP(A) = MP(A, r/d)."""
        r, d = self.r, self.model.d
        if r % d:
            raise ValueError(
                f"m defaults to r/d, but r = {r} is not a multiple of d = {d}; pass m explicitly")
        return r // d

    # ------------------------------------------------------------------ I/O
    def to_dict(self):
        """JSON-friendly form: ``{name: ["0110", ...]}`` (one string per row)."""
        return {n: ["".join("1" if v else "0" for v in row) for row in a]
                for n, a in self.masks.items()}

    @classmethod
    def from_dict(cls, model, data):
        """Inverse of :meth:`to_dict`; rows may be strings of 0/1 or lists of bools/0-1."""
        masks = {}
        for name, rows in data.items():
            parsed = []
            for row in rows:
                if isinstance(row, str):
                    row = row.replace(" ", "").replace(",", "")
                    if set(row) - {"0", "1"}:
                        raise ValueError(f"Allocation: mask rows of {name!r} must contain only 0 and 1, got {row!r}")
                    parsed.append([c == "1" for c in row])
                else:
                    vals = list(row)
                    if any(v not in (0, 1, True, False) for v in vals):
                        raise ValueError(f"Allocation: mask rows of {name!r} must contain only 0 and 1")
                    parsed.append([bool(v) for v in vals])
            if len({len(p) for p in parsed}) > 1:
                raise ValueError(f"Allocation: rows of the mask of {name!r} have different lengths")
            masks[name] = np.array(parsed, dtype=bool).reshape(len(parsed), -1 if parsed else 0)
        return cls(model, masks)

    def __eq__(self, other):
        return (isinstance(other, Allocation) and self.model == other.model
                and self.params == other.params
                and all(np.array_equal(self.masks[n], other.masks[n]) for n in self.params))

    def __hash__(self):
        return hash((self.model, tuple((n, self.masks[n].tobytes()) for n in self.params)))

    def __repr__(self):
        parts = ", ".join(f"{n}: {int(a.sum())}" for n, a in self.masks.items())
        return f"Allocation({self.model!r}, r={self.r}; {parts})"
