"""Bad input: the right exception, a message that names the argument and the shapes seen,
nothing written, and the library still usable afterwards."""
import re

import numpy as np
import pytest

import gmmkernels as gk
from support.references import raises


def shape_text(shape):
    """A shape as numpy prints it: (3, 4), (5,), ()."""
    return str(tuple(shape))


@pytest.fixture
def X(rng):
    return rng.standard_normal((5, 3))


# --- X -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", ["quadform", "weighted_gram"])
@pytest.mark.parametrize("shape", [(3,), (2, 3, 3), (), (1, 1, 1, 1)])
def test_x_not_2d(fn, shape):
    X = np.ones(shape)
    args = (np.eye(3),) if fn == "quadform" else ()
    raises(ValueError, lambda: getattr(gk, fn)(X, *args), "X", shape_text(shape))


@pytest.mark.parametrize("fn", ["quadform", "weighted_gram"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.float16, np.complex128, np.complex64, object])
def test_x_of_wrong_dtype(fn, dtype):
    X = np.ones((4, 3)).astype(dtype)
    args = (np.eye(3),) if fn == "quadform" else ()
    raises(TypeError, lambda: getattr(gk, fn)(X, *args), "X", str(np.dtype(dtype)))


@pytest.mark.parametrize("fn", ["quadform", "weighted_gram"])
def test_x_not_in_native_byte_order(fn):
    X = np.ones((4, 3), dtype=np.dtype(np.float64).newbyteorder())
    args = (np.eye(3),) if fn == "quadform" else ()
    raises(TypeError, lambda: getattr(gk, fn)(X, *args), "X")


# --- Q ------------------------------------------------------------------------------------

@pytest.mark.parametrize("q_shape", [(4, 4), (2, 2), (3, 4), (4, 3), (3,), (9,), (1, 3, 3), (0, 0)])
def test_q_of_wrong_shape(X, q_shape):
    raises(ValueError, lambda: gk.quadform(X, np.ones(q_shape)), "Q", shape_text((3, 3)), shape_text(q_shape))


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64, object, "U3"])
def test_q_of_wrong_dtype(X, dtype):
    Q = np.eye(3).astype(dtype)
    raises(TypeError, lambda: gk.quadform(X, Q), "Q", str(np.dtype(dtype)))


def test_q_none(X):
    with pytest.raises((TypeError, ValueError), match="Q"):
        gk.quadform(X, None)


# --- w and center -------------------------------------------------------------------------

@pytest.mark.parametrize("w_shape", [(4,), (6,), (0,), (5, 1), (1, 5), ()])
def test_w_of_wrong_shape(X, w_shape):
    raises(ValueError, lambda: gk.weighted_gram(X, np.ones(w_shape)), "w", shape_text((5,)), shape_text(w_shape))


@pytest.mark.parametrize("fn", ["quadform", "weighted_gram"])
@pytest.mark.parametrize("c_shape", [(2,), (4,), (0,), (3, 1), (1, 3), ()])
def test_center_of_wrong_shape(X, fn, c_shape):
    args = (np.eye(3),) if fn == "quadform" else ()
    call = lambda: getattr(gk, fn)(X, *args, center=np.ones(c_shape))  # noqa: E731
    raises(ValueError, call, "center", shape_text((3,)), shape_text(c_shape))


@pytest.mark.parametrize("dtype", [np.complex128, object])
def test_w_and_center_of_wrong_dtype(X, dtype):
    raises(TypeError, lambda: gk.weighted_gram(X, np.ones(5, dtype=dtype)), "w", str(np.dtype(dtype)))
    raises(TypeError, lambda: gk.weighted_gram(X, center=np.ones(3, dtype=dtype)), "center", str(np.dtype(dtype)))
    raises(TypeError, lambda: gk.quadform(X, np.eye(3), center=np.ones(3, dtype=dtype)), "center")


# --- out ----------------------------------------------------------------------------------

@pytest.mark.parametrize("out_shape", [(4,), (6,), (5, 1), (1, 5), ()])
def test_quadform_out_of_wrong_shape(X, out_shape):
    out = np.zeros(out_shape)
    raises(ValueError, lambda: gk.quadform(X, np.eye(3), out=out), "out", shape_text((5,)), shape_text(out_shape))
    assert not out.any()


@pytest.mark.parametrize("out_shape", [(3,), (9,), (2, 2), (3, 4), (4, 3), (5, 5), (1, 3, 3)])
def test_weighted_gram_out_of_wrong_shape(X, out_shape):
    out = np.zeros(out_shape)
    raises(ValueError, lambda: gk.weighted_gram(X, out=out), "out", shape_text((3, 3)), shape_text(out_shape))
    assert not out.any()


@pytest.mark.parametrize("x_dtype, out_dtype", [
    (np.float64, np.float32), (np.float32, np.float64), (np.float64, np.int64), (np.float64, np.complex128),
])
def test_out_of_wrong_dtype(X, x_dtype, out_dtype):
    Xt = X.astype(x_dtype)
    out = np.zeros(5, dtype=out_dtype)
    raises(TypeError, lambda: gk.quadform(Xt, np.eye(3), out=out), "out", str(np.dtype(out_dtype)))
    out = np.zeros((3, 3), dtype=out_dtype)
    raises(TypeError, lambda: gk.weighted_gram(Xt, out=out), "out", str(np.dtype(out_dtype)))
    assert not out.any()


def test_out_not_an_array(X):
    with pytest.raises(TypeError, match="out"):
        gk.quadform(X, np.eye(3), out=[0.0] * 5)
    with pytest.raises(TypeError, match="out"):
        gk.weighted_gram(X, out=[[0.0] * 3] * 3)


def test_read_only_out(X):
    out = np.zeros(5)
    out.flags.writeable = False
    raises(ValueError, lambda: gk.quadform(X, np.eye(3), out=out), "out")
    out = np.zeros((3, 3))
    out.flags.writeable = False
    raises(ValueError, lambda: gk.weighted_gram(X, out=out), "out")
    assert not out.any()


def test_read_only_memmap_out(tmp_path, X):
    path = tmp_path / "out.bin"
    np.zeros(5).tofile(path)
    out = np.memmap(path, dtype=np.float64, mode="r", shape=(5,))
    raises(ValueError, lambda: gk.quadform(X, np.eye(3), out=out), "out")


def test_quadform_out_overlapping_x(rng):
    buf = rng.standard_normal((5, 4))
    before = buf.copy()
    X = buf[:, :3]
    for out in (buf[:, 0], buf[::-1, 2], buf.ravel()[1:6]):
        raises(ValueError, lambda: gk.quadform(X, np.eye(3), out=out), "out", "X")
    # out in X's gaps only (column 3 is not part of X) does not overlap it.
    gk.quadform(X, np.eye(3), out=buf[:, 3])
    assert np.array_equal(buf[:, :3], before[:, :3])


def test_quadform_out_overlapping_q(rng):
    X = rng.standard_normal((3, 3))
    Q = np.eye(3)
    before = Q.copy()
    raises(ValueError, lambda: gk.quadform(X, Q, out=Q[1]), "out", "Q")
    raises(ValueError, lambda: gk.quadform(X, Q, out=Q[:, 2]), "out", "Q")
    assert np.array_equal(Q, before)


def test_quadform_out_overlapping_center(rng):
    X = rng.standard_normal((3, 3))
    c = np.zeros(3)
    raises(ValueError, lambda: gk.quadform(X, np.eye(3), center=c, out=c), "out", "center")


def test_weighted_gram_out_overlapping_inputs(rng):
    buf = rng.standard_normal((8, 3))
    before = buf.copy()
    X = buf
    raises(ValueError, lambda: gk.weighted_gram(X, out=buf[5:8]), "out", "X")
    raises(ValueError, lambda: gk.weighted_gram(X, out=buf[::-1][:3]), "out", "X")
    assert np.array_equal(buf, before)
    w = np.zeros(9)
    Xw = rng.standard_normal((9, 3))
    raises(ValueError, lambda: gk.weighted_gram(Xw, w, out=w.reshape(3, 3)), "out", "w")
    c = np.zeros((3, 3))
    raises(ValueError, lambda: gk.weighted_gram(Xw, center=c[0], out=c), "out", "center")


# --- threads and memory_limit -------------------------------------------------------------

@pytest.mark.parametrize("fn", ["quadform", "weighted_gram"])
@pytest.mark.parametrize("threads", [0, -1, -100])
def test_bad_threads(X, fn, threads):
    args = (np.eye(3),) if fn == "quadform" else ()
    raises(ValueError, lambda: getattr(gk, fn)(X, *args, threads=threads), "threads", str(threads))


@pytest.mark.parametrize("threads", [1.5, True, "2"])
def test_threads_not_an_integer(X, threads):
    with pytest.raises((TypeError, ValueError), match="threads"):
        gk.quadform(X, np.eye(3), threads=threads)


@pytest.mark.parametrize("fn", ["quadform", "weighted_gram"])
@pytest.mark.parametrize("memory_limit", [0, -1, -(1 << 40)])
def test_bad_memory_limit(X, fn, memory_limit):
    args = (np.eye(3),) if fn == "quadform" else ()
    raises(ValueError, lambda: getattr(gk, fn)(X, *args, memory_limit=memory_limit), "memory_limit", str(memory_limit))


@pytest.mark.parametrize("memory_limit", [1.5, "64M", True])
def test_memory_limit_not_an_integer(X, memory_limit):
    with pytest.raises((TypeError, ValueError), match="memory_limit"):
        gk.weighted_gram(X, memory_limit=memory_limit)


@pytest.mark.parametrize("fn", ["quadform", "weighted_gram"])
@pytest.mark.parametrize("memory_limit", [(1 << 64) + 5, (1 << 63) + 8, 1 << 100])
def test_memory_limit_beyond_int64_is_not_wrapped(rng, fn, memory_limit):
    # A limit too large for the C ABI's int64 is rejected or taken as "plenty"; it must not
    # wrap around to a small (or negative) number of bytes.
    X = rng.standard_normal((50, 40))
    args = (np.eye(40),) if fn == "quadform" else ()
    try:
        result = getattr(gk, fn)(X, *args, memory_limit=memory_limit)
    except ValueError as e:
        assert "memory_limit" in str(e) and str(memory_limit) in str(e), str(e)
    else:
        ref = np.sum(X * X, axis=1) if fn == "quadform" else X.T @ X
        np.testing.assert_allclose(result, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("fn", ["quadform", "weighted_gram"])
@pytest.mark.parametrize("memory_limit", [1, 8, 100])
def test_memory_limit_too_small_for_one_row(rng, fn, memory_limit):
    X = rng.standard_normal((50, 40))
    # Weights make weighted_gram pack each row (320 bytes); without them it needs none.
    args = (np.eye(40),) if fn == "quadform" else (rng.random(50),)
    out = np.full((50,) if fn == "quadform" else (40, 40), -7.0)
    message = raises(
        ValueError, lambda: getattr(gk, fn)(X, *args, out=out, memory_limit=memory_limit),
        "memory_limit", str(memory_limit))
    # The message says how much is needed, so the user can act on it.
    needed = [int(s) for s in re.findall(r"\d+", message) if int(s) > memory_limit]
    assert needed, message
    assert np.all(out == -7.0)
    getattr(gk, fn)(X, *args, out=out, memory_limit=max(needed))


def test_weighted_gram_without_weights_needs_no_workspace(rng):
    # BLAS reads X in place and accumulates in `out`: any memory_limit will do.
    X = rng.standard_normal((300, 40))
    np.testing.assert_allclose(gk.weighted_gram(X, memory_limit=1), X.T @ X, rtol=1e-12,
                               atol=1e-12 * np.abs(X.T @ X).max())


# --- the library survives all of the above -------------------------------------------------

def test_still_works_after_errors(rng):
    X = rng.standard_normal((100, 4))
    for bad in (lambda: gk.quadform(X, np.eye(5)), lambda: gk.weighted_gram(X, np.ones(100), memory_limit=1)):
        with pytest.raises(ValueError):
            bad()
    Q = np.diag([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(gk.quadform(X, Q), (X**2) @ np.diag(Q), rtol=1e-12)
    np.testing.assert_allclose(gk.weighted_gram(X), X.T @ X, rtol=1e-12, atol=1e-12 * np.abs(X.T @ X).max())
