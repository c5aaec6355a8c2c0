"""What every architecture provides: parameter shapes, the forward map, the sampling
layout of Appendix E.3 and, for parameters it is linear in, the terms of its system.

Models know their equations; solvers know nothing about models. A model states

* ``param_shapes``: ordered ``{name: (rows, cols)}`` with the paper's names;
* ``forward(weights, X)``: the output ``Y`` (``d x m``) for a weight dict;
* ``linear_terms(name, weights, X, matmul)``: for a parameter the output is linear in,
  the list of ``(L_t, R_t)`` with ``Y = sum_t L_t P R_t`` (Lemma A.3 form). ``matmul`` is
  injectable so the same code evaluates the system exactly over a finite field
  (:mod:`fastmp.theory.generic`);
* ``_linear_kernel``: the compiled batch kernel that draws trials and assembles their
  allocated systems (same draws as :meth:`trial_draws`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.rng import draw_segments


@dataclass(frozen=True)
class Segment:
    role: str  # "teacher", "student" or "input"
    name: str
    shape: tuple
    scale: float


def _check_dim(model, name, value, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{model}: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{model}: {name} must be >= {minimum}, got {value}")
    return int(value)


class Model:
    """Base class. Subclasses set ``param_shapes``, ``d`` and ``linear_params``."""

    #: parameters an allocation may be confined to for a *linear* system
    linear_params: tuple = ()
    d: int
    param_shapes: dict

    # ------------------------------------------------------------------ shapes
    @property
    def param_names(self):
        return tuple(self.param_shapes)

    @property
    def n_weights(self):
        return int(sum(r * c for r, c in self.param_shapes.values()))

    def fan_in(self, name):
        """Number of columns of parameter ``name``: its entries are N(0, 1/fan_in) (E.3)."""
        return self.param_shapes[name][1]

    def input_shape(self, m):
        raise NotImplementedError

    def dims(self):
        """Constructor arguments, for display and serialisation."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.dims().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.dims() == other.dims()

    def __hash__(self):
        return hash((type(self).__name__, tuple(self.dims().items())))

    # ------------------------------------------------------------------ maps
    def forward(self, weights, X):
        raise NotImplementedError

    def linear_terms(self, name, weights, X, matmul=np.matmul):
        raise NotImplementedError(f"{type(self).__name__} is not linear in {name!r}")

    def max_generic_m(self):
        """Largest m for which the teacher's m outputs are generic in R^{d x m}
        (the paper's standing assumption that square input matrices are invertible)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ sampling
    def layout(self, m):
        """Segments of one trial's random buffer, in draw order (Appendix E.3):
        teacher weights, the student's frozen weights (all entries drawn; the allocated
        ones are ignored), then the inputs X ~ N(0, 1)."""
        segs = []
        for role in ("teacher", "student"):
            for name, shape in self.param_shapes.items():
                segs.append(Segment(role, name, shape, 1.0 / np.sqrt(self.fan_in(name))))
        segs.append(Segment("input", "X", self.input_shape(m), 1.0))
        return segs

    def segment_arrays(self, m):
        segs = self.layout(m)
        sizes = [int(np.prod(s.shape)) for s in segs]
        start = np.zeros(len(segs) + 1, dtype=np.int64)
        start[1:] = np.cumsum(sizes)
        scale = np.array([s.scale for s in segs], dtype=np.float64)
        return start, scale

    def needed_segments(self, name, m, with_rhs):
        """Which segments the linear system of parameter ``name`` needs: the matrix
        ``C`` needs the student's *other* parameters and the inputs; the right-hand side
        also needs the teacher and the student's frozen ``name``."""
        return np.array([with_rhs or (s.role == "input")
                         or (s.role == "student" and s.name != name)
                         for s in self.layout(m)], dtype=np.bool_)

    def trial_draws(self, seed, trial, m):
        """The draws of one trial as ``(teacher, student, X)`` -- the same numbers the
        compiled kernels use for ``(seed, trial)``."""
        # the segment plan depends on m only: built once per (model, m) -- rebuilding
        # it was most of this call's ~60 us, which the polynomial search pays per trial
        plans = self.__dict__.setdefault("_draw_plans", {})
        plan = plans.get(m)
        if plan is None:
            segs = tuple(self.layout(m))
            start, scale = self.segment_arrays(m)
            plan = plans[m] = (segs, start, scale, np.ones(len(segs), dtype=np.bool_))
        segs, start, scale, need = plan
        buf = np.empty(int(start[-1]))
        draw_segments(np.uint64(seed), np.uint64(trial), start, scale, need, buf)
        teacher, student, X = {}, {}, None
        for k, s in enumerate(segs):
            arr = buf[start[k]:start[k + 1]].reshape(s.shape).copy()
            if s.role == "teacher":
                teacher[s.name] = arr
            elif s.role == "student":
                student[s.name] = arr
            else:
                X = arr
        return teacher, student, X

    def sample(self, rng, m):
        """Independent draws from a ``numpy.random.Generator`` (for users' own loops)."""
        def draw(shape, scale):
            return rng.standard_normal(shape) * scale
        teacher = {n: draw(s, 1 / np.sqrt(self.fan_in(n))) for n, s in self.param_shapes.items()}
        student = {n: draw(s, 1 / np.sqrt(self.fan_in(n))) for n, s in self.param_shapes.items()}
        return teacher, student, draw(self.input_shape(m), 1.0)

    # ------------------------------------------------------------------ polynomial
    #: sides for which :meth:`chain_program` exists: "right" lifts products applied from
    #: the input side (Lemma B.3's F = W^k B; eqs. 4.1-4.2), "left" those from the output
    #: side (Lemma B.7's F = D W^k), written for the transposed output Y^T
    chain_sides: tuple = ()

    def chain_program(self, m, side="right"):
        """The :class:`~fastmp.kernels.chain.ChainProgram` of the output (parameters in
        ``param_names`` order; for ``side="left"`` of ``Y^T`` in the transposed
        parameters)."""
        raise NotImplementedError(f"{type(self).__name__} has no chain program")

    def chain_constants(self, X, side="right"):
        """The constant matrices of :meth:`chain_program` for inputs ``X``."""
        raise NotImplementedError

    def chain_trial(self, seed, trial, m, side="right"):
        """``(params, consts, Y*)`` of one trial: the student's parameters (frozen draws,
        in ``param_names`` order), the program's constants and the teacher's outputs
        (all transposed for ``side="left"``)."""
        teacher, student, X = self.trial_draws(seed, trial, m)
        params = [student[n] for n in self.param_names]
        ystar = self.forward(teacher, X)
        if side == "left":
            return [p.T.copy() for p in params], self.chain_constants(X, side), ystar.T.copy()
        return params, self.chain_constants(X, side), ystar

    def variables(self, allocation, side="right"):
        """``(p, i, j)`` triples of the learnable weights (row-major within each
        parameter; ``(p, j, i)`` on the left side, in the same order)."""
        out = []
        for p, name in enumerate(self.param_names):
            ii, jj = np.nonzero(allocation.mask(name))
            out += [(p, int(j), int(i)) if side == "left" else (p, int(i), int(j))
                    for i, j in zip(ii, jj)]
        return np.array(out, dtype=np.int64).reshape(-1, 3)

    # ------------------------------------------------------------------ kernels
    def _linear_kernel(self):
        """``(kernel, dims_array)`` of the compiled batch kernel for linear parameters.

        The kernel signature is ``kernel(dims, which, seed, trials, need, with_rhs,
        seg_start, seg_scale, alloc_i, alloc_j, C, rhs, scale)``: for every trial index
        in ``trials`` it draws the segments flagged in ``need`` and fills ``C[k]`` and,
        if ``with_rhs``, ``rhs[k]`` and ``scale[k]`` (else ``scale[k] = -1``).
        """
        raise NotImplementedError
