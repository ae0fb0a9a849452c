"""weighted_gram against float64 numpy references: layouts, sizes, blocking, threads,
weights of every sign, center, out=, dtype conversion, NaN/Inf."""
import numpy as np
import pytest

import gmmkernels as gk
from support.layouts import check_layout_properties, in_layout, IN_MEMORY_LAYOUTS, LAYOUTS, memmap_of
from support.references import DTYPES, gram_error, gram_reference, rtol


def data(rng, n, d, dtype):
    """Columns of very different scales (1e-2 ... 1e2): an error in a small column shows."""
    scales = np.logspace(-2, 2, d) if d > 1 else np.ones(1)
    return (rng.standard_normal((n, d)) * rng.permutation(scales)).astype(dtype)


def weights(rng, n, kind, dtype=np.float64):
    if kind == "ones":
        return np.ones(n, dtype=dtype)
    if kind == "positive":
        return rng.uniform(0.0, 2.0, n).astype(dtype)
    if kind == "some_zero":
        w = rng.uniform(0.1, 2.0, n)
        w[rng.random(n) < 0.3] = 0.0
        return w.astype(dtype)
    if kind == "mixed_sign":
        w = rng.uniform(-1.0, 2.0, n)
        w[rng.random(n) < 0.2] = 0.0
        return w.astype(dtype)
    if kind == "negative":
        return -rng.uniform(0.0, 2.0, n).astype(dtype)
    raise ValueError(kind)


WEIGHT_KINDS = [None, "ones", "positive", "some_zero", "mixed_sign", "negative"]


def check_symmetric(G):
    assert np.array_equal(G, G.T, equal_nan=True)


# --- values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 7, 64, 130])
@pytest.mark.parametrize("kind", WEIGHT_KINDS)
def test_matches_numpy(rng, dtype, d, kind):
    n = 1000
    X = data(rng, n, d, dtype)
    w = None if kind is None else weights(rng, n, kind, dtype)
    G = gk.weighted_gram(X, w)
    assert G.dtype == dtype and G.shape == (d, d)
    check_symmetric(G)
    assert gram_error(G, X, w) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts(rng, tmp_path, dtype, layout):
    A = data(rng, 1000, 70, dtype)
    X = in_layout(A, layout, tmp_path)
    check_layout_properties(X, layout)
    # No weights and no center: BLAS may read X in place; otherwise rows are packed.
    G = gk.weighted_gram(X)
    assert gram_error(G, A) <= rtol(dtype)
    w = weights(rng, 1000, "mixed_sign")
    c = rng.standard_normal(70)
    assert gram_error(gk.weighted_gram(X, w), A, w) <= rtol(dtype)
    assert gram_error(gk.weighted_gram(X, center=c), A, None, c) <= rtol(dtype)
    assert gram_error(gk.weighted_gram(X, w, center=c), A, w, c) <= rtol(dtype)


# --- sizes, blocking and threads ---------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 7, 1000, 2051, 4100])
@pytest.mark.parametrize("d", [1, 3, 129])
@pytest.mark.parametrize("layout", ["C", "F", "both_reversed"])
@pytest.mark.parametrize("kind", [None, "mixed_sign"])
def test_sizes(rng, tmp_path, dtype, n, d, layout, kind):
    # 2051 and 4100 do not divide the preferred block heights (powers of two).
    X = in_layout(data(rng, n, d, dtype), layout, tmp_path)
    w = None if kind is None else weights(rng, n, kind)
    G = gk.weighted_gram(X, w)
    check_symmetric(G)
    assert gram_error(G, X, w) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", IN_MEMORY_LAYOUTS)
@pytest.mark.parametrize("with_w", [False, True])
def test_no_rows_gives_zeros(tmp_path, dtype, layout, with_w):
    X = in_layout(np.empty((0, 5), dtype=dtype), layout, tmp_path)
    out = np.full((5, 5), np.nan, dtype=dtype)
    G = gk.weighted_gram(X, np.empty(0) if with_w else None, center=np.ones(5) if with_w else None, out=out)
    assert G is out and G.dtype == dtype
    assert np.array_equal(G, np.zeros((5, 5)))
    assert np.array_equal(gk.weighted_gram(X), np.zeros((5, 5)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_columns(dtype):
    G = gk.weighted_gram(np.empty((4, 0), dtype=dtype), np.ones(4))
    assert G.shape == (0, 0) and G.dtype == dtype


def smallest_memory_limit(call):
    """The smallest memory_limit (bytes) for which `call(memory_limit)` succeeds, by bisection."""
    lo, hi = 0, 64 << 20
    call(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            call(mid)
            hi = mid
        except ValueError as e:
            assert "memory_limit" in str(e)
            lo = mid
    return hi


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["C", "F", "every_third_column", "memmap_offset3"])
@pytest.mark.parametrize("kind", [None, "mixed_sign"])
def test_smallest_memory_limit(rng, tmp_path, dtype, layout, kind):
    n, d = 301, 23
    X = in_layout(data(rng, n, d, dtype), layout, tmp_path)
    w = None if kind is None else weights(rng, n, kind)
    for center in (None, rng.standard_normal(d)):
        limit = smallest_memory_limit(lambda m: gk.weighted_gram(X, w, center=center, memory_limit=m))
        # The workspace bound holds whatever n: half the rows need no less.
        w_half = None if w is None else w[: n // 2]
        assert limit == smallest_memory_limit(
            lambda m: gk.weighted_gram(X[: n // 2], w_half, center=center, memory_limit=m))
        for threads in (1, 2, 3):
            G = gk.weighted_gram(X, w, center=center, memory_limit=limit, threads=threads)
            assert gram_error(G, X, w, center) <= rtol(dtype)
        with pytest.raises(ValueError, match="memory_limit"):
            gk.weighted_gram(X, w, center=center, memory_limit=limit - 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("memory_limit", [None, 60_000, 1 << 20])
@pytest.mark.parametrize("kind", [None, "some_zero"])
def test_threads_and_blocks(rng, dtype, threads, memory_limit, kind):
    X = data(rng, 5003, 40, dtype)
    w = None if kind is None else weights(rng, 5003, kind)
    G = gk.weighted_gram(X, w, threads=threads, memory_limit=memory_limit)
    check_symmetric(G)
    assert gram_error(G, X, w) <= rtol(dtype)


# --- weights -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_center", [False, True])
def test_all_zero_weights_give_exact_zeros(rng, dtype, with_center):
    X = data(rng, 3000, 17, dtype)
    c = rng.standard_normal(17) if with_center else None
    out = np.full((17, 17), np.nan, dtype=dtype)
    G = gk.weighted_gram(X, np.zeros(3000), center=c, out=out, memory_limit=30_000)
    assert G is out
    assert np.array_equal(G, np.zeros((17, 17)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_weight_rows_do_not_count(rng, dtype):
    X = data(rng, 800, 12, dtype)
    w = weights(rng, 800, "some_zero")
    keep = w != 0
    G = gk.weighted_gram(X, w)
    assert gram_error(G, X[keep], w[keep]) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_weights_subtract(rng, dtype):
    X = data(rng, 600, 15, dtype)
    w = weights(rng, 600, "positive")
    G_pos = gk.weighted_gram(X, w)
    G_neg = gk.weighted_gram(X, -w)
    assert gram_error(G_pos, X, w) <= rtol(dtype)
    assert gram_error(G_neg, X, -w) <= rtol(dtype)
    assert gram_error(-G_neg.astype(np.float64), X, w) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_w_none_equals_ones(rng, dtype):
    X = data(rng, 999, 21, dtype)
    G1 = gk.weighted_gram(X, None)
    G2 = gk.weighted_gram(X, np.ones(999))
    assert gram_error(G1, X) <= rtol(dtype)
    assert gram_error(G2, X) <= rtol(dtype)


def test_known_values():
    # Weights that are squares keep every step exact (a row of weight w enters as √|w|·x).
    X = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    w = np.array([4.0, -1.0, 0.0])
    # 4·[[1, 2], [2, 4]] − [[9, −3], [−3, 1]]
    np.testing.assert_array_equal(gk.weighted_gram(X, w), [[-5.0, 11.0], [11.0, 15.0]])
    # 4·[[0, 0], [0, 4]] − [[4, −2], [−2, 1]]
    np.testing.assert_array_equal(gk.weighted_gram(X, w, center=[1, 0]), [[-4.0, 2.0], [2.0, 15.0]])


# --- center --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["C", "F", "both_reversed", "memmap_offset3"])
@pytest.mark.parametrize("kind", [None, "some_zero"])
def test_center_removes_a_large_offset(rng, tmp_path, dtype, layout, kind):
    n, d = 5000, 30
    A = (1e4 + rng.standard_normal((n, d))).astype(dtype)
    X = in_layout(A, layout, tmp_path)
    mean = A.astype(np.float64).mean(axis=0)
    w = None if kind is None else weights(rng, n, kind)
    G = gk.weighted_gram(X, w, center=mean, memory_limit=200_000)
    assert gram_error(G, A, w, mean) <= rtol(dtype)
    # The test can tell: Σ w x xᵀ − (Σ w x) cᵀ − c (Σ w x)ᵀ + (Σ w) c cᵀ in float64 cancels ~8 digits.
    A64 = A.astype(np.float64)
    c = mean.astype(dtype).astype(np.float64)
    w64 = np.ones(n) if w is None else w
    s = A64.T @ w64
    naive = (A64.T * w64) @ A64 - np.outer(s, c) - np.outer(c, s) + w64.sum() * np.outer(c, c)
    assert gram_error(naive, A, w, mean) > 1e3 * rtol(np.float64)


# --- out= ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", [None, "mixed_sign"])
@pytest.mark.parametrize("layout", ["C", "F", "reversed", "strided_window"])
def test_out_layouts(rng, dtype, kind, layout):
    d = 19
    X = data(rng, 700, d, dtype)
    w = None if kind is None else weights(rng, 700, kind)
    if layout == "C":
        buf = np.full((d, d), np.nan, dtype=dtype)
        out = buf
    elif layout == "F":
        buf = np.full((d, d), np.nan, dtype=dtype, order="F")
        out = buf
    elif layout == "reversed":
        buf = np.full((d, d), np.nan, dtype=dtype)
        out = buf[::-1, ::-1]
    else:
        buf = np.full((2 * d + 1, 3 * d), -7.0, dtype=dtype)
        out = buf[1::2, ::3]
    result = gk.weighted_gram(X, w, out=out)
    assert result is out
    assert gram_error(out, X, w) <= rtol(dtype)
    if layout == "strided_window":
        untouched = np.ones(buf.shape, dtype=bool)
        untouched[1::2, ::3] = False
        assert np.all(buf[untouched] == -7.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 3])
def test_out_memmap(rng, tmp_path, dtype, offset):
    d = 25
    X = data(rng, 1000, d, dtype)
    w = weights(rng, 1000, "mixed_sign")
    out = memmap_of(np.full((d, d), -7.0, dtype=dtype), tmp_path, offset=offset, mode="r+")
    result = gk.weighted_gram(X, w, out=out)
    assert result is out
    out.flush()
    path = out.filename
    del out, result
    back = np.fromfile(path, dtype=np.uint8)[offset:].view(dtype).reshape(d, d)
    assert gram_error(back, X, w) <= rtol(dtype)


# --- dtype rules -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("w_dtype", [np.int64, np.int8, np.uint16, np.bool_, np.float32, np.float64])
def test_w_is_converted_to_x_dtype(rng, dtype, w_dtype):
    X = data(rng, 400, 9, dtype)
    w = rng.integers(0, 2 if w_dtype is np.bool_ else 4, 400).astype(w_dtype)
    if np.dtype(w_dtype).kind in "if":
        w[::7] = -1
    G = gk.weighted_gram(X, w)
    assert G.dtype == dtype
    assert gram_error(G, X, w) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_dtype", [np.int32, np.float32, np.float64])
def test_center_is_converted_to_x_dtype(rng, dtype, c_dtype):
    X = data(rng, 400, 9, dtype)
    c = (rng.standard_normal(9) * 10).astype(c_dtype)
    G = gk.weighted_gram(X, center=c)
    assert G.dtype == dtype
    assert gram_error(G, X, None, c.astype(dtype)) <= rtol(dtype)


def test_float64_weights_for_float32_x_are_rounded(rng):
    X = data(rng, 300, 6, np.float32)
    w = rng.uniform(0, 1, 300)
    G = gk.weighted_gram(X, w)
    assert G.dtype == np.float32
    assert gram_error(G, X, w.astype(np.float32)) <= rtol(np.float32)


def test_lists_are_accepted():
    G = gk.weighted_gram([[1.0, 2.0], [3.0, -1.0]], [1, 4])
    assert G.dtype == np.float64
    np.testing.assert_array_equal(G, [[37.0, -10.0], [-10.0, 8.0]])


# --- NaN and Inf -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["C", "F", "both_reversed"])
@pytest.mark.parametrize("kind", [None, "mixed_sign"])
@pytest.mark.parametrize("with_center", [False, True])
def test_nan_and_inf_propagate_like_numpy(rng, tmp_path, dtype, layout, kind, with_center):
    n, d = 3000, 11
    A = data(rng, n, d, dtype)
    w = None if kind is None else weights(rng, n, kind)
    if w is not None:
        w[[10, 2500]] = [0.5, -1.5]  # the rows holding NaN/Inf are not skipped (w ≠ 0)
    A[10, 3] = np.nan
    A[2500, 7] = np.inf
    X = in_layout(A, layout, tmp_path)
    c = rng.standard_normal(d) if with_center else None
    G = gk.weighted_gram(X, w, center=c)
    R, _ = gram_reference(A, w, c)
    assert np.array_equal(np.isnan(G), np.isnan(R))
    assert np.array_equal(np.isposinf(G), np.isposinf(R))
    assert np.array_equal(np.isneginf(G), np.isneginf(R))
    assert np.isnan(G[3]).all() and np.isnan(G[:, 3]).all()
    finite = np.isfinite(R)
    assert finite.sum() == (d - 2) ** 2
    rows = np.setdiff1d(np.arange(d), [3, 7])
    assert gram_error(G[np.ix_(rows, rows)], A[:, rows], w, None if c is None else c[rows]) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_weight_makes_everything_nan(rng, dtype):
    X = data(rng, 100, 5, dtype)
    w = np.ones(100)
    w[40] = np.nan
    G = gk.weighted_gram(X, w)
    assert np.isnan(G).all()
