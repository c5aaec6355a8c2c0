"""Real data sets for the structured-data experiment (paper Figure 3c, Appendix F).

Every loader returns ``(X, y)`` with ``X`` of shape ``(q, N)`` (one sample per column, as
the models' inputs; float64 scaled to ``[0, 1]``) and integer labels ``y`` of shape
``(N,)``.

* :func:`load_digits`: scikit-learn's bundled 8x8 digits (``q = 64``, 10 classes, 1797
  samples); needs scikit-learn (``pip install fastmp[data]``; included in ``[dev]``).
* :func:`load_mnist`: MNIST from the original idx files the user already has on disk
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte`` or the ``t10k-`` pair,
  optionally gzipped); nothing is downloaded.
* :func:`read_idx`: the idx format itself (big-endian header: two zero bytes, a type
  code, the number of dimensions, then one 32-bit size per dimension).
"""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

#: idx type codes -> numpy dtypes (big-endian)
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path):
    """Read an idx file (``.gz`` transparently) into a numpy array."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_idx: no such file {path!r}")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"read_idx: {path!r} is not an idx file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"read_idx: {path!r} has unknown idx type code 0x{code:02x}")
    if ndim < 1 or len(data) < 4 + 4 * ndim:
        raise ValueError(f"read_idx: {path!r} has a truncated header")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    dtype = _IDX_TYPES[code]
    count = int(np.prod(shape, dtype=np.int64))
    body = data[4 + 4 * ndim:]
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"read_idx: {path!r} holds {len(body)} data bytes, its header "
                         f"announces {count * dtype.itemsize} (shape {shape})")
    return np.frombuffer(body, dtype=dtype, count=count).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"load_mnist: no {stem}[.gz] in {directory!r} (fastmp does not "
                            "download MNIST; point it at the idx files you have)")


def load_mnist(directory, kind="train"):
    """MNIST from idx files in ``directory`` (``kind`` ``"train"`` or ``"t10k"``):
    ``X`` ``(784, N)`` in ``[0, 1]``, ``y`` ``(N,)``."""
    if kind not in ("train", "t10k"):
        raise ValueError(f"load_mnist: kind must be 'train' or 't10k', got {kind!r}")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"load_mnist: {directory!r} is not a directory")
    images = read_idx(_find(directory, f"{kind}-images-idx3-ubyte"))
    labels = read_idx(_find(directory, f"{kind}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"load_mnist: images {images.shape} and labels {labels.shape} do "
                         "not match")
    X = images.reshape(images.shape[0], -1).T.astype(np.float64) / 255.0
    return X, labels.astype(np.int64)


def load_digits():
    """scikit-learn's 8x8 digits: ``X`` ``(64, 1797)`` in ``[0, 1]``, ``y`` ``(1797,)``."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("fastmp.data.load_digits needs scikit-learn: "
                          "pip install 'fastmp[data]' (or scikit-learn)") from exc
    bunch = _load()
    return bunch.data.T.astype(np.float64) / 16.0, bunch.target.astype(np.int64)


def load_dataset(name, path=None):
    """``"digits"`` or ``"mnist"`` (``path`` = directory of the idx files)."""
    if name == "digits":
        return load_digits()
    if name == "mnist":
        if path is None:
            raise ValueError("load_dataset: 'mnist' needs path= the directory of its idx files")
        return load_mnist(path)
    raise ValueError(f"load_dataset: unknown data set {name!r}; choose 'digits' or 'mnist'")
