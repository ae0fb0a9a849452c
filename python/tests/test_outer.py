"""outer against np.multiply(y[:, None], x[None, :]): exact products, dtype rules, sizes,
blocking, threads, strided inputs, out= in every layout (memmaps too), bad input."""
import numpy as np
import pytest

import gmmkernels as gk
from support.layouts import GuardedOut, OUT_KINDS
from support.references import DTYPES, raises


def reference(y, x, dtype):
    y = np.asarray(y).astype(dtype)
    x = np.asarray(x).astype(dtype)
    return np.multiply(y[:, None], x[None, :])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m", [(1, 1), (1000, 7), (7, 1000), (3001, 1), (1, 3001), (257, 513)])
def test_matches_numpy(rng, dtype, n, m):
    y = rng.standard_normal(n).astype(dtype)
    x = rng.standard_normal(m).astype(dtype)
    r = gk.outer(y, x)
    assert r.dtype == dtype and r.shape == (n, m)
    assert np.array_equal(r, np.multiply(y[:, None], x[None, :]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_blocks_and_threads(rng, dtype, threads):
    # 1 MiB or more of out, and a small memory_limit: many row blocks.
    n, m = 4001, 97
    y = rng.standard_normal(n).astype(dtype)
    x = rng.standard_normal(m).astype(dtype)
    for limit in (4_000, None):
        r = gk.outer(y, x, threads=threads, memory_limit=limit)
        assert np.array_equal(r, reference(y, x, dtype)), limit
    # Rows long enough that a block holds few of them.
    y = rng.standard_normal(300).astype(dtype)
    x = rng.standard_normal(200_000).astype(dtype)
    r = gk.outer(y, x, threads=threads)
    assert np.array_equal(r, reference(y, x, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty(dtype):
    z = np.zeros(0, dtype)
    assert gk.outer(z, np.ones(4, dtype)).shape == (0, 4)
    assert gk.outer(np.ones(4, dtype), z).shape == (4, 0)
    assert gk.outer(z, z).shape == (0, 0)


def test_special_values(rng):
    # NaN and Inf propagate as numpy's products do (0 · Inf = NaN, Inf · −1 = −Inf).
    y = np.array([0.0, np.inf, -1.0, np.nan, 2.0])
    x = np.array([np.inf, -1.0, 0.0, 3.0])
    with np.errstate(invalid="ignore"):
        ref = np.multiply(y[:, None], x[None, :])
    assert np.array_equal(gk.outer(y, x), ref, equal_nan=True)


# --- dtype rules ------------------------------------------------------------------------------

def test_float32_inputs_give_float32(rng):
    y = rng.standard_normal(50).astype(np.float32)
    x = rng.standard_normal(30).astype(np.float32)
    r = gk.outer(y, x)
    assert r.dtype == np.float32
    assert np.array_equal(r, np.multiply(y[:, None], x[None, :]))


@pytest.mark.parametrize("ty, tx", [(np.float32, np.float64), (np.float64, np.float32), (np.int64, np.int64),
                                    (np.int32, np.float32), (np.int8, np.int8), (np.int16, np.uint16),
                                    (np.uint8, np.float32)])
def test_mixed_and_integer_inputs_give_float64(rng, ty, tx):
    # The documented rule: float32 only if both inputs are float32, else float64 (integers
    # of any width included).
    y = (rng.standard_normal(40) * 10).astype(ty)
    x = (rng.standard_normal(25) * 10).astype(tx)
    r = gk.outer(y, x)
    assert r.dtype == np.float64
    assert np.array_equal(r, reference(y, x, np.float64))


def test_integers_give_float64_exactly():
    r = gk.outer(np.arange(5), np.arange(1, 4))
    assert r.dtype == np.float64
    assert np.array_equal(r, np.multiply.outer(np.arange(5), np.arange(1, 4)).astype(np.float64))


def test_lists():
    r = gk.outer([1.5, 2.0], [3.0, -1.0, 0.5])
    assert r.dtype == np.float64
    assert np.array_equal(r, np.array([[4.5, -1.5, 0.75], [6.0, -2.0, 1.0]]))


@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize("in_dtypes", [(np.float64, np.float64), (np.float32, np.float32), (np.int64, np.float32)])
def test_out_dtype_wins(rng, out_dtype, in_dtypes):
    # The inputs are converted to out's dtype and multiplied in it.
    y = (rng.standard_normal(60) * 3).astype(in_dtypes[0])
    x = (rng.standard_normal(45) * 3).astype(in_dtypes[1])
    out = np.full((60, 45), np.nan, out_dtype)
    r = gk.outer(y, x, out=out)
    assert r is out
    assert np.array_equal(r, reference(y, x, out_dtype))


# --- layouts -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_inputs(rng, dtype):
    ybuf = rng.standard_normal(2 * 301).astype(dtype)
    xbuf = rng.standard_normal(3 * 77).astype(dtype)
    for y, x in [(ybuf[::2], xbuf[::3]), (ybuf[::-1], xbuf[::-3]), (ybuf[1::2][::-1], xbuf[:77])]:
        r = gk.outer(y, x, memory_limit=10_000)
        assert np.array_equal(r, np.multiply(y[:, None], x[None, :]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_memmap_inputs(rng, tmp_path, dtype):
    y0 = rng.standard_normal(500).astype(dtype)
    x0 = rng.standard_normal(40).astype(dtype)
    with open(tmp_path / "y.bin", "wb") as f:
        f.write(b"\1\2\3")
        f.write(y0.tobytes())
    y = np.memmap(tmp_path / "y.bin", dtype=dtype, mode="r", shape=(500,), offset=3)
    r = gk.outer(y, x0)
    assert np.array_equal(r, np.multiply(y0[:, None], x0[None, :]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", OUT_KINDS)
def test_out(rng, tmp_path, dtype, kind):
    n, m = 1501, 41
    y = rng.standard_normal(n).astype(dtype)
    x = rng.standard_normal(m).astype(dtype)
    g = GuardedOut((n, m), dtype, kind, tmp_path)
    r = gk.outer(y, x, out=g.out, memory_limit=8_000)
    assert r is g.out
    g.check()
    assert np.array_equal(np.asarray(r), np.multiply(y[:, None], x[None, :]))


def test_out_memmap_written_to_file(rng, tmp_path):
    n, m = 3000, 200
    y = rng.standard_normal(n)
    x = rng.standard_normal(m)
    path = tmp_path / "r.bin"
    out = np.memmap(path, dtype=np.float64, mode="w+", shape=(n, m))
    r = gk.outer(y, x, out=out)
    assert r is out
    out.flush()
    del out, r
    back = np.fromfile(path, dtype=np.float64).reshape(n, m)
    assert np.array_equal(back, np.multiply(y[:, None], x[None, :]))


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (3, 1), (1, 3), (2, 2, 2)])
def test_inputs_not_1d(shape):
    raises(ValueError, lambda: gk.outer(np.ones(shape), np.ones(3)), "y", str(shape))
    raises(ValueError, lambda: gk.outer(np.ones(3), np.ones(shape)), "x", str(shape))


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64, object, "U2"])
def test_inputs_of_wrong_dtype(dtype):
    raises(TypeError, lambda: gk.outer(np.ones(3, dtype=dtype), np.ones(2)), "y", str(np.dtype(dtype)))
    raises(TypeError, lambda: gk.outer(np.ones(3), np.ones(2, dtype=dtype)), "x", str(np.dtype(dtype)))


@pytest.mark.parametrize("out_shape", [(3, 3), (2, 3), (4, 2), (6,), (3, 2, 1)])
def test_out_of_wrong_shape(out_shape):
    out = np.zeros(out_shape)
    raises(ValueError, lambda: gk.outer(np.ones(3), np.ones(2), out=out), "out", "(3, 2)", str(out_shape))
    assert not out.any()


@pytest.mark.parametrize("out_dtype", [np.int64, np.int32, np.complex128, np.float16])
def test_out_of_wrong_dtype(out_dtype):
    out = np.zeros((3, 2), dtype=out_dtype)
    raises(TypeError, lambda: gk.outer(np.ones(3), np.ones(2), out=out), "out", str(np.dtype(out_dtype)))
    assert not out.any()


def test_read_only_out(tmp_path):
    out = np.zeros((3, 2))
    out.flags.writeable = False
    raises(ValueError, lambda: gk.outer(np.ones(3), np.ones(2), out=out), "out")
    np.zeros((3, 2)).tofile(tmp_path / "ro.bin")
    out = np.memmap(tmp_path / "ro.bin", dtype=np.float64, mode="r", shape=(3, 2))
    raises(ValueError, lambda: gk.outer(np.ones(3), np.ones(2), out=out), "out")


def test_out_overlapping_inputs(rng):
    buf = rng.standard_normal((4, 3))
    before = buf.copy()
    raises(ValueError, lambda: gk.outer(buf[:, 0], np.ones(3), out=buf), "out", "y")
    raises(ValueError, lambda: gk.outer(np.ones(4), buf[2], out=buf), "out", "x")
    raises(ValueError, lambda: gk.outer(buf[::-1, 1], buf[0], out=buf), "out")
    assert np.array_equal(buf, before)
    # Inputs in memory beside out do not overlap it.
    big = rng.standard_normal((5, 4))
    y, x = big[4, :].copy(), big[4, :3].copy()
    r = gk.outer(big[4, :], big[4, :3], out=big[:4, :3])
    assert np.array_equal(r, np.multiply(y[:, None], x[None, :]))
