"""The reading backends: every read of X that an estimator makes, behind one small interface.

:class:`_InMemoryPasses` reads numpy arrays, memmaps and array-likes;
``_dask_passes.DaskPasses`` has the same methods for a dask array. The estimators'
base (``_base._passes_for``) picks one by the type of X and calls nothing else that reads X.
"""
import functools

import numpy as np

from .. import _kmeans
from .._kernels import mixture_pass, weighted_gram, weighted_gram_many, weighted_sum
from ._checks import _check_all_finite, _check_sample_weight, _raise_if_not_finite, _validate_data


def _statistics_from_responsibilities(X, responsibilities, centers, covariance_type, sample_weight,
                                      *, threads=None, memory_limit=None):
    """N, S1, S2 centred at ``centers`` for responsibilities given block by block.

    X is read once, by row blocks bounded by ``memory_limit``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    responsibilities : callable
        ``responsibilities(rows, block)`` → (n_rows, n_components) float64 for the slice
        ``rows`` of X (``block`` is those rows in float64); called in order.
    centers : ndarray of shape (n_components, n_features)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    sample_weight : ndarray of shape (n_samples,) or None

    Returns
    -------
    counts, first, second
        As :func:`mixture_pass` returns them for the covariance type's scatter.
    """
    n, d = X.shape
    k = centers.shape[0]
    counts = np.zeros(k)
    first = np.zeros((k, d))
    second = np.zeros({"full": (k, d, d), "tied": (d, d)}.get(covariance_type, (k, d)))
    rows_per_block = _kmeans.block_rows(memory_limit, 8 * (3 * d + 2 * k + 2))
    # Full and tied second moments: one weighted_gram_many over as many rows as the
    # responsibilities of (rows, K) fit the memory limit, accumulated in its own output (X is
    # read in place: no float64 copy of X, no d² array per block).
    matrices = covariance_type in ("full", "tied")
    chunk_rows = max(rows_per_block, _kmeans.block_rows(memory_limit, (8 + X.dtype.itemsize) * k))
    kernel_centers = centers.astype(X.dtype)
    grams = None
    for chunk in _kmeans.row_blocks(n, chunk_rows):
        chunk_resp = np.empty((chunk.stop - chunk.start, k), dtype=X.dtype) if matrices else None
        chunk_counts = np.zeros(k)
        for start in range(chunk.start, chunk.stop, rows_per_block):
            rows = slice(start, min(start + rows_per_block, chunk.stop))
            block = _kmeans.as_float64(X[rows])
            resp = responsibilities(rows, block)
            if sample_weight is not None:
                resp = resp * sample_weight[rows, np.newaxis]
            block_counts = resp.sum(axis=0)
            chunk_counts += block_counts
            first += weighted_sum(block, resp, threads=threads, memory_limit=memory_limit)
            first -= block_counts[:, np.newaxis] * centers
            if matrices:
                chunk_resp[rows.start - chunk.start:rows.stop - chunk.start] = resp
                continue
            for j in range(k):
                r = resp[:, j]
                used = np.flatnonzero(r)
                if used.size == 0:
                    continue
                if used.size < r.shape[0]:
                    diff, r = block[used] - centers[j], r[used]
                else:
                    diff = block - centers[j]
                second[j] += r @ (diff * diff)
        counts += chunk_counts
        if not matrices:
            continue
        # Rows of weight zero cost nothing in weighted_gram_many.
        direct = covariance_type == "full" and X.dtype == np.float64 and chunk.start == 0 and chunk.stop == n
        if direct:
            grams = second
        elif grams is None:
            grams = np.empty((k, d, d), dtype=X.dtype)
        weighted_gram_many(X[chunk], chunk_resp, centers=kernel_centers, out=grams, threads=threads,
                           memory_limit=memory_limit)
        if direct:
            continue
        if X.dtype != np.float64:
            # Centred at the means rounded to X's dtype: moved to the exact ones, S2(c) =
            # S2(c') + δ S1'ᵀ + S1' δᵀ + N δδᵀ with δ = c' − c and S1' = Σ r x − N c'.
            offset = kernel_centers - centers
            s1 = (weighted_sum(X[chunk], chunk_resp, threads=threads, memory_limit=memory_limit)
                  - chunk_counts[:, np.newaxis] * kernel_centers)
        for j in range(k):
            g = grams[j].astype(np.float64)
            if X.dtype != np.float64:
                cross = np.multiply.outer(offset[j], s1[j] + 0.5 * chunk_counts[j] * offset[j])
                g += cross
                g += cross.T
            if covariance_type == "full":
                second[j] += g
            else:
                second += g
    return counts, first, second

def _hard_responsibilities(centers, center_norms, rows, block, *, threads=None, memory_limit=None):
    """One-hot responsibilities of each row's nearest center, shape (n_rows, n_components)."""
    labels, _ = _kmeans.nearest_center(block, centers, center_norms, threads=threads, memory_limit=memory_limit)
    resp = np.zeros((block.shape[0], centers.shape[0]))
    resp[np.arange(block.shape[0]), labels] = 1.0
    return resp

def _uniform_responsibilities(random_state, n_components, sample_weight, rows, block):
    """scikit-learn's ``uniform(size=(n_samples, n_components))``, normalised, drawn block by
    block (the same stream); with sample weights, only rows of positive weight draw."""
    if sample_weight is None:
        resp = random_state.uniform(size=(block.shape[0], n_components))
        resp /= resp.sum(axis=1)[:, np.newaxis]
        return resp
    drawing = np.flatnonzero(sample_weight[rows] > 0)
    draws = random_state.uniform(size=(drawing.shape[0], n_components))
    resp = np.zeros((block.shape[0], n_components))
    resp[drawing] = draws / draws.sum(axis=1)[:, np.newaxis]
    return resp

def _gram_of_rows(X, sample_weight, *, threads=None, memory_limit=None):
    """``Σ_i w_i x_i x_iᵀ`` in float64, shape (n_features, n_features); X read by row blocks."""
    n, d = X.shape
    gram = np.zeros((d, d))
    for rows in _kmeans.row_blocks(n, _kmeans.block_rows(memory_limit, 8 * d + 8)):
        w = None if sample_weight is None else sample_weight[rows]
        gram += weighted_gram(_kmeans.as_float64(X[rows]), w, threads=threads, memory_limit=memory_limit)
    return gram

def _one_hot_statistics(passes, X, indices, covariance_type, sample_weight):
    """Statistics of responsibilities that are one-hot at rows ``indices`` (one per component),
    centred at those rows: N_k = w_i, S1 = S2 = 0. Reads only those rows of X."""
    centers = _kmeans.as_float64(passes.rows(X, indices))
    k, d = centers.shape
    counts = np.ones(k) if sample_weight is None else _kmeans.as_float64(passes.rows(sample_weight, indices))
    second = np.zeros({"full": (k, d, d), "tied": (d, d)}.get(covariance_type, (k, d)))
    return counts, np.zeros((k, d)), second, centers

#: Rows of X a joint pass (:meth:`_InMemoryPasses.mixture_passes`) takes through all its
#: requests at a time: a block this large stays in the page cache between them.
_JOINT_BLOCK_BYTES = 256 << 20


class _InMemoryPasses:
    """Every read of X the estimator makes, for X in memory or in a memmap.

    Each method reads X once (or a few rows of it) with the kernels and the streaming
    helpers above, by row blocks bounded by ``memory_limit``. ``DaskPasses`` has the same
    methods for a dask X; its tasks call these on their row blocks.
    """

    def __init__(self, *, threads=None, memory_limit=None):
        self.threads = threads
        self.memory_limit = memory_limit
        self.options = {"threads": threads, "memory_limit": memory_limit}

    def validate(self, estimator, X, reset):
        """X as a 2-D float32/float64 array (a memmap stays a view of the file)."""
        return _validate_data(estimator, X, reset)

    def sample_weight(self, sample_weight, X):
        """(validated weights or None, count of positive weights, total weight)."""
        n = X.shape[0]
        w = _check_sample_weight(sample_weight, n)
        if w is None:
            return None, n, n
        return w, int(np.count_nonzero(w)), float(np.sum(w))

    def check_finite(self, X):
        """Raise scikit-learn's ValueError if X holds NaN or infinity."""
        _check_all_finite(X, **self.options)

    def rows(self, a, index):
        """``a[index]`` (rows of X or entries of the weights) as an in-memory array."""
        return np.asarray(a[index])

    def mixture_pass(self, X, operands, scatter, sample_weight=None):
        """The fused pass: (log_likelihood, counts, first, second) at ``operands``, the
        (log_norm, centers, precisions) of :func:`_pass_operands`."""
        return mixture_pass(X, *operands, scatter=scatter, sample_weight=sample_weight, **self.options)

    def mixture_passes(self, X, requests, sample_weight=None):
        """Several fused passes (``requests``: (operands, scatter) pairs) that read X once:
        by blocks of :data:`_JOINT_BLOCK_BYTES` of X, each block through every request while it
        is in memory (in the page cache, for a memmap), the statistics added up per request.
        One request is one :meth:`mixture_pass`."""
        if len(requests) == 1:
            operands, scatter = requests[0]
            return [self.mixture_pass(X, operands, scatter, sample_weight)]
        n, d = X.shape
        rows = max(1, _JOINT_BLOCK_BYTES // max(1, d * X.dtype.itemsize))
        totals = [None] * len(requests)
        for block in _kmeans.row_blocks(n, rows):
            w = None if sample_weight is None else sample_weight[block]
            for j, (operands, scatter) in enumerate(requests):
                result = self.mixture_pass(X[block], operands, scatter, w)
                if totals[j] is None:
                    totals[j] = list(result)
                    continue
                total = totals[j]
                total[0] += result[0]
                for i in (1, 2, 3):
                    if result[i] is not None:
                        total[i] += result[i]
        return [tuple(t) for t in totals]

    def row_outputs(self, X, operands, output, out=None):
        """Per-row results at ``operands``: ``output`` 'labels' (n_samples,) of intp, 'resp'
        (n_samples, n_components) or 'score' (n_samples,) of X's dtype, written into ``out``."""
        n = X.shape[0]
        k = operands[0].shape[0]
        if output == "labels":
            # By row blocks: no (n_samples, n_components) array.
            labels = np.empty(n, dtype=np.intp)
            rows = min(max(n, 1), _kmeans.block_rows(self.memory_limit, X.dtype.itemsize * (k + 1)))
            resp = np.empty((rows, k), dtype=X.dtype)
            score = np.empty(rows, dtype=X.dtype)
            for block in _kmeans.row_blocks(n, rows):
                m = block.stop - block.start
                self._score_rows(X[block], operands, resp[:m], score[:m])
                np.argmax(resp[:m], axis=1, out=labels[block])
            return labels
        if output == "resp":
            if out is None:
                out = np.empty((n, k), dtype=X.dtype)
            self._score_rows(X, operands, out, np.empty(n, dtype=X.dtype))
        else:
            if out is None:
                out = np.empty(n, dtype=X.dtype)
            self._score_rows(X, operands, None, out)
        return out

    def _score_rows(self, X, operands, resp, score):
        mixture_pass(X, *operands, scatter="none", resp_out=resp, score_out=score, **self.options)
        if not np.all(np.isfinite(score)):
            _raise_if_not_finite(X, memory_limit=self.memory_limit)

    def gram(self, X, sample_weight=None):
        """``Σ_i w_i x_i x_iᵀ``, float64 of shape (n_features, n_features)."""
        return _gram_of_rows(X, sample_weight, **self.options)

    def kmeans_centers(self, X, n_components, random_state, sample_weight=None):
        """The centers of :func:`_kmeans.kmeans_centers`, shape (n_components, n_features)."""
        return _kmeans.kmeans_centers(X, n_components, random_state, sample_weight=sample_weight,
                                      **self.options)

    def kmeans_plusplus(self, X, n_components, random_state, sample_weight=None):
        """The rows that scikit-learn's k-means++ picks, shape (n_components,)."""
        _, indices = _kmeans.kmeans_plusplus(X, n_components, random_state, sample_weight=sample_weight,
                                             **self.options)
        return indices

    def hard_statistics(self, X, centers, covariance_type, sample_weight=None):
        """Statistics (counts, first, second) of one-hot responsibilities at the nearest center."""
        center_norms = np.einsum("ij,ij->i", centers, centers)
        hard = functools.partial(_hard_responsibilities, centers, center_norms, **self.options)
        return _statistics_from_responsibilities(X, hard, centers, covariance_type, sample_weight,
                                                 **self.options)

    def uniform_statistics(self, X, random_state, centers, covariance_type, sample_weight=None):
        """Statistics (counts, first, second) of uniformly drawn responsibilities."""
        uniform = functools.partial(_uniform_responsibilities, random_state, centers.shape[0], sample_weight)
        return _statistics_from_responsibilities(X, uniform, centers, covariance_type, sample_weight,
                                                 **self.options)
