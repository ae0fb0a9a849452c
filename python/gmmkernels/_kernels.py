"""The numpy-facing kernels: validation, dtype and shape rules, out=, progress."""
import functools
import mmap
import os

import numpy as np

from . import _library
from ._progress import progress_callback
from ._validation import (FLOAT_DTYPES, data_matrix, matmul_operand, memory_limit_arg, operand, output,
                          threads_arg)


def _run(name, arrays, *, rows, threads, memory_limit, progress, desc):
    with progress_callback(progress, rows, desc) as report:
        _library.call(
            name,
            arrays,
            threads=threads_arg(threads),
            memory_limit=memory_limit_arg(memory_limit),
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
        Only the symmetric part of each matters. Read where it lies (each Q_k is converted
        to X's dtype on its own if its dtype differs). A file mapping (``np.memmap``) larger
        than half the memory available is taken in groups of as many matrices as fit there:
        X is then read ⌈K / group⌉ times and each Q_k once, the fewest bytes of any grouping
        (otherwise X is read once).
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
    Qs = operand(Qs, None, "Qs", (None, d, d))
    k = Qs.shape[0]
    c = None if centers is None else operand(centers, X.dtype, "centers", (k, d))
    out = output(out, (n, k), X.dtype, {"X": X, "Qs": Qs, "centers": c})
    groups = matrix_groups(Qs, X.dtype.itemsize)
    with progress_callback(progress, n * len(groups), "quadform_many") as report:
        for g, group in enumerate(groups):
            done = None if report is None else functools.partial(_offset_progress, report, g * n)
            _library.call("gmk_quadform_many",
                          [X, operand(Qs[group], X.dtype, "Qs", (None, d, d)), None if c is None else c[group],
                           out[:, group]],
                          threads=threads_arg(threads), memory_limit=memory_limit_arg(memory_limit), progress=done)
    return out


def _offset_progress(report, offset, done):
    report(offset + done)


def matrix_groups(Qs, itemsize):
    """Slices of the K matrices of ``Qs`` to take per pass over X: one slice of all of them,
    unless Qs maps a file larger than half the memory available now; then groups of as many
    matrices as fit there, so that a group stays in the page cache while X passes by."""
    k = Qs.shape[0]
    if k == 0 or not _maps_a_file(Qs):
        return [slice(0, k)]
    per_matrix = max(1, Qs[0].size * max(itemsize, Qs.dtype.itemsize))
    group = max(1, min(k, available_memory() // 2 // per_matrix))
    return [slice(s, min(s + group, k)) for s in range(0, k, group)]


def _maps_a_file(a):
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def available_memory():
    """MemAvailable of /proc/meminfo in bytes (the free pages where that is missing)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


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
    n = A.shape[0]
    B = matmul_operand(B, A.shape, A.dtype)
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
        both_float32 = y.dtype == np.float32 and x.dtype == np.float32
        dtype = np.dtype(np.float32 if both_float32 else np.float64)
    y = operand(y, dtype, "y", (None,))
    x = operand(x, dtype, "x", (None,))
    out = output(out, (y.shape[0], x.shape[0]), dtype, {"y": y, "x": x})
    _run("gmk_outer", [y, x, out], rows=y.shape[0], threads=threads, memory_limit=memory_limit,
         progress=progress, desc="outer")
    return out


_SCATTER = {"none": 0, "full": 1, "tied": 2, "diagonal": 3}


def mixture_pass(X, log_norm, means, precisions, *, scatter="full", sample_weight=None,
                 resp_out=None, score_out=None, threads=None, memory_limit=None, progress=False):
    """One EM iteration's pass over X for a Gaussian mixture, fused per row block.

    Computes the log-densities ``log_norm[k] - ½ (x - μ_k)ᵀ Λ_k (x - μ_k)``, their
    log-sum-exp per row (the row's log-likelihood) and responsibilities ``r_ik``, and
    accumulates the next M-step's statistics centred at the means (float64):
    ``N_k = Σ w_i r_ik``, ``S1_k = Σ w_i r_ik (x_i - μ_k)``,
    ``S2_k = Σ w_i r_ik (x_i - μ_k)(x_i - μ_k)ᵀ``. X is read once.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    log_norm : array_like of shape (n_components,)
        ``log π_k + ½ log det Λ_k - ½ d log 2π``.
    means : array_like of shape (n_components, n_features)
    precisions : array_like of shape (n_components, n_features, n_features) or (n_components, n_features)
        Precision matrices Λ_k (a tied mixture may pass a broadcast view), or their diagonals.
    scatter : {"full", "tied", "diagonal", "none"}
        Which second moment to accumulate: S2_k, Σ_k S2_k, diag(S2_k), or nothing (scoring).
    sample_weight : array_like of shape (n_samples,), optional
        Weights ≥ 0 (a negative one raises ValueError); rows of weight 0 are skipped unless
        per-row outputs are asked for. Terms ``w_i r_ik < 1e-60`` may be left out of S1 and
        S2 (never out of the counts or the log-likelihood).
    resp_out : ndarray of shape (n_samples, n_components), optional
        Receives the responsibilities (without sample weights).
    score_out : ndarray of shape (n_samples,), optional
        Receives each row's log-likelihood.

    Returns
    -------
    log_likelihood : float
        ``Σ_i w_i score_i``.
    counts : ndarray of shape (n_components,)
    first : ndarray of shape (n_components, n_features)
    second : ndarray of shape (n_components, n_features, n_features), (n_features, n_features),
        (n_components, n_features) or None, as ``scatter`` asks
    """
    X = data_matrix(X)
    n, d = X.shape
    log_norm = operand(log_norm, X.dtype, "log_norm", (None,))
    k = log_norm.shape[0]
    means = operand(means, X.dtype, "means", (k, d))
    precisions = np.asarray(precisions)
    if precisions.ndim == 3:
        precisions = operand(precisions, X.dtype, "precisions", (k, d, d))
    else:
        precisions = operand(precisions, X.dtype, "precisions", (k, d))
    if scatter not in _SCATTER:
        raise ValueError("scatter must be one of %s, got %r" % (sorted(_SCATTER), scatter))
    w = None if sample_weight is None else operand(sample_weight, X.dtype, "sample_weight", (n,))
    inputs = {"X": X, "means": means, "precisions": precisions, "sample_weight": w}
    if resp_out is not None:
        resp_out = output(resp_out, (n, k), X.dtype, inputs, name="resp_out")
    if score_out is not None:
        score_out = output(score_out, (n,), X.dtype, inputs, name="score_out")
    second_shape = {"full": (k, d, d), "tied": (d, d), "diagonal": (k, d), "none": (0,)}[scatter]
    stats = np.zeros(1 + k + k * d + int(np.prod(second_shape)), dtype=np.float64)
    _run("gmk_mixture_pass",
         [X, w, log_norm, means, precisions, _SCATTER[scatter], resp_out, score_out, stats],
         rows=n, threads=threads, memory_limit=memory_limit, progress=progress, desc="EM pass")
    counts = stats[1:1 + k]
    first = stats[1 + k:1 + k + k * d].reshape(k, d)
    second = None if scatter == "none" else stats[1 + k + k * d:].reshape(second_shape)
    return float(stats[0]), counts, first, second
