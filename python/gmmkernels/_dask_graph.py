"""The graphs behind :mod:`gmmkernels.dask`: tasks that run an in-memory kernel on a row
block, trees that add up the blocks' partial results, operands shared by every task, the
thread budget of a task, and the registry of the arrays :func:`gmmkernels.dask.from_memmap`
made (whose tasks map their own rows of the file).

The public functions of ``gmmkernels.dask`` and the mixture's dask backend
(``gmmkernels.mixture._dask_passes``) build their graphs from these functions.
"""
from __future__ import annotations

import numbers
import operator
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
from ._validation import check_data_dtype, memory_limit_arg, operand, threads_arg

DEFAULT_SPLIT_EVERY = 4


# MARK: threads in a task

_running = 0
_running_lock = threading.Lock()


def thread_budget():
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
def kernel_threads(threads):
    """The thread count for one kernel call in a task.

    An explicit ``threads`` is used as is. Otherwise the budget is shared by the kernel
    calls running at once in this process: a worker with nthreads=T running m blocks at
    once gives each max(1, T // m) threads, instead of T each (T·m threads on T cores).
    """
    global _running
    if threads is not None:
        yield threads
        return
    budget = thread_budget()
    with _running_lock:
        _running += 1
        share = max(1, budget // _running)
    try:
        yield share
    finally:
        with _running_lock:
            _running -= 1


# MARK: argument checks

def data_matrix(X, name="X"):
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


def row_operand(a, X, name, ndim, x_name="X"):
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


def shared_operand(a):
    """A small operand as one graph key that every task refers to (None stays None).

    A view with a zero leading stride (one precision matrix broadcast to K, for a tied
    mixture) is sent as its one slice and broadcast again in the task.
    """
    if a is None:
        return None
    if a.ndim >= 1 and a.shape[0] > 1 and a.strides[0] == 0:
        return dask.delayed(np.broadcast_to, pure=True)(dask.delayed(np.array(a[0]), pure=True), a.shape)
    return dask.delayed(a, pure=True)


def check_split_every(split_every):
    if split_every is None:
        return DEFAULT_SPLIT_EVERY
    if isinstance(split_every, bool) or not isinstance(split_every, numbers.Integral) or split_every < 2:
        raise ValueError("split_every must be an integer ≥ 2 or None, got %r" % (split_every,))
    return int(split_every)


def kernel_options(threads, memory_limit):
    # Checked on the client so that a bad value fails here, not in every task.
    threads_arg(threads)
    memory_limit_arg(memory_limit)
    return {"threads": threads, "memory_limit": memory_limit}


# MARK: tasks

def run_block(x, /, *row_blocks, kernel, threads, memory_limit, **keywords):
    """One row block through an in-memory kernel (row blocks of w/R follow x's)."""
    with kernel_threads(threads) as t:
        return kernel(x, *row_blocks, threads=t, memory_limit=memory_limit, **keywords)


def sum_block(x, /, *row_blocks, kernel, threads, memory_limit, **keywords):
    """One row block's partial sum, in float64, where the partials are added up."""
    part = run_block(x, *row_blocks, kernel=kernel, threads=threads, memory_limit=memory_limit, **keywords)
    return part.astype(np.float64, copy=False)


def mixture_block(x, /, *w, resp, score, threads, memory_limit, **keywords):
    """One row block's fused EM pass: (statistics, responsibilities or None, scores or None)."""
    n, k = x.shape[0], keywords["log_norm"].shape[0]
    resp = np.empty((n, k), dtype=x.dtype) if resp else None
    score = np.empty((n,), dtype=x.dtype) if score else None
    stats = run_block(x, kernel=_kernels.mixture_pass, sample_weight=w[0] if w else None,
                   resp_out=resp, score_out=score, threads=threads, memory_limit=memory_limit,
                   **keywords)
    return stats, resp, score


def add_parts(*parts):
    """The sum of partial results: arrays, or tuples of floats, arrays and None.

    Inputs are not modified: a task's input may still be held for another task or a retry.
    """
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, tuple):
        return tuple(add_parts(*column) for column in zip(*parts))
    if first is None:
        return None
    if isinstance(first, float):
        return float(sum(parts))
    total = np.add(parts[0], parts[1])
    for p in parts[2:]:
        total += p
    return total


def cast(total, dtype):
    return np.asarray(total, dtype=dtype)


# MARK: graphs

def per_block(block_fn, name, X, rows, keywords):
    """block_fn(x_block, *row_blocks, **keywords) per row block of X, as a 1-D dask array
    of objects with one element per block (a partial result, not an array of that shape).

    When X is an array of :func:`from_memmap`, each task maps its rows itself: a separate
    loading task would not fuse with the kernel's (dask fuses only single-dependency
    chains, and the shared operands are dependencies too), and the scheduler, seeing a
    loaded block as data, would neither balance the kernels over the workers nor move one.
    """
    source = file_source(X)
    if source is not None:
        return per_file_block(block_fn, name, X, source, rows, keywords)
    args = [X, "ij"]
    for r in rows:
        args += [r, "i" if r.ndim == 1 else "ik"]
    return da.blockwise(
        block_fn, "i", *args,
        name=name, dtype=object, meta=np.empty((0,), dtype=object),
        adjust_chunks={"i": 1}, concatenate=True, **keywords,
    )


def per_file_block(block_fn, name, X, source, rows, keywords, chunks=None, dtype=object):
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
            apply, block_of_file, [block_fn, path, layout, bounds[i], bounds[i + 1]] + blocks, kwargs)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=list(rows) + shared)
    chunks = chunks or ((1,) * X.numblocks[0],)
    return da.Array(graph, name, chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype=dtype))


def block_of_file(block_fn, path, layout, start, stop, *row_blocks, **keywords):
    return block_fn(rows_of_file(path, layout, start, stop), *row_blocks, **keywords)


def tree_sum(blocks, split_every, name, item=None, combine=None):
    """A layer adding up the partial results of `blocks` (element `item` of each, if given)
    by a tree of `split_every`-way additions (or `combine` tasks); its key (name,) holds
    the sum.

    A group of one (the last, when the count does not divide) moves up a level as it is.
    """
    combine = combine or add_parts
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


def graph_array(name, layer, dependency, chunks, dtype):
    """A dask array made of `layer` (a dict of tasks) over the graph of `dependency`."""
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[dependency])
    return da.Array(graph, name, chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype=dtype))


def one_chunk(shape):
    return tuple((s,) for s in shape)


def sum_over_rows(label, kernel, X, rows, shared, options, shape, split_every):
    """Σ over row blocks of kernel(x_block, *row_blocks, **shared), as a dask array of X's dtype."""
    split_every = check_split_every(split_every)
    token = tokenize(label, X, rows, shared, options, split_every)
    blocks = per_block(sum_block, "%s-partial-%s" % (label, token), X, rows,
                        dict(kernel=kernel, **shared, **options))
    tree_name, name = "%s-sum-%s" % (label, token), "%s-%s" % (label, token)
    tree = graph_array(tree_name, tree_sum(blocks, split_every, tree_name), blocks, (), object)
    return graph_array(name, {(name,) + (0,) * len(shape): (cast, (tree_name,), X.dtype)},
                  tree, one_chunk(shape), X.dtype)


def map_rows(label, kernel, X, shared, options, columns):
    """kernel(x_block, **shared) per row block: (n,) if columns is None, else (n, columns)."""
    keywords = dict(kernel=kernel, **shared, **options)
    source = file_source(X)
    if source is not None:  # each task maps its own rows (see per_block)
        chunks = (X.chunks[0],) if columns is None else (X.chunks[0], (columns,))
        return per_file_block(run_block, layer_name(label, X, keywords), X, source, [], keywords,
                               chunks=chunks, dtype=X.dtype)
    if columns is None:
        return X.map_blocks(run_block, drop_axis=1, chunks=(X.chunks[0],), dtype=X.dtype,
                            meta=np.empty((0,), dtype=X.dtype), name=layer_name(label, X, keywords),
                            **keywords)
    return X.map_blocks(run_block, chunks=(X.chunks[0], (columns,)), dtype=X.dtype,
                        meta=np.empty((0, 0), dtype=X.dtype), name=layer_name(label, X, keywords),
                        **keywords)


def layer_name(label, *args):
    return "%s-%s" % (label, tokenize(*args))


# MARK: arrays of files

# The arrays from_memmap made, by name: (path, layout, a weak reference to the graph layer
# that reads the file), for per_block.
_FILE_ARRAYS = {}


def register_file_array(name, path, layout, layer):
    """Records that the dask array `name` reads the file (path, layout) through graph `layer`."""
    for key in [k for k, (_, _, ref) in _FILE_ARRAYS.items() if ref() is None]:
        del _FILE_ARRAYS[key]
    _FILE_ARRAYS[name] = (path, layout, weakref.ref(layer))


def file_source(X):
    """(path, layout) when X is an array of from_memmap as made (its blocks still read from
    the file: not persisted, sliced or otherwise transformed), else None."""
    entry = _FILE_ARRAYS.get(X.name)
    if entry is None or entry[2]() is not X.dask.layers.get(X.name):
        return None
    return entry[:2]


def npy_layout(path):
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


def read_rows(path, layout, block_info=None):
    """The block's rows of the array in `path`, as a read-only view of a fresh memmap."""
    start, stop = block_info[None]["array-location"][0]
    return rows_of_file(path, layout, start, stop)


def rows_of_file(path, layout, start, stop):
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
