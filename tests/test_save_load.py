"""Saved models: the fields on disk, loading in a fresh interpreter (a stand-in
for another machine), pickling."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import mnist_mlp as mm


def test_saved_file_holds_sizes_dtype_version_history(tmp_path):
    m = mm.MLP([6, 5, 4, 3], seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6)), rng.integers(0, 3, 40)
    m.fit(x, y, epochs=2, validation_data=(x[:10], y[:10]))
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert str(f["format"]) == "mnist_mlp.MLP/2"
        assert str(f["version"]) == mm.__version__
        assert f["layer_sizes"].tolist() == [6, 5, 4, 3]
        assert str(f["dtype"]) == "float64"
        assert json.loads(str(f["history"])) == m.history and len(m.history) == 2
        assert sorted(k for k in f.files if k[0] in "wb") == ["b0", "b1", "b2", "w0", "w1", "w2"]


def test_model_loads_in_a_fresh_interpreter(tmp_path):
    m = mm.MLP([784, 12, 10], seed=3)
    x = np.random.default_rng(1).integers(0, 256, (50, 784), dtype=np.uint8)
    y = np.arange(50) % 10
    m.fit(x, y)
    m.save(tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", m.predict_proba(x))
    code = (
        "import sys, numpy as np, mnist_mlp as mm\n"
        "d = sys.argv[1]\n"
        "m = mm.MLP.load(d + '/m.npz')\n"
        "assert m.layer_sizes == [784, 12, 10] and m.dtype == np.float32 and len(m.history) == 1\n"
        "np.testing.assert_array_equal(m.predict_proba(np.load(d + '/x.npy')), np.load(d + '/p.npy'))\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, env=dict(os.environ))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_pickle_keeps_weights_history_and_shuffle_stream():
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 5)), rng.integers(0, 3, 64)
    m = mm.MLP([5, 7, 3], seed=0)
    m.fit(x, y, shuffle=True)
    twin = pickle.loads(pickle.dumps(m))
    assert twin.layer_sizes == m.layer_sizes and twin.history == m.history
    m.fit(x, y, shuffle=True)
    twin.fit(x, y, shuffle=True)  # the same next permutation
    for a, b in zip(twin.weights + twin.biases, m.weights + m.biases):
        np.testing.assert_array_equal(a, b)


def test_arrays_with_an_unpickled_dtype_are_accepted():
    # pickle (joblib, multiprocessing) makes dtype objects equal to, but not
    # the same object as, NumPy's own; the core compares dtypes by identity.
    x = pickle.loads(pickle.dumps(np.random.default_rng(0).random((8, 5))))
    assert x.dtype == np.float64 and x.dtype is not np.dtype(np.float64)
    m = mm.MLP([5, 4, 3], seed=0, dtype=np.float64)
    np.testing.assert_array_equal(m.predict_proba(x), m.predict_proba(np.array(x, dtype=np.float64)))
    m.fit(x, np.arange(8) % 3)


@pytest.mark.parametrize("content", [b"{}", b"\x89PNG\r\n\x1a\n" + b"\0" * 32, b""])
def test_a_file_that_is_not_a_model_is_named_as_such(tmp_path, content):
    path = tmp_path / "thing.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not an mnist_mlp model file") as e:
        mm.MLP.load(path)
    assert "pickle" not in str(e.value).lower()
    np.save(tmp_path / "a.npy", np.zeros(3))  # a lone .npy is not a model either
    with pytest.raises(ValueError, match="not an mnist_mlp model file"):
        mm.MLP.load(tmp_path / "a.npy")


def test_from_weights_recognises_pytorchs_layout():
    ws = [np.zeros((30, 784), np.float32), np.zeros((10, 30), np.float32)]  # (out, in), as nn.Linear holds them
    bs = [np.zeros(30, np.float32), np.zeros(10, np.float32)]
    with pytest.raises(ValueError, match=r"PyTorch's \(out_features, in_features\) layout.*weight\.T"):
        mm.MLP.from_weights(ws, bs)
    assert mm.MLP.from_weights([w.T for w in ws], bs).layer_sizes == [784, 30, 10]


def test_a_model_file_with_nan_weights_is_refused_naming_the_file(tmp_path):
    m = mm.MLP([6, 4, 3], seed=0)
    m.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["w1"] = arrays["w1"].copy()
    arrays["w1"][0, 0] = np.nan
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad\.npz: weights\[1\] holds non-finite values"):
        mm.MLP.load(tmp_path / "bad.npz")
