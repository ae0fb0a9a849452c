"""k-means for the mixture's initialisation, on data read by row blocks.

X may be an ``np.memmap`` larger than RAM: every function here reads X in row blocks
whose temporaries fit in ``memory_limit`` bytes; nothing of size n_samples × n_features is
made. Vectors of length n_samples (norms, labels, distances) are kept.

- :func:`kmeans_plusplus` is scikit-learn's greedy k-means++ (``sklearn.cluster.kmeans_plusplus``)
  with the same random draws, so on the same data it picks the same seeds.
- :func:`lloyd` is Lloyd's algorithm: one pass over X per iteration (distances of a block
  to the centers by :func:`gmmkernels.matmul`, the new centers by :func:`gmmkernels.weighted_sum`
  on the block's one-hot assignment).
- :func:`kmeans_centers` puts them together the way the mixture's ``init_params='kmeans'``
  uses them: k-means++ and Lloyd on a random subsample held in memory, then Lloyd on all of X
  from there.
"""
import numpy as np

from ._kernels import matmul, weighted_sum

DEFAULT_MEMORY_LIMIT = 64 << 20

# Subsample for seeding: large enough for k-means++ to see every cluster, small enough to
# sit in memory (it is also capped by memory_limit).
_SUBSAMPLE_ROWS = 10000
_SUBSAMPLE_ROWS_PER_CLUSTER = 50


###############################################################################
# Row blocks


def block_rows(memory_limit, bytes_per_row):
    """Rows per block so that a block's temporaries take at most ``memory_limit`` bytes."""
    limit = DEFAULT_MEMORY_LIMIT if memory_limit is None else int(memory_limit)
    return max(1, limit // max(1, int(bytes_per_row)))


def row_blocks(n_samples, rows):
    """Slices of at most ``rows`` rows covering ``range(n_samples)``; the last may be shorter."""
    for start in range(0, n_samples, rows):
        yield slice(start, min(start + rows, n_samples))


def as_float64(block):
    """A block of X in float64 (a view when it already is)."""
    return np.asarray(block, dtype=np.float64)


def squared_norms(X, *, memory_limit=None):
    """``‖x_i‖²`` of every row, shape (n_samples,), float64, X read by row blocks."""
    n, d = X.shape
    out = np.empty(n, dtype=np.float64)
    for rows in row_blocks(n, block_rows(memory_limit, 16 * d + 8)):
        block = as_float64(X[rows])
        np.einsum("ij,ij->i", block, block, out=out[rows])
    return out


def squared_distances(block, block_norms, centers, center_norms, *, threads=None, memory_limit=None):
    """``‖x_i − c_j‖²`` for a block of rows, shape (n_rows, n_centers), clipped at 0.

    The sum is formed in scikit-learn's order (−2 x·c, then + ‖c‖², then + ‖x‖²).
    """
    dist = matmul(block, centers.T, threads=threads, memory_limit=memory_limit)
    dist *= -2.0
    dist += center_norms[np.newaxis, :]
    dist += block_norms[:, np.newaxis]
    np.maximum(dist, 0.0, out=dist)
    return dist


def nearest_center(block, centers, center_norms, *, threads=None, memory_limit=None):
    """Index of the nearest center of each row of a float64 block, and ``‖c‖² − 2 x·c`` there."""
    score = matmul(block, centers.T, threads=threads, memory_limit=memory_limit)
    score *= -2.0
    score += center_norms[np.newaxis, :]
    labels = np.argmin(score, axis=1)
    return labels, score[np.arange(labels.shape[0]), labels]


###############################################################################
# Seeding


def kmeans_plusplus(X, n_clusters, random_state, *, sample_weight=None, x_squared_norms=None,
                    n_local_trials=None, threads=None, memory_limit=None):
    """Greedy k-means++ seeds, as ``sklearn.cluster.kmeans_plusplus`` picks them.

    Each new center is the best of ``2 + int(log(n_clusters))`` candidates drawn with
    probability proportional to ``w_i · D(x_i)²``; the random draws are scikit-learn's, in its
    order. Distances are computed by row blocks; the candidates' distances to all rows
    (n_samples × n_local_trials) are kept if they fit in ``memory_limit``, else recomputed
    for the chosen candidate (one more pass over X per center).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    n_clusters : int
    random_state : numpy.random.RandomState
    sample_weight : ndarray of shape (n_samples,), optional
    x_squared_norms : ndarray of shape (n_samples,), optional
    n_local_trials : int, optional

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float64
    indices : ndarray of shape (n_clusters,)
        Rows of X the centers are: ``X[indices] == centers``.
    """
    n, d = X.shape
    w = np.ones(n, dtype=np.float64) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    if x_squared_norms is None:
        x_squared_norms = squared_norms(X, memory_limit=memory_limit)
    rows = block_rows(memory_limit, 8 * (2 * d + 2 * n_local_trials + 2))
    keep_all = 8 * n * n_local_trials <= (DEFAULT_MEMORY_LIMIT if memory_limit is None else memory_limit)

    def distances_to(points):
        """(n_samples, len(points)) squared distances, by row blocks."""
        points = as_float64(points)
        norms = np.einsum("ij,ij->i", points, points)
        out = np.empty((n, points.shape[0]), dtype=np.float64)
        for r in row_blocks(n, rows):
            out[r] = squared_distances(as_float64(X[r]), x_squared_norms[r], points, norms,
                                       threads=threads, memory_limit=memory_limit)
        return out

    centers = np.empty((n_clusters, d), dtype=np.float64)
    indices = np.full(n_clusters, -1, dtype=int)
    center_id = random_state.choice(n, p=w / w.sum())
    centers[0] = X[center_id]
    indices[0] = center_id
    closest_dist_sq = distances_to(centers[0:1])[:, 0]
    current_pot = closest_dist_sq @ w

    for c in range(1, n_clusters):
        rand_vals = random_state.uniform(size=n_local_trials) * current_pot
        candidate_ids = np.searchsorted(np.cumsum(w * closest_dist_sq), rand_vals)
        # Rounding in the cumulative sum can put a draw past the end.
        np.clip(candidate_ids, None, n - 1, out=candidate_ids)
        candidates = as_float64(X[candidate_ids])
        if keep_all:
            dist = distances_to(candidates)
            np.minimum(closest_dist_sq[:, np.newaxis], dist, out=dist)
            candidates_pot = w @ dist
            best = int(np.argmin(candidates_pot))
            closest_dist_sq = dist[:, best].copy()
        else:
            norms = np.einsum("ij,ij->i", candidates, candidates)
            candidates_pot = np.zeros(n_local_trials)
            for r in row_blocks(n, rows):
                dist = squared_distances(as_float64(X[r]), x_squared_norms[r], candidates, norms,
                                         threads=threads, memory_limit=memory_limit)
                np.minimum(closest_dist_sq[r, np.newaxis], dist, out=dist)
                candidates_pot += w[r] @ dist
            best = int(np.argmin(candidates_pot))
            np.minimum(closest_dist_sq, distances_to(candidates[best:best + 1])[:, 0], out=closest_dist_sq)
        current_pot = candidates_pot[best]
        centers[c] = candidates[best]
        indices[c] = candidate_ids[best]
    return centers, indices


###############################################################################
# Lloyd iterations


def _farthest(dist, ids, keep, best_dist, best_ids):
    """Merge a block's (distance, row) pairs into the ``keep`` largest seen so far."""
    dist = np.concatenate([best_dist, dist])
    ids = np.concatenate([best_ids, ids])
    if dist.shape[0] > keep:
        top = np.argpartition(dist, -keep)[-keep:]
        dist, ids = dist[top], ids[top]
    return dist, ids


def lloyd(X, centers, *, sample_weight=None, max_iter=300, tol=0.0, threads=None, memory_limit=None):
    """Lloyd's k-means iterations from ``centers``, one pass over X per iteration.

    Stops when no label changes, when the centers move by at most ``tol`` in total squared
    distance, or after ``max_iter`` iterations. An empty cluster is moved to the row farthest
    from its center (of positive weight), as scikit-learn's KMeans does.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    centers : ndarray of shape (n_clusters, n_features)
    sample_weight : ndarray of shape (n_samples,), optional
    max_iter : int
    tol : float
        Absolute tolerance on the centers' total squared movement.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float64
    n_iter : int
    """
    n, d = X.shape
    centers = np.array(centers, dtype=np.float64)
    k = centers.shape[0]
    labels = np.full(n, -1, dtype=np.intp)
    rows = block_rows(memory_limit, 8 * (2 * d + 3 * k + 4))
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        center_norms = np.einsum("ij,ij->i", centers, centers)
        sums = np.zeros((k, d))
        counts = np.zeros(k)
        far_dist, far_ids = np.empty(0), np.empty(0, dtype=np.intp)
        changed = False
        for r in row_blocks(n, rows):
            block = as_float64(X[r])
            block_labels, score = nearest_center(block, centers, center_norms,
                                                 threads=threads, memory_limit=memory_limit)
            if not changed and not np.array_equal(block_labels, labels[r]):
                changed = True
            labels[r] = block_labels
            w = np.ones(block.shape[0]) if sample_weight is None else sample_weight[r]
            onehot = np.zeros((block.shape[0], k))
            onehot[np.arange(block.shape[0]), block_labels] = w
            sums += weighted_sum(block, onehot, threads=threads, memory_limit=memory_limit)
            counts += np.bincount(block_labels, weights=w, minlength=k)
            dist = score + np.einsum("ij,ij->i", block, block)
            dist[w <= 0] = -np.inf
            far_dist, far_ids = _farthest(dist, np.arange(r.start, r.stop), k, far_dist, far_ids)
        new_centers, moved = next_centers(centers, sums, counts, far_dist, far_ids, lambda ids: as_float64(X[ids]))
        shift = float(np.sum((new_centers - centers) ** 2))
        centers = new_centers
        if not (changed or moved) or shift <= tol:
            break
    return centers, n_iter


def next_centers(centers, sums, counts, far_dist, far_ids, rows):
    """The centers after one Lloyd pass: each cluster's weighted mean (``sums / counts``),
    and each empty cluster moved to one of the rows farthest from their centers
    (``far_dist``/``far_ids``: the candidates, ``rows(ids)``: those rows of X), as
    scikit-learn's KMeans does. Returns (centers, whether any cluster was moved)."""
    new_centers = centers.copy()
    filled = counts > 0
    new_centers[filled] = sums[filled] / counts[filled, np.newaxis]
    empty = np.flatnonzero(~filled)
    if empty.size:
        order = np.argsort(-far_dist, kind="stable")
        movers = np.sort(far_ids[order[:empty.size]])
        new_centers[empty] = rows(movers)
    return new_centers, bool(empty.size)


def kmeans_centers(X, n_clusters, random_state, *, sample_weight=None, max_iter=300, tol=1e-4,
                   threads=None, memory_limit=None):
    """k-means centers of X: k-means++ and Lloyd on a random subsample, then Lloyd on all of X.

    The subsample (rows of positive weight, at most ``max(10000, 50·n_clusters)`` rows and
    what ``memory_limit`` allows) is held in memory; the passes over all of X start from
    its centers, so they are few. ``tol`` is relative to the mean per-feature variance of
    the subsample, as in scikit-learn's KMeans.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float64
    """
    positive = None if sample_weight is None else np.flatnonzero(sample_weight > 0)

    def gather(picked):
        # Fancy indexing copies the rows (of a memmap too): the subsample is in memory.
        return (as_float64(X[picked]),
                None if sample_weight is None else np.asarray(sample_weight[picked], np.float64))

    def lloyd_on_all_rows(centers, tol_abs):
        return lloyd(X, centers, sample_weight=sample_weight, max_iter=max_iter, tol=tol_abs,
                     threads=threads, memory_limit=memory_limit)[0]

    return subsample_then_all_rows(X.shape, n_clusters, random_state, positive, gather, lloyd_on_all_rows,
                                   max_iter=max_iter, tol=tol, threads=threads, memory_limit=memory_limit)


def subsample_then_all_rows(shape, n_clusters, random_state, positive, gather, lloyd_on_all_rows, *,
                            max_iter, tol, threads, memory_limit):
    """The steps of :func:`kmeans_centers` for X held anywhere (in memory, on disk, on a
    cluster): the subsample's indices are drawn here, ``gather(indices)`` brings its rows
    and weights (or None) into memory, and ``lloyd_on_all_rows(centers, tol_abs)`` runs
    Lloyd's iterations over all of X. ``positive``: the indices of the rows of positive
    weight, or None when there are no weights."""
    n, d = shape
    n_positive = n if positive is None else positive.shape[0]
    limit = DEFAULT_MEMORY_LIMIT if memory_limit is None else memory_limit
    size = max(_SUBSAMPLE_ROWS, _SUBSAMPLE_ROWS_PER_CLUSTER * n_clusters)
    size = min(n_positive, max(n_clusters, min(size, limit // (16 * d + 64))))
    if size == n_positive:
        picked = np.arange(n) if positive is None else positive
    else:
        picked = np.sort(random_state.choice(n_positive, size=size, replace=False))
        if positive is not None:
            picked = positive[picked]
    sub, sub_weight = gather(picked)

    w = np.ones(sub.shape[0]) if sub_weight is None else sub_weight
    mean = w @ sub / w.sum()
    variance = w @ (sub - mean) ** 2 / w.sum()
    tol_abs = float(np.mean(variance)) * tol

    seeds, _ = kmeans_plusplus(sub, n_clusters, random_state, sample_weight=sub_weight,
                               threads=threads, memory_limit=memory_limit)
    centers, _ = lloyd(sub, seeds, sample_weight=sub_weight, max_iter=max_iter, tol=tol_abs,
                       threads=threads, memory_limit=memory_limit)
    if size < n_positive:
        centers = lloyd_on_all_rows(centers, tol_abs)
    return centers
