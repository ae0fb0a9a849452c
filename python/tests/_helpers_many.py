"""Float64 references, error measures, memory layouts and guarded outputs for the tests of
quadform_many, weighted_gram_many, weighted_sum, matmul and outer.

References are computed in float64 from the operands as the kernels see them: small
operands (Qs, R, centers, B) rounded to X's dtype first, since the API converts them.
Errors are measured against the natural scale of each sum's rounding error (the same sum
taken over absolute values), so a tolerance of the contract's size cannot hide a wrong term.
"""
import numpy as np

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
DTYPES = [np.float32, np.float64]


def rtol(dtype):
    return RTOL[np.dtype(dtype)]


def widened(a, dtype):
    """`a` rounded to `dtype` (as the kernel sees it), then widened to float64."""
    if a is None:
        return None
    return np.asarray(a).astype(dtype).astype(np.float64)


def ratio(err, scale):
    """err / scale elementwise; where the scale is zero the result must be exact (else inf)."""
    err, scale = np.broadcast_arrays(np.asarray(err, np.float64), np.asarray(scale, np.float64))
    out = np.zeros(err.shape)
    nz = scale > 0
    out[nz] = err[nz] / scale[nz]
    out[~nz & (err != 0)] = np.inf
    out[np.isnan(err)] = np.inf
    return float(np.max(out)) if out.size else 0.0


def spd(rng, d, dtype=np.float64):
    """A symmetric positive definite (d, d) matrix, exactly symmetric."""
    A = rng.standard_normal((d, d))
    Q = A @ A.T / max(d, 1) + 0.5 * np.eye(d)
    return ((Q + Q.T) / 2).astype(dtype)


def general_qs(rng, k, d, dtype=np.float64):
    """K non-symmetric, indefinite (d, d) matrices."""
    return rng.standard_normal((k, d, d)).astype(dtype)


# --- quadform_many ---------------------------------------------------------------------------

def quadform_many_reference(X, Qs, centers=None):
    """(ref, scale), both (n, K): ref_ik = (x_i − c_k)ᵀ Q_k (x_i − c_k) in float64 and
    scale_ik = |x_i − c_k|² ‖Q_k‖₂, which bounds |ref_ik| and its rounding error."""
    dtype = X.dtype
    X64 = np.array(X, dtype=np.float64)
    Q64 = widened(Qs, dtype)
    C64 = widened(centers, dtype)
    n, d = X64.shape
    K = Q64.shape[0]
    ref = np.zeros((n, K))
    scale = np.zeros((n, K))
    for k in range(K):
        Xc = X64 if C64 is None else X64 - C64[k]
        ref[:, k] = np.sum(Xc @ Q64[k] * Xc, axis=1)
        norm = np.linalg.norm(Q64[k], 2) if d else 0.0
        scale[:, k] = np.sum(Xc * Xc, axis=1) * norm
    return ref, scale


def quadform_many_error(got, X, Qs, centers=None):
    ref, scale = quadform_many_reference(X, Qs, centers)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return ratio(np.abs(got.astype(np.float64) - ref), scale)


# --- weighted_gram_many ----------------------------------------------------------------------

def gram_many_reference(X, R, centers=None):
    """(G, scale), both (K, d, d): G_k = Σ_i R_ik (x_i − c_k)(x_i − c_k)ᵀ in float64, and
    scale_k[j, l] = sqrt(A_jj A_ll) with A_k the |R|-weighted Gram matrix of |x − c_k|."""
    dtype = X.dtype
    X64 = np.array(X, dtype=np.float64)
    R64 = widened(R, dtype)
    C64 = widened(centers, dtype)
    n, d = X64.shape
    K = R64.shape[1]
    G = np.zeros((K, d, d))
    scale = np.zeros((K, d, d))
    for k in range(K):
        Xc = X64 if C64 is None else X64 - C64[k]
        G[k] = Xc.T @ (R64[:, k : k + 1] * Xc)
        diag = np.sqrt(np.sum(np.abs(R64[:, k : k + 1]) * Xc * Xc, axis=0))
        scale[k] = np.outer(diag, diag)
    return G, scale


def gram_many_error(got, X, R, centers=None):
    G, scale = gram_many_reference(X, R, centers)
    assert got.shape == G.shape, (got.shape, G.shape)
    return ratio(np.abs(got.astype(np.float64) - G), scale)


# --- weighted_sum and matmul -----------------------------------------------------------------

def product_error(got, A, B):
    """max |got − A B| / (|A| |B|) with A, B as float64 (A B's rounding error scale)."""
    A64 = np.array(A, dtype=np.float64)
    B64 = np.array(B, dtype=np.float64)
    ref = A64 @ B64
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return ratio(np.abs(got.astype(np.float64) - ref), np.abs(A64) @ np.abs(B64))


def weighted_sum_error(got, X, R):
    """Error of Rᵀ X, with R rounded to X's dtype first."""
    return product_error(got, widened(R, X.dtype).T, X)


# --- layouts of an input ---------------------------------------------------------------------
# Each returns a view holding exactly A's values; memory the view must not read holds NaN.

_files = [0]


def memmap_of(A, tmp, *, offset=0, order="C", mode="r"):
    """A file-backed np.memmap holding A's values, `offset` bytes into the file."""
    _files[0] += 1
    path = tmp / ("in%d.bin" % _files[0])
    with open(path, "wb") as f:
        f.write(b"\x7f" * offset)
        f.write(np.asarray(A).tobytes(order=order))
    return np.memmap(path, dtype=A.dtype, mode=mode, shape=A.shape, offset=offset, order=order)


def _every_other_row(A, tmp):
    buf = np.full((2 * A.shape[0],) + A.shape[1:], np.nan, dtype=A.dtype)
    buf[1::2] = A
    return buf[1::2]


def _negative_every_other_row(A, tmp):
    buf = np.full((2 * A.shape[0],) + A.shape[1:], np.nan, dtype=A.dtype)
    buf[::-2] = A
    return buf[::-2]


def _column_slice(A, tmp):
    n, d = A.shape
    buf = np.full((n, d + 5), np.nan, dtype=A.dtype)
    buf[:, 2 : 2 + d] = A
    return buf[:, 2 : 2 + d]


LAYOUTS = {
    "C": lambda A, tmp: np.ascontiguousarray(A),
    "F": lambda A, tmp: np.asfortranarray(A),
    "rows_reversed": lambda A, tmp: np.ascontiguousarray(A[::-1])[::-1],
    "both_reversed": lambda A, tmp: np.ascontiguousarray(A[::-1, ::-1])[::-1, ::-1],
    "every_other_row": _every_other_row,
    "negative_every_other_row": _negative_every_other_row,
    "column_slice": _column_slice,
    "memmap": lambda A, tmp: memmap_of(A, tmp),
    "memmap_F": lambda A, tmp: memmap_of(A, tmp, order="F"),
    "memmap_offset3": lambda A, tmp: memmap_of(A, tmp, offset=3),
    "memmap_offset3_reversed": lambda A, tmp: memmap_of(np.ascontiguousarray(A[::-1, ::-1]), tmp, offset=3)[::-1, ::-1],
}


def in_layout(A, layout, tmp):
    """A's values in `layout`, checked to be what the name says."""
    X = LAYOUTS[layout](A, tmp)
    assert X.shape == A.shape and X.dtype == A.dtype
    assert np.array_equal(X, A, equal_nan=True)
    n, d = A.shape
    if layout == "F" and n > 1 and d > 1:
        assert X.flags.f_contiguous and not X.flags.c_contiguous
    if "reversed" in layout or layout.startswith("negative"):
        assert min(X.strides) < 0
    if "every_other" in layout or layout == "column_slice":
        assert not X.flags.c_contiguous and not X.flags.f_contiguous
    if "offset3" in layout:
        assert X.__array_interface__["data"][0] % X.dtype.itemsize != 0
    if layout.startswith("memmap"):
        assert isinstance(X, np.memmap) or isinstance(X.base, np.memmap)
    return X


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
            _files[0] += 1
            self.path = tmp / ("out%d.bin" % _files[0])
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
