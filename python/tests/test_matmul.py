"""matmul against A @ B in float64: shapes, blocking, threads, layouts, memmaps for A and out,
conversion of B, the empty inner dimension, bounded memory, and bad input."""

import numpy as np
import pytest

import gmmkernels as gk
from support.layouts import GuardedOut, in_layout, LAYOUTS, memmap_of, OUT_KINDS
from support.processes import measured
from support.references import as_operand, DTYPES, product_error, raises, rtol

MiB = 1 << 20


def data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k, m", [(1001, 37, 5), (1, 1, 1), (3, 200, 300), (1000, 1, 7), (700, 16, 1), (2, 5, 1000)])
def test_matches_numpy(rng, dtype, n, k, m):
    A = data(rng, (n, k), dtype)
    B = data(rng, (k, m), dtype)
    C = gk.matmul(A, B)
    assert C.dtype == dtype and C.shape == (n, m)
    assert product_error(C, A, B) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_blocks_and_threads(rng, dtype, threads):
    n, k, m = 3001, 19, 23
    A = data(rng, (n, k), dtype)
    B = data(rng, (k, m), dtype)
    for limit in (5_000, 40_000, None):
        C = gk.matmul(A, B, threads=threads, memory_limit=limit)
        assert product_error(C, A, B) <= rtol(dtype), limit
        # Through workspace (A packed, out not writable by BLAS) with the same limit.
        out = np.full((m, n), np.nan, dtype).T[::-1]
        C = gk.matmul(A[::-1], B, out=out, threads=threads, memory_limit=limit)
        assert product_error(C, A[::-1], B) <= rtol(dtype), limit


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_of_a(rng, tmp_path, dtype, layout):
    A0 = data(rng, (1201, 14), dtype)
    A = in_layout(A0, layout, tmp_path)
    B = data(rng, (14, 6), dtype)
    C = gk.matmul(A, B, memory_limit=20_000)
    assert product_error(C, A0, B) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["F", "rows_reversed", "both_reversed", "every_other_row", "column_slice", "memmap_offset3"])
def test_layouts_of_b(rng, tmp_path, dtype, layout):
    A = data(rng, (501, 14), dtype)
    B0 = data(rng, (14, 6), dtype)
    B = in_layout(B0, layout, tmp_path)
    C = gk.matmul(A, B, memory_limit=20_000)
    assert product_error(C, A, B0) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", OUT_KINDS)
def test_out(rng, tmp_path, dtype, kind):
    A = data(rng, (777, 12), dtype)
    B = data(rng, (12, 9), dtype)
    g = GuardedOut((777, 9), dtype, kind, tmp_path)
    C = gk.matmul(A, B, out=g.out, memory_limit=20_000)
    assert C is g.out
    g.check()
    assert product_error(np.asarray(C), A, B) <= rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_memmap_a_and_out_b_converted(rng, tmp_path, dtype):
    # A memmap (also at an unaligned offset), out a fresh np.memmap(mode="w+"), B of the other
    # float type: B is rounded to A's dtype and the result has A's dtype.
    n, k, m = 2500, 24, 10
    A0 = data(rng, (n, k), dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    B = data(rng, (k, m), other)
    for offset in (0, 3):
        A = memmap_of(A0, tmp_path, offset=offset)
        out = np.memmap(tmp_path / ("c%d.bin" % offset), dtype=dtype, mode="w+", shape=(n, m))
        C = gk.matmul(A, B, out=out, memory_limit=50_000)
        assert C is out and C.dtype == dtype
        out.flush()
        back = np.fromfile(tmp_path / ("c%d.bin" % offset), dtype=dtype).reshape(n, m)
        assert product_error(back, A0, as_operand(B, dtype)) <= rtol(dtype)
        assert np.array_equal(back, np.asarray(C))


def test_b_of_integers_or_a_list(rng):
    A = data(rng, (300, 4), np.float32)
    Bi = rng.integers(-5, 6, (4, 3))
    C = gk.matmul(A, Bi)
    assert C.dtype == np.float32
    assert product_error(C, A, Bi) <= 1e-5
    C = gk.matmul(A.astype(np.float64), Bi.tolist())
    assert C.dtype == np.float64
    assert product_error(C, A, Bi) <= 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_inner_dimension_gives_zeros(dtype):
    out = np.full((5, 4), np.nan, dtype)
    C = gk.matmul(np.ones((5, 0), dtype), np.ones((0, 4)), out=out)
    assert C is out and np.array_equal(C, np.zeros((5, 4)))
    C = gk.matmul(np.ones((5, 0), dtype), np.ones((0, 4)))
    assert C.dtype == dtype and np.array_equal(C, np.zeros((5, 4)))
    # A strided out with k = 0: zeros where out is, nothing beside it.
    g = GuardedOut((5, 4), dtype, "strided")
    gk.matmul(np.ones((5, 0), dtype), np.ones((0, 4)), out=g.out)
    g.check()
    assert np.array_equal(g.out, np.zeros((5, 4)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_outer_dimensions(dtype):
    assert gk.matmul(np.ones((0, 3), dtype), np.ones((3, 4))).shape == (0, 4)
    assert gk.matmul(np.ones((5, 3), dtype), np.ones((3, 0))).shape == (5, 0)


# --- memory ---------------------------------------------------------------------------------

# Beside the workspace: the call's helper and worker threads' stacks, OpenBLAS's per-thread
# buffers and malloc's arenas; far below the 195 MiB of the product these tests make.
ALLOWANCE = 16 * MiB


def file_of_rows(path, n, k, seed, chunk=20_000):
    """An (n, k) float64 file written a chunk at a time; returns a read-only memmap of it."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        for start in range(0, n, chunk):
            rng.standard_normal((min(chunk, n - start), k)).tofile(f)
    return np.memmap(path, dtype=np.float64, mode="r", shape=(n, k))


def check_sample_rows(C, A, B, rng, rows=3000):
    idx = np.sort(rng.choice(A.shape[0], rows, replace=False))
    assert product_error(np.asarray(C[idx]), np.asarray(A[idx]), B) <= 1e-12


def test_peak_memory_with_memmaps(tmp_path):
    # A: 400 000 × 64 float64 memmap (195 MiB), out: a memmap of the same size. numpy's
    # A @ B makes an out-sized temporary, which the meter must see (so this test can fail);
    # matmul into the memmap needs no more than memory_limit beside it.
    n, k, m = 400_000, 64, 64
    rng = np.random.default_rng(11)
    A = file_of_rows(tmp_path / "a.bin", n, k, seed=12)
    B = rng.standard_normal((k, m))
    limit = 64 * MiB
    gk.matmul(A[:2000], B)  # first use of the thread pools and OpenBLAS's buffers

    product_bytes = n * m * 8
    ref, peak_numpy = measured(lambda: A @ B)
    assert peak_numpy >= 0.9 * product_bytes, "meter saw %.1f MiB" % (peak_numpy / MiB)
    assert peak_numpy > limit + ALLOWANCE
    ref_rows = ref[::997].copy()
    del ref

    out = np.memmap(tmp_path / "out.bin", dtype=np.float64, mode="w+", shape=(n, m))
    C, peak = measured(lambda: gk.matmul(A, B, out=out, memory_limit=limit))
    print("matmul [%d, %d] memmap @ [%d, %d] into a memmap: peak extra anonymous memory %.1f MiB"
          % (n, k, k, m, peak / MiB))
    assert C is out
    assert peak <= limit + ALLOWANCE, "peak %.1f MiB" % (peak / MiB)
    assert product_error(np.asarray(C[::997]), np.asarray(A[::997]), B) <= 1e-12
    assert np.max(np.abs(C[::997] - ref_rows)) <= 1e-12 * np.max(np.abs(ref_rows))
    check_sample_rows(C, A, B, rng)


def test_peak_memory_packed_a_small_limit(tmp_path):
    # A at an unaligned file offset must be packed block by block into workspace: with a
    # 4 MiB memory_limit the workspace stays within it, although A and out are 98 MiB each.
    n, k, m = 200_000, 64, 64
    rng = np.random.default_rng(13)
    A0 = file_of_rows(tmp_path / "a0.bin", n, k, seed=14)
    path = tmp_path / "a3.bin"
    with open(path, "wb") as f:
        f.write(b"\0\0\0")
        for start in range(0, n, 20_000):
            np.asarray(A0[start : start + 20_000]).tofile(f)
    A = np.memmap(path, dtype=np.float64, mode="r", shape=(n, k), offset=3)
    assert A.__array_interface__["data"][0] % 8 != 0
    B = rng.standard_normal((k, m))
    out = np.memmap(tmp_path / "out.bin", dtype=np.float64, mode="w+", shape=(n, m))
    limit = 4 * MiB
    gk.matmul(A[:2000], B, memory_limit=limit)
    C, peak = measured(lambda: gk.matmul(A, B, out=out, memory_limit=limit))
    assert C is out
    assert peak <= limit + ALLOWANCE, "peak %.1f MiB" % (peak / MiB)
    assert limit + ALLOWANCE < out.nbytes / 4
    check_sample_rows(C, A0, B, rng)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("b_shape", [(4, 2), (2, 2), (2, 3), (3,), (1, 3, 2)])
def test_inner_dimension_mismatch(b_shape):
    A = np.ones((5, 3))
    raises(ValueError, lambda: gk.matmul(A, np.ones(b_shape)), "A", "B", "(5, 3)", str(b_shape))


def test_a_not_2d():
    raises(ValueError, lambda: gk.matmul(np.ones(3), np.ones((3, 2))), "A", "(3,)")
    raises(ValueError, lambda: gk.matmul(np.ones((2, 5, 3)), np.ones((3, 2))), "A", "(2, 5, 3)")


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128, np.float16])
def test_a_of_wrong_dtype(dtype):
    raises(TypeError, lambda: gk.matmul(np.ones((5, 3), dtype=dtype), np.ones((3, 2))), "A", str(np.dtype(dtype)))


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64, object])
def test_b_of_wrong_dtype(dtype):
    raises(TypeError, lambda: gk.matmul(np.ones((5, 3)), np.ones((3, 2), dtype=dtype)), "B", str(np.dtype(dtype)))


@pytest.mark.parametrize("out_shape", [(5, 3), (2, 5), (4, 2), (10,), (5, 2, 1)])
def test_out_of_wrong_shape(out_shape):
    out = np.zeros(out_shape)
    raises(ValueError, lambda: gk.matmul(np.ones((5, 3)), np.ones((3, 2)), out=out), "out", "(5, 2)", str(out_shape))
    assert not out.any()


@pytest.mark.parametrize("a_dtype, out_dtype", [(np.float64, np.float32), (np.float32, np.float64), (np.float64, np.int64)])
def test_out_of_wrong_dtype(a_dtype, out_dtype):
    out = np.zeros((5, 2), dtype=out_dtype)
    raises(TypeError, lambda: gk.matmul(np.ones((5, 3), a_dtype), np.ones((3, 2)), out=out), "out", str(np.dtype(out_dtype)))
    assert not out.any()


def test_read_only_out(tmp_path):
    out = np.zeros((5, 2))
    out.flags.writeable = False
    raises(ValueError, lambda: gk.matmul(np.ones((5, 3)), np.ones((3, 2)), out=out), "out")
    np.zeros((5, 2)).tofile(tmp_path / "ro.bin")
    out = np.memmap(tmp_path / "ro.bin", dtype=np.float64, mode="r", shape=(5, 2))
    raises(ValueError, lambda: gk.matmul(np.ones((5, 3)), np.ones((3, 2)), out=out), "out")


def test_out_overlapping_inputs(rng):
    buf = rng.standard_normal((6, 4))
    before = buf.copy()
    A = buf[:, :3]
    B = rng.standard_normal((3, 2))
    raises(ValueError, lambda: gk.matmul(A, B, out=buf[:, 2:4]), "out", "A")
    raises(ValueError, lambda: gk.matmul(A, B, out=buf[::-1, :2]), "out", "A")
    assert np.array_equal(buf, before)
    Bq = rng.standard_normal((3, 3))
    raises(ValueError, lambda: gk.matmul(rng.standard_normal((3, 3)), Bq, out=Bq), "out", "B")
    # Square in-place A = A @ B is an overlap too.
    Sq = rng.standard_normal((3, 3))
    raises(ValueError, lambda: gk.matmul(Sq, np.eye(3), out=Sq), "out", "A")
    # out in the column A does not use: no overlap.
    C = gk.matmul(A, B[:, :1], out=buf[:, 3:4])
    assert np.array_equal(buf[:, :3], before[:, :3])
    assert product_error(C, before[:, :3], B[:, :1]) <= 1e-12
