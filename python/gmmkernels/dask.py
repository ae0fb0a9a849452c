"""The kernels on dask arrays, run by dask (dask.distributed on a cluster).

X is a dask array of shape (n_samples, n_features) chunked by rows, with one chunk along
the columns. Every task calls the in-memory kernel on one row block:

- row-wise results (:func:`quadform`, :func:`quadform_many`, :func:`matmul`, :func:`outer`)
  are dask arrays with X's row chunks, one task per block;
- sums over rows (:func:`weighted_sum`, :func:`weighted_gram`, :func:`weighted_gram_many`,
  the statistics of :func:`mixture_pass`) are one partial result per block, added up by a
  tree of ``split_every``-way additions in float64, so no task holds more than
  ``split_every + 1`` partial results and the client receives one.

Small operands (Q, centers, means, precisions) enter the graph once, however many blocks
there are. Row operands (w, R, sample_weight) are numpy arrays or dask arrays with X's row
chunks. :func:`from_memmap` makes X from a file (raw or ``.npy``) whose tasks each map their
own rows of it, so the graph holds a path and offsets, never the data.

Threads: each task's kernel runs with ``threads`` threads if given; otherwise, on a
dask.distributed worker, the worker's ``nthreads`` divided among the kernel calls running
at that moment in its process (all CPUs the process may use outside a worker), so the
kernels of a worker together use about as many cores as the worker was given.

This module is imported explicitly (``import gmmkernels.dask``); ``import gmmkernels``
does not import dask.
"""
from __future__ import annotations

import numbers
import operator
import os
import sys
import threading
import weakref
from contextlib import contextmanager

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from dask.utils import apply

from . import _kernels
from ._library import default_threads
from ._validation import (FLOAT_DTYPES, check_data_dtype, matmul_operand, memory_limit_arg,
                          operand, threads_arg)

__all__ = [
    "quadform",
    "quadform_many",
    "weighted_gram",
    "weighted_gram_many",
    "weighted_sum",
    "matmul",
    "outer",
    "mixture_pass",
    "from_memmap",
]

DEFAULT_SPLIT_EVERY = 4


# MARK: threads in a task

_running = 0
_running_lock = threading.Lock()


def _thread_budget():
    """Cores this process's kernels may use together: a distributed worker's nthreads, else all."""
    distributed = sys.modules.get("distributed")  # not imported: not inside a worker
    if distributed is not None:
        try:
            worker = distributed.get_worker()
        except ValueError:
            worker = None
        if worker is not None:
            return int(getattr(worker, "state", worker).nthreads)
    return default_threads()


@contextmanager
def _kernel_threads(threads):
    """The thread count for one kernel call in a task.

    An explicit ``threads`` is used as is. Otherwise the budget is shared by the kernel
    calls running at once in this process: a worker with nthreads=T running m blocks at
    once gives each max(1, T // m) threads, instead of T each (T·m threads on T cores).
    """
    global _running
    if threads is not None:
        yield threads
        return
    budget = _thread_budget()
    with _running_lock:
        _running += 1
        share = max(1, budget // _running)
    try:
        yield share
    finally:
        with _running_lock:
            _running -= 1


# MARK: argument checks

def _data_matrix(X, name="X"):
    """X as a 2-D float32/float64 dask array with known row chunks and one column chunk."""
    if not isinstance(X, da.Array):
        raise TypeError(
            "%s must be a dask array, got %s; for numpy arrays and memmaps use the functions "
            "of gmmkernels itself" % (name, type(X).__name__)
        )
    check_data_dtype(X.dtype, name)
    if X.ndim != 2:
        raise ValueError("%s must be 2-D (n_samples, n_features), got shape %s" % (name, X.shape))
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("%s has unknown chunk sizes; call %s.compute_chunk_sizes() first" % (name, name))
    if len(X.chunks[1]) > 1:
        raise ValueError(
            "%s is chunked along columns (column chunks %s); the kernels need whole rows: "
            "use %s.rechunk({1: -1})" % (name, X.chunks[1], name)
        )
    return X


def _row_operand(a, X, name, ndim, x_name="X"):
    """A row operand (w: (n,), R: (n, K)) as a dask array with X's row chunks.

    A numpy operand is split like X; a dask operand must already have X's row chunks
    (rechunking it silently would move data between workers). Columns of R are merged.
    """
    n = X.shape[0]
    dims = "(%d,)" % n if ndim == 1 else "(%d, ?)" % n
    if isinstance(a, da.Array):
        if a.dtype.kind not in "biuf":
            raise TypeError("%s must be real numbers, got dtype %s" % (name, a.dtype))
        if a.ndim != ndim or a.shape[0] != n:
            raise ValueError("%s must have shape %s, got %s" % (name, dims, a.shape))
        if a.chunks[0] != X.chunks[0]:
            rest = "" if ndim == 1 else ", 1: -1"
            raise ValueError(
                "%s's row chunks %s differ from %s's %s; use %s.rechunk({0: %s.chunks[0]%s})"
                % (name, a.chunks[0], x_name, X.chunks[0], name, x_name, rest)
            )
        if ndim == 2 and len(a.chunks[1]) > 1:
            a = a.rechunk({1: -1})  # only merges blocks within a row block
        return a  # converted to X's dtype per block, by the in-memory kernel
    shape = (n,) if ndim == 1 else (n, None)
    a = operand(a, X.dtype, name, shape)
    return da.from_array(a, chunks=(X.chunks[0],) + tuple((s,) for s in a.shape[1:]))


def _shared(a):
    """A small operand as one graph key that every task refers to (None stays None).

    A view with a zero leading stride (one precision matrix broadcast to K, for a tied
    mixture) is sent as its one slice and broadcast again in the task.
    """
    if a is None:
        return None
    if a.ndim >= 1 and a.shape[0] > 1 and a.strides[0] == 0:
        return dask.delayed(np.broadcast_to, pure=True)(dask.delayed(np.array(a[0]), pure=True), a.shape)
    return dask.delayed(a, pure=True)


def _split_every(split_every):
    if split_every is None:
        return DEFAULT_SPLIT_EVERY
    if isinstance(split_every, bool) or not isinstance(split_every, numbers.Integral) or split_every < 2:
        raise ValueError("split_every must be an integer ≥ 2 or None, got %r" % (split_every,))
    return int(split_every)


def _options(threads, memory_limit):
    # Checked on the client so that a bad value fails here, not in every task.
    threads_arg(threads)
    memory_limit_arg(memory_limit)
    return {"threads": threads, "memory_limit": memory_limit}


# MARK: tasks

def _block(x, /, *row_blocks, kernel, threads, memory_limit, **keywords):
    """One row block through an in-memory kernel (row blocks of w/R follow x's)."""
    with _kernel_threads(threads) as t:
        return kernel(x, *row_blocks, threads=t, memory_limit=memory_limit, **keywords)


def _sum_block(x, /, *row_blocks, kernel, threads, memory_limit, **keywords):
    """One row block's partial sum, in float64, where the partials are added up."""
    part = _block(x, *row_blocks, kernel=kernel, threads=threads, memory_limit=memory_limit, **keywords)
    return part.astype(np.float64, copy=False)


def _mixture_block(x, /, *w, resp, score, threads, memory_limit, **keywords):
    """One row block's fused EM pass: (statistics, responsibilities or None, scores or None)."""
    n, k = x.shape[0], keywords["log_norm"].shape[0]
    resp = np.empty((n, k), dtype=x.dtype) if resp else None
    score = np.empty((n,), dtype=x.dtype) if score else None
    stats = _block(x, kernel=_kernels.mixture_pass, sample_weight=w[0] if w else None,
                   resp_out=resp, score_out=score, threads=threads, memory_limit=memory_limit,
                   **keywords)
    return stats, resp, score


def _add(*parts):
    """The sum of partial results: arrays, or tuples of floats, arrays and None.

    Inputs are not modified: a task's input may still be held for another task or a retry.
    """
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, tuple):
        return tuple(_add(*column) for column in zip(*parts))
    if first is None:
        return None
    if isinstance(first, float):
        return float(sum(parts))
    total = np.add(parts[0], parts[1])
    for p in parts[2:]:
        total += p
    return total


def _cast(total, dtype):
    return np.asarray(total, dtype=dtype)


# MARK: graphs

def _per_block(block_fn, name, X, rows, keywords):
    """block_fn(x_block, *row_blocks, **keywords) per row block of X, as a 1-D dask array
    of objects with one element per block (a partial result, not an array of that shape).

    When X is an array of :func:`from_memmap`, each task maps its rows itself: a separate
    loading task would not fuse with the kernel's (dask fuses only single-dependency
    chains, and the shared operands are dependencies too), and the scheduler, seeing a
    loaded block as data, would neither balance the kernels over the workers nor move one.
    """
    source = _file_source(X)
    if source is not None:
        return _per_file_block(block_fn, name, X, source, rows, keywords)
    args = [X, "ij"]
    for r in rows:
        args += [r, "i" if r.ndim == 1 else "ik"]
    return da.blockwise(
        block_fn, "i", *args,
        name=name, dtype=object, meta=np.empty((0,), dtype=object),
        adjust_chunks={"i": 1}, concatenate=True, **keywords,
    )


def _per_file_block(block_fn, name, X, source, rows, keywords, chunks=None, dtype=object):
    """block_fn(x_block, *row_blocks, **keywords) per row block of X = from_memmap(`source` =
    (path, layout)), one task per block that reads the block's rows itself: a dask array of
    `chunks` (one chunk per row block, whole along other axes) or, by default, of one
    element per block."""
    path, layout = source
    shared = [v for v in keywords.values() if isinstance(v, Delayed)]
    kwargs = (dict, [[k, v.key if isinstance(v, Delayed) else v] for k, v in keywords.items()])
    row_keys = [r.__dask_keys__() for r in rows]
    bounds = np.cumsum((0,) + X.chunks[0]).tolist()
    layer = {}
    for i in range(X.numblocks[0]):
        blocks = [keys[i] if r.ndim == 1 else keys[i][0] for r, keys in zip(rows, row_keys)]
        layer[(name, i) + (0,) * (len(chunks or ((),)) - 1)] = (
            apply, _block_of_file, [block_fn, path, layout, bounds[i], bounds[i + 1]] + blocks, kwargs)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=list(rows) + shared)
    chunks = chunks or ((1,) * X.numblocks[0],)
    return da.Array(graph, name, chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype=dtype))


def _block_of_file(block_fn, path, layout, start, stop, *row_blocks, **keywords):
    return block_fn(_rows_of_file(path, layout, start, stop), *row_blocks, **keywords)


def _tree_sum(blocks, split_every, name, item=None, combine=None):
    """A layer adding up the partial results of `blocks` (element `item` of each, if given)
    by a tree of `split_every`-way additions (or `combine` tasks); its key (name,) holds
    the sum.

    A group of one (the last, when the count does not divide) moves up a level as it is.
    """
    combine = combine or _add
    level = [(blocks.name, i) for i in range(blocks.numblocks[0])]
    if item is not None:
        level = [(operator.getitem, key, item) for key in level]
    layer = {}
    depth = 0
    while len(level) > 1:
        groups = [level[i:i + split_every] for i in range(0, len(level), split_every)]
        level = []
        for j, group in enumerate(groups):
            if len(group) == 1:
                level.append(group[0])
            else:
                layer[(name, depth, j)] = (combine,) + tuple(group)
                level.append((name, depth, j))
        depth += 1
    layer[(name,)] = (combine, level[0])
    return layer


def _array(name, layer, dependency, chunks, dtype):
    """A dask array made of `layer` (a dict of tasks) over the graph of `dependency`."""
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[dependency])
    return da.Array(graph, name, chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype=dtype))


def _one_chunk(shape):
    return tuple((s,) for s in shape)


def _sum_over_rows(label, kernel, X, rows, shared, options, shape, split_every):
    """Σ over row blocks of kernel(x_block, *row_blocks, **shared), as a dask array of X's dtype."""
    split_every = _split_every(split_every)
    token = tokenize(label, X, rows, shared, options, split_every)
    blocks = _per_block(_sum_block, "%s-partial-%s" % (label, token), X, rows,
                        dict(kernel=kernel, **shared, **options))
    tree_name, name = "%s-sum-%s" % (label, token), "%s-%s" % (label, token)
    tree = _array(tree_name, _tree_sum(blocks, split_every, tree_name), blocks, (), object)
    return _array(name, {(name,) + (0,) * len(shape): (_cast, (tree_name,), X.dtype)},
                  tree, _one_chunk(shape), X.dtype)


def _map_rows(label, kernel, X, shared, options, columns):
    """kernel(x_block, **shared) per row block: (n,) if columns is None, else (n, columns)."""
    keywords = dict(kernel=kernel, **shared, **options)
    source = _file_source(X)
    if source is not None:  # each task maps its own rows (see _per_block)
        chunks = (X.chunks[0],) if columns is None else (X.chunks[0], (columns,))
        return _per_file_block(_block, _name(label, X, keywords), X, source, [], keywords,
                               chunks=chunks, dtype=X.dtype)
    if columns is None:
        return X.map_blocks(_block, drop_axis=1, chunks=(X.chunks[0],), dtype=X.dtype,
                            meta=np.empty((0,), dtype=X.dtype), name=_name(label, X, keywords),
                            **keywords)
    return X.map_blocks(_block, chunks=(X.chunks[0], (columns,)), dtype=X.dtype,
                        meta=np.empty((0, 0), dtype=X.dtype), name=_name(label, X, keywords),
                        **keywords)


def _name(label, *args):
    return "%s-%s" % (label, tokenize(*args))


# MARK: row-wise kernels

def quadform(X, Q, *, center=None, threads=None, memory_limit=None):
    """Quadratic forms of the rows of X: ``q_i = (x_i - c)ᵀ Q (x_i - c)``, per row block.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), float32 or float64
        Chunked by rows, one chunk along the columns.
    Q : array_like of shape (n_features, n_features)
    center : array_like of shape (n_features,), optional
    threads : int, optional
        Threads per task (default: the worker's share, see the module's notes).
    memory_limit : int, optional
        Bytes of workspace per task (default 64 MiB).

    Returns
    -------
    q : dask array of shape (n_samples,), X's dtype and row chunks
    """
    X = _data_matrix(X)
    d = X.shape[1]
    Q = operand(Q, X.dtype, "Q", (d, d))
    c = None if center is None else operand(center, X.dtype, "center", (d,))
    return _map_rows("quadform", _kernels.quadform, X, {"Q": _shared(Q), "center": _shared(c)},
                     _options(threads, memory_limit), None)


def quadform_many(X, Qs, *, centers=None, threads=None, memory_limit=None):
    """``q_ik = (x_i - c_k)ᵀ Q_k (x_i - c_k)`` for K matrices, per row block.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), float32 or float64
    Qs : array_like of shape (n_matrices, n_features, n_features)
    centers : array_like of shape (n_matrices, n_features), optional
    threads, memory_limit
        As for :func:`quadform`.

    Returns
    -------
    q : dask array of shape (n_samples, n_matrices), X's row chunks
    """
    X = _data_matrix(X)
    d = X.shape[1]
    Qs = operand(Qs, X.dtype, "Qs", (None, d, d))
    k = Qs.shape[0]
    c = None if centers is None else operand(centers, X.dtype, "centers", (k, d))
    return _map_rows("quadform_many", _kernels.quadform_many, X,
                     {"Qs": _shared(Qs), "centers": _shared(c)}, _options(threads, memory_limit), k)


def matmul(A, B, *, threads=None, memory_limit=None):
    """``A @ B`` per row block of A.

    Parameters
    ----------
    A : dask array of shape (n, k), float32 or float64
        Chunked by rows, one chunk along the columns.
    B : array_like of shape (k, m)
        Converted to A's dtype; enters the graph once.
    threads, memory_limit
        As for :func:`quadform`.

    Returns
    -------
    C : dask array of shape (n, m), A's row chunks
    """
    A = _data_matrix(A, "A")
    B = matmul_operand(B, A.shape, A.dtype)
    return _map_rows("matmul", _kernels.matmul, A, {"B": _shared(B)}, _options(threads, memory_limit),
                     B.shape[1])


def outer(y, x, *, threads=None, memory_limit=None):
    """``y[:, None] * x[None, :]`` per block of y.

    Parameters
    ----------
    y : dask array of shape (n,), float32 or float64
    x : array_like of shape (m,)
        Converted to y's dtype; enters the graph once.
    threads, memory_limit
        As for :func:`quadform`.

    Returns
    -------
    out : dask array of shape (n, m), y's chunks along the rows
    """
    if not isinstance(y, da.Array):
        raise TypeError("y must be a dask array, got %s; for numpy arrays use gmmkernels.outer"
                        % type(y).__name__)
    if y.ndim != 1:
        raise ValueError("y must be 1-D, got shape %s" % (y.shape,))
    if y.dtype not in FLOAT_DTYPES:
        raise TypeError("y must have dtype float32 or float64, got %s; convert it with y.astype(np.float64)"
                        % y.dtype)
    if any(np.isnan(c) for c in y.chunks[0]):
        raise ValueError("y has unknown chunk sizes; call y.compute_chunk_sizes() first")
    x = operand(x, y.dtype, "x", (None,))
    keywords = dict(kernel=_kernels.outer, x=_shared(x), **_options(threads, memory_limit))
    return y.map_blocks(_block, new_axis=1, chunks=(y.chunks[0], (x.shape[0],)), dtype=y.dtype,
                        meta=np.empty((0, 0), dtype=y.dtype), name=_name("outer", y, keywords),
                        **keywords)


# MARK: sums over rows

def weighted_sum(X, R, *, split_every=None, threads=None, memory_limit=None):
    """``Rᵀ X``: the K weighted sums ``Σ_i R_ik x_i``, partial sums tree-reduced.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), float32 or float64
    R : array_like or dask array of shape (n_samples, n_components)
        A dask R must have X's row chunks.
    split_every : int, optional
        Partial results added per reduction task (default 4).
    threads, memory_limit
        As for :func:`quadform`.

    Returns
    -------
    S : dask array of shape (n_components, n_features), X's dtype
    """
    X = _data_matrix(X)
    R = _row_operand(R, X, "R", 2)
    return _sum_over_rows("weighted_sum", _kernels.weighted_sum, X, [R], {},
                          _options(threads, memory_limit), (R.shape[1], X.shape[1]), split_every)


def weighted_gram(X, w=None, *, center=None, split_every=None, threads=None, memory_limit=None):
    """``G = Σ_i w_i (x_i - c)(x_i - c)ᵀ``, partial Gram matrices tree-reduced in float64.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), float32 or float64
    w : array_like or dask array of shape (n_samples,), optional
        Weights (default: all ones). A dask w must have X's row chunks.
    center : array_like of shape (n_features,), optional
    split_every : int, optional
        Partial results added per reduction task (default 4).
    threads, memory_limit
        As for :func:`quadform`.

    Returns
    -------
    G : dask array of shape (n_features, n_features), X's dtype
    """
    X = _data_matrix(X)
    d = X.shape[1]
    rows = [] if w is None else [_row_operand(w, X, "w", 1)]
    c = None if center is None else operand(center, X.dtype, "center", (d,))
    return _sum_over_rows("weighted_gram", _kernels.weighted_gram, X, rows, {"center": _shared(c)},
                          _options(threads, memory_limit), (d, d), split_every)


def weighted_gram_many(X, R, *, centers=None, split_every=None, threads=None, memory_limit=None):
    """``G_k = Σ_i R_ik (x_i - c_k)(x_i - c_k)ᵀ`` for all k, partial results tree-reduced.

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), float32 or float64
    R : array_like or dask array of shape (n_samples, n_components)
        A dask R must have X's row chunks.
    centers : array_like of shape (n_components, n_features), optional
    split_every : int, optional
        Partial results added per reduction task (default 4); each is K·d² float64.
    threads, memory_limit
        As for :func:`quadform`.

    Returns
    -------
    G : dask array of shape (n_components, n_features, n_features), X's dtype
    """
    X = _data_matrix(X)
    d = X.shape[1]
    R = _row_operand(R, X, "R", 2)
    k = R.shape[1]
    c = None if centers is None else operand(centers, X.dtype, "centers", (k, d))
    return _sum_over_rows("weighted_gram_many", _kernels.weighted_gram_many, X, [R],
                          {"centers": _shared(c)}, _options(threads, memory_limit), (k, d, d),
                          split_every)


# MARK: the fused EM pass

def mixture_pass(X, log_norm, means, precisions, *, scatter="full", sample_weight=None,
                 return_resp=False, return_score=False, compute=True, split_every=None,
                 threads=None, memory_limit=None):
    """One EM iteration's pass over a dask X: :func:`gmmkernels.mixture_pass` per row block,
    the statistics of the blocks added up by a tree reduction.

    Parameters are those of the in-memory ``mixture_pass``, except the per-row outputs:
    instead of ``resp_out``/``score_out`` (arrays a worker could not write into on the
    client), ``return_resp``/``return_score`` ask for them as dask arrays with X's row
    chunks, appended to the result in that order (like ``np.unique``'s ``return_*``).

    Parameters
    ----------
    X : dask array of shape (n_samples, n_features), float32 or float64
        Chunked by rows, one chunk along the columns.
    log_norm : array_like of shape (n_components,)
    means : array_like of shape (n_components, n_features)
    precisions : array_like of shape (n_components, n_features, n_features) or (n_components, n_features)
        A tied mixture's broadcast view enters the graph as its one matrix.
    scatter : {"full", "tied", "diagonal", "none"}
    sample_weight : array_like or dask array of shape (n_samples,), optional
        A dask array must have X's row chunks.
    return_resp : bool
        Also return the responsibilities, a dask array of shape (n_samples, n_components).
    return_score : bool
        Also return each row's log-likelihood, a dask array of shape (n_samples,).
    compute : bool
        True (default): compute the statistics now (through the active scheduler, e.g. a
        ``distributed.Client``) and return them as numpy values like the in-memory
        function; the per-row outputs asked for are persisted in the same pass over X
        (kept in the workers' memory), so X is read once. False: return everything lazily,
        the statistics as dask arrays (``log_likelihood`` of shape ()); compute them
        together (``dask.compute(*result)``) to read X once.
    split_every : int, optional
        Partial statistics added per reduction task (default 4).
    threads, memory_limit
        As for :func:`quadform`.

    Returns
    -------
    log_likelihood : float
    counts : ndarray of shape (n_components,)
    first : ndarray of shape (n_components, n_features)
    second : ndarray or None, as ``scatter`` asks (see the in-memory function)
    resp : dask array of shape (n_samples, n_components), if return_resp
    score : dask array of shape (n_samples,), if return_score
    """
    X = _data_matrix(X)
    d = X.shape[1]
    # A pass over no rows checks every small operand exactly as the in-memory function does,
    # and tells the shapes of the statistics.
    _, counts0, first0, second0 = _kernels.mixture_pass(
        np.empty((0, d), dtype=X.dtype), log_norm, means, precisions, scatter=scatter)
    k = counts0.shape[0]
    log_norm = operand(log_norm, X.dtype, "log_norm", (k,))
    means = operand(means, X.dtype, "means", (k, d))
    precisions = operand(precisions, X.dtype, "precisions", np.shape(precisions))
    rows = [] if sample_weight is None else [_row_operand(sample_weight, X, "sample_weight", 1)]
    options = _options(threads, memory_limit)
    split_every = _split_every(split_every)

    shared = {"log_norm": _shared(log_norm), "means": _shared(means),
              "precisions": _shared(precisions), "scatter": scatter}
    token = tokenize(X, rows, shared, options, split_every, bool(return_resp), bool(return_score))
    blocks = _per_block(_mixture_block, "mixture_pass-block-%s" % token, X, rows,
                        dict(resp=bool(return_resp), score=bool(return_score), **shared, **options))
    tree_name = "mixture_pass-sum-%s" % token
    tree = _array(tree_name, _tree_sum(blocks, split_every, tree_name, item=0), blocks, (), object)

    def statistic(i, label, shape):
        # Element i of the summed (log_likelihood, counts, first, second).
        name = "mixture_pass-%s-%s" % (label, token)
        task = (_float64, (operator.getitem, (tree_name,), i))
        return _array(name, {(name,) + (0,) * len(shape): task}, tree, _one_chunk(shape), np.float64)

    def per_row(i, label, trailing):
        # Element i of each block's (statistics, resp, score).
        name = "mixture_pass-%s-%s" % (label, token)
        layer = {(name, j) + (0,) * len(trailing): (operator.getitem, (blocks.name, j), i)
                 for j in range(blocks.numblocks[0])}
        return _array(name, layer, blocks, (X.chunks[0],) + _one_chunk(trailing), X.dtype)

    stats = [statistic(0, "log_likelihood", ()), statistic(1, "counts", counts0.shape),
             statistic(2, "first", first0.shape),
             None if second0 is None else statistic(3, "second", second0.shape)]
    row_outputs = []
    if return_resp:
        row_outputs.append(per_row(1, "resp", (k,)))
    if return_score:
        row_outputs.append(per_row(2, "score", ()))

    if not compute:
        return (*stats, *row_outputs)
    if not row_outputs:
        # The summed tuple itself, one key: no tasks after the tree.
        ll, counts, first, second = tree.to_delayed().item().compute()
        return (float(ll), _float64(counts), _float64(first), None if second is None else _float64(second))
    present = [s for s in stats if s is not None]
    # The per-row outputs are kept on the workers, computed in the same pass over X as the
    # statistics.
    persisted = dask.persist(*present, *row_outputs)
    present, row_outputs = persisted[:len(present)], persisted[len(present):]
    values = dask.compute(*present)
    second = values[3] if second0 is not None else None
    return (float(values[0]), values[1], values[2], second, *row_outputs)


def _float64(value):
    return np.asarray(value, dtype=np.float64)


# MARK: data from a file

def from_memmap(path, shape=None, dtype=None, offset=0, chunks="auto", order="C"):
    """A dask array over a file on disk whose tasks each map their own rows of it.

    The graph holds the path, the layout and each block's row range, never data: a
    pickled ``np.memmap`` becomes a full in-memory array, so one must not travel in a
    graph. Each task opens an ``np.memmap`` of its rows (read-only) and returns a view of
    it, so the kernels read the file's pages in place. On a cluster the file must be at
    the same path on every worker (a shared filesystem).

    Parameters
    ----------
    path : str or path-like
        A ``.npy`` file (when ``shape`` is None: its header gives shape, dtype, order and
        offset) or a raw file of ``shape`` and ``dtype`` starting at byte ``offset``.
    shape : tuple of int, optional
        The array's shape, (n_samples, n_features) for X; required for a raw file.
    dtype : data-type, optional
        Required for a raw file.
    offset : int
        Bytes before the array in a raw file (any value: unaligned offsets are fine).
    chunks : "auto", int or tuple of int
        Along the rows only (the other axes are one chunk each): "auto" (about dask's
        ``array.chunk-size`` per block), rows per block, or each block's row count.
    order : {"C", "F"}
        Memory layout of a raw file.

    Returns
    -------
    X : dask array of the file's shape and dtype
    """
    if isinstance(path, np.ndarray):
        raise TypeError(
            "from_memmap takes the file's path, not an array (a pickled memmap is a full copy); "
            "for an np.memmap m of a whole file use from_memmap(m.filename, shape=m.shape, "
            "dtype=m.dtype, offset=m.offset)"
        )
    path = os.path.abspath(os.fspath(path))  # workers may run in another directory
    if shape is None:
        if dtype is not None or offset:
            raise ValueError("shape is required with dtype or offset (a raw file); "
                             "for a .npy file pass only the path")
        shape, dtype, offset, order = _npy_layout(path)
    else:
        if dtype is None:
            raise ValueError("dtype is required for a raw file of shape %s" % (tuple(shape),))
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        if dtype.hasobject:
            raise TypeError("a memory-mapped array cannot hold Python objects (dtype %s)" % dtype)
        if not shape or any(s < 0 for s in shape):
            raise ValueError("shape must have at least one dimension and no negative sizes, got %s"
                             % (shape,))
        if isinstance(offset, bool) or not isinstance(offset, numbers.Integral) or offset < 0:
            raise ValueError("offset must be a non-negative number of bytes, got %r" % (offset,))
        if order not in ("C", "F"):
            raise ValueError("order must be 'C' or 'F', got %r" % (order,))
        offset = int(offset)
    needed = offset + dtype.itemsize * int(np.prod(shape))
    stat = os.stat(path)
    if stat.st_size < needed:
        raise ValueError("%s holds %d bytes, an array of shape %s and dtype %s at offset %d needs %d"
                         % (path, stat.st_size, shape, dtype, offset, needed))
    chunks = da.core.normalize_chunks((chunks,) + (-1,) * (len(shape) - 1), shape, dtype=dtype)
    # The file's size and time in the name: a rewritten file gives new keys, not stale results.
    name = "from_memmap-" + tokenize(path, shape, dtype, offset, order, chunks,
                                     stat.st_size, stat.st_mtime_ns)
    layout = (dtype, shape, offset, order)
    X = da.map_blocks(_read_rows, path=path, layout=layout, chunks=chunks,
                      dtype=dtype, meta=np.empty((0,) * len(shape), dtype=dtype), name=name)
    for key in [k for k, (_, _, layer) in _FILE_ARRAYS.items() if layer() is None]:
        del _FILE_ARRAYS[key]
    _FILE_ARRAYS[name] = (path, layout, weakref.ref(X.dask.layers[name]))
    return X


# The arrays from_memmap made, by name: (path, layout, a weak reference to the graph layer
# that reads the file), for _per_block.
_FILE_ARRAYS = {}


def _file_source(X):
    """(path, layout) when X is an array of from_memmap as made (its blocks still read from
    the file: not persisted, sliced or otherwise transformed), else None."""
    entry = _FILE_ARRAYS.get(X.name)
    if entry is None or entry[2]() is not X.dask.layers.get(X.name):
        return None
    return entry[:2]


def _npy_layout(path):
    """(shape, dtype, offset, order) of the array in a .npy file, from its header."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
        except ValueError as e:
            raise ValueError("%s is not a .npy file (%s); for a raw file pass shape and dtype"
                             % (path, e)) from None
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        offset = f.tell()
    if dtype.hasobject:
        raise TypeError("%s holds Python objects (dtype %s), which cannot be memory-mapped"
                        % (path, dtype))
    if not shape:
        raise ValueError("%s holds a 0-d array; from_memmap splits arrays along their rows" % path)
    return tuple(shape), dtype, offset, "F" if fortran else "C"


def _read_rows(path, layout, block_info=None):
    """The block's rows of the array in `path`, as a read-only view of a fresh memmap."""
    start, stop = block_info[None]["array-location"][0]
    return _rows_of_file(path, layout, start, stop)


def _rows_of_file(path, layout, start, stop):
    """Rows start:stop of the array in `path`, as a read-only view of a fresh memmap."""
    dtype, shape, offset, order = layout
    rows = (stop - start,) + shape[1:]
    if 0 in rows:
        return np.empty(rows, dtype=dtype)  # np.memmap cannot map zero bytes
    if order == "C":
        row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
        m = np.memmap(path, dtype=dtype, mode="r", offset=offset + start * row_bytes, shape=rows)
    else:
        # Rows of a Fortran-ordered array are strided through the whole file: map it all
        # (address space, not memory) and slice.
        m = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F")[start:stop]
    return m.view(np.ndarray)
