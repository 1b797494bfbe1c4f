r"""Bit-for-bit parity of ``lazydist_functional.random`` with ``jax.random`` (threefry2x32,
``jax_threefry_partitionable=True``, JAX's default since 0.5.0). Skipped without jax
(it is in the ``bench`` extra)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lazydist_functional import random as R

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

SEEDS = [0, 1, 42, 2**31 + 7, 2**32 - 1]


@pytest.fixture(autouse=True)
def _partitionable():
    with jax.threefry_partitionable(True), jax.default_prng_impl("threefry2x32"):
        yield


def _np(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def _jkey(seed: int):
    return jax.random.key(seed, impl="threefry2x32")


@pytest.mark.parametrize("seed", SEEDS)
def test_key_split_fold_in(seed):
    k, jk = R.key(seed), _jkey(seed)
    assert k.tolist() == _np(jax.random.key_data(jk)).tolist()
    assert R.split(k, 3).tolist() == _np(jax.random.key_data(jax.random.split(jk, 3))).tolist()
    assert R.split(k, (2, 3)).tolist() == _np(jax.random.key_data(jax.random.split(jk, (2, 3)))).tolist()
    for data in (0, 7, 2**32 - 1):
        assert R.fold_in(k, data).tolist() == _np(jax.random.key_data(jax.random.fold_in(jk, data))).tolist()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("width, dtype", [(8, "uint8"), (16, "uint16"), (32, "uint32"), (64, "uint64")])
def test_bits(seed, width, dtype):
    with jax.enable_x64(width == 64):
        expected = np.asarray(jax.random.bits(_jkey(seed), (3, 5), getattr(jnp, dtype)))
    got = R.bits(R.key(seed), (3, 5), width).numpy()
    assert np.array_equal(got.astype(np.uint64) if width == 64 else got, expected.astype(np.int64 if width < 64 else np.uint64))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_uniform_is_bitwise_jax(seed, dtype):
    with jax.enable_x64(dtype == "float64"):
        expected = np.asarray(jax.random.uniform(_jkey(seed), (257,), getattr(jnp, dtype))).astype(np.float64)
        scaled = np.asarray(jax.random.uniform(_jkey(seed), (257,), getattr(jnp, dtype), -2.0, 3.0)).astype(np.float64)
    got = R.uniform(R.key(seed), (257,), getattr(torch, dtype)).double().numpy()
    assert np.array_equal(got, expected)
    # other bounds: XLA may fuse low + (high - low) * u into one rounding (1 ulp apart)
    eps = float(torch.finfo(getattr(torch, dtype)).eps)
    got = R.uniform(R.key(seed), (257,), getattr(torch, dtype), -2.0, 3.0).double().numpy()
    np.testing.assert_allclose(got, scaled, rtol=0, atol=4 * eps)


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 units in the last place (ordered bit patterns)."""

    ia, ib = (np.asarray(v, np.float32).view(np.int32).astype(np.int64) for v in (a, b))
    ia, ib = (np.where(i < 0, -(i & 0x7FFFFFFF), i) for i in (ia, ib))
    return np.abs(ia - ib)


@pytest.mark.parametrize("seed", SEEDS)
def test_normal_matches_jax(seed):
    # float32: XLA's erf_inv polynomial, evaluated the same way; XLA's log1p and its fused
    # multiply-adds round differently from torch's log1p and separate ops: a few ulps
    expected = np.asarray(jax.random.normal(_jkey(seed), (4000,)))
    got = R.normal(R.key(seed), (4000,)).numpy()
    assert _ulps(got, expected).max() <= 4
    # float16, bfloat16: erf_inv in float32 rounded to the dtype, times sqrt(2) in the dtype
    for dtype in ("float16", "bfloat16"):
        expected = np.asarray(jax.random.normal(_jkey(seed), (4000,), getattr(jnp, dtype))).astype(np.float64)
        assert np.array_equal(R.normal(R.key(seed), (4000,), getattr(torch, dtype)).double().numpy(), expected)
    # float64: torch.erfinv against XLA's double-precision approximation
    with jax.enable_x64(True):
        expected = np.asarray(jax.random.normal(_jkey(seed), (4000,), jnp.float64))
    np.testing.assert_allclose(R.normal(R.key(seed), (4000,), torch.float64).numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_randint_bernoulli_categorical(seed):
    jk, k = _jkey(seed), R.key(seed)
    assert R.randint(k, (100,), -5, 1000).tolist() == np.asarray(jax.random.randint(jk, (100,), -5, 1000)).tolist()
    p = np.linspace(0, 1, 50, dtype=np.float32)
    assert R.bernoulli(k, torch.from_numpy(p)).tolist() == np.asarray(jax.random.bernoulli(jk, p)).tolist()
    logits = np.random.default_rng(seed).normal(size=(4, 6)).astype(np.float32)
    for axis in (-1, 0):
        expected = np.asarray(jax.random.categorical(jk, logits, axis=axis))
        assert R.categorical(k, torch.from_numpy(logits), dim=axis).tolist() == expected.tolist()
