"""The batch suite: quadform_many and weighted_gram_many against K single calls and K blocked numpy
passes, X read from the disk."""
import functools
import os
import sys
import tempfile
import time

import numpy as np

import gmmkernels

from . import baselines, datafiles
from .common import _data_file_path, _diff_text, format_bytes, format_seconds, max_rel_diff, total_ram
from .core import necessary_flops
from .measure import PeakMemory


BATCH_KERNELS = ("quadform_many", "weighted_gram_many")

def _each_call(X, k, from_disk, call):
    """call(j, X) for j < k, on X itself, or (``from_disk``, X a memmap of a whole file from
    its first row, as the suites open it) on a fresh memmap of its file after its pages were
    dropped from the page cache, as if X were larger than RAM; dropping and mapping (a few
    milliseconds) are timed with the calls."""
    for j in range(k):
        if not from_disk:
            call(j, X)
            continue
        datafiles.evict(X.filename)
        Xj = np.memmap(X.filename, dtype=X.dtype, mode="r", shape=X.shape, offset=X.offset)
        call(j, Xj)
        del Xj  # unmapped, so that the next evict() drops its pages

def quadform_k_calls(X, Qs, centers=None, *, from_disk=False):
    """K calls of :func:`gmmkernels.quadform`, one per matrix: shape (n_samples, n_matrices).

    Each call writes one column of the result and reads all of X, so X is read K times.
    """
    out = np.empty((X.shape[0], len(Qs)), dtype=X.dtype)

    def call(k, Xk):
        gmmkernels.quadform(Xk, Qs[k], center=None if centers is None else centers[k], out=out[:, k])

    _each_call(X, len(Qs), from_disk, call)
    return out

def weighted_gram_k_calls(X, R, centers=None, *, from_disk=False):
    """K calls of :func:`gmmkernels.weighted_gram` with ``w = R[:, k]``: shape
    (n_components, n_features, n_features); X is read K times.
    """
    d = X.shape[1]
    out = np.empty((R.shape[1], d, d), dtype=X.dtype)

    def call(k, Xk):
        gmmkernels.weighted_gram(Xk, R[:, k], center=None if centers is None else centers[k], out=out[k])

    _each_call(X, R.shape[1], from_disk, call)
    return out

#: kernel -> [(method name, function(X, operand, centers=...))], the batch call first (the reference).
#: "from disk": every single call reads X from disk, as when X is larger than RAM.
BATCH_METHODS = {
    "quadform_many": [
        ("gmmkernels batch", gmmkernels.quadform_many),
        ("gmmkernels K calls", quadform_k_calls),
        ("K calls from disk", functools.partial(quadform_k_calls, from_disk=True)),
        ("blocked numpy K passes", baselines.blocked_quadform_many),
    ],
    "weighted_gram_many": [
        ("gmmkernels batch", gmmkernels.weighted_gram_many),
        ("gmmkernels K calls", weighted_gram_k_calls),
        ("K calls from disk", functools.partial(weighted_gram_k_calls, from_disk=True)),
        ("blocked numpy K passes", baselines.blocked_weighted_gram_many),
    ],
}

BATCH_REFERENCE, K_CALLS, K_CALLS_FROM_DISK, K_PASSES = (method for method, _ in BATCH_METHODS["quadform_many"])

def batch_operands(n, d, k, dtype, *, centers=False, seed=2):
    """(Qs, R, centers) for K components.

    Qs of shape (k, d, d): SPD like :func:`datafiles.random_operands`' Q; R of shape (n, k):
    responsibilities, uniform random rows scaled to sum 1 (no zeros, as in EM before any
    component collapses); centers of shape (k, d) with entries of order 0.1, or None.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, d, d))
    Qs = (a @ a.transpose(0, 2, 1) / max(d, 1) + np.eye(d)).astype(dtype)
    R = rng.random((n, k))
    R /= R.sum(axis=1, keepdims=True)
    C = (0.1 * rng.standard_normal((k, d))).astype(dtype) if centers else None
    return Qs, R.astype(dtype), C

def rounding_tolerance(kernel, n, d, dtype):
    """10·√t·eps of `dtype`, t = the terms summed into one result entry (d² for a quadratic
    form, n for an entry of a Gram matrix): relative differences below it are rounding."""
    terms = d * d if kernel.startswith("quadform") else n
    return 10.0 * np.sqrt(max(terms, 1)) * float(np.finfo(dtype).eps)

def timed_cold(fn, path, shape, dtype, repeat):
    """Like :func:`timed` for ``fn(X)`` on a memmap of `path` that is opened afresh after the
    file's pages were dropped from the page cache, before each call."""
    times, peaks, result = [], [], None
    for _ in range(repeat):
        result = None
        datafiles.evict(path)
        X = np.memmap(path, dtype=dtype, mode="r", shape=shape)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            result = fn(X)
            times.append(time.perf_counter() - t0)
        peaks.append(mem.peak)
        # Pages mapped by this process survive evict(); unmap before the next call.
        del X
    times.sort()
    return times[len(times) // 2], max(peaks), result

def run_batch(args, kernels, dtype, rate):
    n, d = args.sizes["batch"]
    k = args.components
    repeat = args.repeats["batch"]
    shape = (n, d)
    directory = args.dir or tempfile.gettempdir()
    path = _data_file_path(directory, datafiles.nbytes(shape, dtype), dtype, "--n/--d")
    gemm_name = "dgemm" if dtype == np.float64 else "sgemm"
    records = []
    try:
        datafiles.make_data_file(path, shape, dtype, seed=0)  # the memmap it returns is unmapped at once
        datafiles.evict(path)
        size, cold = datafiles.warm(path)
        _, hot = datafiles.warm(path)
        Qs, R, centers = batch_operands(n, d, k, dtype, centers=args.centers)
        flops = k * necessary_flops(n, d)
        print("%s  batch of K=%d components  n=%s  d=%d  necessary work K*n*d^2 = %.1f GFLOP%s"
              % (dtype.name, k, f"{n:,}", d, flops / 1e9, ", with centers" if centers is not None else ""))
        print("X is a memmap of %s (%s); its pages are dropped from the page cache before every timed call"
              % (path, format_bytes(size)))
        print("reading X once: %.2f s cold (%.2f GB/s), %.2f s from the page cache (%.2f GB/s)"
              % (cold, size / cold / 1e9, hot, size / hot / 1e9))
        if size < total_ram() / 2:
            print("X fits in the page cache: K single calls or passes read the disk in their first pass only; "
                  "with X larger than RAM each of the K passes reads it again")
        print("limit: K*n*d^2 flops at the %s rate (%.1f GFLOP/s) = %s; timed calls per method: %d (median)"
              % (gemm_name, rate, format_seconds(flops / (rate * 1e9)), repeat))
        print(BATCH_HEADER % ("kernel", "method", "seconds", "GFLOP/s", "% " + gemm_name, "vs K calls",
                              "vs blocked", "peak extra", "max rel diff"))
        for kernel in kernels:
            operand = Qs if kernel == "quadform_many" else R
            tolerance = rounding_tolerance(kernel, n, d, dtype)
            reference, block = None, []
            for method, fn in BATCH_METHODS[kernel]:
                rows = min(n, 1000)  # warm-up: starts the threads; its pages are dropped again
                X = np.memmap(path, dtype=dtype, mode="r", shape=shape)
                fn(X[:rows], operand if kernel == "quadform_many" else operand[:rows], centers=centers)
                del X
                seconds, peak, result = timed_cold(lambda X: fn(X, operand, centers=centers),
                                                   path, shape, dtype, repeat)
                diff = None if reference is None else max_rel_diff(result, reference)
                if reference is None:
                    reference = result
                del result
                gflops = flops / seconds / 1e9
                block.append({"kernel": kernel, "method": method, "n": n, "d": d, "components": k,
                              "dtype": dtype.name, "centers": centers is not None,
                              "page_cache": "evicted before each call", "repeat": repeat,
                              "seconds": seconds, "peak_bytes": int(peak), "max_rel_diff": diff,
                              "rounding_tolerance": tolerance,
                              "matches": None if diff is None else bool(diff <= tolerance),
                              "gflops": gflops, "percent_of_gemm": 100.0 * gflops / rate, "gemm": gemm_name})
            by_method = {r["method"]: r["seconds"] for r in block}
            for record in block:
                record["speedup_vs_k_calls"] = by_method[K_CALLS] / record["seconds"]
                record["speedup_vs_k_calls_from_disk"] = by_method[K_CALLS_FROM_DISK] / record["seconds"]
                record["speedup_vs_blocked"] = by_method[K_PASSES] / record["seconds"]
                print_batch_row(record, first=record is block[0])
            worst = max(r["max_rel_diff"] for r in block[1:])
            print("  %s: batch vs K single calls %.2fx (X in the page cache after the first call), vs K calls "
                  "each reading X from disk (X larger than RAM) %.2fx, vs K blocked numpy passes %.2fx; results %s "
                  "(max rel diff %.1e, rounding tolerance %.1e = 10*sqrt(%s)*eps)"
                  % (kernel, block[0]["speedup_vs_k_calls"], block[0]["speedup_vs_k_calls_from_disk"],
                     block[0]["speedup_vs_blocked"],
                     "match to rounding" if worst <= tolerance else "DIFFER beyond rounding", worst, tolerance,
                     "d^2" if kernel == "quadform_many" else "n"))
            records += block
            del reference
            sys.stdout.flush()
    finally:
        os.remove(path)
    print()
    return records

BATCH_HEADER = "%-18s %-22s %9s %8s %8s %11s %11s %11s %13s"

def print_batch_row(r, first):
    print(BATCH_HEADER % (r["kernel"] if first else "", r["method"], format_seconds(r["seconds"], unit=False), "%.1f" % r["gflops"],
                          "%.0f%%" % r["percent_of_gemm"], "%.2fx" % r["speedup_vs_k_calls"],
                          "%.2fx" % r["speedup_vs_blocked"], format_bytes(r["peak_bytes"]), _diff_text(r)))
