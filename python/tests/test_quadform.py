"""quadform against float64 numpy references: layouts, sizes, blocking, threads, center,
out=, dtype conversion, NaN/Inf."""
import numpy as np
import pytest

import gmmkernels as gk
from support.layouts import check_layout_properties, in_layout, IN_MEMORY_LAYOUTS, LAYOUTS, memmap_of
from support.references import (
    DTYPES,
    quadform_error_general,
    quadform_error_spd,
    quadform_reference,
    rtol,
    spd,
)


def data(rng, n, d, dtype):
    return rng.standard_normal((n, d)).astype(dtype)


# --- values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 7, 64, 130, 300])
def test_spd_matches_numpy(rng, dtype, d):
    # d = 130 and 300 span two and three column panels of the triangle.
    X = data(rng, 1000, d, dtype)
    Q = spd(rng, d, dtype)
    q = gk.quadform(X, Q)
    assert q.dtype == dtype and q.shape == (1000,)
    assert quadform_error_spd(q, X, Q) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 7, 130])
def test_general_q_uses_its_symmetric_part(rng, dtype, d):
    X = data(rng, 513, d, dtype)
    Q = rng.standard_normal((d, d)).astype(dtype)  # not symmetric, indefinite
    q = gk.quadform(X, Q)
    assert quadform_error_general(q, X, Q) <= rtol(dtype)
    # Only the symmetric part matters: Q and Qᵀ give the same forms.
    assert quadform_error_general(gk.quadform(X, Q.T), X, Q) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts(rng, tmp_path, dtype, layout):
    A = data(rng, 1000, 130, dtype)
    X = in_layout(A, layout, tmp_path)
    check_layout_properties(X, layout)
    Q = spd(rng, 130, dtype)
    q = gk.quadform(X, Q)
    assert quadform_error_spd(q, A, Q) <= rtol(dtype)
    # With a center every layout goes through packing; without one, BLAS may read it in place.
    c = rng.standard_normal(130).astype(dtype)
    qc = gk.quadform(X, Q, center=c)
    assert quadform_error_spd(qc, A, Q, c) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["C", "F", "reversed", "padded", "every_other"])
def test_layouts_of_q(rng, dtype, layout):
    d = 70
    X = data(rng, 300, d, dtype)
    Q0 = spd(rng, d, dtype)
    if layout == "C":
        Q = Q0
    elif layout == "F":
        Q = np.asfortranarray(Q0)
    elif layout == "reversed":
        # P Q Pᵀ of a symmetric Q is symmetric; X's columns are reversed to match.
        Q = np.ascontiguousarray(Q0[::-1, ::-1])[::-1, ::-1]
    elif layout == "padded":
        buf = np.full((d + 3, d + 9), np.nan, dtype=dtype)
        buf[2 : 2 + d, 4 : 4 + d] = Q0
        Q = buf[2 : 2 + d, 4 : 4 + d]
    else:
        buf = np.full((2 * d, 2 * d), np.nan, dtype=dtype)
        buf[::2, 1::2] = Q0
        Q = buf[::2, 1::2]
    assert np.array_equal(Q, Q0)
    assert quadform_error_spd(gk.quadform(X, Q), X, Q0) <= rtol(dtype)


# --- sizes, blocking and threads ---------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 7, 1000, 2051])
@pytest.mark.parametrize("d", [1, 3, 129])
@pytest.mark.parametrize("layout", ["C", "F", "both_reversed"])
def test_sizes(rng, tmp_path, dtype, n, d, layout):
    X = in_layout(data(rng, n, d, dtype), layout, tmp_path)
    Q = spd(rng, d, dtype)
    assert quadform_error_spd(gk.quadform(X, Q), X, Q) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", IN_MEMORY_LAYOUTS)
def test_no_rows(tmp_path, dtype, layout):
    X = in_layout(np.empty((0, 5), dtype=dtype), layout, tmp_path)
    q = gk.quadform(X, np.eye(5))
    assert q.shape == (0,) and q.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_columns(dtype):
    q = gk.quadform(np.empty((4, 0), dtype=dtype), np.empty((0, 0)))
    assert q.dtype == dtype and np.array_equal(q, np.zeros(4))


def smallest_memory_limit(call):
    """The smallest memory_limit (bytes) for which `call(memory_limit)` succeeds; below it
    the call must raise ValueError. Found by bisection (success is monotone in the limit)."""
    lo, hi = 0, 64 << 20  # call(lo) fails (or lo == 0), call(hi) succeeds
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
@pytest.mark.parametrize("symmetric", [True, False])
def test_smallest_memory_limit(rng, tmp_path, dtype, layout, symmetric):
    n, d = 301, 37
    X = in_layout(data(rng, n, d, dtype), layout, tmp_path)
    Q = spd(rng, d, dtype) if symmetric else rng.standard_normal((d, d)).astype(dtype)
    c = rng.standard_normal(d)
    for center in (None, c):
        limit = smallest_memory_limit(lambda m: gk.quadform(X, Q, center=center, memory_limit=m))
        # The workspace bound holds whatever n: half the rows need no less.
        assert limit == smallest_memory_limit(
            lambda m: gk.quadform(X[: n // 2], Q, center=center, memory_limit=m))
        assert limit < X.size * X.dtype.itemsize // 4
        for threads in (1, 2, 3):
            q = gk.quadform(X, Q, center=center, memory_limit=limit, threads=threads)
            assert quadform_error_general(q, X, Q, center) <= rtol(dtype)
        with pytest.raises(ValueError, match="memory_limit"):
            gk.quadform(X, Q, center=center, memory_limit=limit - 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("memory_limit", [None, 50_000, 1 << 20])
@pytest.mark.parametrize("layout", ["C", "F", "rows_reversed"])
def test_threads_and_blocks(rng, tmp_path, dtype, threads, memory_limit, layout):
    X = in_layout(data(rng, 2051, 40, dtype), layout, tmp_path)
    Q = spd(rng, 40, dtype)
    q = gk.quadform(X, Q, threads=threads, memory_limit=memory_limit)
    assert quadform_error_spd(q, X, Q) <= rtol(dtype)


# --- center --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["C", "F", "both_reversed", "memmap_offset3"])
def test_center_removes_a_large_offset(rng, tmp_path, dtype, layout):
    n, d = 2000, 50
    A = (1e4 + rng.standard_normal((n, d))).astype(dtype)
    X = in_layout(A, layout, tmp_path)
    mean = A.astype(np.float64).mean(axis=0)
    Q = spd(rng, d, dtype)
    q = gk.quadform(X, Q, center=mean, memory_limit=100_000)
    assert quadform_error_spd(q, A, Q, mean) <= rtol(dtype)
    # The test can tell: expanding xᵀQx − 2cᵀQx + cᵀQc in float64 loses ~8 digits here.
    A64, c64, Q64 = A.astype(np.float64), mean.astype(dtype).astype(np.float64), Q.astype(np.float64)
    naive = np.sum(A64 @ Q64 * A64, axis=1) - 2 * A64 @ (Q64 @ c64) + c64 @ Q64 @ c64
    assert quadform_error_spd(naive, A, Q, mean) > 1e3 * rtol(np.float64)


def test_center_of_other_dtype_is_rounded_to_x_dtype(rng):
    X = data(rng, 100, 6, np.float32)
    Q = spd(rng, 6, np.float32)
    c = rng.standard_normal(6)  # float64, not representable in float32
    q = gk.quadform(X, Q, center=c)
    assert q.dtype == np.float32
    assert quadform_error_spd(q, X, Q, c.astype(np.float32)) <= rtol(np.float32)


# --- out= ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_out_is_written_and_returned(rng, dtype):
    X = data(rng, 500, 20, dtype)
    Q = spd(rng, 20, dtype)
    out = np.full(500, np.nan, dtype=dtype)
    result = gk.quadform(X, Q, out=out)
    assert result is out
    assert quadform_error_spd(out, X, Q) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_column_of_a_bigger_array(rng, dtype):
    X = data(rng, 500, 20, dtype)
    Q = spd(rng, 20, dtype)
    big = np.full((500, 3), -7.0, dtype=dtype)
    result = gk.quadform(X, Q, out=big[:, 1])
    assert np.shares_memory(result, big) and result.base is big
    assert quadform_error_spd(big[:, 1], X, Q) <= rtol(dtype)
    assert np.all(big[:, [0, 2]] == -7.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_reversed(rng, dtype):
    X = data(rng, 257, 9, dtype)
    Q = spd(rng, 9, dtype)
    buf = np.full(2 * 257, -7.0, dtype=dtype)
    out = buf[::-2]
    gk.quadform(X, Q, out=out)
    assert quadform_error_spd(out, X, Q) <= rtol(dtype)
    assert np.all(buf[-2::-2] == -7.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 3])
def test_out_memmap(rng, tmp_path, dtype, offset):
    n, d = 1000, 30
    X = data(rng, n, d, dtype)
    Q = spd(rng, d, dtype)
    out = memmap_of(np.full(n, -7.0, dtype=dtype), tmp_path, offset=offset, mode="r+")
    result = gk.quadform(X, Q, out=out)
    assert result is out
    out.flush()
    path = out.filename
    del out, result
    back = np.fromfile(path, dtype=np.uint8)[offset:].view(dtype)
    assert back.shape == (n,)
    assert quadform_error_spd(back, X, Q) <= rtol(dtype)


# --- dtype rules -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q_dtype", [np.int64, np.int32, np.uint8, np.float32, np.float64])
def test_q_is_converted_to_x_dtype(rng, dtype, q_dtype):
    X = data(rng, 200, 8, dtype)
    Qi = rng.integers(0, 5, size=(8, 8)) + 8 * np.eye(8, dtype=np.int64)
    Q = (Qi + Qi.T).astype(q_dtype)  # exactly representable in every dtype; SPD (diagonally dominant)
    q = gk.quadform(X, Q)
    assert q.dtype == dtype
    assert quadform_error_spd(q, X, Q) <= rtol(dtype)


def test_q_float64_for_float32_x_is_rounded(rng):
    X = data(rng, 200, 8, np.float32)
    Q = spd(rng, 8, np.float64)
    q = gk.quadform(X, Q)
    assert q.dtype == np.float32
    assert quadform_error_spd(q, X, Q.astype(np.float32)) <= rtol(np.float32)


def test_nested_lists():
    q = gk.quadform([[1.0, 2.0], [3.0, -1.0]], [[2, 0], [0, 1]], center=[1, 0])
    assert q.dtype == np.float64
    np.testing.assert_array_equal(q, [4.0, 9.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_known_values(dtype):
    # Hand-checkable: Q's off-diagonal entries only count through their sum.
    X = np.array([[1, 0], [0, 1], [1, 1], [2, -1]], dtype=dtype)
    Q = np.array([[2, 3], [-1, 5]], dtype=dtype)  # symmetric part [[2, 1], [1, 5]]
    np.testing.assert_array_equal(gk.quadform(X, Q), np.array([2, 5, 9, 9], dtype=dtype))


# --- NaN and Inf -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["C", "F", "both_reversed"])
@pytest.mark.parametrize("with_center", [False, True])
def test_nan_row_gives_nan_for_that_row_only(rng, tmp_path, dtype, layout, with_center):
    n, d = 700, 140
    A = data(rng, n, d, dtype)
    bad = [0, 5, 333, 699]
    A[bad[0], 0] = np.nan
    A[bad[1], d - 1] = np.nan
    A[bad[2], 70] = np.nan
    A[bad[3], :] = np.nan
    X = in_layout(A, layout, tmp_path)
    Q = spd(rng, d, dtype)
    c = rng.standard_normal(d) if with_center else None
    q = gk.quadform(X, Q, center=c, memory_limit=40_000)
    ref = quadform_reference(A, Q, c)
    assert np.array_equal(np.isnan(q), np.isnan(ref))
    assert np.flatnonzero(np.isnan(q)).tolist() == bad
    good = np.setdiff1d(np.arange(n), bad)
    assert quadform_error_spd(q[good], A[good], Q, c) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inf_gives_non_finite_for_that_row_only(rng, dtype):
    n, d = 300, 20
    X = data(rng, n, d, dtype)
    X[10, 3] = np.inf
    X[20, 0] = -np.inf
    Q = spd(rng, d, dtype)
    q = gk.quadform(X, Q)
    with np.errstate(invalid="ignore"):  # inf − inf in the reference, as in the kernel
        ref = quadform_reference(X, Q)
    assert not np.isfinite(ref[[10, 20]]).any()
    assert np.flatnonzero(~np.isfinite(q)).tolist() == [10, 20]
    good = np.setdiff1d(np.arange(n), [10, 20])
    assert quadform_error_spd(q[good], X[good], Q) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_in_q_propagates_like_numpy(rng, dtype):
    X = data(rng, 50, 4, dtype)
    Q = spd(rng, 4, dtype)
    Q[1, 2] = np.nan
    q = gk.quadform(X, Q)
    assert np.isnan(q).all() and np.isnan(quadform_reference(X, Q)).all()


# --- zero row stride -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_broadcast_rows(rng, dtype):
    row = rng.standard_normal(33).astype(dtype)
    X = np.broadcast_to(row, (400, 33))
    assert X.strides[0] == 0
    Q = spd(rng, 33, dtype)
    q = gk.quadform(X, Q)
    assert quadform_error_spd(q, X, Q) <= rtol(dtype)
