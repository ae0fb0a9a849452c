"""What every suite shares: the GEMM ceiling timed beside each call, the machine's facts, formatting
and comparing results, verdicts."""
import os
import tempfile
import time

import numpy as np

from . import datafiles
from .measure import timed


GEMM_SIZE = 4000

#: Enough for the ceiling of a small run (a 4000 GEMM would take longer than the benchmark).
SMALL_GEMM_SIZE = 2000

def format_bytes(b):
    """Bytes for people: "512 B", "1.5 MiB", "6.7 GiB"."""
    b = float(b)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(b) < 1024 or unit == "TiB":
            return ("%.0f %s" if unit == "B" else "%.1f %s") % (b, unit)
        b /= 1024


def format_seconds(seconds, unit=True):
    """Seconds for tables: five decimals below 0.1 s, three below 100 s, none above."""
    text = "%.5f" % seconds if seconds < 0.1 else "%.3f" % seconds if seconds < 100 else "%.0f" % seconds
    return text + " s" if unit else text


def total_ram():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0

def gemm_rate(dtype, size=GEMM_SIZE, repeat=3):
    """GFLOP/s of ``np.dot`` on two size × size matrices of `dtype` (2·size³ flops)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    np.dot(a[:500, :500], b[:500, :500])  # start BLAS's threads outside the timing
    seconds, _, _ = timed(np.dot, a, b, repeat=repeat)
    return 2.0 * size**3 / seconds / 1e9

class PairedGemm:
    """A GEMM of numpy's own BLAS timed right before each timed call, so that the share of
    the limit compares two calls made a second apart (the machine's speed drifts by tens of
    percent over a run when other jobs share it)."""

    def __init__(self, dtype, size):
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((size, size)).astype(dtype)
        self.b = rng.standard_normal((size, size)).astype(dtype)
        self.c = np.empty((size, size), dtype=dtype)
        self.flops = 2.0 * size**3
        np.dot(self.a, self.b, out=self.c)  # fault c in and start BLAS's threads

    #: Seconds to wait after the GEMM: numpy's OpenBLAS threads keep spinning on the cores
    #: for a while after a call (a 0.2 s quadform call right after one ran 10-15% slower).
    settle = 0.25

    def rate(self):
        """GFLOP/s of one np.dot(a, b, out=c)."""
        t0 = time.perf_counter()
        np.dot(self.a, self.b, out=self.c)
        seconds = time.perf_counter() - t0
        time.sleep(self.settle)
        return self.flops / seconds / 1e9

def numpy_blas_name():
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return ("%s %s" % (blas.get("name", "?"), blas.get("version", ""))).strip()
    except Exception:  # show_config's format varies between numpy versions
        return "unknown"

def max_rel_diff(a, ref):
    """max |a − ref| / max |ref| (0 when both are zero)."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    diff = np.max(np.abs(a - ref)) if ref.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)

CORE_MEMORY_TARGET = 64 << 20

FLOAT32_SPEEDUP_TARGET = 1.8

def _verdict(met):
    return "met" if met else "NOT MET"

def _seconds(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0

def check_disk_space(directory, size, flags, spare=256 << 20):
    """Exits with a message naming `flags` unless `directory` has `size` bytes plus `spare` free."""
    free = datafiles.free_bytes(directory)
    if size + spare > free:
        raise SystemExit("not enough disk space in %s: need %s plus %s to spare, %s free; use --dir or a smaller %s"
                         % (directory, format_bytes(size), format_bytes(spare), format_bytes(free), flags))

def _data_file_path(directory, size, dtype, flags):
    """A new temporary file in `directory` for `size` bytes, after checking the free space."""
    check_disk_space(directory, size, flags)
    fd, path = tempfile.mkstemp(prefix="gmmkernels-bench-", suffix="." + np.dtype(dtype).name, dir=directory)
    os.close(fd)
    return path

PEAK_NOTE = ("peak extra = growth of this process's anonymous memory (RssAnon) during the call, result "
             "included; memory the allocator kept from earlier calls is reused without growth, so values "
             "of a few MiB are lower bounds")

def _diff_text(r):
    return "(reference)" if r["max_rel_diff"] is None else "%.1e" % r["max_rel_diff"]

def _load_average():
    try:
        return "%.1f" % os.getloadavg()[0]
    except OSError:
        return "unknown"

def _dask_version():
    import dask

    return dask.__version__
