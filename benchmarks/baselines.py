"""The numpy code gmmkernels replaces, kept runnable for comparisons (demo, benchmark, tests).

Three ways people compute the two heavy products of Gaussian-mixture EM on X of shape
(n_samples, n_features), usually an ``np.memmap``:

- naive: the one-line numpy expressions. Each allocates X-sized temporaries.
- blocked: the usual hand-written fix. Rows go in blocks of 2**27 elements (1 GiB of
  float64), each block through ``np.dot`` into a preallocated buffer and reduced at once.
  Memory is bounded by the block size, but each block still makes block-sized
  temporaries, and the products do GEMM's 2·n·d² flops where symmetry needs n·d².
- dask: the same expressions on a ``dask.array`` made from X, computed with dask's threaded
  scheduler (dask is imported inside these functions only; it is not a dependency).

For K mixture components (K precision matrices, K columns of responsibilities) the usual
code runs the blocked pass once per component: ``blocked_quadform_many`` and
``blocked_weighted_gram_many`` read X K times.

The two dense products of the same code base are here too: ``numpy_matmul`` (``A @ B``,
the result in RAM) and ``numpy_outer`` (``np.multiply`` of broadcast views into ``out``).

All functions return float arrays of X's dtype, like :func:`gmmkernels.quadform` and
:func:`gmmkernels.weighted_gram`, and never copy X as a whole.
"""
import numpy as np

#: Elements of X per block in the hand-blocked code: 2**27 (1 GiB of float64).
BLOCK_ELEMENTS = 2**27


def _block_rows(d, block_elements):
    return max(1, block_elements // max(1, d))


# ---------------------------------------------------------------------------------------
# E-step: q_i = x_iᵀ Q x_i
# ---------------------------------------------------------------------------------------


def naive_quadform(X, Q):
    """``np.sum(X.dot(Q) * X, axis=1)``: shape (n_samples,).

    Allocates two temporaries of X's size (X·Q and the elementwise product) and does
    2·n·d² flops.
    """
    Q = np.asarray(Q, dtype=X.dtype)
    return np.sum(X.dot(Q) * X, axis=1)


def blocked_quadform(X, Q, *, center=None, block_elements=BLOCK_ELEMENTS, einsum=False):
    """Row-blocked ``np.sum(X.dot(Q) * X, axis=1)``: shape (n_samples,).

    Per block b of ``block_elements // n_features`` rows: ``np.dot(b, Q, out=buf)`` into a
    preallocated buffer, then ``np.sum(buf * b, axis=1)`` (or, with ``einsum=True``,
    ``np.einsum('ij,ij->i', buf, b)``, which skips the product temporary). Extra memory:
    the buffer plus one block-sized temporary; flops: 2·n·d².

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    Q : array_like of shape (n_features, n_features)
    center : array_like of shape (n_features,), optional
        Subtracted from each block first (``b = b - center``: one more block-sized
        temporary), giving ``(x_i - c)ᵀ Q (x_i - c)``.
    block_elements : int
        Elements of X per block (default 2**27).
    einsum : bool
        Reduce each block with einsum instead of sum of a product.

    Returns
    -------
    q : ndarray of shape (n_samples,)
    """
    n, d = X.shape
    Q = np.ascontiguousarray(Q, dtype=X.dtype)
    center = None if center is None else np.asarray(center, dtype=X.dtype)
    rows = _block_rows(d, block_elements)
    out = np.empty(n, dtype=X.dtype)
    buf = np.empty((min(rows, n), d), dtype=X.dtype)
    for start in range(0, n, rows):
        b = X[start:start + rows]
        if center is not None:
            b = b - center
        y = buf[: len(b)]
        np.dot(b, Q, out=y)
        if einsum:
            out[start:start + len(b)] = np.einsum("ij,ij->i", y, b)
        else:
            out[start:start + len(b)] = np.sum(y * b, axis=1)
    return out


def blocked_quadform_many(X, Qs, centers=None, *, block_elements=BLOCK_ELEMENTS):
    """K blocked passes: column k is ``blocked_quadform(X, Qs[k], center=centers[k])``.

    The E-step of the usual code for K components: one full blocked pass over X per
    precision matrix, so X is read K times (from disk K times when it does not fit in the
    page cache). Extra memory: that of one blocked pass plus the result; flops: 2·K·n·d².

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    Qs : array_like of shape (n_matrices, n_features, n_features)
    centers : array_like of shape (n_matrices, n_features), optional
    block_elements : int
        Elements of X per block (default 2**27).

    Returns
    -------
    q : ndarray of shape (n_samples, n_matrices)
    """
    Qs = np.asarray(Qs, dtype=X.dtype)
    out = np.empty((X.shape[0], Qs.shape[0]), dtype=X.dtype)
    for k in range(Qs.shape[0]):
        c = None if centers is None else centers[k]
        out[:, k] = blocked_quadform(X, Qs[k], center=c, block_elements=block_elements)
    return out


def dask_quadform(X, Q, *, chunks="auto", scheduler="threads"):
    """``(Xd @ Q * Xd).sum(1)`` on ``Xd = da.from_array(X, chunks=(chunks, n_features))``.

    ``chunks="auto"`` lets dask pick the rows per chunk (its ``array.chunk-size``, 128 MiB
    by default). Computed with the threaded scheduler; numpy's BLAS runs threaded inside
    each task as well, as it does for any dask user. Needs dask.

    Returns
    -------
    q : ndarray of shape (n_samples,)
    """
    import dask.array as da

    n, d = X.shape
    Q = np.asarray(Q, dtype=X.dtype)
    Xd = da.from_array(X, chunks=(chunks, d), lock=False)
    return np.asarray((Xd @ Q * Xd).sum(axis=1).compute(scheduler=scheduler))


# ---------------------------------------------------------------------------------------
# M-step: G = Σ_i w_i x_i x_iᵀ
# ---------------------------------------------------------------------------------------


def naive_weighted_gram(X, w):
    """``(X.T * w).dot(X)``: shape (n_features, n_features).

    Allocates one temporary of X's size and does 2·n·d² flops; rows with w_i = 0 cost as
    much as any other.
    """
    w = np.asarray(w, dtype=X.dtype)
    return (X.T * w).dot(X)


def blocked_weighted_gram(X, w, *, center=None, block_elements=BLOCK_ELEMENTS):
    """Row-blocked ``(X.T * w).dot(X)`` that skips rows with zero weight.

    Per block b with weights w_blk: ``nz = w_blk != 0;
    acc += (b[nz] * w_blk[nz, None]).T.dot(b[nz])``. Extra memory: up to three
    block-sized temporaries (two copies ``b[nz]`` and the weighted rows); flops:
    2·(rows with w_i ≠ 0)·d². Sums accumulate in X's dtype.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    w : array_like of shape (n_samples,)
    center : array_like of shape (n_features,), optional
        Subtracted from the selected rows of each block (``bc = b[nz] - center``, used
        for both factors), giving Σ w_i (x_i - c)(x_i - c)ᵀ.
    block_elements : int
        Elements of X per block (default 2**27).

    Returns
    -------
    G : ndarray of shape (n_features, n_features)
    """
    n, d = X.shape
    w = np.asarray(w, dtype=X.dtype)
    center = None if center is None else np.asarray(center, dtype=X.dtype)
    rows = _block_rows(d, block_elements)
    acc = np.zeros((d, d), dtype=X.dtype)
    for start in range(0, n, rows):
        b = X[start:start + rows]
        w_blk = w[start:start + rows]
        nz = w_blk != 0
        if center is None:
            acc += (b[nz] * w_blk[nz, None]).T.dot(b[nz])
        else:
            bc = b[nz] - center
            acc += (bc * w_blk[nz, None]).T.dot(bc)
    return acc


def blocked_weighted_gram_many(X, R, centers=None, *, block_elements=BLOCK_ELEMENTS):
    """K blocked passes: ``G[k] = blocked_weighted_gram(X, R[:, k], center=centers[k])``.

    The M-step of the usual code for K components: one full blocked pass over X per column
    of the responsibilities, so X is read K times. Extra memory: that of one blocked pass
    plus the result; flops: 2·Σ_k (rows with R_ik ≠ 0)·d².

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    R : array_like of shape (n_samples, n_components)
    centers : array_like of shape (n_components, n_features), optional
    block_elements : int
        Elements of X per block (default 2**27).

    Returns
    -------
    G : ndarray of shape (n_components, n_features, n_features)
    """
    R = np.asarray(R, dtype=X.dtype)
    d = X.shape[1]
    out = np.empty((R.shape[1], d, d), dtype=X.dtype)
    for k in range(R.shape[1]):
        c = None if centers is None else centers[k]
        out[k] = blocked_weighted_gram(X, R[:, k], center=c, block_elements=block_elements)
    return out


def dask_weighted_gram(X, w, *, chunks="auto", scheduler="threads"):
    """``(Xd.T * wd) @ Xd`` on ``Xd = da.from_array(X, chunks=(chunks, n_features))``.

    w is chunked like the rows of X; dask sums the per-chunk (d, d) products. Rows with
    w_i = 0 are multiplied like any other. Needs dask.

    Returns
    -------
    G : ndarray of shape (n_features, n_features)
    """
    import dask.array as da

    n, d = X.shape
    Xd = da.from_array(X, chunks=(chunks, d), lock=False)
    wd = da.from_array(np.asarray(w, dtype=X.dtype), chunks=(Xd.chunks[0],))
    return np.asarray(((Xd.T * wd) @ Xd).compute(scheduler=scheduler))


# ---------------------------------------------------------------------------------------
# Dense products: A @ B and y xᵀ
# ---------------------------------------------------------------------------------------


def numpy_matmul(A, B, out=None):
    """``A @ B`` (``np.matmul(A, B, out=out)``): shape (n, m) for A (n, k) and B (k, m).

    numpy's BLAS reads a memmap A in place, but without ``out`` the whole result is
    allocated in RAM; with ``out`` numpy writes into it (a memmap too).
    """
    B = np.asarray(B, dtype=A.dtype)
    return np.matmul(A, B, out=out)


def numpy_outer(y, x, out=None):
    """``np.multiply(y[:, None], x[None, :], out=out)``: shape (n, m) for y (n,), x (m,).

    One thread writes every element of ``out`` (allocated when None).
    """
    return np.multiply(np.asarray(y)[:, None], np.asarray(x)[None, :], out=out)


def have_dask():
    """True when dask.array can be imported."""
    try:
        import dask.array  # noqa: F401
    except ImportError:
        return False
    return True
