"""Build of fastmp's Cython extension. Project metadata lives in pyproject.toml.

Cython sources mirror the package path under ``csrc/`` (``csrc/fastmp/_ext/_lapack.pyx``
builds ``fastmp._ext._lapack``) and are compiled with ``include_path=["csrc"]``, so that
``cimport fastmp._ext._lapack`` resolves to ``csrc/fastmp/_ext/_lapack.pxd``.

Environment variables read at build time:

* ``FASTMP_CYTHON_DEBUG`` (any non-empty value): build with Cython bounds checks.
* ``FASTMP_OPENMP=0``: build without OpenMP even where the compiler supports it.
"""
import os
import tempfile
import textwrap
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.command.build_py import build_py as _build_py

CSRC = "csrc"
DEBUG = bool(os.environ.get("FASTMP_CYTHON_DEBUG"))

# Every Cython module gets the same directives, set here once.
COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
}

EXTENSIONS = [
    Extension(
        "fastmp._ext._lapack",
        # screen.h (header-only C, included by the .pyx): the vectorised nonsingularity
        # screen of the linear estimator
        [f"{CSRC}/fastmp/_ext/_lapack.pyx"],
        include_dirs=[numpy.get_include(), f"{CSRC}/fastmp/_ext"],
        depends=[f"{CSRC}/fastmp/_ext/screen.h"],
    ),
    # lifted Newton with restarts, eight runs in SIMD lanes (lane_newton.h, header-only)
    Extension(
        "fastmp._ext._lanes",
        [f"{CSRC}/fastmp/_ext/_lanes.pyx"],
        include_dirs=[numpy.get_include(), f"{CSRC}/fastmp/_ext"],
        depends=[f"{CSRC}/fastmp/_ext/lane_newton.h", f"{CSRC}/fastmp/_ext/lane_newton_body.h"],
    ),
    # the C-level API for other Cython / C codes (capi.pxd documents it)
    Extension(
        "fastmp._ext.capi",
        [f"{CSRC}/fastmp/_ext/capi.pyx"],
        include_dirs=[numpy.get_include()],
    ),
    # ahead-of-time twins of the small linear path's Numba kernels (cold start): built
    # without fused multiply-adds (see build_ext) so that they give Numba's bits
    Extension(
        "fastmp._ext._linear",
        [f"{CSRC}/fastmp/_ext/_linear.pyx"],
        include_dirs=[numpy.get_include()],
    ),
]

#: extensions whose floating-point results must equal Numba's bit for bit: no
#: contraction of a*b + c into an FMA (Numba, fastmath off, never contracts)
NO_FP_CONTRACT = {"fastmp._ext._linear", "fastmp._ext.capi"}


def _pxd_files(packages, build_lib):
    """``{installed path: source path}`` of every ``csrc/<package path>/*.pxd``."""
    mapping = {}
    for package in packages or ():
        parts = package.split(".")
        for pxd in sorted(Path(CSRC, *parts).glob("*.pxd")):
            mapping[os.path.join(build_lib, *parts, pxd.name)] = str(pxd)
    return mapping


class build_py(_build_py):
    """Install each package's Cython declarations (``csrc/<package>/*.pxd``) in it.

    This is package data that lives outside the package directory, which
    ``package_data`` cannot express. Wheels (``pip install .``) and strict editable
    installs get the ``.pxd`` next to the compiled module; a default (lenient) editable
    install imports ``fastmp`` from the source tree through a meta-path finder, which
    Cython's ``cimport`` does not consult: pass ``include_path=["<repo>/csrc"]`` there.
    """

    def run(self):
        super().run()
        if not self.editable_mode:
            for dest, src in _pxd_files(self.packages, self.build_lib).items():
                self.mkpath(os.path.dirname(dest))
                self.copy_file(src, dest)

    def get_outputs(self, include_bytecode=True):
        if self.editable_mode:  # the base class lists get_output_mapping() then
            return super().get_outputs(include_bytecode)
        return super().get_outputs(include_bytecode) + list(
            _pxd_files(self.packages, self.build_lib)
        )

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        mapping.update(_pxd_files(self.packages, self.build_lib))
        return dict(sorted(mapping.items()))


class build_ext(_build_ext):
    """Compile with OpenMP where the compiler can (``decide_batch(n_threads=...)``), and
    at ``-O3`` with gcc/clang: ``screen.h`` relies on the loop vectoriser."""

    def build_extensions(self):
        flags = self._openmp_flags()
        opt = [] if self.compiler.compiler_type == "msvc" else ["-O3"]
        for ext in self.extensions:
            strict = (["-ffp-contract=off"] if ext.name in NO_FP_CONTRACT
                      and self.compiler.compiler_type != "msvc" else [])
            ext.extra_compile_args = list(ext.extra_compile_args or []) + flags + opt + strict
            ext.extra_link_args = list(ext.extra_link_args or []) + flags
        super().build_extensions()

    def _openmp_flags(self):
        if os.environ.get("FASTMP_OPENMP", "1") == "0":
            return []
        if self.compiler.compiler_type == "msvc":
            return ["/openmp"]
        flags = ["-fopenmp"]
        source = textwrap.dedent(
            """\
            #include <omp.h>
            int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
            """
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "omp_check.c")
            with open(path, "w") as f:
                f.write(source)
            try:
                objects = self.compiler.compile([path], output_dir=tmp, extra_postargs=flags)
                self.compiler.link_executable(
                    objects, "omp_check", output_dir=tmp, extra_postargs=flags
                )
            except Exception as exc:  # CompileError, LinkError: no usable OpenMP
                print(f"fastmp: building without OpenMP ({type(exc).__name__}: {exc})")
                return []
        return flags


setup(
    packages=find_packages(include=["fastmp", "fastmp.*"]),
    ext_modules=cythonize(
        EXTENSIONS,
        include_path=[CSRC],
        compiler_directives=COMPILER_DIRECTIVES,
        # generated C lands in build/, one directory per directive set, so switching
        # FASTMP_CYTHON_DEBUG never reuses C generated with the other directives
        build_dir=os.path.join("build", "cython-debug" if DEBUG else "cython"),
    ),
    cmdclass={"build_py": build_py, "build_ext": build_ext},
    zip_safe=False,
)
