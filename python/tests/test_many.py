"""quadform_many and weighted_gram_many against float64 numpy references and against K
calls of quadform / weighted_gram: centers, large mean offsets, signed weights, sizes,
blocking, threads, layouts of every operand, out=, and bad input."""
import numpy as np
import pytest

import gmmkernels as gk
from support.layouts import GuardedOut, in_layout, LAYOUTS, OUT_KINDS
from support.references import (
    DTYPES,
    general_qs,
    gram_many_error,
    gram_many_reference,
    quadform_many_error,
    quadform_many_reference,
    raises,
    ratio,
    rtol,
    spd,
)


def data(rng, n, d, dtype, offset=0.0):
    return (offset + rng.standard_normal((n, d))).astype(dtype)


def signed_weights(rng, n, k, dtype=np.float64):
    """Responsibilities-like weights with exact zeros (about a third) and negatives."""
    R = rng.uniform(-0.5, 1.5, (n, k))
    R[rng.random((n, k)) < 0.3] = 0.0
    return R.astype(dtype)


# === quadform_many ==========================================================================

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 7, 130])
@pytest.mark.parametrize("K", [1, 5])
def test_quadform_many_matches_numpy_and_quadform(rng, dtype, d, K):
    X = data(rng, 777, d, dtype)
    Qs = general_qs(rng, K, d, dtype)
    centers = rng.standard_normal((K, d)).astype(dtype)
    for c in (None, centers):
        q = gk.quadform_many(X, Qs, centers=c)
        assert q.dtype == dtype and q.shape == (777, K)
        assert quadform_many_error(q, X, Qs, c) <= rtol(dtype)
        # K calls of quadform agree to rounding.
        _, scale = quadform_many_reference(X, Qs, c)
        single = np.stack(
            [gk.quadform(X, Qs[k], center=None if c is None else c[k]) for k in range(K)], axis=1
        )
        assert ratio(np.abs(q.astype(np.float64) - single), scale) <= 2 * rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quadform_many_numpy_expression(rng, dtype):
    # The E-step line the function replaces, in float64, for SPD precisions:
    # every entry to the contract's relative tolerance.
    n, d, K = 500, 20, 4
    X = data(rng, n, d, dtype)
    Qs = np.stack([spd(rng, d, dtype) for _ in range(K)])
    means = rng.standard_normal((K, d)).astype(dtype)
    q = gk.quadform_many(X, Qs, centers=means)
    X64 = X.astype(np.float64)
    ref = np.stack(
        [np.sum((X64 - means[k]).dot(Qs[k].astype(np.float64)) * (X64 - means[k]), axis=1) for k in range(K)],
        axis=1,
    )
    assert np.max(np.abs(q - ref) / ref) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quadform_many_large_mean_offset(rng, dtype):
    # Data 1e4 away from the origin, centred on (near) its mean: forms of order d, while
    # |x|² is of order 1e8 d. Expanding (x − c)ᵀQ(x − c) would cancel every digit.
    n, d, K = 600, 9, 3
    X = data(rng, n, d, dtype, offset=1e4)
    mean = X.astype(np.float64).mean(axis=0)
    centers = (mean + 0.1 * rng.standard_normal((K, d))).astype(dtype)
    centers[0] = mean.astype(dtype)
    Qs = np.stack([spd(rng, d, dtype) for _ in range(K)])
    q = gk.quadform_many(X, Qs, centers=centers, memory_limit=50_000)
    assert quadform_many_error(q, X, Qs, centers) <= rtol(dtype)
    ref, _ = quadform_many_reference(X, Qs, centers)
    assert np.max(np.abs(q - ref) / ref) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quadform_many_qs_converted(rng, dtype):
    # Qs and centers of another dtype (and integer ones) are converted to X's dtype.
    X = data(rng, 300, 6, dtype)
    other = np.float32 if dtype == np.float64 else np.float64
    Qs = general_qs(rng, 3, 6, other)
    centers = rng.standard_normal((3, 6)).astype(other)
    q = gk.quadform_many(X, Qs, centers=centers)
    assert q.dtype == dtype
    assert quadform_many_error(q, X, Qs, centers) <= rtol(dtype)
    Qi = rng.integers(-3, 4, (2, 6, 6))
    q = gk.quadform_many(X, Qi.tolist(), centers=np.ones((2, 6), dtype=np.int32))
    assert quadform_many_error(q, X, Qi, np.ones((2, 6))) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quadform_many_empty_and_tiny(rng, dtype):
    Qs = general_qs(rng, 3, 4, dtype)
    q = gk.quadform_many(np.zeros((0, 4), dtype), Qs)
    assert q.shape == (0, 3) and q.dtype == dtype
    q = gk.quadform_many(np.zeros((0, 4), dtype), Qs, centers=np.ones((3, 4)), out=np.empty((0, 3), dtype))
    assert q.shape == (0, 3)
    # One row, K = 1, d = 1: q = (x − c)² Q.
    q = gk.quadform_many(np.array([[3.0]], dtype), [[[2.0]]], centers=[[1.0]])
    assert q.shape == (1, 1) and abs(q[0, 0] - 8.0) <= 8.0 * rtol(dtype)
    # d = 0: every form is an empty sum.
    out = np.full((5, 2), np.nan, dtype)
    q = gk.quadform_many(np.zeros((5, 0), dtype), np.zeros((2, 0, 0)), out=out)
    assert q is out and np.array_equal(q, np.zeros((5, 2)))
    # K = 0.
    q = gk.quadform_many(data(rng, 5, 4, dtype), np.zeros((0, 4, 4)))
    assert q.shape == (5, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_quadform_many_blocks_and_threads(rng, dtype, threads):
    # 1001 rows (prime to any block height) and a memory_limit of a few dozen rows per block.
    n, d, K = 1001, 13, 4
    X = data(rng, n, d, dtype)
    Qs = general_qs(rng, K, d, dtype)
    centers = rng.standard_normal((K, d)).astype(dtype)
    for c in (None, centers):
        for limit in (20_000, 60_000, None):
            q = gk.quadform_many(X, Qs, centers=c, threads=threads, memory_limit=limit)
            assert quadform_many_error(q, X, Qs, c) <= rtol(dtype), (c is None, limit)


def test_quadform_many_memory_limit_too_small(rng):
    X = data(rng, 100, 10, np.float64)
    with pytest.raises(ValueError, match="memory_limit"):
        gk.quadform_many(X, general_qs(rng, 3, 10), memory_limit=100)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_quadform_many_layouts_of_x(rng, tmp_path, dtype, layout):
    A = data(rng, 523, 17, dtype)
    X = in_layout(A, layout, tmp_path)
    Qs = general_qs(rng, 3, 17, dtype)
    Qs[1] = spd(rng, 17, dtype)  # one exactly symmetric: BLAS may read it in place
    centers = rng.standard_normal((3, 17)).astype(dtype)
    for c in (None, centers):
        q = gk.quadform_many(X, Qs, centers=c, memory_limit=30_000)
        assert quadform_many_error(q, A, Qs, c) <= rtol(dtype), c is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["F", "reversed", "every_other", "transposed_items"])
def test_quadform_many_layouts_of_qs_and_centers(rng, dtype, layout):
    K, d = 4, 11
    X = data(rng, 300, d, dtype)
    Q0 = general_qs(rng, K, d, dtype)
    Q0[0] = spd(rng, d, dtype)
    C0 = rng.standard_normal((K, d)).astype(dtype)
    if layout == "F":
        Qs, centers = np.asfortranarray(Q0), np.asfortranarray(C0)
    elif layout == "reversed":
        Qs = np.ascontiguousarray(Q0[::-1, ::-1, ::-1])[::-1, ::-1, ::-1]
        centers = np.ascontiguousarray(C0[::-1, ::-1])[::-1, ::-1]
    elif layout == "every_other":
        buf = np.full((2 * K, d, d + 2), np.nan, dtype)
        buf[::2, :, 1 : 1 + d] = Q0
        Qs = buf[::2, :, 1 : 1 + d]
        cbuf = np.full((K, 3 * d), np.nan, dtype)
        cbuf[:, ::3] = C0
        centers = cbuf[:, ::3]
    else:
        # Each Q_k stored transposed (column-major items): only the symmetric part matters.
        Qs = np.ascontiguousarray(Q0.transpose(0, 2, 1)).transpose(0, 2, 1)
        centers = C0
    assert np.array_equal(Qs, Q0) and np.array_equal(centers, C0)
    q = gk.quadform_many(X, Qs, centers=centers)
    assert quadform_many_error(q, X, Q0, C0) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", OUT_KINDS)
def test_quadform_many_out(rng, tmp_path, dtype, kind):
    n, d, K = 401, 8, 3
    X = data(rng, n, d, dtype)
    Qs = general_qs(rng, K, d, dtype)
    centers = rng.standard_normal((K, d)).astype(dtype)
    g = GuardedOut((n, K), dtype, kind, tmp_path)
    q = gk.quadform_many(X, Qs, centers=centers, out=g.out, memory_limit=20_000)
    assert q is g.out
    g.check()
    assert quadform_many_error(np.asarray(q), X, Qs, centers) <= rtol(dtype)


def test_quadform_many_out_beside_x(rng):
    # out in columns of the same buffer that X does not use: no overlap, and X is untouched.
    n, d, K = 200, 5, 3
    buf = rng.standard_normal((n, d + K))
    before = buf[:, :d].copy()
    X = buf[:, :d]
    Qs = general_qs(rng, K, d)
    q = gk.quadform_many(X, Qs, out=buf[:, d:], memory_limit=10_000)
    assert np.array_equal(buf[:, :d], before)
    assert quadform_many_error(q, before, Qs) <= 1e-12


# === weighted_gram_many =====================================================================

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 7, 70])
@pytest.mark.parametrize("K", [1, 4])
def test_weighted_gram_many_matches_numpy_and_weighted_gram(rng, dtype, d, K):
    n = 901
    X = data(rng, n, d, dtype)
    R = signed_weights(rng, n, K, dtype)
    centers = rng.standard_normal((K, d)).astype(dtype)
    for c in (None, centers):
        G = gk.weighted_gram_many(X, R, centers=c)
        assert G.dtype == dtype and G.shape == (K, d, d)
        assert gram_many_error(G, X, R, c) <= rtol(dtype)
        assert all(np.array_equal(G[k], G[k].T) for k in range(K))
        # K calls of weighted_gram agree to rounding.
        _, scale = gram_many_reference(X, R, c)
        single = np.stack(
            [gk.weighted_gram(X, R[:, k], center=None if c is None else c[k]) for k in range(K)]
        )
        assert ratio(np.abs(G.astype(np.float64) - single), scale) <= 2 * rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_gram_many_numpy_expression(rng, dtype):
    # The M-step line the function replaces, with non-negative responsibilities.
    n, d, K = 700, 12, 3
    X = data(rng, n, d, dtype)
    R = rng.random((n, K)).astype(dtype)
    means = rng.standard_normal((K, d)).astype(dtype)
    G = gk.weighted_gram_many(X, R, centers=means)
    X64, R64 = X.astype(np.float64), R.astype(np.float64)
    for k in range(K):
        Xc = X64 - means[k]
        ref = (Xc.T * R64[:, k]).dot(Xc)
        diag = np.sqrt(np.diag(ref))
        assert np.max(np.abs(G[k] - ref) / np.outer(diag, diag)) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_gram_many_large_mean_offset(rng, dtype):
    # Scatter matrices of data 1e4 from the origin about (near) its mean: E[xxᵀ] − μμᵀ
    # would lose every digit; centring before the products keeps them.
    n, d, K = 800, 6, 3
    X = data(rng, n, d, dtype, offset=1e4)
    mean = X.astype(np.float64).mean(axis=0)
    centers = (mean + 0.1 * rng.standard_normal((K, d))).astype(dtype)
    centers[0] = mean.astype(dtype)
    R = rng.random((n, K)).astype(dtype)
    G = gk.weighted_gram_many(X, R, centers=centers, memory_limit=40_000)
    assert gram_many_error(G, X, R, centers) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_gram_many_zero_and_negative_weights(rng, dtype):
    n, d, K = 500, 5, 4
    X = data(rng, n, d, dtype)
    R = signed_weights(rng, n, K, dtype)
    R[:, 1] = 0.0  # a component with no weight at all: exactly zero
    R[:, 2] = -np.abs(R[:, 2])  # only negative weights: −(a positive semidefinite matrix)
    R[::2, 3] = 0.0
    G = gk.weighted_gram_many(X, R, memory_limit=20_000)
    assert gram_many_error(G, X, R) <= rtol(dtype)
    assert np.array_equal(G[1], np.zeros((d, d)))
    assert np.all(np.linalg.eigvalsh(G[2].astype(np.float64)) <= 1e-6 * np.abs(G[2]).max())
    # Rows whose weights are all zero add nothing, however large (1e30² overflows float32).
    R2 = R.copy()
    R2[::2] = 0.0
    X2 = X.copy()
    X2[::2] = 1e30
    G2 = gk.weighted_gram_many(X2, R2, memory_limit=20_000)
    assert gram_many_error(G2, X, R2) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_gram_many_empty_and_tiny(rng, dtype):
    # n = 0: every G_k is an empty sum, written as zeros even over an out full of NaN.
    out = np.full((3, 4, 4), np.nan, dtype)
    G = gk.weighted_gram_many(np.zeros((0, 4), dtype), np.zeros((0, 3)), out=out)
    assert G is out and np.array_equal(G, np.zeros((3, 4, 4)))
    out = np.asfortranarray(np.full((3, 4, 4), np.nan, dtype))
    G = gk.weighted_gram_many(np.zeros((0, 4), dtype), np.zeros((0, 3)), centers=np.ones((3, 4)), out=out)
    assert np.array_equal(G, np.zeros((3, 4, 4)))
    # d = 1, K = 1, one row.
    G = gk.weighted_gram_many(np.array([[3.0]], dtype), [[2.0]], centers=[[1.0]])
    assert G.shape == (1, 1, 1) and abs(G[0, 0, 0] - 8.0) <= 8.0 * rtol(dtype)
    # K = 0 and d = 0.
    assert gk.weighted_gram_many(data(rng, 5, 3, dtype), np.zeros((5, 0))).shape == (0, 3, 3)
    assert gk.weighted_gram_many(np.zeros((5, 0), dtype), np.ones((5, 2))).shape == (2, 0, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_weighted_gram_many_blocks_and_threads(rng, dtype, threads):
    n, d, K = 1001, 13, 5
    X = data(rng, n, d, dtype)
    R = signed_weights(rng, n, K, dtype)
    centers = rng.standard_normal((K, d)).astype(dtype)
    for c in (None, centers):
        for limit in (30_000, 100_000, None):
            G = gk.weighted_gram_many(X, R, centers=c, threads=threads, memory_limit=limit)
            assert gram_many_error(G, X, R, c) <= rtol(dtype), (c is None, limit)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_weighted_gram_many_layouts_of_x(rng, tmp_path, dtype, layout):
    A = data(rng, 523, 17, dtype)
    X = in_layout(A, layout, tmp_path)
    R = signed_weights(rng, 523, 3, dtype)
    centers = rng.standard_normal((3, 17)).astype(dtype)
    for c in (None, centers):
        G = gk.weighted_gram_many(X, R, centers=c, memory_limit=40_000)
        assert gram_many_error(G, A, R, c) <= rtol(dtype), c is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["F", "rows_reversed", "both_reversed", "every_other_row", "column_slice", "memmap_offset3"])
def test_weighted_gram_many_layouts_of_r(rng, tmp_path, dtype, layout):
    n, d, K = 411, 9, 4
    X = data(rng, n, d, dtype)
    R0 = signed_weights(rng, n, K, dtype)
    R = in_layout(R0, layout, tmp_path)
    G = gk.weighted_gram_many(X, R, memory_limit=30_000)
    assert gram_many_error(G, X, R0) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", OUT_KINDS)
def test_weighted_gram_many_out(rng, tmp_path, dtype, kind):
    n, d, K = 401, 8, 3
    X = data(rng, n, d, dtype)
    R = signed_weights(rng, n, K, dtype)
    centers = rng.standard_normal((K, d)).astype(dtype)
    g = GuardedOut((K, d, d), dtype, kind, tmp_path)
    G = gk.weighted_gram_many(X, R, centers=centers, out=g.out, memory_limit=30_000)
    assert G is g.out
    g.check()
    assert gram_many_error(np.asarray(G), X, R, centers) <= rtol(dtype)
    # Called again on the same out: the result replaces what was there, nothing accumulates.
    gk.weighted_gram_many(X, R, centers=centers, out=g.out, memory_limit=30_000)
    g.check()
    assert gram_many_error(np.asarray(G), X, R, centers) <= rtol(dtype)


# === bad input ==============================================================================


@pytest.fixture
def X():
    return np.random.default_rng(7).standard_normal((6, 3))


@pytest.mark.parametrize("qs_shape", [(3, 3), (2, 3, 4), (2, 4, 3), (2, 4, 4), (2, 3), (1, 2, 3, 3), (3,)])
def test_quadform_many_qs_of_wrong_shape(X, qs_shape):
    raises(ValueError, lambda: gk.quadform_many(X, np.ones(qs_shape)), "Qs", str(qs_shape))


@pytest.mark.parametrize("c_shape", [(3, 3), (1, 3), (2, 2), (2, 4), (2,), (6,), (2, 3, 1)])
def test_quadform_many_centers_of_wrong_shape(X, c_shape):
    raises(ValueError, lambda: gk.quadform_many(X, np.ones((2, 3, 3)), centers=np.ones(c_shape)),
           "centers", str(c_shape))


@pytest.mark.parametrize("out_shape", [(6, 3), (6, 1), (5, 2), (2, 6), (12,), (6, 2, 1)])
def test_quadform_many_out_of_wrong_shape(X, out_shape):
    out = np.zeros(out_shape)
    raises(ValueError, lambda: gk.quadform_many(X, np.ones((2, 3, 3)), out=out), "out", "(6, 2)", str(out_shape))
    assert not out.any()


@pytest.mark.parametrize("r_shape", [(5, 2), (7, 2), (6,), (2, 6), (6, 2, 1)])
def test_weighted_gram_many_r_of_wrong_shape(X, r_shape):
    raises(ValueError, lambda: gk.weighted_gram_many(X, np.ones(r_shape)), "R", str(r_shape))


@pytest.mark.parametrize("c_shape", [(3, 3), (1, 3), (2, 2), (2, 4), (3,), (2, 3, 1)])
def test_weighted_gram_many_centers_of_wrong_shape(X, c_shape):
    raises(ValueError, lambda: gk.weighted_gram_many(X, np.ones((6, 2)), centers=np.ones(c_shape)),
           "centers", str(c_shape))


@pytest.mark.parametrize("out_shape", [(3, 3, 3), (1, 3, 3), (2, 3, 4), (2, 4, 4), (2, 3), (3, 3), (2, 3, 3, 1)])
def test_weighted_gram_many_out_of_wrong_shape(X, out_shape):
    out = np.zeros(out_shape)
    raises(ValueError, lambda: gk.weighted_gram_many(X, np.ones((6, 2)), out=out), "out", "(2, 3, 3)", str(out_shape))
    assert not out.any()


@pytest.mark.parametrize("x_dtype, out_dtype", [
    (np.float64, np.float32), (np.float32, np.float64), (np.float64, np.int64), (np.float64, np.complex128),
])
def test_many_out_of_wrong_dtype(X, x_dtype, out_dtype):
    Xt = X.astype(x_dtype)
    out = np.zeros((6, 2), dtype=out_dtype)
    raises(TypeError, lambda: gk.quadform_many(Xt, np.ones((2, 3, 3)), out=out), "out", str(np.dtype(out_dtype)))
    assert not out.any()
    out = np.zeros((2, 3, 3), dtype=out_dtype)
    raises(TypeError, lambda: gk.weighted_gram_many(Xt, np.ones((6, 2)), out=out), "out", str(np.dtype(out_dtype)))
    assert not out.any()


def test_many_read_only_out(X, tmp_path):
    out = np.zeros((6, 2))
    out.flags.writeable = False
    raises(ValueError, lambda: gk.quadform_many(X, np.ones((2, 3, 3)), out=out), "out")
    out = np.zeros((2, 3, 3))
    out.flags.writeable = False
    raises(ValueError, lambda: gk.weighted_gram_many(X, np.ones((6, 2)), out=out), "out")
    path = tmp_path / "ro.bin"
    np.zeros((2, 3, 3)).tofile(path)
    out = np.memmap(path, dtype=np.float64, mode="r", shape=(2, 3, 3))
    raises(ValueError, lambda: gk.weighted_gram_many(X, np.ones((6, 2)), out=out), "out")


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128, np.float16, object])
def test_many_x_of_wrong_dtype(dtype):
    X = np.ones((6, 3)).astype(dtype)
    raises(TypeError, lambda: gk.quadform_many(X, np.ones((2, 3, 3))), "X", str(np.dtype(dtype)))
    raises(TypeError, lambda: gk.weighted_gram_many(X, np.ones((6, 2))), "X", str(np.dtype(dtype)))


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64, object])
def test_many_operands_of_wrong_dtype(X, dtype):
    raises(TypeError, lambda: gk.weighted_gram_many(X, np.ones((6, 2), dtype=dtype)), "R", str(np.dtype(dtype)))
    raises(TypeError, lambda: gk.quadform_many(X, np.ones((2, 3, 3), dtype=dtype)), "Qs", str(np.dtype(dtype)))
    raises(TypeError, lambda: gk.quadform_many(X, np.ones((2, 3, 3)), centers=np.ones((2, 3), dtype=dtype)), "centers")
    raises(TypeError, lambda: gk.weighted_gram_many(X, np.ones((6, 2)), centers=np.ones((2, 3), dtype=dtype)), "centers")


def test_many_x_not_2d():
    raises(ValueError, lambda: gk.quadform_many(np.ones(3), np.ones((2, 3, 3))), "X", "(3,)")
    raises(ValueError, lambda: gk.weighted_gram_many(np.ones((2, 6, 3)), np.ones((6, 2))), "X", "(2, 6, 3)")


def test_quadform_many_out_overlapping_inputs(rng):
    buf = rng.standard_normal((6, 5))
    before = buf.copy()
    X = buf[:, :3]
    Qs = rng.standard_normal((2, 3, 3))
    for out in (buf[:, 2:4], buf[::-1, :2], buf.ravel()[1:13].reshape(6, 2)):
        raises(ValueError, lambda: gk.quadform_many(X, Qs, out=out), "out", "X")
    assert np.array_equal(buf, before)
    qbuf = np.zeros(18)
    Qs2 = qbuf.reshape(2, 3, 3)
    raises(ValueError, lambda: gk.quadform_many(rng.standard_normal((6, 3)), Qs2, out=qbuf[:12].reshape(6, 2)), "out", "Qs")
    c = np.zeros((6, 2))
    Xc = rng.standard_normal((6, 2))
    raises(ValueError, lambda: gk.quadform_many(Xc, np.ones((2, 2, 2)), centers=c[:2], out=c), "out", "centers")


def test_weighted_gram_many_out_overlapping_inputs(rng):
    X = rng.standard_normal((18, 3))
    before = X.copy()
    raises(ValueError, lambda: gk.weighted_gram_many(X, np.ones((18, 2)), out=X[:6].reshape(2, 3, 3)), "out", "X")
    assert np.array_equal(X, before)
    R = np.ones((18, 1))
    raises(ValueError, lambda: gk.weighted_gram_many(X, R, out=R[:9].reshape(1, 3, 3)), "out", "R")
    assert np.array_equal(R, np.ones((18, 1)))


def test_library_usable_after_errors(rng):
    X = rng.standard_normal((10, 3))
    with pytest.raises(ValueError):
        gk.quadform_many(X, np.ones((2, 4, 4)))
    with pytest.raises(ValueError):
        gk.weighted_gram_many(X, np.ones((9, 2)))
    Qs = general_qs(rng, 2, 3)
    assert quadform_many_error(gk.quadform_many(X, Qs), X, Qs) <= 1e-12
