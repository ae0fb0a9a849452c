"""weighted_sum (Rᵀ X) against float64 numpy references: signed and zero weights, sizes,
blocking, threads, float64 accumulation of float32 data, layouts, out=, bad input."""
import numpy as np
import pytest

import gmmkernels as gk
from support.layouts import GuardedOut, in_layout, LAYOUTS, OUT_KINDS
from support.references import as_operand, DTYPES, raises, rtol, weighted_sum_error


def data(rng, n, d, dtype):
    return rng.standard_normal((n, d)).astype(dtype)


def weights(rng, n, k, dtype=np.float64):
    R = rng.uniform(-0.5, 1.5, (n, k))
    R[rng.random((n, k)) < 0.3] = 0.0
    return R.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 6, 90])
@pytest.mark.parametrize("K", [1, 4])
def test_matches_numpy(rng, dtype, d, K):
    n = 2345
    X = data(rng, n, d, dtype)
    R = weights(rng, n, K, dtype)
    S = gk.weighted_sum(X, R)
    assert S.dtype == dtype and S.shape == (K, d)
    assert weighted_sum_error(S, X, R) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_r_converted_and_special_columns(rng, dtype):
    n, d = 500, 7
    X = data(rng, n, d, dtype)
    R = weights(rng, n, 4)  # float64 R for float32 X is rounded to float32
    R[:, 1] = 0.0
    R[:, 2] = -1.0
    S = gk.weighted_sum(X, R)
    assert weighted_sum_error(S, X, R) <= rtol(dtype)
    assert np.array_equal(S[1], np.zeros(d))
    # An integer R works too.
    Ri = rng.integers(-2, 3, (n, 3))
    assert weighted_sum_error(gk.weighted_sum(X, Ri), X, Ri) <= rtol(dtype)


def test_float32_sums_accumulate_in_float64(rng):
    # A million float32 terms of 0.1 (and about 0.1) per entry: a float32 running sum drifts
    # by about 1e-2 of the total (each addition rounds the same way); sums kept in float64
    # across blocks stay within 1e-5.
    n = 1_000_000
    X = np.empty((n, 2), dtype=np.float32)
    X[:, 0] = 0.1
    X[:, 1] = rng.uniform(0.05, 0.15, n)
    R = np.ones((n, 2), dtype=np.float32)
    S = gk.weighted_sum(X, R, threads=1)
    ref = X.astype(np.float64).sum(axis=0)
    assert np.max(np.abs(S - ref) / ref) <= 1e-5
    assert weighted_sum_error(S, X, R) <= 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_and_tiny(rng, dtype):
    # n = 0: zeros, written even over an out full of NaN.
    out = np.full((3, 4), np.nan, dtype)
    S = gk.weighted_sum(np.zeros((0, 4), dtype), np.zeros((0, 3)), out=out)
    assert S is out and np.array_equal(S, np.zeros((3, 4)))
    # K = 1, d = 1, one row.
    S = gk.weighted_sum(np.array([[3.0]], dtype), [[2.0]])
    assert S.shape == (1, 1) and abs(S[0, 0] - 6.0) <= 6.0 * rtol(dtype)
    assert gk.weighted_sum(data(rng, 5, 3, dtype), np.zeros((5, 0))).shape == (0, 3)
    assert gk.weighted_sum(np.zeros((5, 0), dtype), np.ones((5, 2))).shape == (2, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_blocks_and_threads(rng, dtype, threads):
    n, d, K = 5003, 11, 5
    X = data(rng, n, d, dtype)
    R = weights(rng, n, K, dtype)
    for limit in (4_000, 20_000, None):
        S = gk.weighted_sum(X, R, threads=threads, memory_limit=limit)
        assert weighted_sum_error(S, X, R) <= rtol(dtype), limit


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_of_x(rng, tmp_path, dtype, layout):
    A = data(rng, 1501, 13, dtype)
    X = in_layout(A, layout, tmp_path)
    R = weights(rng, 1501, 3, dtype)
    S = gk.weighted_sum(X, R, memory_limit=20_000)
    assert weighted_sum_error(S, A, R) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["F", "rows_reversed", "both_reversed", "every_other_row", "column_slice", "memmap_offset3"])
def test_layouts_of_r(rng, tmp_path, dtype, layout):
    X = data(rng, 1501, 13, dtype)
    R0 = weights(rng, 1501, 4, dtype)
    R = in_layout(R0, layout, tmp_path)
    S = gk.weighted_sum(X, R, memory_limit=20_000)
    assert weighted_sum_error(S, X, R0) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", OUT_KINDS)
def test_out(rng, tmp_path, dtype, kind):
    n, d, K = 999, 9, 4
    X = data(rng, n, d, dtype)
    R = weights(rng, n, K, dtype)
    g = GuardedOut((K, d), dtype, kind, tmp_path)
    S = gk.weighted_sum(X, R, out=g.out, memory_limit=20_000)
    assert S is g.out
    g.check()
    assert weighted_sum_error(np.asarray(S), X, R) <= rtol(dtype)


def test_rt_x_identity(rng):
    # Rᵀ X t = Rᵀ (X t) for a random t: a cheap check of every entry on a larger problem.
    n, d, K = 60_000, 40, 6
    X = rng.standard_normal((n, d))
    R = rng.random((n, K))
    S = gk.weighted_sum(X, R)
    t = rng.standard_normal(d)
    ref = R.T @ (X @ t)
    scale = R.T @ (np.abs(X) @ np.abs(t))
    assert np.max(np.abs(S @ t - ref) / scale) <= 1e-12


# --- bad input -----------------------------------------------------------------------------


@pytest.fixture
def X():
    return np.random.default_rng(8).standard_normal((6, 3))


@pytest.mark.parametrize("r_shape", [(5, 2), (7, 2), (6,), (2, 6), (6, 2, 1), ()])
def test_r_of_wrong_shape(X, r_shape):
    raises(ValueError, lambda: gk.weighted_sum(X, np.ones(r_shape)), "R", str(r_shape))


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64, object])
def test_r_of_wrong_dtype(X, dtype):
    raises(TypeError, lambda: gk.weighted_sum(X, np.ones((6, 2), dtype=dtype)), "R", str(np.dtype(dtype)))


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.bool_, np.complex128, np.float16])
def test_x_of_wrong_dtype(dtype):
    raises(TypeError, lambda: gk.weighted_sum(np.ones((6, 3), dtype=dtype), np.ones((6, 2))), "X", str(np.dtype(dtype)))


@pytest.mark.parametrize("out_shape", [(3, 3), (2, 4), (3, 2), (6,), (2, 3, 1)])
def test_out_of_wrong_shape(X, out_shape):
    out = np.zeros(out_shape)
    raises(ValueError, lambda: gk.weighted_sum(X, np.ones((6, 2)), out=out), "out", "(2, 3)", str(out_shape))
    assert not out.any()


@pytest.mark.parametrize("x_dtype, out_dtype", [(np.float64, np.float32), (np.float32, np.float64), (np.float64, np.int64)])
def test_out_of_wrong_dtype(X, x_dtype, out_dtype):
    out = np.zeros((2, 3), dtype=out_dtype)
    raises(TypeError, lambda: gk.weighted_sum(X.astype(x_dtype), np.ones((6, 2)), out=out), "out", str(np.dtype(out_dtype)))
    assert not out.any()


def test_read_only_out(X):
    out = np.zeros((2, 3))
    out.flags.writeable = False
    raises(ValueError, lambda: gk.weighted_sum(X, np.ones((6, 2)), out=out), "out")


def test_out_overlapping_inputs(rng):
    X = rng.standard_normal((6, 3))
    before = X.copy()
    raises(ValueError, lambda: gk.weighted_sum(X, np.ones((6, 2)), out=X[:2]), "out", "X")
    raises(ValueError, lambda: gk.weighted_sum(X, np.ones((6, 2)), out=X[::-3]), "out", "X")
    assert np.array_equal(X, before)
    R = np.ones((6, 2))
    raises(ValueError, lambda: gk.weighted_sum(X, R, out=R.ravel()[:6].reshape(2, 3)), "out", "R")
    assert np.array_equal(R, np.ones((6, 2)))
    assert weighted_sum_error(gk.weighted_sum(X, R), X, as_operand(R, X.dtype)) <= 1e-12
