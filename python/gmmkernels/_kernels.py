"""The numpy-facing kernels: validation, dtype and shape rules, out=, progress."""
import numpy as np

from . import _library
from ._progress import progress_callback
from ._validation import data_matrix, memory_limit_arg, operand, output, threads_arg


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
