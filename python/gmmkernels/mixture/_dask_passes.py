"""GaussianMixture's reads of a dask X: the methods of ``_passes._InMemoryPasses``, run by dask.

X is a dask array chunked by rows, with one chunk along the columns (dask.distributed runs
the tasks on a cluster). Each EM iteration is one :func:`gmmkernels.dask.mixture_pass`: the
fused statistics of every row block, added up by a tree of tasks. The other reads run the
in-memory method on each row block in a task and combine the blocks' results the same way,
so the client receives one small result per read, never rows of X:

- the finiteness check, the checks of dask sample weights, Σ w x xᵀ and the initial
  statistics are reductions of this kind;
- ``predict``, ``predict_proba`` and ``score_samples`` are lazy dask arrays with X's row
  chunks, one task per block;
- the initialisations draw exactly what they draw for numpy X, so a fit from the same
  ``random_state`` starts from the same parameters (to rounding):

  'kmeans'            k-means++ and Lloyd on the subsample, gathered to the client as for
                      numpy X (at most ``memory_limit`` bytes), then Lloyd iterations on all
                      of X, one reduction each;
  'k-means++'         the squared distances to the chosen seeds stay on the workers, one
                      float64 per row; a chain of small tasks forms their cumulative sums
                      block after block with np.cumsum's additions, so the draws fall on the
                      same rows; the first draw (numpy's ``choice`` over n probabilities)
                      holds n float64 on the client;
  'random'            the client steps the random stream past each block's draws (nothing
                      is kept) and gives every task the state at its block's start, so the
                      tasks draw in place the numbers numpy X's blocks draw;
  'random_from_data'  the draws are the client's; the K rows are gathered.

Sample weights are a numpy array or a dask array with X's row chunks; they are validated by
one reduction and kept on the workers (``persist``) for the fit.
"""
import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from .. import _kmeans
from .. import _dask_graph as _graph
from .. import dask as gd
from .._kernels import weighted_sum
from .._validation import FLOAT_DTYPES
from ._checks import _check_sample_weight, _check_sizes
from ._passes import _InMemoryPasses

# Uniform numbers drawn at a time when the client steps the random stream past a block.
_STREAM_STEP = 1 << 20


class DaskPasses:
    """The methods of ``_passes._InMemoryPasses`` for a dask X (see the module's notes).

    ``threads`` is per task (default: the worker's share of its threads, as in
    :mod:`gmmkernels.dask`); ``memory_limit`` bounds each task's workspace.
    """

    def __init__(self, *, threads=None, memory_limit=None):
        self.threads = threads
        self.memory_limit = memory_limit
        self.options = _graph.kernel_options(threads, memory_limit)

    # -- checks -----------------------------------------------------------------------

    def validate(self, estimator, X, reset):
        """X as a float32/float64 dask array of known row chunks and one column chunk."""
        if X.ndim != 2:
            raise ValueError(
                "Expected 2D array, got %dD array instead: a dask array of shape %s. Reshape your "
                "data either using X.reshape(-1, 1) if your data has a single feature or "
                "X.reshape(1, -1) if it contains a single sample." % (X.ndim, X.shape)
            )
        if X.dtype.kind == "c":
            raise ValueError("Complex data not supported: X has dtype %s" % X.dtype)
        if X.dtype not in FLOAT_DTYPES:
            if X.dtype.kind not in "biuf":
                raise ValueError("X must hold numbers, got dtype %s" % X.dtype)
            # As scikit-learn converts: float32 stays, anything else becomes float64 (per block).
            single = X.dtype.kind == "f" and X.dtype.itemsize == 4
            X = X.astype(np.float32 if single else np.float64)
        X = _graph.data_matrix(X)
        _check_sizes(estimator, X.shape, reset)
        return X

    def sample_weight(self, sample_weight, X):
        """(weights as a float64 dask array with X's row chunks, kept on the workers, or None;
        count of positive weights; total weight), checked as for numpy X."""
        n = X.shape[0]
        if sample_weight is None:
            return None, n, n
        if not isinstance(sample_weight, da.Array):
            w = _check_sample_weight(sample_weight, n)
            positive, total = int(np.count_nonzero(w)), float(np.sum(w))
            return da.from_array(w, chunks=(X.chunks[0],)).persist(), positive, total
        w = sample_weight
        if w.dtype.kind not in "biuf":
            raise ValueError("sample_weight must be real numbers, got dtype %s" % w.dtype)
        if w.ndim != 1:
            raise ValueError(
                "Sample weights must be 1D array or scalar, got %dD array. Expected either a "
                "scalar value or a 1D array of length %d." % (w.ndim, n)
            )
        if w.shape != (n,):
            raise ValueError("sample_weight.shape == %s, expected %s!" % (w.shape, (n,)))
        # Kept on the workers first, so that the checks and the fit read it once.
        w = _graph.row_operand(w, X, "sample_weight", 1).astype(np.float64).persist()
        finite, negative, positive, total = dask.compute(
            da.isfinite(w).all(), (w < 0).any(), da.count_nonzero(w), w.sum())
        if not finite:
            raise ValueError("Input sample_weight contains NaN or infinity.")
        if negative:
            raise ValueError("Negative values in data passed to `sample_weight`")
        if positive == 0:
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return w, int(positive), float(total)

    def check_finite(self, X):
        """Raise scikit-learn's ValueError (from the task of the first bad block) if X holds
        NaN or infinity."""
        self._reduce("check_finite", X)

    def rows(self, a, index):
        """``a[index]`` for a slice or integer indices (repeats allowed), computed."""
        if isinstance(index, slice):
            return a[index].compute()
        unique, inverse = np.unique(np.asarray(index), return_inverse=True)
        return a[unique].compute()[inverse.reshape(-1)]

    # -- EM and scoring ---------------------------------------------------------------

    def mixture_pass(self, X, operands, scatter, sample_weight=None):
        """One :func:`gmmkernels.dask.mixture_pass`: the statistics of all blocks, tree-reduced."""
        return gd.mixture_pass(X, *operands, scatter=scatter, sample_weight=sample_weight, **self.options)

    def mixture_passes(self, X, requests, sample_weight=None):
        """Several fused passes (``requests``: (operands, scatter) pairs) that read X once:
        each block's task runs all of them on its rows (``_InMemoryPasses.mixture_passes``),
        and the statistics of every request are added up by one tree."""
        if len(requests) == 1:
            operands, scatter = requests[0]
            return [self.mixture_pass(X, operands, scatter, sample_weight)]
        # Each operand as a keyword of its own: the graph builders take shared operands only
        # at the top level of the keywords.
        operands = {"operand_%d_%d" % (j, i): _graph.shared_operand(np.asarray(o))
                    for j, (ops, _) in enumerate(requests) for i, o in enumerate(ops)}
        shapes = tuple((len(ops), scatter) for ops, scatter in requests)
        results = self._reduce("mixture_passes", X, sample_weight=sample_weight, requests=shapes, **operands)
        return [(float(r[0]), r[1], r[2], r[3]) for r in results]

    def row_outputs(self, X, operands, output, out=None):
        """A lazy dask array with X's row chunks: labels, responsibilities or log-densities,
        each block by ``_InMemoryPasses.row_outputs`` in one task."""
        if out is not None:
            raise TypeError(
                "out= takes numpy arrays and memmaps; for a dask X the result is a lazy dask array: "
                "store it with da.store(result, out) or result.to_zarr(...), or call .compute()"
            )
        log_norm, centers, precisions = operands
        # 'output' is a keyword of map_blocks itself.
        keywords = dict(kernel=_block_row_outputs, what=output, log_norm=_graph.shared_operand(log_norm),
                        centers=_graph.shared_operand(centers), precisions=_graph.shared_operand(precisions), **self.options)
        name = "gaussian_mixture-%s-%s" % (output, tokenize(X, keywords))
        if output == "resp":
            k = centers.shape[0]
            return X.map_blocks(_graph.run_block, chunks=(X.chunks[0], (k,)), dtype=X.dtype,
                                meta=np.empty((0, 0), dtype=X.dtype), name=name, **keywords)
        dtype = np.dtype(np.intp) if output == "labels" else X.dtype
        return X.map_blocks(_graph.run_block, drop_axis=1, chunks=(X.chunks[0],), dtype=dtype,
                            meta=np.empty((0,), dtype=dtype), name=name, **keywords)

    # -- initialisation -----------------------------------------------------------------

    def gram(self, X, sample_weight=None):
        """``Σ_i w_i x_i x_iᵀ`` in float64, tree-reduced."""
        return self._reduce("gram", X, sample_weight=sample_weight)

    def hard_statistics(self, X, centers, covariance_type, sample_weight=None):
        """Statistics of one-hot responsibilities at the nearest center, tree-reduced."""
        return self._reduce("hard_statistics", X, sample_weight=sample_weight,
                            centers=_graph.shared_operand(centers), covariance_type=covariance_type)

    def uniform_statistics(self, X, random_state, centers, covariance_type, sample_weight=None):
        """Statistics of uniform responsibilities: numpy X's draws, made in each block's task.

        The client steps ``random_state`` through the whole stream (as a fit of numpy X
        does) and hands every block the state at its start.
        """
        k = centers.shape[0]
        if sample_weight is None:
            draws = X.chunks[0]
        else:
            counts = (sample_weight > 0).map_blocks(_count_true, chunks=((1,) * sample_weight.numblocks[0],),
                                                    dtype=np.int64)
            draws = counts.compute()
        starts = np.cumsum((0,) + X.chunks[0][:-1])
        states = {}
        for start, m in zip(starts, draws):
            states[int(start)] = random_state.get_state()
            for step in _kmeans.row_blocks(int(m) * k, _STREAM_STEP):
                random_state.uniform(size=step.stop - step.start)
        return self._reduce("uniform_statistics", X, index=True, sample_weight=sample_weight,
                            states=dask.delayed(states, pure=True, traverse=False),
                            centers=_graph.shared_operand(centers), covariance_type=covariance_type)

    def kmeans_centers(self, X, n_components, random_state, sample_weight=None, *, max_iter=300, tol=1e-4):
        """``_kmeans.kmeans_centers`` with the same draws: the subsample is gathered and
        clustered on the client, Lloyd's iterations on all of X are reductions."""
        positive = None if sample_weight is None else da.flatnonzero(sample_weight > 0).compute()

        def gather(picked):
            # Rows gathered by indices are a copy: the subsample is on the client.
            return (_kmeans.as_float64(self.rows(X, picked)),
                    None if sample_weight is None else _kmeans.as_float64(self.rows(sample_weight, picked)))

        def lloyd_on_all_rows(centers, tol_abs):
            return self._lloyd(X, centers, sample_weight, max_iter, tol_abs)

        return _kmeans.subsample_then_all_rows(
            X.shape, n_components, random_state, positive, gather, lloyd_on_all_rows,
            max_iter=max_iter, tol=tol, threads=self.threads, memory_limit=self.memory_limit)

    def _lloyd(self, X, centers, sample_weight, max_iter, tol):
        """``_kmeans.lloyd`` on a dask X: one reduction over the blocks per iteration.

        A block's labels under the previous centers are computed again in its task (no
        labels are kept between iterations) to tell whether any label changed.
        """
        centers = np.array(centers, dtype=np.float64)
        previous = None
        for _ in range(max_iter):
            sums, counts, changed, far_dist, far_ids = self._reduce(
                "lloyd", X, index=True, sample_weight=sample_weight, combine=_combine_lloyd,
                centers=_graph.shared_operand(centers), previous=_graph.shared_operand(previous))
            new_centers, moved = _kmeans.next_centers(centers, sums, counts, far_dist, far_ids,
                                                      lambda ids: _kmeans.as_float64(self.rows(X, ids)))
            shift = float(np.sum((new_centers - centers) ** 2))
            previous, centers = centers, new_centers
            if not (changed or moved) or shift <= tol:
                break
        return centers

    def kmeans_plusplus(self, X, n_components, random_state, sample_weight=None):
        """The rows ``_kmeans.kmeans_plusplus`` picks, with its draws (see the module's notes)."""
        n = X.shape[0]
        n_local_trials = 2 + int(np.log(n_components))
        w = np.ones(n) if sample_weight is None else sample_weight.compute()
        indices = [random_state.choice(n, p=w / w.sum())]
        del w
        closest = self._closest(X, _kmeans.as_float64(self.rows(X, indices)))
        weighted = closest if sample_weight is None else closest * sample_weight
        current_pot = float(weighted.sum().compute())
        for _ in range(1, n_components):
            rand_vals = random_state.uniform(size=n_local_trials) * current_pot
            candidate_ids = self._search_cumsum(closest, sample_weight, rand_vals)
            # Rounding in the cumulative sum can put a draw past the end.
            np.clip(candidate_ids, None, n - 1, out=candidate_ids)
            candidates = _kmeans.as_float64(self.rows(X, candidate_ids))
            candidates_pot = self._reduce("kmeans_plusplus", X, rows={"closest": closest},
                                          sample_weight=sample_weight, points=_graph.shared_operand(candidates))
            best = int(np.argmin(candidates_pot))
            current_pot = candidates_pot[best]
            closest = self._closest(X, candidates[best:best + 1], closest)
            indices.append(candidate_ids[best])
        return np.array(indices)

    def _closest(self, X, points, closest=None):
        """``min(closest, ‖x_i − p‖²)`` over ``points`` for every row, a float64 dask array with
        X's row chunks kept on the workers."""
        args = [X, "ij"] + ([] if closest is None else [closest, "i"])
        keywords = dict(kernel=_block_closest, points=_graph.shared_operand(points), **self.options)
        name = "gaussian_mixture-closest-%s" % tokenize(X, closest, keywords)
        return da.blockwise(_graph.run_block, "i", *args, name=name, dtype=np.float64, meta=np.empty((0,)),
                            concatenate=True, **keywords).persist()

    def _search_cumsum(self, closest, sample_weight, targets):
        """``np.searchsorted(np.cumsum(w * closest), targets)`` with np.cumsum's additions.

        Each block's task continues the sum from the previous block's last value, so every
        partial sum is the float numpy's cumsum gives; the tasks form a chain.
        """
        blocks = closest.to_delayed().ravel()
        weights = [None] * len(blocks) if sample_weight is None else sample_weight.to_delayed().ravel()
        search = dask.delayed(_cumsum_search, pure=True, nout=2)
        end, found = 0.0, []
        for block, weight in zip(blocks, weights):
            end, local = search(end, block, weight, targets)
            found.append((end, local))
        found = dask.compute(found)[0]
        ids = np.full(targets.shape[0], closest.shape[0], dtype=np.int64)
        start = 0
        todo = np.ones(targets.shape[0], dtype=bool)
        for size, (last, local) in zip(closest.chunks[0], found):
            hits = todo & (targets <= last) if size else np.zeros_like(todo)
            ids[hits] = start + local[hits]
            todo &= ~hits
            start += size
        return ids

    # -- map and reduce over the row blocks -------------------------------------------------

    def _reduce(self, method, X, *, rows=None, index=False, sample_weight=None, combine=_graph.add_parts, **keywords):
        """``_BLOCK_METHODS[method]`` on every row block of X, combined by a tree of ``combine``
        (``split_every`` 4); returns the combined result, computed.

        ``rows`` (name → dask array with X's row chunks), the rows' indices (``index``) and
        ``sample_weight`` reach the task as its blocks of them, by those names.
        """
        rows = dict(rows or {})
        if index:
            rows["index"] = da.arange(X.shape[0], chunks=(X.chunks[0],))
        if sample_weight is not None:
            rows["sample_weight"] = sample_weight
        keywords = dict(kernel=_BLOCK_METHODS[method], row_names=tuple(rows), **keywords, **self.options)
        token = tokenize(method, X, rows, keywords)
        blocks = _graph.per_block(_graph.run_block, "gaussian_mixture-%s-block-%s" % (method, token), X,
                               list(rows.values()), keywords)
        name = "gaussian_mixture-%s-%s" % (method, token)
        tree = _graph.graph_array(name, _graph.tree_sum(blocks, _graph.DEFAULT_SPLIT_EVERY, name, combine=combine), blocks, (), object)
        return tree.to_delayed().item().compute()


# MARK: tasks (each runs on one row block; row operands arrive in the order of row_names)

def _in_memory(threads, memory_limit):
    return _InMemoryPasses(threads=threads, memory_limit=memory_limit)


def _named(row_names, row_blocks):
    return dict(zip(row_names, row_blocks))


def _block_mixture_passes(x, *row_blocks, row_names, requests, threads, memory_limit, **operands):
    rows = _named(row_names, row_blocks)
    requests = [(tuple(operands["operand_%d_%d" % (j, i)] for i in range(count)), scatter)
                for j, (count, scatter) in enumerate(requests)]
    results = _in_memory(threads, memory_limit).mixture_passes(x, requests, rows.get("sample_weight"))
    return tuple(tuple(r) for r in results)


def _block_check_finite(x, *row_blocks, row_names, threads, memory_limit):
    _in_memory(threads, memory_limit).check_finite(x)


def _block_gram(x, *row_blocks, row_names, threads, memory_limit):
    return _in_memory(threads, memory_limit).gram(x, **_named(row_names, row_blocks))


def _block_hard_statistics(x, *row_blocks, row_names, centers, covariance_type, threads, memory_limit):
    return _in_memory(threads, memory_limit).hard_statistics(x, centers, covariance_type,
                                                             **_named(row_names, row_blocks))


def _block_uniform_statistics(x, *row_blocks, row_names, states, centers, covariance_type, threads,
                              memory_limit):
    rows = _named(row_names, row_blocks)
    index = rows.pop("index")
    random_state = np.random.RandomState()
    if index.shape[0]:
        random_state.set_state(states[int(index[0])])
    return _in_memory(threads, memory_limit).uniform_statistics(x, random_state, centers, covariance_type,
                                                                **rows)


def _block_lloyd(x, *row_blocks, row_names, centers, previous, threads, memory_limit):
    """(Σ w x per label, Σ w per label, whether a label changed from ``previous``'s, the
    farthest rows): the work of ``_kmeans.lloyd``'s loop on one block."""
    rows = _named(row_names, row_blocks)
    index, sample_weight = rows["index"], rows.get("sample_weight")
    n, d = x.shape
    k = centers.shape[0]
    norms = np.einsum("ij,ij->i", centers, centers)
    previous_norms = None if previous is None else np.einsum("ij,ij->i", previous, previous)
    sums, counts = np.zeros((k, d)), np.zeros(k)
    changed = previous is None
    far_dist, far_ids = np.empty(0), np.empty(0, dtype=np.intp)
    options = dict(threads=threads, memory_limit=memory_limit)
    for r in _kmeans.row_blocks(n, _kmeans.block_rows(memory_limit, 8 * (2 * d + 3 * k + 4))):
        block = _kmeans.as_float64(x[r])
        labels, score = _kmeans.nearest_center(block, centers, norms, **options)
        if not changed:
            before, _ = _kmeans.nearest_center(block, previous, previous_norms, **options)
            changed = not np.array_equal(labels, before)
        w = np.ones(block.shape[0]) if sample_weight is None else sample_weight[r]
        onehot = np.zeros((block.shape[0], k))
        onehot[np.arange(block.shape[0]), labels] = w
        sums += weighted_sum(block, onehot, **options)
        counts += np.bincount(labels, weights=w, minlength=k)
        dist = score + np.einsum("ij,ij->i", block, block)
        dist[w <= 0] = -np.inf
        far_dist, far_ids = _kmeans._farthest(dist, index[r], k, far_dist, far_ids)
    return sums, counts, changed, far_dist, far_ids


def _combine_lloyd(*parts):
    sums, counts, changed, far_dist, far_ids = parts[0]
    k = counts.shape[0]
    sums, counts = sums.copy(), counts.copy()  # inputs may be held for another task
    for p in parts[1:]:
        sums += p[0]
        counts += p[1]
        changed = changed or p[2]
        far_dist, far_ids = _kmeans._farthest(p[3], p[4], k, far_dist, far_ids)
    return sums, counts, changed, far_dist, far_ids


def _block_kmeans_plusplus(x, *row_blocks, row_names, points, threads, memory_limit):
    """``Σ_i w_i min(closest_i, ‖x_i − p‖²)`` for each candidate p: shape (n_points,)."""
    rows = _named(row_names, row_blocks)
    dist = _block_closest(x, rows["closest"], points=points, threads=threads, memory_limit=memory_limit,
                          keep=True)
    w = rows.get("sample_weight")
    return dist.sum(axis=0) if w is None else w @ dist


def _block_closest(x, closest=None, *, points, threads, memory_limit, keep=False):
    """Squared distances of the block's rows to ``points`` as ``_kmeans.kmeans_plusplus``
    computes them, min'd with ``closest``: (n_rows, n_points) if ``keep``, else the minimum
    over the points, (n_rows,)."""
    n, d = x.shape
    m = points.shape[0]
    norms = np.einsum("ij,ij->i", points, points)
    out = np.empty((n, m))
    for r in _kmeans.row_blocks(n, _kmeans.block_rows(memory_limit, 8 * (2 * d + 2 * m + 2))):
        block = _kmeans.as_float64(x[r])
        out[r] = _kmeans.squared_distances(block, np.einsum("ij,ij->i", block, block), points, norms,
                                           threads=threads, memory_limit=memory_limit)
    if closest is not None:
        np.minimum(closest[:, np.newaxis], out, out=out)
    return out if keep else out.min(axis=1)


def _block_row_outputs(x, *, what, log_norm, centers, precisions, threads, memory_limit):
    return _in_memory(threads, memory_limit).row_outputs(x, (log_norm, centers, precisions), what)


_BLOCK_METHODS = {
    "mixture_passes": _block_mixture_passes,
    "check_finite": _block_check_finite,
    "gram": _block_gram,
    "hard_statistics": _block_hard_statistics,
    "uniform_statistics": _block_uniform_statistics,
    "lloyd": _block_lloyd,
    "kmeans_plusplus": _block_kmeans_plusplus,
}


def _cumsum_search(start, closest, weights, targets):
    """(last partial sum, np.searchsorted of the targets) of the cumulative sum of
    ``weights * closest`` continued from ``start``: the additions of one np.cumsum over all rows."""
    values = closest if weights is None else weights * closest
    sums = np.cumsum(np.concatenate(([start], values)))
    return sums[-1], np.searchsorted(sums[1:], targets)


def _count_true(block):
    return np.array([np.count_nonzero(block)])

