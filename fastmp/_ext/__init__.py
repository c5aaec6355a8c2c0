"""Compiled extensions of fastmp (Cython sources in ``csrc/fastmp/_ext/``).

``_lapack``: the match decision on top of LAPACK (``scipy.linalg.cython_lapack``), the
Cython twin of :mod:`fastmp.kernels.decide`. Its declarations (``_lapack.pxd``) are
installed here, so other Cython code can ``from fastmp._ext._lapack cimport ...``.
"""
