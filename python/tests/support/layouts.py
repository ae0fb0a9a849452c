"""Memory layouts of the tests' inputs, and outputs guarded against writes outside them.

Each layout stores the values of a (n, d) array in some memory layout and returns a view
with exactly those values. Memory the view must not read holds NaN, so a kernel that reads
outside the view gives NaN instead of a plausible number.
"""
import numpy as np


def _c(A, tmp):
    return np.ascontiguousarray(A)


def _f(A, tmp):
    return np.asfortranarray(A)


def _rows_reversed(A, tmp):
    return np.ascontiguousarray(A[::-1])[::-1]


def _cols_reversed(A, tmp):
    return np.ascontiguousarray(A[:, ::-1])[:, ::-1]


def _both_reversed(A, tmp):
    return np.ascontiguousarray(A[::-1, ::-1])[::-1, ::-1]


def _every_other_row(A, tmp):
    n, d = A.shape
    buf = np.full((2 * n, d), np.nan, dtype=A.dtype)
    buf[::2] = A
    return buf[::2]


def _every_other_row_fortran(A, tmp):
    n, d = A.shape
    buf = np.full((2 * n, d), np.nan, dtype=A.dtype, order="F")
    buf[1::2] = A
    return buf[1::2]


def _column_slice(A, tmp):
    n, d = A.shape
    buf = np.full((n, d + 5), np.nan, dtype=A.dtype)
    buf[:, 2 : 2 + d] = A
    return buf[:, 2 : 2 + d]


def _column_slice_fortran(A, tmp):
    n, d = A.shape
    buf = np.full((n + 3, d), np.nan, dtype=A.dtype, order="F")
    buf[1 : 1 + n] = A
    return buf[1 : 1 + n]


def _every_third_column(A, tmp):
    n, d = A.shape
    buf = np.full((n, 3 * d), np.nan, dtype=A.dtype)
    buf[:, ::3] = A
    return buf[:, ::3]


def _negative_every_other_row(A, tmp):
    n, d = A.shape
    buf = np.full((2 * n, d), np.nan, dtype=A.dtype)
    buf[::-2] = A
    return buf[::-2]


_memmap_count = [0]


def memmap_of(A, tmp, *, offset=0, order="C", mode="r"):
    """A file-backed np.memmap in directory `tmp` holding A's values, `offset` bytes into the file."""
    _memmap_count[0] += 1
    path = tmp / ("x%d.bin" % _memmap_count[0])
    with open(path, "wb") as f:
        f.write(b"\x7f" * offset)
        f.write(np.asarray(A).tobytes(order=order))
    return np.memmap(path, dtype=A.dtype, mode=mode, shape=A.shape, offset=offset, order=order)


def _memmap(A, tmp):
    return memmap_of(A, tmp)


def _memmap_fortran(A, tmp):
    return memmap_of(A, tmp, order="F")


def _memmap_offset3(A, tmp):
    return memmap_of(A, tmp, offset=3)


def _memmap_half_element_offset(A, tmp):
    # 4 bytes into a float64 file (2 into float32): aligned for a smaller type only.
    return memmap_of(A, tmp, offset=A.dtype.itemsize // 2)


def _memmap_offset3_reversed(A, tmp):
    return memmap_of(np.ascontiguousarray(A[::-1, ::-1]), tmp, offset=3)[::-1, ::-1]


def _memmap_offset3_fortran(A, tmp):
    return memmap_of(A, tmp, offset=3, order="F")


LAYOUTS = {
    "C": _c,
    "F": _f,
    "rows_reversed": _rows_reversed,
    "cols_reversed": _cols_reversed,
    "both_reversed": _both_reversed,
    "every_other_row": _every_other_row,
    "every_other_row_F": _every_other_row_fortran,
    "negative_every_other_row": _negative_every_other_row,
    "column_slice": _column_slice,
    "column_slice_F": _column_slice_fortran,
    "every_third_column": _every_third_column,
    "memmap": _memmap,
    "memmap_F": _memmap_fortran,
    "memmap_offset3": _memmap_offset3,
    "memmap_half_element_offset": _memmap_half_element_offset,
    "memmap_offset3_reversed": _memmap_offset3_reversed,
    "memmap_offset3_F": _memmap_offset3_fortran,
}
MEMMAP_LAYOUTS = [name for name in LAYOUTS if name.startswith("memmap")]
# Layouts that can hold an empty array (a file of zero bytes cannot be mapped).
IN_MEMORY_LAYOUTS = [name for name in LAYOUTS if not name.startswith("memmap")]


def in_layout(A, layout, tmp):
    """A's values in `layout`, checked to be what the name says."""
    X = LAYOUTS[layout](A, tmp)
    assert X.shape == A.shape and X.dtype == A.dtype
    assert np.array_equal(X, A, equal_nan=True)
    if min(X.shape) > 1:  # numpy gives a one-row or one-column view the strides it likes
        check_layout_properties(X, layout)
    return X


def check_layout_properties(X, layout):
    """That a layout really is what its name says (so the tests exercise what they claim)."""
    if layout == "C":
        assert X.flags.c_contiguous
    if layout == "F" and X.shape[0] > 1 and X.shape[1] > 1:
        assert X.flags.f_contiguous and not X.flags.c_contiguous
    if "reversed" in layout or layout.startswith("negative"):
        assert min(X.strides) < 0
    if "offset3" in layout or "half_element" in layout:
        assert X.__array_interface__["data"][0] % X.dtype.itemsize != 0
        assert not X.flags.aligned
    if "every_other" in layout or layout.startswith("column_slice") or "third" in layout:
        assert not X.flags.c_contiguous and not X.flags.f_contiguous
    if layout.startswith("memmap"):
        assert isinstance(X.base, np.memmap) or isinstance(X, np.memmap)


# --- guarded outputs -------------------------------------------------------------------------

OUT_KINDS = ["C", "F", "strided", "reversed", "memmap", "memmap_offset3"]


class GuardedOut:
    """An output array of `shape` and `dtype` in some memory layout, inside memory that holds
    a sentinel the call must not touch. `check()` asserts the sentinel is intact."""

    def __init__(self, shape, dtype, kind, tmp=None):
        shape = tuple(shape)
        dtype = np.dtype(dtype)
        self.kind = kind
        self.buf = None
        self.path = None
        if kind == "C":
            self.out = np.full(shape, np.nan, dtype=dtype)
        elif kind == "F":
            self.out = np.asfortranarray(np.full(shape, np.nan, dtype=dtype))
        elif kind in ("strided", "reversed"):
            # strided: every other entry of the first axis, an inner slice of the last one;
            # reversed: every axis reversed, inside a padded buffer.
            pad = tuple((2 * s if i == 0 else s) + 3 for i, s in enumerate(shape))
            self.buf = np.full(pad, np.nan, dtype=dtype)
            if kind == "strided":
                sel = (slice(1, 1 + 2 * shape[0], 2),) + tuple(slice(2, 2 + s) for s in shape[1:])
            else:
                sel = tuple(slice(s, 0, -1) if s else slice(1, 1) for s in shape)
            self.sel = sel
            self.out = self.buf[sel]
            assert self.out.shape == shape
            self.mask = np.zeros(pad, dtype=bool)
            self.mask[sel] = True
        elif kind in ("memmap", "memmap_offset3"):
            self.offset = 3 if kind == "memmap_offset3" else 0
            _memmap_count[0] += 1
            self.path = tmp / ("out%d.bin" % _memmap_count[0])
            self.nbytes = int(np.prod(shape)) * dtype.itemsize
            with open(self.path, "wb") as f:
                f.write(b"\xab" * self.offset)
                f.write(np.full(shape, np.nan, dtype=dtype).tobytes())
                f.write(b"\xcd" * 16)
            self.out = np.memmap(self.path, dtype=dtype, mode="r+", shape=shape, offset=self.offset)
        else:
            raise ValueError(kind)
        if kind == "reversed" and self.out.size:
            assert all(s < 0 for s, n in zip(self.out.strides, shape) if n > 1)

    def check(self):
        if self.buf is not None:
            outside = self.buf[~self.mask]
            assert np.isnan(outside).all(), "the call wrote outside out"
        if self.path is not None:
            self.out.flush()
            raw = self.path.read_bytes()
            assert raw[: self.offset] == b"\xab" * self.offset, "the call wrote before out"
            assert raw[self.offset + self.nbytes :] == b"\xcd" * 16, "the call wrote after out"
