"""Data files for the demo and the benchmarks: a memmap'd X on disk, made with bounded memory.

The file is raw C-order data (what ``np.memmap`` and ``ndarray.tofile`` read and write),
written chunk by chunk so that making a 7 GB X needs only one chunk of RAM.
"""
import os
import shutil
import time

import numpy as np

#: Bytes generated and written per chunk.
CHUNK_BYTES = 64 << 20


def nbytes(shape, dtype):
    """Size in bytes of a C-order array of `shape` and `dtype`."""
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def free_bytes(directory):
    """Bytes free for an unprivileged user on the file system holding `directory`."""
    return shutil.disk_usage(directory).free


def make_data_file(path, shape, dtype=np.float64, *, seed=0, mean=None, progress=None):
    """Writes standard-normal rows (plus `mean`) to `path` and returns them as a read-only memmap.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create (overwritten if it exists).
    shape : tuple (n_samples, n_features)
    dtype : float32 or float64
    seed : int
        Seed of ``np.random.default_rng``: the same arguments give the same file.
    mean : float or array_like of shape (n_features,), optional
        Added to every row (default: zero).
    progress : callable, optional
        Called with the number of rows written so far after each chunk.

    Returns
    -------
    X : np.memmap of shape (n_samples, n_features), mode "r"
    """
    n, d = (int(s) for s in shape)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError("dtype must be float32 or float64, got %s" % dtype)
    rng = np.random.default_rng(seed)
    shift = None if mean is None else np.asarray(mean, dtype=dtype)
    rows_per_chunk = max(1, CHUNK_BYTES // max(1, d * dtype.itemsize))
    with open(path, "wb") as f:
        for start in range(0, n, rows_per_chunk):
            chunk = rng.standard_normal((min(rows_per_chunk, n - start), d), dtype=dtype)
            if shift is not None:
                chunk += shift
            chunk.tofile(f)
            if progress is not None:
                progress(start + len(chunk))
        f.flush()
        # Written pages must be clean before evict() can drop them from the page cache.
        os.fsync(f.fileno())
    if n == 0 or d == 0:
        return np.zeros((n, d), dtype=dtype)  # np.memmap cannot map an empty file
    return np.memmap(path, dtype=dtype, mode="r", shape=(n, d))


def random_operands(d, n, dtype=np.float64, *, zero_fraction=0.3, seed=1):
    """A random SPD matrix Q of shape (d, d) and weights w of shape (n,) in [0, 1).

    Q = A·Aᵀ/d + I for a standard-normal A (eigenvalues of order 1, like a precision
    matrix of standardised data); exactly round(zero_fraction·n) weights are 0.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d))
    Q = (a @ a.T / max(d, 1) + np.eye(d)).astype(dtype)
    w = rng.random(n)
    w[rng.permutation(n)[: int(round(zero_fraction * n))]] = 0.0
    return Q, w.astype(dtype)


def evict(path):
    """Drops the file's pages from the page cache, so that the next read comes from disk.

    A hint to the kernel (POSIX_FADV_DONTNEED): clean pages not mapped by any process go;
    pages of a memmap still open in this process may stay.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(path, chunk_bytes=CHUNK_BYTES):
    """Reads the whole file once (into the page cache); returns (bytes read, seconds).

    See also :func:`map_pages`: a memmap opened afterwards still takes a page fault on
    the first touch of each page.
    """
    buf = bytearray(chunk_bytes)
    total = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            got = f.readinto(buf)
            if not got:
                break
            total += got
    return total, time.perf_counter() - t0


def map_pages(X):
    """Touches every page of the memmap X once, so that later reads through X take no page
    faults (as in the second and later iterations of EM over the same memmap); returns seconds.

    Reads one element per 4 KiB page of a C-contiguous X, or every row otherwise.
    """
    t0 = time.perf_counter()
    if X.size:
        if X.flags.c_contiguous:
            flat = X.reshape(-1)
            np.add.reduce(flat[:: max(1, 4096 // X.itemsize)])
            np.add.reduce(flat[-1:])
        else:
            rows = max(1, CHUNK_BYTES // max(1, X.shape[1] * X.itemsize))
            for start in range(0, X.shape[0], rows):
                np.add.reduce(X[start:start + rows], axis=None)
    return time.perf_counter() - t0
