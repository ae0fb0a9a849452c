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

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from . import _dask_graph as _graph
from . import _kernels
from ._validation import FLOAT_DTYPES, matmul_operand, operand

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
    X = _graph.data_matrix(X)
    d = X.shape[1]
    Q = operand(Q, X.dtype, "Q", (d, d))
    c = None if center is None else operand(center, X.dtype, "center", (d,))
    return _graph.map_rows("quadform", _kernels.quadform, X, {"Q": _graph.shared_operand(Q), "center": _graph.shared_operand(c)},
                     _graph.kernel_options(threads, memory_limit), None)


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
    X = _graph.data_matrix(X)
    d = X.shape[1]
    Qs = operand(Qs, X.dtype, "Qs", (None, d, d))
    k = Qs.shape[0]
    c = None if centers is None else operand(centers, X.dtype, "centers", (k, d))
    return _graph.map_rows("quadform_many", _kernels.quadform_many, X,
                     {"Qs": _graph.shared_operand(Qs), "centers": _graph.shared_operand(c)}, _graph.kernel_options(threads, memory_limit), k)


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
    A = _graph.data_matrix(A, "A")
    B = matmul_operand(B, A.shape, A.dtype)
    return _graph.map_rows("matmul", _kernels.matmul, A, {"B": _graph.shared_operand(B)}, _graph.kernel_options(threads, memory_limit),
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
    keywords = dict(kernel=_kernels.outer, x=_graph.shared_operand(x), **_graph.kernel_options(threads, memory_limit))
    return y.map_blocks(_graph.run_block, new_axis=1, chunks=(y.chunks[0], (x.shape[0],)), dtype=y.dtype,
                        meta=np.empty((0, 0), dtype=y.dtype), name=_graph.layer_name("outer", y, keywords),
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
    X = _graph.data_matrix(X)
    R = _graph.row_operand(R, X, "R", 2)
    return _graph.sum_over_rows("weighted_sum", _kernels.weighted_sum, X, [R], {},
                          _graph.kernel_options(threads, memory_limit), (R.shape[1], X.shape[1]), split_every)


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
    X = _graph.data_matrix(X)
    d = X.shape[1]
    rows = [] if w is None else [_graph.row_operand(w, X, "w", 1)]
    c = None if center is None else operand(center, X.dtype, "center", (d,))
    return _graph.sum_over_rows("weighted_gram", _kernels.weighted_gram, X, rows, {"center": _graph.shared_operand(c)},
                          _graph.kernel_options(threads, memory_limit), (d, d), split_every)


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
    X = _graph.data_matrix(X)
    d = X.shape[1]
    R = _graph.row_operand(R, X, "R", 2)
    k = R.shape[1]
    c = None if centers is None else operand(centers, X.dtype, "centers", (k, d))
    return _graph.sum_over_rows("weighted_gram_many", _kernels.weighted_gram_many, X, [R],
                          {"centers": _graph.shared_operand(c)}, _graph.kernel_options(threads, memory_limit), (k, d, d),
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
    X = _graph.data_matrix(X)
    d = X.shape[1]
    # A pass over no rows checks every small operand exactly as the in-memory function does,
    # and tells the shapes of the statistics.
    _, counts0, first0, second0 = _kernels.mixture_pass(
        np.empty((0, d), dtype=X.dtype), log_norm, means, precisions, scatter=scatter)
    k = counts0.shape[0]
    log_norm = operand(log_norm, X.dtype, "log_norm", (k,))
    means = operand(means, X.dtype, "means", (k, d))
    precisions = operand(precisions, X.dtype, "precisions", np.shape(precisions))
    rows = [] if sample_weight is None else [_graph.row_operand(sample_weight, X, "sample_weight", 1)]
    options = _graph.kernel_options(threads, memory_limit)
    split_every = _graph.check_split_every(split_every)

    shared = {"log_norm": _graph.shared_operand(log_norm), "means": _graph.shared_operand(means),
              "precisions": _graph.shared_operand(precisions), "scatter": scatter}
    token = tokenize(X, rows, shared, options, split_every, bool(return_resp), bool(return_score))
    blocks = _graph.per_block(_graph.mixture_block, "mixture_pass-block-%s" % token, X, rows,
                        dict(resp=bool(return_resp), score=bool(return_score), **shared, **options))
    tree_name = "mixture_pass-sum-%s" % token
    tree = _graph.graph_array(tree_name, _graph.tree_sum(blocks, split_every, tree_name, item=0), blocks, (), object)

    def statistic(i, label, shape):
        # Element i of the summed (log_likelihood, counts, first, second).
        name = "mixture_pass-%s-%s" % (label, token)
        task = (_float64, (operator.getitem, (tree_name,), i))
        return _graph.graph_array(name, {(name,) + (0,) * len(shape): task}, tree, _graph.one_chunk(shape), np.float64)

    def per_row(i, label, trailing):
        # Element i of each block's (statistics, resp, score).
        name = "mixture_pass-%s-%s" % (label, token)
        layer = {(name, j) + (0,) * len(trailing): (operator.getitem, (blocks.name, j), i)
                 for j in range(blocks.numblocks[0])}
        return _graph.graph_array(name, layer, blocks, (X.chunks[0],) + _graph.one_chunk(trailing), X.dtype)

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
        shape, dtype, offset, order = _graph.npy_layout(path)
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
    X = da.map_blocks(_graph.read_rows, path=path, layout=layout, chunks=chunks,
                      dtype=dtype, meta=np.empty((0,) * len(shape), dtype=dtype), name=name)
    _graph.register_file_array(name, path, layout, X.dask.layers[name])
    return X


