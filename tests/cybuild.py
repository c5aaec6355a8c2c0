"""Compile a Cython module at test time (into a temporary directory) and import it."""
import importlib.util
import shutil
import sys
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastmp

REPO = Path(__file__).resolve().parents[1]


def include_dir():
    """Directory holding ``fastmp/_ext/capi.pxd``: the installed package (wheel) or the
    source tree's ``csrc/`` (in-place build, lenient editable install)."""
    for root in (Path(fastmp.__file__).resolve().parents[1], REPO / "csrc"):
        if (root / "fastmp" / "_ext" / "capi.pxd").is_file():
            return root
    pytest.fail("capi.pxd is neither installed next to fastmp._ext nor in csrc/")


def compiler_or_skip():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc!r} not on PATH): cannot build a Cython module here")


def build_module(source, tmp):
    """Cythonize and compile ``source`` (a .pyx path) in ``tmp``; return the module."""
    compiler_or_skip()
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    source = Path(source)
    name = source.stem
    src = Path(tmp) / source.name
    shutil.copy(source, src)
    ext = Extension(name, [str(src)], include_dirs=[np.get_include()])
    with warnings.catch_warnings():  # build tools' own deprecation chatter
        warnings.simplefilter("ignore")
        modules = cythonize([ext], include_path=[str(include_dir())], quiet=True,
                            build_dir=str(Path(tmp) / "c"))
        dist = Distribution({"ext_modules": modules})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = str(tmp)
        cmd.build_temp = str(Path(tmp) / "tmp")
        cmd.ensure_finalized()
        cmd.run()
    [path] = list(Path(tmp).glob(f"{name}*.so")) + list(Path(tmp).glob(f"{name}*.pyd"))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules.pop(name, None)
    return mod
