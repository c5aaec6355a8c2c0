"""Compiled extensions of fastmp (Cython sources in ``csrc/fastmp/_ext/``).

``_lapack``: the match decision on top of LAPACK (``scipy.linalg.cython_lapack``), the
Cython twin of :mod:`fastmp.kernels.decide`. Its declarations (``_lapack.pxd``) are
installed here, so other Cython code can ``from fastmp._ext._lapack cimport ...``.

``capi``: the C-level API for other Cython / C codes -- fastmp's random streams (bit for
bit those of :mod:`fastmp.kernels.rng`), assembly of a linear allocation's columns, and
the match decision, all ``nogil``; documented in ``capi.pxd`` (``from fastmp._ext.capi
cimport ...``).
"""
