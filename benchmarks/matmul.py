"""The matmul and outer suites: gmmkernels.matmul against numpy's A @ B, outer against the write
bandwidth."""
from concurrent.futures import ThreadPoolExecutor
import os
import sys
import tempfile

import numpy as np

import gmmkernels

from . import baselines, datafiles
from .common import _data_file_path, _diff_text, _seconds, format_bytes, format_seconds, max_rel_diff
from .measure import timed


#: The tall-skinny case: A (TALL_ROWS_PER_ROW·n, TALL_COLUMNS) @ B (TALL_COLUMNS, TALL_COLUMNS).
TALL_ROWS_PER_ROW = 50

TALL_COLUMNS = 64

#: gmmkernels.matmul may take at most this much more time than numpy's A @ B.
MATMUL_TARGET = 1.10

#: [(method name, function(A, B, out))], gmmkernels first (the reference).
MATMUL_METHODS = [
    ("gmmkernels", lambda A, B, out: gmmkernels.matmul(A, B, out=out)),
    ("numpy A @ B", lambda A, B, out: baselines.numpy_matmul(A, B)),
]

#: The same with a memmap out: numpy's A @ B makes its result in RAM, np.matmul(out=) does not.
MATMUL_MEMMAP_METHODS = [
    ("gmmkernels out=memmap", lambda A, B, out: gmmkernels.matmul(A, B, out=out)),
    ("numpy A @ B (RAM)", lambda A, B, out: baselines.numpy_matmul(A, B)),
    ("numpy out=memmap", lambda A, B, out: baselines.numpy_matmul(A, B, out)),
]

def run_matmul(args, dtype, rate):
    n, d = args.sizes["matmul"]
    repeat = args.repeats["matmul"]
    gemm_name = "dgemm" if dtype == np.float64 else "sgemm"
    rng = np.random.default_rng(3)
    tall = (TALL_ROWS_PER_ROW * n, TALL_COLUMNS, TALL_COLUMNS)
    print("%s  matmul: gmmkernels.matmul(A, B) vs numpy's A @ B (numpy's own BLAS; gmmkernels: the system "
          "OpenBLAS); GFLOP/s = 2*n*k*m / seconds (median of %d); target: at most %.0f%% slower than numpy"
          % (dtype.name, repeat, 100 * (MATMUL_TARGET - 1)))
    print(MATMUL_HEADER % ("case", "method", "seconds", "GFLOP/s", "% " + gemm_name, "vs numpy",
                           "peak extra", "max rel diff"))
    records = []
    for rows, inner, cols in ((n, d, d), tall):
        A = rng.standard_normal((rows, inner), dtype=dtype)
        B = rng.standard_normal((inner, cols), dtype=dtype)
        case = "%s x %s @ %s x %s" % (f"{rows:,}", f"{inner:,}", f"{inner:,}", f"{cols:,}")
        records += run_matmul_case(case, MATMUL_METHODS, A, B, None, repeat, rate, gemm_name, "in RAM")
        del A, B

    rows, inner, cols = tall
    directory = args.dir or tempfile.gettempdir()
    path_a = _data_file_path(directory, 2 * datafiles.nbytes((rows, inner), dtype), dtype, "--n")
    fd, path_out = tempfile.mkstemp(prefix="gmmkernels-bench-out-", suffix="." + dtype.name, dir=directory)
    os.close(fd)
    try:
        A = datafiles.make_data_file(path_a, (rows, inner), dtype, seed=0)
        datafiles.warm(path_a)
        datafiles.map_pages(A)
        out = np.memmap(path_out, dtype=dtype, mode="w+", shape=(rows, cols))
        B = rng.standard_normal((inner, cols), dtype=dtype)
        case = "memmap %s x %s @ %s x %s" % (f"{rows:,}", f"{inner:,}", f"{inner:,}", f"{cols:,}")
        gmmkernels.matmul(A, B, out=out)  # the out file's pages exist before the timed calls
        records += run_matmul_case(case, MATMUL_MEMMAP_METHODS, A, B, out, repeat, rate, gemm_name,
                                   "memmap A (warm in page cache), memmap out")
        del A, out
    finally:
        os.remove(path_a)
        os.remove(path_out)
    print("peak extra counts anonymous memory: with a memmap out, written pages are page cache that the "
          "kernel writes back to disk; A @ B needs its whole result in RAM")
    print()
    return records

def run_matmul_case(case, methods, A, B, out, repeat, rate, gemm_name, where):
    """Times `methods` on one (A, B, out); prints and returns their records."""
    rows, inner = A.shape
    cols = B.shape[1]
    flops = 2.0 * rows * inner * cols
    # Compared on at most 1000 rows spread over the result: out may be a memmap that a later
    # method overwrites.
    sample = np.unique(np.linspace(0, rows - 1, min(rows, 1000)).astype(np.int64))
    block, reference = [], None
    for method, fn in methods:
        fn(A[: min(rows, 1000)], B, None)  # warm-up: starts the BLAS and kernel threads
        seconds, peak, result = timed(fn, A, B, out, repeat=repeat)
        rows_seen = np.array(result[sample])
        del result
        diff = None if reference is None else max_rel_diff(rows_seen, reference)
        if reference is None:
            reference = rows_seen
        gflops = flops / seconds / 1e9
        block.append({"kernel": "matmul", "method": method, "case": case, "where": where,
                      "shape_a": [rows, inner], "shape_b": [inner, cols], "dtype": A.dtype.name,
                      "repeat": repeat, "seconds": seconds, "peak_bytes": int(peak), "max_rel_diff": diff,
                      "gflops": gflops, "percent_of_gemm": 100.0 * gflops / rate, "gemm": gemm_name,
                      "result_bytes": rows * cols * A.itemsize})
    numpy_seconds = next(r["seconds"] for r in block if r["method"].startswith("numpy A @ B"))
    for record in block:
        record["speedup_vs_numpy"] = numpy_seconds / record["seconds"]
        print_matmul_row(record, first=record is block[0])
    ratio = block[0]["seconds"] / numpy_seconds
    block[0]["time_ratio_vs_numpy"] = ratio
    block[0]["within_target"] = bool(ratio <= MATMUL_TARGET)
    verdict = ("within %.0f%%" % (100 * (MATMUL_TARGET - 1)) if ratio <= MATMUL_TARGET
               else "OFF TARGET (at most %.2f)" % MATMUL_TARGET)
    print("  %s (%s): gmmkernels time / numpy time = %.3f, %s; result %s, gmmkernels peak %s"
          % (case, where, ratio, verdict, format_bytes(rows * cols * A.itemsize), format_bytes(block[0]["peak_bytes"])))
    sys.stdout.flush()
    return block

def parallel_fill(out, value, pool, parts):
    """``out.fill(value)`` by `parts` row blocks on the threads of `pool` (``fill`` releases
    the GIL), so that the write bandwidth of several cores is measured."""
    blocks = np.array_split(np.arange(out.shape[0]), parts)
    list(pool.map(lambda b: out[b[0]:b[-1] + 1].fill(value), [b for b in blocks if len(b)]))

def run_outer(args, dtype):
    n, m = args.sizes["outer"]
    repeat = args.repeats["outer"]
    rng = np.random.default_rng(4)
    y = rng.standard_normal(n, dtype=dtype)
    x = rng.standard_normal(m, dtype=dtype)
    size = datafiles.nbytes((n, m), dtype)
    print("%s  outer: y (%s,) x (%s,) -> out %s x %s (%s); GB/s = bytes of out / seconds (median of %d)"
          % (dtype.name, f"{n:,}", f"{m:,}", f"{n:,}", f"{m:,}", format_bytes(size), repeat))
    records = []
    out = np.empty((n, m), dtype=dtype)
    first_touch = _seconds(out.fill, 0.0)
    records += run_outer_case("in RAM", y, x, out, repeat, first_touch)
    del out
    if args.outer_memmap:
        directory = args.dir or tempfile.gettempdir()
        path = _data_file_path(directory, size, dtype, "--n/--d")
        try:
            out = np.memmap(path, dtype=dtype, mode="w+", shape=(n, m))
            first_touch = _seconds(out.fill, 0.0)
            records += run_outer_case("memmap %s" % path, y, x, out, repeat, first_touch)
            del out
        finally:
            os.remove(path)
    print()
    return records

def run_outer_case(where, y, x, out, repeat, first_touch):
    """Times the fills and the two outer products on one `out`; prints and returns records."""
    threads = gmmkernels.default_threads()
    size = out.nbytes
    sample = np.unique(np.linspace(0, out.shape[0] - 1, min(out.shape[0], 1000)).astype(np.int64))
    exact = y[sample, None] * x[None, :]  # one rounding per element: every method should match exactly
    with ThreadPoolExecutor(threads) as pool:
        methods = [
            ("out.fill, 1 thread", lambda: out.fill(1.0)),
            ("out.fill, %d threads" % threads, lambda: parallel_fill(out, 1.0, pool, threads)),
            ("gmmkernels.outer", lambda: gmmkernels.outer(y, x, out=out)),
            ("np.multiply", lambda: baselines.numpy_outer(y, x, out)),
        ]
        block = []
        for method, fn in methods:
            seconds, peak, _ = timed(fn, repeat=repeat)
            diff = None if method.startswith("out.fill") else max_rel_diff(out[sample], exact)
            block.append({"kernel": "outer", "method": method, "where": where, "n": out.shape[0],
                          "m": out.shape[1], "dtype": out.dtype.name, "repeat": repeat, "seconds": seconds,
                          "peak_bytes": int(peak), "max_rel_diff": diff, "bytes_written": size,
                          "gb_per_s": size / seconds / 1e9, "first_touch_seconds": first_touch})
    bandwidth = max(r["gb_per_s"] for r in block if r["method"].startswith("out.fill"))
    numpy_seconds = next(r["seconds"] for r in block if r["method"] == "np.multiply")
    print("out %s; first touch of its pages (out.fill(0), not timed below): %.2f s" % (where, first_touch))
    print(OUTER_HEADER % ("method", "seconds", "GB/s", "% write bw", "vs numpy", "peak extra", "max rel diff"))
    for record in block:
        record["write_bandwidth_gb_per_s"] = bandwidth
        record["percent_of_write_bandwidth"] = 100.0 * record["gb_per_s"] / bandwidth
        if record["max_rel_diff"] is not None:
            record["speedup_vs_numpy"] = numpy_seconds / record["seconds"]
        print_outer_row(record)
    ours = next(r for r in block if r["method"] == "gmmkernels.outer")
    print("  write bandwidth (the faster fill): %.1f GB/s; gmmkernels.outer writes at %.0f%% of it, "
          "%.2fx the speed of np.multiply; max rel diff vs y_i*x_j on %d sampled rows"
          % (bandwidth, ours["percent_of_write_bandwidth"], ours["speedup_vs_numpy"], len(sample)))
    sys.stdout.flush()
    return block

MATMUL_HEADER = "%-32s %-22s %9s %8s %8s %9s %11s %13s"

OUTER_HEADER = "%-22s %9s %8s %11s %9s %11s %13s"

def print_matmul_row(r, first):
    print(MATMUL_HEADER % (r["case"] if first else "", r["method"], format_seconds(r["seconds"], unit=False), "%.1f" % r["gflops"],
                           "%.0f%%" % r["percent_of_gemm"], "%.2fx" % r["speedup_vs_numpy"],
                           format_bytes(r["peak_bytes"]), _diff_text(r)))

def print_outer_row(r):
    speedup = "%.2fx" % r["speedup_vs_numpy"] if "speedup_vs_numpy" in r else "-"
    diff = "-" if r["method"].startswith("out.fill") else "%.1e" % r["max_rel_diff"]
    print(OUTER_HEADER % (r["method"], format_seconds(r["seconds"], unit=False), "%.2f" % r["gb_per_s"],
                          "%.0f%%" % r["percent_of_write_bandwidth"], speedup, format_bytes(r["peak_bytes"]), diff))
