"""Argument checks shared by every function: dtypes, shapes, out=, threads, memory_limit.

X is never copied: a float32/float64 array of any strides (a memmap too) goes to the
kernels as it is. Small operands are converted to X's dtype, as numpy would cast them.
"""
import errno
import numbers
import os

import numpy as np

from ._library import default_threads

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _shape(a):
    return "(%s)" % ", ".join(str(s) for s in a.shape) if a.ndim != 1 else "(%d,)" % a.shape[0]


def check_data_dtype(dtype, name="X"):
    """TypeError unless `dtype` is native float32 or float64: the data is never converted."""
    if dtype in FLOAT_DTYPES:
        return
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        raise TypeError(
            "%s must be in native byte order, got dtype %s; use %s.astype(%s.dtype.newbyteorder('='))"
            % (name, dtype.str, name, name)
        )
    raise TypeError(
        "%s must have dtype float32 or float64, got %s; convert it with %s.astype(np.float64)"
        % (name, dtype, name)
    )


def data_matrix(X, name="X"):
    """X as a 2-D float32/float64 ndarray, without copying it."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    check_data_dtype(X.dtype, name)
    if X.ndim != 2:
        raise ValueError("%s must be 2-D (n_samples, n_features), got shape %s" % (name, _shape(X)))
    return X


def operand(a, dtype, name, shape):
    """A small operand converted to `dtype` (None: kept as it is, if real) with the exact
    `shape` (None entries match any)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError("%s must be real numbers, got dtype %s" % (name, arr.dtype))
    if arr.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, arr.shape)):
        dims = ["?" if s is None else str(s) for s in shape]
        want = "(%s,)" % dims[0] if len(dims) == 1 else "(%s)" % ", ".join(dims)
        raise ValueError("%s must have shape %s, got %s" % (name, want, _shape(arr)))
    if dtype is not None and (arr.dtype != dtype or not arr.dtype.isnative):
        arr = arr.astype(dtype)
    return arr


def matmul_operand(B, a_shape, dtype):
    """B of A @ B for A of shape `a_shape`, as an operand of `dtype`: (k, m) for A (n, k)."""
    n, k = a_shape
    B = np.asarray(B)
    if B.ndim != 2 or B.shape[0] != k:
        raise ValueError(
            "matmul: A has shape (%d, %d), so B must have shape (%d, m), got %s" % (n, k, k, B.shape)
        )
    return operand(B, dtype, "B", (k, None))


def output(out, shape, dtype, inputs, name="out"):
    """`out` (called `name` in messages) checked (writable, shape, dtype, no overlap with `inputs`) or a new array."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError("%s must be a numpy array, got %s" % (name, type(out).__name__))
    if out.shape != tuple(shape):
        raise ValueError(
            "%s must have shape %s, got %s" % (name, _shape(np.empty(shape, dtype=np.int8)), _shape(out))
        )
    if out.dtype != dtype:
        raise TypeError("%s must have dtype %s (the dtype of X), got %s" % (name, dtype, out.dtype))
    if not out.flags.writeable:
        raise ValueError("%s is read-only" % name)
    for other, a in inputs.items():
        if a is not None and _overlaps(out, a):
            raise ValueError("%s must not overlap %s" % (name, other))
    _check_disk_space(out, name)
    return out


def _check_disk_space(out, name):
    """A memmap `out` of a sparse file takes disk blocks as it is written: on a full disk the
    write would end the process with SIGBUS part way, so too little free space for the part
    of the file not yet on disk is an OSError (ENOSPC) before any work.

    Best effort: it counts the whole file's unallocated bytes (at most out's size), it sees
    only ``np.memmap`` objects, and filesystems that compress or copy on write may need more
    or less than it counts."""
    filename = getattr(out, "filename", None) if isinstance(out, np.memmap) else None
    if not filename or out.nbytes == 0:
        return
    try:
        st = os.stat(filename)
        fs = os.statvfs(filename)
    except OSError:
        return
    unallocated = max(0, st.st_size - st.st_blocks * 512)
    needed = min(out.nbytes, unallocated)
    free = (fs.f_bfree if os.geteuid() == 0 else fs.f_bavail) * fs.f_frsize
    if needed > free:
        raise OSError(
            errno.ENOSPC,
            "%s is a memmap of %s, of which %d bytes are not yet on disk, and the disk has %d bytes free: "
            "writing it would stop the process with SIGBUS. Free disk space, or allocate the file's blocks "
            "first (os.posix_fallocate)" % (name, filename, needed, free))


def _overlaps(a, b):
    if not np.may_share_memory(a, b):
        return False
    try:
        return np.shares_memory(a, b, max_work=1 << 20)
    except np.exceptions.TooHardError:
        return True


_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


# The process-wide cap on the threads of calls made with threads=None (None: every CPU this
# process may use); see set_thread_limit.
_thread_limit = None


def get_thread_limit():
    """The threads a call with ``threads=None`` uses: the limit set by :func:`set_thread_limit`
    (or by ``threadpoolctl.threadpool_limits``), else :func:`default_threads`."""
    return _thread_limit if _thread_limit is not None else default_threads()


def set_thread_limit(threads):
    """Sets the threads of every later call made with ``threads=None``, in every thread of
    the process (an explicit ``threads=`` still wins); None goes back to every CPU."""
    global _thread_limit
    _thread_limit = None if threads is None else threads_arg(threads)


def threads_arg(threads):
    if threads is None:
        return 0 if _thread_limit is None else _thread_limit
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or not 1 <= threads <= _INT32_MAX:
        raise ValueError("threads must be a positive integer (at most 2**31 - 1) or None, got %r" % (threads,))
    return int(threads)


def memory_limit_arg(memory_limit):
    if memory_limit is None:
        return 0
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, numbers.Integral) or memory_limit < 1:
        raise ValueError("memory_limit must be a positive number of bytes or None, got %r" % (memory_limit,))
    # Beyond what a signed 64-bit size can say, the limit cannot bind: saturate.
    return min(int(memory_limit), _INT64_MAX)
