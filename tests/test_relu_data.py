"""Real-data loaders (digits, MNIST idx files), the Adam classification MP and the
Figure 3b/3c point rows (issue 4)."""
import gzip
import struct

import numpy as np
import pytest

import fastmp
from fastmp.allocation import Allocation
from fastmp.data import load_dataset, load_digits, load_mnist, read_idx
from fastmp.estimators.relu_data import adam_classify, run_classification
from fastmp.generators import random_mask
from fastmp.relu_experiments import COLUMNS, fig3b_rows, fig3c_rows, plot_rows


def write_idx(path, arr, code=0x08, compress=False):
    arr = np.asarray(arr)
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    data = header + arr.astype(dtype).tobytes()
    with (gzip.open if compress else open)(path, "wb") as fh:
        fh.write(data)


# ------------------------------------------------------------------ idx / MNIST
@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reader_on_a_tiny_idx_pair(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress=compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress=compress)
    assert np.array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), images)
    X, y = load_mnist(tmp_path)
    assert X.shape == (784, 5) and y.tolist() == [3, 1, 4, 1, 5]
    assert np.allclose(X[:, 2], images[2].ravel() / 255.0)
    X2, y2 = load_dataset("mnist", tmp_path)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)


def test_read_idx_other_types_and_errors(tmp_path):
    a = np.arange(6, dtype=np.int32).reshape(2, 3) - 2
    write_idx(tmp_path / "a.idx", a, code=0x0C)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), a)
    f = np.array([0.5, -1.25], dtype=np.float32)
    write_idx(tmp_path / "f.idx", f, code=0x0D)
    assert np.array_equal(read_idx(tmp_path / "f.idx"), f)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short.idx", np.zeros(4, np.uint8))
    (tmp_path / "short.idx").write_bytes((tmp_path / "short.idx").read_bytes()[:-1])
    with pytest.raises(ValueError, match="header announces"):
        read_idx(tmp_path / "short.idx")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="does not download"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError):
        load_mnist(tmp_path, kind="valid")
    with pytest.raises(ValueError):
        load_dataset("cifar")


def test_digits():
    X, y = load_digits()
    assert X.shape == (64, 1797) and y.shape == (1797,)
    assert 0.0 <= X.min() and X.max() <= 1.0 and set(y.tolist()) == set(range(10))


# ------------------------------------------------------------------ classification MP
def test_adam_classify_fits_a_separable_set_and_states_criterion():
    rng = np.random.default_rng(1)
    X = rng.random((8, 6))
    y = np.array([0, 1, 2, 0, 1, 2])
    net = fastmp.ShallowReLU(8, 16, 3)
    W1 = rng.standard_normal((16, 8)) / np.sqrt(8)
    W2 = rng.standard_normal((3, 16)) / 4
    mask = np.zeros((16, 8), bool)
    mask[:, :] = True
    ok, steps, W1t = adam_classify(W1, W2, mask, X, y, steps=2000, lr=0.05)
    assert ok
    out = W2 @ np.maximum(W1t @ X, 0)
    assert np.array_equal(out.argmax(axis=0), y)
    # frozen entries untouched
    mask2 = np.zeros((16, 8), bool)
    mask2[0, :3] = True
    _, _, W1u = adam_classify(W1, W2, mask2, X, y, steps=5)
    assert np.array_equal(W1u[~mask2], W1[~mask2])
    res = run_classification(net, X, y, 6, 2, 0, allocation=Allocation(net, {"W1": mask}),
                             steps=50)
    assert "classified correctly" in res["criterion"] and res["method"] == "adam-classification"
    with pytest.raises(ValueError):
        run_classification(net, X, y + 5, 6, 2, 0, allocation=Allocation(net, {"W1": mask}))
    with pytest.raises(ValueError):
        run_classification(net, X, y, 6, 2, 0)
    with pytest.raises(ValueError):
        run_classification(net, X, y, 7, 2, 0, allocation=Allocation(net, {"W1": mask}))


def test_spread_beats_concentrated_on_digits():
    """Figure 3c's trend on digits (r = dm = 300 of W1, n = 64, m = 30): five rows vs all
    64 rows (measured 0/10 vs 10/10)."""
    X, y = load_digits()
    net = fastmp.ShallowReLU(64, 64, 10)
    mp = {}
    for k in (5, 64):
        res = run_classification(
            net, X, y, 30, 8, 0, steps=500, lr=0.05,
            make_allocation=lambda rng, k=k: Allocation(
                net, {"W1": random_mask((64, 64), 300, rng, k=k, row_cap=64)}))
        mp[k] = res
    assert mp[64]["ci_low"] > mp[5]["ci_high"]


# ------------------------------------------------------------------ figure rows
def test_fig3b_rows_keys_and_trend():
    rows = fig3b_rows(6, 0, ns=(8,), ks=[4, 8], allocations=3, starts=32)
    assert [r["k"] for r in rows] == [4, 8]
    for r in rows:
        assert set(COLUMNS) <= set(r)
        assert r["figure"] == "fig3b" and r["frac_rows"] == r["k"] / 8
        assert r["trials"] == 6 and 0 <= r["ci_low"] <= r["mp"] <= r["ci_high"] <= 1
        assert r["method"] == "relu-search" and r["budget_limited"]
    with pytest.raises(ValueError):
        fig3b_rows(6, 0, ns=(8,), ks=[3])              # below d = 4 rows
    with pytest.raises(ValueError):
        fig3b_rows(0, 0)


def test_fig3c_rows_and_plot(tmp_path):
    rows = fig3c_rows(2, 0, n=16, m=10, ks=[2, 16], steps=30)
    assert [r["k"] for r in rows] == [2, 16]
    for r in rows:
        assert set(COLUMNS) <= set(r) and r["figure"] == "fig3c" and r["data"] == "digits"
        assert "classified correctly" in r["criterion"]
    path = tmp_path / "fig.png"
    plot_rows(rows, path)
    assert path.stat().st_size > 0
    with pytest.raises(ValueError):
        fig3c_rows(2, 0, n=16, m=10, ks=[1])            # 100 weights do not fit in 1 row
    with pytest.raises(ValueError):
        plot_rows([])
