"""Slow, obvious float64 references for the kernels and the error measures the tests use.

Every reference is computed in float64, also for float32 inputs, from the operands as the
kernels see them: Q, w and center rounded to X's dtype first (the API converts them).
"""
import ctypes
import ctypes.util
import gc
import os
import pickle
import resource
import select
import signal
import threading
import time
import traceback

import numpy as np
import pytest

from gmmkernels._measure import PeakMemory

# Relative tolerances of the contract: float32 and float64 results against float64 references.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
DTYPES = [np.float32, np.float64]


def rtol(dtype):
    return RTOL[np.dtype(dtype)]


def as_operand(a, dtype):
    """`a` as the kernel sees it: rounded to X's dtype, then widened to float64 for the reference."""
    if a is None:
        return None
    return np.asarray(a).astype(dtype).astype(np.float64)


def centred(X, center, dtype):
    X64 = np.array(X, dtype=np.float64)  # a copy in any layout; float32 → float64 is exact
    c = as_operand(center, dtype)
    return X64 if c is None else X64 - c


def quadform_reference(X, Q, center=None):
    """q_i = (x_i − c)ᵀ Q (x_i − c) in float64, shape (n,)."""
    Xc = centred(X, center, X.dtype)
    Q64 = as_operand(Q, X.dtype)
    return np.sum(Xc @ Q64 * Xc, axis=1)


def gram_reference(X, w=None, center=None):
    """(G, A): G = Σ w_i (x_i − c)(x_i − c)ᵀ and A = Σ |w_i| |x_i − c| |x_i − c|ᵀ, float64 (d, d).

    A is the natural scale of the rounding error of G: every term of G_jk is bounded by
    the matching term of A_jk, and A_jk ≤ sqrt(A_jj A_kk) (Cauchy–Schwarz).
    """
    Xc = centred(X, center, X.dtype)
    w64 = np.ones(Xc.shape[0]) if w is None else as_operand(w, X.dtype)
    G = Xc.T @ (w64[:, None] * Xc)
    absXc = np.abs(Xc)
    A = absXc.T @ (np.abs(w64)[:, None] * absXc)
    return G, A


def _ratio(err, scale):
    """err / scale elementwise, where a zero scale demands an exact result (inf otherwise)."""
    err, scale = np.broadcast_arrays(np.asarray(err, np.float64), np.asarray(scale, np.float64))
    out = np.zeros(err.shape)
    nz = scale > 0
    out[nz] = err[nz] / scale[nz]
    out[~nz & (err != 0)] = np.inf
    return out


def max_rel(x):
    return float(np.max(x)) if np.size(x) else 0.0


def quadform_error_spd(got, X, Q, center=None):
    """Largest elementwise relative error max_i |q_i − r_i| / r_i, for SPD Q (so r_i > 0)."""
    ref = quadform_reference(X, Q, center)
    assert got.shape == ref.shape
    return max_rel(_ratio(np.abs(got.astype(np.float64) - ref), np.abs(ref)))


def quadform_error_general(got, X, Q, center=None):
    """max_i |q_i − r_i| / (|x_i − c|² ‖Q‖₂) for any Q: q_i itself may be near zero."""
    ref = quadform_reference(X, Q, center)
    assert got.shape == ref.shape
    Xc = centred(X, center, X.dtype)
    norm_q = np.linalg.norm(as_operand(Q, X.dtype), 2) if Xc.shape[1] else 0.0
    scale = np.sum(Xc * Xc, axis=1) * norm_q
    return max_rel(_ratio(np.abs(got.astype(np.float64) - ref), scale))


def gram_error(got, X, w=None, center=None):
    """max_jk |G_jk − R_jk| / sqrt(A_jj A_kk), with A the |w|-weighted Gram matrix of |X − c|.

    For non-negative w, A = R and this is the error relative to sqrt(R_jj R_kk); with
    negative weights it is the scale a sum with cancellation can be held to.
    """
    R, A = gram_reference(X, w, center)
    assert got.shape == R.shape
    diag = np.sqrt(np.diag(A))
    return max_rel(_ratio(np.abs(got.astype(np.float64) - R), np.outer(diag, diag)))


def spd(rng, d, dtype=np.float64):
    """A symmetric positive definite (d, d) matrix, exactly symmetric, eigenvalues in ~[0.5, 5]."""
    A = rng.standard_normal((d, d))
    Q = A @ A.T / d + 0.5 * np.eye(d)
    Q = (Q + Q.T) / 2
    return Q.astype(dtype)


# --- layouts of X --------------------------------------------------------------------------
# Each layout stores the values of a (n, d) array in some memory layout and returns a view
# with exactly those values. Memory the view must not read holds NaN, so a kernel that
# reads outside the view gives NaN instead of a plausible number.

def _c(A, tmp):
    return np.ascontiguousarray(A)


def _f(A, tmp):
    return np.asfortranarray(A)


def _rows_reversed(A, tmp):
    return np.ascontiguousarray(A[::-1])[::-1]


def _cols_reversed(A, tmp):
    return np.ascontiguousarray(A[:, ::-1])[:, ::-1]


def _both_reversed(A, tmp):
    return np.ascontiguousarray(A[::-1, ::-1])[::-1, ::-1]


def _every_other_row(A, tmp):
    n, d = A.shape
    buf = np.full((2 * n, d), np.nan, dtype=A.dtype)
    buf[::2] = A
    return buf[::2]


def _every_other_row_fortran(A, tmp):
    n, d = A.shape
    buf = np.full((2 * n, d), np.nan, dtype=A.dtype, order="F")
    buf[1::2] = A
    return buf[1::2]


def _column_slice(A, tmp):
    n, d = A.shape
    buf = np.full((n, d + 5), np.nan, dtype=A.dtype)
    buf[:, 2 : 2 + d] = A
    return buf[:, 2 : 2 + d]


def _column_slice_fortran(A, tmp):
    n, d = A.shape
    buf = np.full((n + 3, d), np.nan, dtype=A.dtype, order="F")
    buf[1 : 1 + n] = A
    return buf[1 : 1 + n]


def _every_third_column(A, tmp):
    n, d = A.shape
    buf = np.full((n, 3 * d), np.nan, dtype=A.dtype)
    buf[:, ::3] = A
    return buf[:, ::3]


def _negative_every_other_row(A, tmp):
    n, d = A.shape
    buf = np.full((2 * n, d), np.nan, dtype=A.dtype)
    buf[::-2] = A
    return buf[::-2]


_memmap_count = [0]


def memmap_of(A, tmp, *, offset=0, order="C", mode="r"):
    """A file-backed np.memmap in directory `tmp` holding A's values, `offset` bytes into the file."""
    _memmap_count[0] += 1
    path = tmp / ("x%d.bin" % _memmap_count[0])
    with open(path, "wb") as f:
        f.write(b"\x7f" * offset)
        f.write(np.asarray(A).tobytes(order=order))
    return np.memmap(path, dtype=A.dtype, mode=mode, shape=A.shape, offset=offset, order=order)


def _memmap(A, tmp):
    return memmap_of(A, tmp)


def _memmap_fortran(A, tmp):
    return memmap_of(A, tmp, order="F")


def _memmap_offset3(A, tmp):
    return memmap_of(A, tmp, offset=3)


def _memmap_half_element_offset(A, tmp):
    # 4 bytes into a float64 file (2 into float32): aligned for a smaller type only.
    return memmap_of(A, tmp, offset=A.dtype.itemsize // 2)


def _memmap_offset3_reversed(A, tmp):
    return memmap_of(np.ascontiguousarray(A[::-1, ::-1]), tmp, offset=3)[::-1, ::-1]


def _memmap_offset3_fortran(A, tmp):
    return memmap_of(A, tmp, offset=3, order="F")


LAYOUTS = {
    "C": _c,
    "F": _f,
    "rows_reversed": _rows_reversed,
    "cols_reversed": _cols_reversed,
    "both_reversed": _both_reversed,
    "every_other_row": _every_other_row,
    "every_other_row_F": _every_other_row_fortran,
    "negative_every_other_row": _negative_every_other_row,
    "column_slice": _column_slice,
    "column_slice_F": _column_slice_fortran,
    "every_third_column": _every_third_column,
    "memmap": _memmap,
    "memmap_F": _memmap_fortran,
    "memmap_offset3": _memmap_offset3,
    "memmap_half_element_offset": _memmap_half_element_offset,
    "memmap_offset3_reversed": _memmap_offset3_reversed,
    "memmap_offset3_F": _memmap_offset3_fortran,
}
MEMMAP_LAYOUTS = [name for name in LAYOUTS if name.startswith("memmap")]
# Layouts that can hold an empty array (a file of zero bytes cannot be mapped).
IN_MEMORY_LAYOUTS = [name for name in LAYOUTS if not name.startswith("memmap")]


def in_layout(A, layout, tmp):
    X = LAYOUTS[layout](A, tmp)
    assert X.shape == A.shape and X.dtype == A.dtype
    assert np.array_equal(X, A, equal_nan=True)
    return X


def check_layout_properties(X, layout):
    """That a layout really is what its name says (so the tests exercise what they claim)."""
    if layout == "C":
        assert X.flags.c_contiguous
    if layout == "F" and X.shape[0] > 1 and X.shape[1] > 1:
        assert X.flags.f_contiguous and not X.flags.c_contiguous
    if "reversed" in layout or layout.startswith("negative"):
        assert min(X.strides) < 0
    if "offset3" in layout or "half_element" in layout:
        assert X.__array_interface__["data"][0] % X.dtype.itemsize != 0
        assert not X.flags.aligned
    if layout.startswith("memmap"):
        assert isinstance(X.base, np.memmap) or isinstance(X, np.memmap)


def raises(exc, call, *needles):
    """Runs call(), expects `exc`, and checks that every needle appears in the message."""
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for needle in needles:
        assert needle in message, "%r not in message %r" % (needle, message)
    return message


def blobs(n=2000, d=5, k=3, seed=0, dtype=np.float64, scale=6.0):
    """Well-separated Gaussian blobs with random full covariances."""
    rng = np.random.RandomState(seed)
    centers = rng.normal(scale=scale, size=(k, d))
    labels = rng.randint(k, size=n)
    shapes = rng.normal(size=(k, d, d)) * 0.3 + np.eye(d)
    X = centers[labels] + np.einsum("nij,nj->ni", shapes[labels], rng.normal(size=(n, d)))
    return X.astype(dtype), centers


def given_inits(covariance_type, centers, seed=1):
    """weights_init, means_init and precisions_init for both estimators."""
    rng = np.random.RandomState(seed)
    k, d = centers.shape
    precisions = {
        "full": np.array([np.eye(d) * 0.5 + 0.05] * k),
        "tied": np.eye(d) * 0.5 + 0.05,
        "diag": rng.uniform(0.3, 0.8, size=(k, d)),
        "spherical": rng.uniform(0.3, 0.8, size=k),
    }[covariance_type]
    weights = rng.uniform(1, 2, size=k)
    return dict(weights_init=weights / weights.sum(),
                means_init=centers + rng.normal(scale=1.0, size=centers.shape),
                precisions_init=precisions)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def measured(call):
    """(result, peak RssAnon growth in bytes) of call().

    Free heap memory is returned to the system first (malloc_trim), so that the call cannot
    reuse pages freed earlier in this process without them showing as growth.
    """
    gc.collect()
    if hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)
    with PeakMemory(interval=0.0005, max_interval=0.0005) as mem:
        result = call()
    return result, mem.peak


def run_in_threads(work, count, timeout=120):
    """Runs work(i) for i < count, each on its own thread, and requires them all to finish
    within `timeout` seconds and raise nothing (the first error is re-raised here)."""
    errors = []

    def guarded(i):
        try:
            work(i)
        except BaseException as e:  # reported in the test's thread
            errors.append((i, e))

    workers = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in workers), "concurrent calls did not finish (deadlock?)"
    assert not errors, errors


# --- a call in a forked child ---------------------------------------------------------------

# Limits of a forked child's address space: nothing a child does may take the machine's memory.
CHILD_ADDRESS_SPACE = 6 << 30
CHILD_TIMEOUT = 120.0


def run_forked(fn, *, timeout=CHILD_TIMEOUT, address_space=CHILD_ADDRESS_SPACE):
    """Runs fn() in a forked child; returns (outcome, stderr of the child). The outcome is
    fn's return value, or raises AssertionError for a failed check, a crash or a timeout."""
    r, w = os.pipe()
    er, ew = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(r)
            os.close(er)
            os.dup2(ew, 2)
            if address_space:
                resource.setrlimit(resource.RLIMIT_AS, (address_space, resource.RLIM_INFINITY))
            try:
                payload = ("ok", fn())
            except AssertionError as e:
                payload = ("fail", str(e))
            except BaseException as e:  # noqa: B902 - reported to the parent
                payload = ("error", "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
            os.write(w, pickle.dumps(payload))
        finally:
            os._exit(0)
    os.close(w)
    os.close(ew)
    chunks = {r: [], er: []}
    open_fds = [r, er]
    deadline = time.monotonic() + timeout
    timed_out = False
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(open_fds, [], [], left)
        for fd in ready:
            data = os.read(fd, 1 << 16)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.remove(fd)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(r)
    os.close(er)
    stderr = b"".join(chunks[er]).decode(errors="replace")[-3000:]
    if timed_out:
        raise AssertionError("the call did not finish within %.0f s\nstderr: %s" % (timeout, stderr))
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        raise AssertionError("the process died of %s\nstderr: %s" % (signal.Signals(sig).name, stderr))
    if os.WEXITSTATUS(status) != 0 or not chunks[r]:
        raise AssertionError("the child exited with status %d\nstderr: %s" % (os.WEXITSTATUS(status), stderr))
    kind, value = pickle.loads(b"".join(chunks[r]))
    if kind != "ok":
        raise AssertionError("%s\nstderr: %s" % (value, stderr))
    return value, stderr
