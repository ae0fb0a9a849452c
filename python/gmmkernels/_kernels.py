"""The numpy-facing kernels: validation, dtype and shape rules, out=, progress."""
import numpy as np

from . import _library
from ._progress import progress_callback
from ._validation import FLOAT_DTYPES, data_matrix, memory_limit_arg, operand, output, threads_arg


def _run(name, arrays, *, rows, threads, memory_limit, progress, desc):
    with progress_callback(progress, rows, desc) as report:
        _library.call(
            name,
            arrays,
            threads=threads_arg(threads),
            memory_limit=memory_limit_arg(memory_limit),
            rows=rows,
            progress=report,
        )


def quadform(X, Q, *, center=None, out=None, threads=None, memory_limit=None, progress=False):
    """Quadratic forms of the rows of X: ``q_i = (x_i - c)ᵀ Q (x_i - c)``.

    The blocked, multithreaded equivalent of ``np.sum((X - c) @ Q * (X - c), axis=1)``
    that allocates nothing X-sized and reads X once.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        Any strides; an ``np.memmap`` is read in place, never copied.
    Q : array_like of shape (n_features, n_features)
        Converted to X's dtype. Only its symmetric part ``(Q + Qᵀ) / 2`` matters.
    center : array_like of shape (n_features,), optional
        Subtracted from every row before the product (default: zero).
    out : ndarray of shape (n_samples,), optional
        Written in place; X's dtype; must not overlap an input.
    threads : int, optional
        Threads to use (default: every CPU this process may use).
    memory_limit : int, optional
        Bytes of workspace beside ``out`` (default 64 MiB), whatever n_samples is.
    progress : bool or callable, optional
        True shows a progress bar (tqdm); a callable gets the rows done so far.

    Returns
    -------
    out : ndarray of shape (n_samples,)
    """
    X = data_matrix(X)
    n, d = X.shape
    Q = operand(Q, X.dtype, "Q", (d, d))
    c = None if center is None else operand(center, X.dtype, "center", (d,))
    out = output(out, (n,), X.dtype, {"X": X, "Q": Q, "center": c})
    _run("gmk_quadform", [X, Q, c, out], rows=n, threads=threads, memory_limit=memory_limit,
         progress=progress, desc="quadform")
    return out


def weighted_gram(X, w=None, *, center=None, out=None, threads=None, memory_limit=None, progress=False):
    """Weighted Gram matrix ``G = Σ_i w_i (x_i - c)(x_i - c)ᵀ`` of the rows of X.

    The blocked, multithreaded equivalent of ``((X - c).T * w) @ (X - c)``, computed as a
    symmetric rank-k update (half GEMM's flops), with sums accumulated in float64.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        Any strides; an ``np.memmap`` is read in place, never copied.
    w : array_like of shape (n_samples,), optional
        Weights of any sign (default: all ones). Rows with ``w_i == 0`` cost nothing.
    center : array_like of shape (n_features,), optional
        Subtracted from every row first (default: zero); pass the mean to get a scatter
        matrix without the cancellation of ``E[xxᵀ] - μμᵀ``.
    out : ndarray of shape (n_features, n_features), optional
        Written in place (both triangles); X's dtype; must not overlap an input.
    threads, memory_limit, progress
        As for :func:`quadform`.

    Returns
    -------
    out : ndarray of shape (n_features, n_features)
    """
    X = data_matrix(X)
    n, d = X.shape
    w = None if w is None else operand(w, X.dtype, "w", (n,))
    c = None if center is None else operand(center, X.dtype, "center", (d,))
    out = output(out, (d, d), X.dtype, {"X": X, "w": w, "center": c})
    _run("gmk_weighted_gram", [X, w, c, out], rows=n, threads=threads, memory_limit=memory_limit,
         progress=progress, desc="weighted_gram")
    return out


def quadform_many(X, Qs, *, centers=None, out=None, threads=None, memory_limit=None, progress=False):
    """Quadratic forms of the rows of X for K matrices: ``q_ik = (x_i - c_k)ᵀ Q_k (x_i - c_k)``.

    X is read once for all K (each row block is hot while all K products run on it),
    which is what makes K matrices over a memmap cheaper than K calls of :func:`quadform`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    Qs : array_like of shape (n_matrices, n_features, n_features)
        Converted to X's dtype; only the symmetric part of each matters.
    centers : array_like of shape (n_matrices, n_features), optional
        Row k is subtracted before the product with Q_k (default: zero).
    out : ndarray of shape (n_samples, n_matrices), optional
    threads, memory_limit, progress
        As for :func:`quadform`.

    Returns
    -------
    out : ndarray of shape (n_samples, n_matrices)
    """
    X = data_matrix(X)
    n, d = X.shape
    Qs = operand(Qs, X.dtype, "Qs", (None, d, d))
    k = Qs.shape[0]
    c = None if centers is None else operand(centers, X.dtype, "centers", (k, d))
    out = output(out, (n, k), X.dtype, {"X": X, "Qs": Qs, "centers": c})
    _run("gmk_quadform_many", [X, Qs, c, out], rows=n, threads=threads, memory_limit=memory_limit,
         progress=progress, desc="quadform_many")
    return out


def weighted_gram_many(X, R, *, centers=None, out=None, threads=None, memory_limit=None, progress=False):
    """K weighted Gram matrices ``G_k = Σ_i R_ik (x_i - c_k)(x_i - c_k)ᵀ`` in one pass over X.

    The M-step's scatter matrices for all components; X is read once.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    R : array_like of shape (n_samples, n_components)
        Weights of any sign (responsibilities), converted to X's dtype.
    centers : array_like of shape (n_components, n_features), optional
    out : ndarray of shape (n_components, n_features, n_features), optional
    threads, memory_limit, progress
        As for :func:`quadform`.

    Returns
    -------
    out : ndarray of shape (n_components, n_features, n_features)
    """
    X = data_matrix(X)
    n, d = X.shape
    R = operand(R, X.dtype, "R", (n, None))
    k = R.shape[1]
    c = None if centers is None else operand(centers, X.dtype, "centers", (k, d))
    out = output(out, (k, d, d), X.dtype, {"X": X, "R": R, "centers": c})
    _run("gmk_weighted_gram_many", [X, R, c, out], rows=n, threads=threads, memory_limit=memory_limit,
         progress=progress, desc="weighted_gram_many")
    return out


def weighted_sum(X, R, *, out=None, threads=None, memory_limit=None, progress=False):
    """``Rᵀ X``: the K weighted sums ``Σ_i R_ik x_i``, accumulated in float64.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    R : array_like of shape (n_samples, n_components)
    out : ndarray of shape (n_components, n_features), optional
    threads, memory_limit, progress
        As for :func:`quadform`.

    Returns
    -------
    out : ndarray of shape (n_components, n_features)
    """
    X = data_matrix(X)
    n, d = X.shape
    R = operand(R, X.dtype, "R", (n, None))
    out = output(out, (R.shape[1], d), X.dtype, {"X": X, "R": R})
    _run("gmk_weighted_sum", [X, R, out], rows=n, threads=threads, memory_limit=memory_limit,
         progress=progress, desc="weighted_sum")
    return out


def matmul(A, B, *, out=None, threads=None, memory_limit=None, progress=False):
    """``A @ B`` by row blocks, in bounded memory.

    A may be a memmap larger than RAM and ``out`` a memmap larger than RAM: blocks of A
    are read and blocks of ``out`` written in place, nothing of size n is allocated.

    Parameters
    ----------
    A : ndarray of shape (n, k), float32 or float64
    B : array_like of shape (k, m)
        Converted to A's dtype.
    out : ndarray of shape (n, m), optional
    threads, memory_limit, progress
        As for :func:`quadform`.

    Returns
    -------
    out : ndarray of shape (n, m)
    """
    A = data_matrix(A, "A")
    n, k = A.shape
    B = np.asarray(B)
    if B.ndim != 2 or B.shape[0] != k:
        raise ValueError(
            "matmul: A has shape (%d, %d), so B must have shape (%d, m), got %s" % (n, k, k, B.shape)
        )
    B = operand(B, A.dtype, "B", (k, None))
    out = output(out, (n, B.shape[1]), A.dtype, {"A": A, "B": B})
    _run("gmk_matmul", [A, B, out], rows=n, threads=threads, memory_limit=memory_limit,
         progress=progress, desc="matmul")
    return out


def outer(y, x, *, out=None, threads=None, memory_limit=None, progress=False):
    """``y[:, None] * x[None, :]`` written by parallel row blocks into ``out``.

    Parameters
    ----------
    y : array_like of shape (n,)
    x : array_like of shape (m,)
    out : ndarray of shape (n, m), float32 or float64, optional
        May be a memmap larger than RAM. Its dtype decides the computation's; without it,
        float32 if both inputs are float32, else float64.
    threads, memory_limit, progress
        As for :func:`quadform`.

    Returns
    -------
    out : ndarray of shape (n, m)
    """
    y = np.asarray(y)
    x = np.asarray(x)
    for name, v in (("y", y), ("x", x)):
        if v.dtype.kind not in "biuf":
            raise TypeError("%s must be real numbers, got dtype %s" % (name, v.dtype))
        if v.ndim != 1:
            raise ValueError("%s must be 1-D, got shape %s" % (name, v.shape))
    if out is not None and isinstance(out, np.ndarray) and out.dtype in FLOAT_DTYPES:
        dtype = out.dtype
    else:
        dtype = np.result_type(y.dtype, x.dtype, np.float32)
        if dtype not in FLOAT_DTYPES:
            raise TypeError("outer works on float32 or float64, got %s" % dtype)
    y = operand(y, dtype, "y", (None,))
    x = operand(x, dtype, "x", (None,))
    out = output(out, (y.shape[0], x.shape[0]), dtype, {"y": y, "x": x})
    _run("gmk_outer", [y, x, out], rows=y.shape[0], threads=threads, memory_limit=memory_limit,
         progress=progress, desc="outer")
    return out
