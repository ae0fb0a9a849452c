"""Benchmark: gmmkernels against the numpy and dask code it replaces, judged against GEMM.

    python -m gmmkernels.bench [--n 200000] [--d 900] [--dtype both] [--repeat 3]
                               [--kernels quadform weighted_gram] [--zero-fraction 0.3]
                               [--scaling] [--json bench-results/bench.json] [--plot FILE.png]
    python -m gmmkernels.bench --kernels batch [--components 16] [--centers]
    python -m gmmkernels.bench --kernels matmul outer [--outer-memmap]
    python -m gmmkernels.bench --kernels gmm [--components 16]
    python -m gmmkernels.bench --kernels wide [--d 2500] [--n 64000]
    python -m gmmkernels.bench --kernels all

``--kernels`` takes kernel names and the groups ``core`` (quadform, weighted_gram: the
default), ``batch`` (quadform_many, weighted_gram_many) and ``all``. ``--n``/``--d`` set the
size of every suite run; without them each suite has its own default (see SUITE_SIZES).

What is measured, in one run:

- the GEMM rate of the BLAS in this process (numpy's own OpenBLAS: ``np.dot`` of two
  4000 × 4000 matrices, 2·m³ flops), in float64 (dgemm) and float32 (sgemm). That is the
  ceiling; gmmkernels links the system OpenBLAS, which is not reachable from Python
  without a second binding, so the two BLAS builds may differ somewhat;
- for each kernel and method: the median wall time of ``--repeat`` calls, the effective
  rate, the share of the limit (each call is preceded by a timed GEMM of the same precision,
  and the share is the median over the calls of the limit at that GEMM's rate over the
  call's time: the machine's speed drifts within a run when it is shared), the speedup over
  the hand-blocked numpy code, the peak extra anonymous memory (heap and anonymous mappings,
  including the result; pages of the memmap'd file do not count), and the largest
  difference from gmmkernels' result.

Necessary flops, which the effective rate counts: x_iᵀ Q x_i needs one triangle of the
symmetric part of Q (d²/2 multiply-adds per row), so quadform needs n·d² flops; Σ w_i x_i x_iᵀ
is a symmetric rank-k update (SYRK: d²/2 multiply-adds per row) over the rows of nonzero
weight, so weighted_gram needs nnz(w)·d². Plain GEMM does twice that, so a GEMM-based
method can reach at most 50% of the limit by this count. The "limit" is the time of the
necessary flops at the GEMM rate; after each kernel a verdict line compares the gmmkernels
call with the targets.

X is a memmap of a file on disk (in ``--dir``), read once before the timed calls so that
it sits in the page cache: compute is measured, not the disk.

The other suites (each opt-in, float64 unless ``--dtype`` is given):

- batch (``quadform_many``, ``weighted_gram_many``), K = ``--components`` matrices or
  columns of responsibilities on X of n × d (default 200000 × 300, 480 MB of float64): the
  one-pass batch call against K calls of the single kernel and against K blocked numpy
  passes (``baselines.blocked_*_many``). X is a memmap whose pages are dropped from the page
  cache before every timed call (``_datafiles.evict``), so each call starts from the disk;
  when X fits in RAM, K single calls read the disk in their first call only, so the K
  calls are also timed as when X is larger than RAM ("K calls from disk": the pages are
  dropped before each of them). Necessary flops: K·n·d². One timed call per method unless
  ``--repeat`` says otherwise.
- matmul: ``gmmkernels.matmul(A, B)`` against numpy's ``A @ B`` in RAM for A (n, d) @ B (d, d)
  (default 20000 × 2000 @ 2000 × 2000) and a tall-skinny A (50·n, 64) @ B (64, 64), flops
  2·n·k·m; then a memmap A written into a memmap out, where ``A @ B`` needs the whole
  result in RAM and gmmkernels needs only its workspace.
- outer: ``gmmkernels.outer(y, x, out=out)`` against ``np.multiply(y[:, None], x[None, :],
  out=out)`` for y (n,), x (d,) (default out 20000 × 20000, 3.2 GB of float64, in RAM;
  ``--outer-memmap`` adds a memmap out on disk), in GB written per second, with the write
  bandwidth of this machine measured on the same out (``out.fill``, by one thread and by
  as many threads as gmmkernels uses).
- gmm: ``gmmkernels.GaussianMixture`` against ``sklearn.mixture.GaussianMixture`` on X (n, d)
  in RAM (default 200000 × 64), K = ``--components`` full covariances from the same fixed
  initial parameters (a seeded draw), ``max_iter=5``, ``tol=0``: seconds per EM iteration
  (the gaps between iteration ends, so validation and initialisation are not counted), the
  fit's seconds and its peak extra memory; then the same fit of gmmkernels on a memmap of
  X saved as ``.npy`` and through dask.distributed (a LocalCluster of 2 worker processes ×
  1 thread, X from ``gmmkernels.dask.from_memmap`` of that file), these two alternating
  (at least 3 pairs; their ratio is the median of the pairs'). Targets: ≥ 8× faster per
  iteration than scikit-learn with ≤ 1/10 of its peak extra memory; the dask fit ≤ 1.3×
  the in-process time per iteration. Necessary flops per iteration: 2·n·K·d².
"""
import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import gmmkernels

from . import _datafiles, baselines
from ._datafiles import format_bytes
from ._measure import PeakMemory, timed

KERNELS = ("quadform", "weighted_gram")
BATCH_KERNELS = ("quadform_many", "weighted_gram_many")
ALL_KERNELS = KERNELS + BATCH_KERNELS + ("matmul", "outer", "gmm", "wide", "precisions")
#: Suites that only run when named: they write a file larger than this machine's RAM.
OPT_IN_KERNELS = ("out-of-core",)
#: The workload the project started from: hundreds of precision matrices against one memmap'd X.
PRECISIONS_SUITE = "precisions"
#: Names --kernels accepts for several kernels at once.
KERNEL_GROUPS = {"core": KERNELS, "batch": BATCH_KERNELS, "all": ALL_KERNELS}
#: Suite -> (n, d) when --n/--d are not given. matmul: A (n, d) @ B (d, d); outer: out (n, d).
SUITE_SIZES = {"core": (200_000, 900), "batch": (200_000, 300), "matmul": (20_000, 2_000),
               "outer": (20_000, 20_000), "gmm": (200_000, 64)}
#: Timed calls per method when --repeat is not given. A batch call starts from a cold page
#: cache and K blocked numpy passes take minutes at the default size, so once is the default.
SUITE_REPEATS = {"core": 3, "batch": 1, "matmul": 3, "outer": 3, "gmm": 1, "wide": 3}
#: The wide suite's widths and rows: n·d² = 4e11 flops per matrix, 4-5 s per call at the DGEMM rate.
WIDE_SIZES = {2500: 64_000, 10_000: 4_000}
WIDE_COMPONENTS = 3
WIDE_LIMIT_TARGET = 0.85
WIDE_GMM_TARGET = 1.2
SCALING_N = (50_000, 100_000, 200_000, 400_000)
GEMM_SIZE = 4000
#: Enough for the ceiling of a small run (a 4000 GEMM would take longer than the benchmark).
SMALL_GEMM_SIZE = 2000
#: The naive expressions are skipped when their temporaries would exceed this share of RAM.
NAIVE_RAM_SHARE = 1 / 3


# ---------------------------------------------------------------------------------------
# The methods compared
# ---------------------------------------------------------------------------------------


#: kernel -> [(method name, function(X, operand))], gmmkernels first (the reference).
METHODS = {
    "quadform": [
        ("gmmkernels", gmmkernels.quadform),
        ("blocked numpy", baselines.blocked_quadform),
        ("naive numpy", baselines.naive_quadform),
        ("dask.array", baselines.dask_quadform),
    ],
    "weighted_gram": [
        ("gmmkernels", gmmkernels.weighted_gram),
        ("blocked numpy", baselines.blocked_weighted_gram),
        ("naive numpy", baselines.naive_weighted_gram),
        ("dask.array", baselines.dask_weighted_gram),
    ],
}
REFERENCE, BLOCKED = "gmmkernels", "blocked numpy"


def necessary_flops(n, d):
    """n·d²: the flops both kernels need at best (one triangle per row, or SYRK)."""
    return float(n) * d * d


def kernel_flops(kernel, n, d, nonzero):
    """The flops `kernel` needs at best on n rows: n·d², or for weighted_gram, rows of
    zero weight left out, nnz(w)·d² (`nonzero` = nnz(w))."""
    return necessary_flops(nonzero if kernel == "weighted_gram" else n, d)


def naive_temporary_bytes(kernel, n, d, itemsize):
    """Bytes of the X-sized temporaries of the naive expression."""
    copies = 2 if kernel == "quadform" else 1  # X·Q and (X·Q)*X; or X.T * w
    return copies * n * d * itemsize


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


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------


def run_one(kernel, method, fn, X, operand, *, repeat, reference, dask_ok, ram, paired):
    n, d = X.shape
    record = {"kernel": kernel, "method": method, "n": n, "d": d, "dtype": X.dtype.name}
    if method == "dask.array" and not dask_ok:
        record["skipped"] = "dask is not installed"
        return record, None
    if method == "naive numpy":
        need = naive_temporary_bytes(kernel, n, d, X.dtype.itemsize)
        if ram and need > NAIVE_RAM_SHARE * ram:
            record["skipped"] = "needs %s of temporaries, more than 1/3 of RAM" % format_bytes(need)
            return record, None
    fn(X[: min(n, 1000)], operand if kernel == "quadform" else operand[: min(n, 1000)])  # warm-up
    rates, times, peaks = [], [], []
    for _ in range(repeat):
        rates.append(paired.rate())  # a GEMM (PairedGemm) right before each timed call
        t, peak, result = timed(fn, X, operand, repeat=1)
        times.append(t)
        peaks.append(peak)
    record.update(paired_gemm_gflops=rates, paired_seconds=times)
    record.update(seconds=float(np.median(times)), peak_bytes=int(max(peaks)),
                  max_rel_diff=None if reference is None else max_rel_diff(result, reference))
    return record, result


def run(args):
    core = [k for k in args.kernels if k in KERNELS]
    batch = [k for k in args.kernels if k in BATCH_KERNELS]
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    ns = sorted(set([args.n] + (list(SCALING_N) if args.scaling else [])))
    d = args.d
    ram = total_ram()
    dask_ok = baselines.have_dask()
    gemm_dtypes = set(dtypes if core else [])
    if batch or "matmul" in args.kernels or "gmm" in args.kernels:
        gemm_dtypes.update(args.suite_dtypes)
    if "wide" in args.kernels:
        gemm_dtypes.update(("float64", "float32") if args.dtype == "both" else (args.dtype,))
    if "out-of-core" in args.kernels or "precisions" in args.kernels:
        gemm_dtypes.add("float64" if args.dtype == "both" else args.dtype)

    print("gmmkernels %s (%s), %d threads, default memory_limit 64 MiB"
          % (gmmkernels.library_version, gmmkernels.library_path, gmmkernels.default_threads()))
    print("machine: %s, %d CPUs, %s RAM, load average %s at start; numpy %s; dask %s"
          % (platform.machine(), os.cpu_count() or 0, format_bytes(ram), _load_average(), np.__version__,
             _dask_version() if dask_ok else "not installed"))
    if gemm_dtypes:
        print("GEMM ceiling measured with numpy's own BLAS (%s), np.dot of %d x %d matrices; "
              "gmmkernels calls the system OpenBLAS" % (numpy_blas_name(), args.gemm_size, args.gemm_size))
    rates = {}
    for dtype, name in (("float64", "dgemm"), ("float32", "sgemm")):
        if dtype not in gemm_dtypes:
            continue
        rates[dtype] = gemm_rate(dtype, args.gemm_size, max(1, args.repeat))
        print("  %s: %.1f GFLOP/s" % (name, rates[dtype]))
    if core:
        print("necessary flops = n*d^2 for quadform (one triangle of Q), nnz(w)*d^2 for weighted_gram (SYRK "
              "on the rows of nonzero weight); GEMM-based code does twice that")
        print("limit = necessary flops at the GEMM rate of X's precision; GFLOP/s = necessary flops / seconds "
              "(median of %d); %% limit = median over the calls of (limit at the rate of a GEMM timed just "
              "before the call) / (its time); vs blocked = speedup over the hand-blocked numpy code" % args.repeat)
    print(PEAK_NOTE)
    print()

    records = []
    for dtype in dtypes if core else []:
        records += run_dtype(args, core, np.dtype(dtype), ns, d, rates[dtype], ram, dask_ok)

    if "quadform" in core:
        print_float32_verdict(records, args.n)
    if core and len(ns) > 1:
        print_scaling(records, dtypes, core)
    for dtype in args.suite_dtypes if batch else []:
        records += run_batch(args, batch, np.dtype(dtype), rates[dtype])
    for dtype in args.suite_dtypes if "matmul" in args.kernels else []:
        records += run_matmul(args, np.dtype(dtype), rates[dtype])
    for dtype in args.suite_dtypes if "outer" in args.kernels else []:
        records += run_outer(args, np.dtype(dtype))
    for dtype in args.suite_dtypes if "gmm" in args.kernels else []:
        records += run_gmm(args, np.dtype(dtype), rates[dtype])
    if "wide" in args.kernels:
        records += run_wide(args)
    if "precisions" in args.kernels:
        records += run_precisions(args)
    if "out-of-core" in args.kernels:
        records += run_out_of_core(args)
    print("load average at the end: %s (other processes on the machine slow every method)" % _load_average())

    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "machine": {"cpus": os.cpu_count(), "ram_bytes": ram, "platform": platform.platform(),
                    "python": sys.version.split()[0], "numpy": np.__version__,
                    "numpy_blas": numpy_blas_name(), "load_average_at_end": _load_average()},
        "gmmkernels": {"version": gmmkernels.library_version, "library": str(gmmkernels.library_path),
                       "threads": gmmkernels.default_threads()},
        "gemm": {"matrix_size": args.gemm_size, "blas": "numpy's own (%s)" % numpy_blas_name(),
                 "dgemm_gflops": rates.get("float64"), "sgemm_gflops": rates.get("float32")},
        "flops_definition": "necessary flops = n*d^2 for quadform (one triangle of Q), nnz(w)*d^2 for "
                            "weighted_gram (SYRK on rows of nonzero weight); gflops = necessary flops / "
                            "seconds / 1e9; percent_of_gemm = share of the limit: median over the calls of "
                            "(necessary flops at the rate of the GEMM of X's precision timed just before "
                            "the call) / (the call's seconds), as paired_gemm_gflops and paired_seconds",
        "results": records,
    }
    definitions = {suite: text for suite, text in SUITE_DEFINITIONS.items()
                   if any(r["kernel"] in SUITE_KERNELS[suite] for r in records)}
    if definitions:
        result["suite_definitions"] = definitions
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print("wrote %s" % args.json)
    if args.plot and core:
        plot([r for r in records if r["kernel"] in core], args.plot, core)
        print("wrote %s" % args.plot)
    return result


#: Targets of the core kernels at the default size (n=200000, d=900, median of 3); the
#: speedups over the blocked code are float64's.
LIMIT_TARGET = 0.90
BLOCKED_SPEEDUP_TARGETS = {"quadform": 2.4, "weighted_gram": 2.8}
CORE_MEMORY_TARGET = 64 << 20
FLOAT32_SPEEDUP_TARGET = 1.8


def paired_share(record, flops):
    """The share of the limit: the median over the timed calls of (`flops` at the rate of
    the GEMM timed just before the call) / (the call's time)."""
    return float(np.median([flops / (g * 1e9) / t for g, t in
                            zip(record["paired_gemm_gflops"], record["paired_seconds"])]))


def print_core_verdict(record, blocked, flops, result_bytes):
    """One line: the gmmkernels record against the targets (share of the limit, speedup over
    the blocked code, peak memory beside the output); recorded in `record`."""
    kernel = record["kernel"]
    if "seconds" not in record:
        return
    share = record["percent_of_gemm"] / 100.0
    limit_seconds = flops / (float(np.median(record["paired_gemm_gflops"])) * 1e9)
    extra = record["peak_bytes"] - result_bytes
    target = BLOCKED_SPEEDUP_TARGETS[kernel]
    text = ["%.1f%% of the limit (GEMM beside it: %s GFLOP/s; target >= %.0f%%: %s)"
            % (100 * share, "/".join("%.0f" % g for g in record["paired_gemm_gflops"]),
               100 * LIMIT_TARGET, _verdict(share >= LIMIT_TARGET))]
    if blocked is not None and record["dtype"] == "float64":
        speedup = blocked / record["seconds"]
        record["within_speedup_target"] = bool(speedup >= target)
        text.append("%.2fx the blocked numpy (target >= %.1fx: %s; at the limit it would be %.2fx)"
                    % (speedup, target, _verdict(speedup >= target), blocked / limit_seconds))
    text.append("peak extra %s beside the output (target <= %s: %s)"
                % (format_bytes(max(extra, 0)), format_bytes(CORE_MEMORY_TARGET),
                   _verdict(extra <= CORE_MEMORY_TARGET)))
    record.update(percent_of_limit_target=100 * LIMIT_TARGET, within_limit_target=bool(share >= LIMIT_TARGET),
                  within_memory_target=bool(extra <= CORE_MEMORY_TARGET))
    print("  %s %s: %s" % (record["dtype"], kernel, "; ".join(text)))


def print_float32_verdict(records, n):
    """float32 against float64 quadform at size n, when both ran."""
    times = {r["dtype"]: r["seconds"] for r in records
             if r["kernel"] == "quadform" and r["method"] == REFERENCE and r["n"] == n and "seconds" in r}
    if "float32" in times and "float64" in times:
        speedup = times["float64"] / times["float32"]
        print("float32 quadform %.3f s vs float64 %.3f s: %.2fx faster (target >= %.1fx: %s)"
              % (times["float32"], times["float64"], speedup, FLOAT32_SPEEDUP_TARGET,
                 _verdict(speedup >= FLOAT32_SPEEDUP_TARGET)))
        print()


def run_dtype(args, kernels, dtype, ns, d, rate, ram, dask_ok):
    n_max = max(ns)
    size = _datafiles.nbytes((n_max, d), dtype)
    directory = args.dir or tempfile.gettempdir()
    free = _datafiles.free_bytes(directory)
    if size + (256 << 20) > free:
        raise SystemExit("not enough disk space in %s for X: need %s, %s free; use --dir or a smaller --n"
                         % (directory, format_bytes(size), format_bytes(free)))
    fd, path = tempfile.mkstemp(prefix="gmmkernels-bench-", suffix="." + dtype.name, dir=directory)
    os.close(fd)
    records = []
    try:
        X_all = _datafiles.make_data_file(path, (n_max, d), dtype, seed=0)
        read, seconds = _datafiles.warm(path)
        seconds += _datafiles.map_pages(X_all)
        print("%s: X is a memmap of %s (%s), warm in page cache and mapped (read once: %.2f s)"
              % (dtype.name, path, format_bytes(read), seconds))
        Q, w_all = _datafiles.random_operands(d, n_max, dtype, zero_fraction=args.zero_fraction)
        gemm_name = "dgemm" if dtype == np.float64 else "sgemm"
        paired = PairedGemm(dtype, args.gemm_size)
        for n in ns:
            X, w = X_all[:n], w_all[:n]
            print()
            print("%s  n=%s  d=%d" % (dtype.name, f"{n:,}", d))
            nonzero = int(np.count_nonzero(w))
            necessary = {kernel: kernel_flops(kernel, n, d, nonzero) for kernel in kernels}
            for kernel, flops in necessary.items():
                work = ("n*d^2" if kernel == "quadform" else
                        "nnz(w)*d^2, %s of %s weights nonzero" % (f"{nonzero:,}", f"{n:,}"))
                print("limit %-14s %s = %.1f GFLOP at the %s rate of the run's start (%.1f GFLOP/s) = %s"
                      % (kernel + ":", work, flops / 1e9, gemm_name, rate, fmt_seconds(flops / (rate * 1e9))))
            print(TABLE_HEADER % ("kernel", "method", "seconds", "GFLOP/s", "% limit",
                                  "vs blocked", "peak extra", "max rel diff"))
            for kernel, flops in necessary.items():
                operand = Q if kernel == "quadform" else w
                reference, block = None, []
                for method, fn in METHODS[kernel]:
                    record, result = run_one(kernel, method, fn, X, operand, repeat=args.repeat,
                                             reference=reference, dask_ok=dask_ok, ram=ram, paired=paired)
                    if method == REFERENCE:
                        reference = result
                    del result
                    if "seconds" in record:
                        record["gflops"] = flops / record["seconds"] / 1e9
                        record["percent_of_gemm"] = 100.0 * paired_share(record, flops)
                        record["gemm"] = gemm_name
                    block.append(record)
                blocked = next((r["seconds"] for r in block if r["method"] == BLOCKED and "seconds" in r), None)
                for record in block:
                    if blocked is not None and "seconds" in record:
                        record["speedup_vs_blocked"] = blocked / record["seconds"]
                    print_row(record, first=record is block[0])
                if n == args.n:
                    result = (n if kernel == "quadform" else d * d) * dtype.itemsize
                    print_core_verdict(block[0], blocked, flops, result)
                records += block
                del reference
            sys.stdout.flush()
        del X_all
    finally:
        os.remove(path)
    print()
    return records


# ---------------------------------------------------------------------------------------
# Batches of K components: one pass over a cold memmap against K passes
# ---------------------------------------------------------------------------------------


def _each_call(X, k, from_disk, call):
    """call(j, X) for j < k, on X itself, or (``from_disk``, X a memmap of a whole file from
    its first row, as the suites open it) on a fresh memmap of its file after its pages were
    dropped from the page cache, as if X were larger than RAM; dropping and mapping (a few
    milliseconds) are timed with the calls."""
    for j in range(k):
        if not from_disk:
            call(j, X)
            continue
        _datafiles.evict(X.filename)
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

    Qs of shape (k, d, d): SPD like :func:`_datafiles.random_operands`' Q; R of shape (n, k):
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
        _datafiles.evict(path)
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
    path = _data_file_path(directory, _datafiles.nbytes(shape, dtype), dtype, "--n/--d")
    gemm_name = "dgemm" if dtype == np.float64 else "sgemm"
    records = []
    try:
        _datafiles.make_data_file(path, shape, dtype, seed=0)  # the memmap it returns is unmapped at once
        _datafiles.evict(path)
        size, cold = _datafiles.warm(path)
        _, hot = _datafiles.warm(path)
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
              % (gemm_name, rate, fmt_seconds(flops / (rate * 1e9)), repeat))
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


# ---------------------------------------------------------------------------------------
# matmul: A @ B against numpy, in RAM and memmap to memmap
# ---------------------------------------------------------------------------------------

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
    path_a = _data_file_path(directory, 2 * _datafiles.nbytes((rows, inner), dtype), dtype, "--n")
    fd, path_out = tempfile.mkstemp(prefix="gmmkernels-bench-out-", suffix="." + dtype.name, dir=directory)
    os.close(fd)
    try:
        A = _datafiles.make_data_file(path_a, (rows, inner), dtype, seed=0)
        _datafiles.warm(path_a)
        _datafiles.map_pages(A)
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


# ---------------------------------------------------------------------------------------
# outer: y xᵀ written into a large out, against numpy and the machine's write bandwidth
# ---------------------------------------------------------------------------------------


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
    size = _datafiles.nbytes((n, m), dtype)
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


# ---------------------------------------------------------------------------------------
# gmm: GaussianMixture against scikit-learn's, and through dask.distributed
# ---------------------------------------------------------------------------------------

#: EM iterations of every fit (tol=0, so all of them run).
GMM_MAX_ITER = 5
#: gmmkernels.GaussianMixture should be at least this many times faster per iteration than
#: scikit-learn's, with at most GMM_MEMORY_TARGET of its peak extra memory.
GMM_SPEEDUP_TARGET = 8.0
GMM_MEMORY_TARGET = 0.1
#: The fit through dask.distributed may take at most this many times the in-process time
#: per iteration.
GMM_DASK_TARGET = 1.3
GMM_DASK_WORKERS = 2
#: Row blocks of X for the dask fit: two per worker (the scheduler hands a worker its next
#: block while it runs one, so it never waits between them), 25.6 MB each. Dask costs
#: about 5–7 ms of wall time per task on this 2-core machine, where the scheduler and the
#: workers share the cores: with 8 blocks a pass took 1.2–1.5× the in-process time, with 32
#: 1.6–1.7×, with 4 or 2 1.1–1.3× (per EM iteration, n=200000, d=64, K=16).
GMM_DASK_BLOCKS = 4
#: In-process and distributed fits of the file alternate this many times (at least).
GMM_DASK_PAIRS = 3


def _iteration_clock(estimator_class):
    """A subclass that records when each EM iteration ends.

    Both estimators call ``_print_verbose_msg_iter_end`` after every iteration whatever
    ``verbose`` is, so the gaps between these times are whole iterations (E-step, M-step,
    lower bound), without validation, initialisation or scikit-learn's final E-step.
    """

    class Clocked(estimator_class):
        def _print_verbose_msg_init_beg(self, n_init):
            self.iteration_ends_ = []
            super()._print_verbose_msg_init_beg(n_init)

        def _print_verbose_msg_iter_end(self, n_iter, diff_ll):
            self.iteration_ends_.append(time.perf_counter())
            super()._print_verbose_msg_iter_end(n_iter, diff_ll)

    Clocked.__name__ = Clocked.__qualname__ = estimator_class.__name__
    return Clocked


def gmm_problem(n, d, k, dtype, seed=5):
    """(X, fixed initial parameters): K Gaussian blobs of n rows in RAM, and weights_init,
    means_init (K rows of X, moved) and precisions_init (SPD) drawn from `seed`."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    labels = rng.integers(k, size=n)
    X = centers[labels] + rng.standard_normal((n, d))
    X = X.astype(dtype, copy=False)
    weights = rng.uniform(1.0, 2.0, size=k)
    A = rng.standard_normal((k, d, d)) / np.sqrt(d)
    covariances = 2.0 * (np.eye(d) + 0.2 * A @ np.swapaxes(A, 1, 2))
    precisions = np.linalg.inv(covariances)
    inits = dict(weights_init=weights / weights.sum(),
                 means_init=X[rng.choice(n, size=k, replace=False)].astype(np.float64) + rng.normal(size=(k, d)),
                 precisions_init=(precisions + np.swapaxes(precisions, 1, 2)) / 2)
    return X, inits


def _fit_clocked(estimator_class, X, params, repeat):
    """Fits `repeat` times; (median seconds per iteration, its fit's seconds, largest peak
    extra memory, a fitted model)."""
    import warnings

    fits, peaks = [], []
    for _ in range(repeat):
        model = estimator_class(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tol=0: the fits never converge
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                model.fit(X)
                seconds = time.perf_counter() - t0
        ends = model.iteration_ends_
        fits.append(((ends[-1] - ends[0]) / (len(ends) - 1), seconds, model))
        peaks.append(mem.peak)
    fits.sort(key=lambda f: f[0])
    per_iteration, seconds, model = fits[len(fits) // 2]
    return per_iteration, seconds, max(peaks), model


def _median_fit(fits):
    """Of several _fit_clocked results of one fit each: the median one, with the largest peak."""
    ordered = sorted(fits, key=lambda f: f[0])
    per_iteration, seconds, _, model = ordered[len(ordered) // 2]
    return per_iteration, seconds, max(f[2] for f in fits), model


def _fit_difference(model, reference):
    """Largest relative difference of the means and covariances from the reference fit."""
    return max(max_rel_diff(model.means_, reference.means_),
               max_rel_diff(model.covariances_, reference.covariances_))


def _start_peak_memory(dask_worker):
    dask_worker.bench_peak_memory = PeakMemory().__enter__()


def _stop_peak_memory(dask_worker):
    meter = dask_worker.bench_peak_memory
    meter.__exit__(None, None, None)
    return meter.peak


def run_gmm(args, dtype, rate):
    try:
        import distributed
        from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

        import gmmkernels.dask as gd
    except ImportError as e:
        print("gmm: skipped (%s; it needs scikit-learn, dask and distributed)" % e)
        print()
        return [{"kernel": "gmm", "skipped": str(e)}]
    n, d = args.sizes["gmm"]
    k = args.components
    repeat = args.repeats["gmm"]
    gemm_name = "dgemm" if dtype == np.float64 else "sgemm"
    flops = 2.0 * n * k * d * d
    X, inits = gmm_problem(n, d, k, dtype)
    # init_params only picks responsibilities that the given parameters replace: 'random_from_data'
    # costs scikit-learn least (its 'kmeans' would run KMeans first); gmmkernels skips it.
    params = dict(n_components=k, covariance_type="full", max_iter=GMM_MAX_ITER, tol=0.0,
                  init_params="random_from_data", random_state=0, **inits)
    ours, theirs = _iteration_clock(gmmkernels.GaussianMixture), _iteration_clock(SklearnGaussianMixture)
    print("%s  gmm: n=%s d=%d K=%d full covariance, fixed initial parameters, max_iter=%d, tol=0; "
          "necessary work per iteration 2*n*K*d^2 = %.1f GFLOP (E-step n*K*d^2, M-step n*K*d^2)"
          % (dtype.name, f"{n:,}", d, k, GMM_MAX_ITER, flops / 1e9))
    print("s/iter = median over %d fit(s) of the mean time of iterations 2..%d (each an E-step and an M-step); "
          "fit s = the whole fit; peak extra = growth of RssAnon during the fit (X is in RAM before it)"
          % (repeat, GMM_MAX_ITER))

    small = dict(params, max_iter=2)
    for estimator_class in (ours, theirs):  # warm-up: starts the BLAS and kernel threads
        _fit_clocked(estimator_class, X[: min(n, 4 * k + 2000)], small, 1)
    results = [("scikit-learn", "in-process, X in RAM") + _fit_clocked(theirs, X, params, repeat),
               ("gmmkernels", "in-process, X in RAM") + _fit_clocked(ours, X, params, repeat)]

    directory = args.dir or tempfile.gettempdir()
    path = _data_file_path(directory, _datafiles.nbytes((n, d), dtype) + 4096, dtype, "--n/--d")
    try:
        with open(path, "wb") as f:
            np.save(f, X)  # through the page cache: the file is warm for both fits that read it
        del X
        Xm = np.load(path, mmap_mode="r")
        rows = -(-n // GMM_DASK_BLOCKS)
        cluster = distributed.LocalCluster(
            n_workers=GMM_DASK_WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, env={"GMMKERNELS_LIBRARY": str(gmmkernels.library_path)},
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        try:
            with distributed.Client(cluster) as client:
                Xd = gd.from_memmap(path, chunks=rows)
                _fit_clocked(ours, Xd[: min(n, 4 * k + 2000)], small, 1)  # warm-up: imports, library, threads
                client.run(_start_peak_memory)
                # In-process and distributed fits of the same file alternate, so that both see
                # the same machine; their ratio is the median of the pairs' ratios.
                file_fits, dask_fits = [], []
                for _ in range(max(repeat, GMM_DASK_PAIRS)):
                    file_fits.append(_fit_clocked(ours, Xm, params, 1))
                    dask_fits.append(_fit_clocked(ours, Xd, params, 1))
                worker_peaks = client.run(_stop_peak_memory)
                blocks = Xd.numblocks[0]
                pair_ratios = [b[0] / a[0] for a, b in zip(file_fits, dask_fits)]
                results.append(("gmmkernels", "in-process, memmap of the .npy") + _median_fit(file_fits))
                results.append(("gmmkernels", "dask.distributed, from_memmap(.npy)") + _median_fit(dask_fits))
        finally:
            cluster.close()
        del Xm
    finally:
        os.remove(path)

    reference = results[0][5]
    records = []
    for method, where, per_iteration, seconds, peak, model in results:
        gflops = flops / per_iteration / 1e9
        records.append({"kernel": "gmm", "method": method, "where": where, "n": n, "d": d, "components": k,
                        "covariance_type": "full", "dtype": dtype.name, "max_iter": GMM_MAX_ITER, "repeat": repeat,
                        "n_iter": int(model.n_iter_), "seconds_per_iteration": per_iteration, "seconds": seconds,
                        "peak_bytes": int(peak), "gflops": gflops, "percent_of_gemm": 100.0 * gflops / rate,
                        "gemm": gemm_name, "lower_bound": float(model.lower_bound_),
                        "max_rel_diff": None if model is reference else _fit_difference(model, reference),
                        "speedup_vs_sklearn": results[0][2] / per_iteration})
    sklearn_record, in_ram, on_file, on_dask = records
    on_dask["worker_peak_bytes"] = {w: int(p) for w, p in worker_peaks.items()}
    print(GMM_HEADER % ("method", "where", "s/iter", "fit s", "GFLOP/s", "% " + gemm_name, "vs sklearn",
                        "peak extra", "max rel diff"))
    for record in records:
        print_gmm_row(record)

    speedup = in_ram["speedup_vs_sklearn"]
    memory_share = in_ram["peak_bytes"] / max(sklearn_record["peak_bytes"], 1)
    in_ram.update(memory_ratio_vs_sklearn=memory_share,
                  within_target=bool(speedup >= GMM_SPEEDUP_TARGET and memory_share <= GMM_MEMORY_TARGET))
    print("  gmmkernels vs scikit-learn, X in RAM: %.2fx faster per iteration (target >= %.0fx: %s); peak extra "
          "memory %s = %.1f%% of scikit-learn's %s (target <= %.0f%%: %s)"
          % (speedup, GMM_SPEEDUP_TARGET, _verdict(speedup >= GMM_SPEEDUP_TARGET), format_bytes(in_ram["peak_bytes"]),
             100 * memory_share, format_bytes(sklearn_record["peak_bytes"]), 100 * GMM_MEMORY_TARGET,
             _verdict(memory_share <= GMM_MEMORY_TARGET)))
    vs_file = float(np.median(pair_ratios))
    vs_ram = on_dask["seconds_per_iteration"] / in_ram["seconds_per_iteration"]
    on_dask.update(time_ratio_vs_in_process=vs_file, time_ratio_vs_in_process_ram=vs_ram,
                   pair_ratios=pair_ratios, within_target=bool(vs_file <= GMM_DASK_TARGET))
    on_dask.update(workers=GMM_DASK_WORKERS, threads_per_worker=1, blocks=blocks)
    print("  dask.distributed, %d workers x 1 thread, X = from_memmap of the .npy in %d row blocks: %.2fx the "
          "in-process time per iteration on the same file (median of %d alternating pairs: %s; target <= %.1fx: %s), "
          "%.2fx that of X in RAM; peak extra memory of the workers %s, of the client %s"
          % (GMM_DASK_WORKERS, blocks, vs_file, len(pair_ratios), ", ".join("%.2f" % r for r in pair_ratios),
             GMM_DASK_TARGET, _verdict(vs_file <= GMM_DASK_TARGET), vs_ram,
             " and ".join(format_bytes(p) for p in worker_peaks.values()), format_bytes(on_dask["peak_bytes"])))
    print()
    sys.stdout.flush()
    return records


def _verdict(met):
    return "met" if met else "NOT MET"


def _seconds(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _data_file_path(directory, size, dtype, flags):
    """A new temporary file in `directory` for `size` bytes, after checking the free space."""
    free = _datafiles.free_bytes(directory)
    if size + (256 << 20) > free:
        raise SystemExit("not enough disk space in %s: need %s, %s free; use --dir or a smaller %s"
                         % (directory, format_bytes(size), format_bytes(free), flags))
    fd, path = tempfile.mkstemp(prefix="gmmkernels-bench-", suffix="." + np.dtype(dtype).name, dir=directory)
    os.close(fd)
    return path


def wide_operands(n, d, dtype, directory, seed=11):
    """(X as a warm memmap of a file in `directory`, its path, a symmetric Q, a Q that is
    symmetric but for rounding as inv(C) is, a center, weights with 30% zeros, K Qs, K
    centers, R (n, K) with 30% zeros)."""
    rng = np.random.default_rng(seed)
    path = os.path.join(directory, "gmmkernels-wide-%d-%d-%s.dat" % (n, d, np.dtype(dtype).name))
    X = np.memmap(path, dtype=dtype, mode="w+", shape=(n, d))
    for start in range(0, n, 1000):
        rows = slice(start, min(start + 1000, n))
        X[rows] = 2.0 + rng.standard_normal((rows.stop - rows.start, d))
    X.flush()
    del X
    X = np.memmap(path, dtype=dtype, mode="r", shape=(n, d))
    B = rng.standard_normal((d, d)) * (0.1 / np.sqrt(d))
    Q = B + B.T
    Q.flat[:: d + 1] += 1.0
    noisy = Q * (1.0 + 1e-13 * rng.standard_normal((d, d)))
    k = WIDE_COMPONENTS
    w = rng.uniform(0.1, 2.0, n)
    w[rng.random(n) < 0.3] = 0
    R = rng.uniform(0.0, 1.0, (n, k))
    R[rng.random((n, k)) < 0.3] = 0
    Qs = np.stack([Q * (1.0 + 0.1 * j) for j in range(k)]).astype(dtype)
    centers = 2.0 + 0.1 * rng.standard_normal((k, d))
    return (X, path, Q.astype(dtype), noisy.astype(dtype), np.full(d, 2.0, dtype=dtype), w.astype(dtype),
            Qs, centers.astype(dtype), R.astype(dtype))


def _wide_call(name, fn, flops, paired, repeat):
    """Times `fn` `repeat` times, each after a paired GEMM; the median record."""
    calls = []
    for _ in range(repeat):
        rate = paired.rate()
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t0
        calls.append((flops / seconds / 1e9 / rate, seconds, rate, mem.peak))
    shares = sorted(c[0] for c in calls)
    times = sorted(c[1] for c in calls)
    return {"kernel": name, "seconds": times[len(times) // 2], "gflops": flops / times[len(times) // 2] / 1e9,
            "percent_of_gemm": 100 * shares[len(shares) // 2],
            "paired_gemm_gflops": [c[2] for c in calls], "peak_bytes": max(c[3] for c in calls)}


def run_wide(args):
    """The users' next widths with default arguments (see SUITE_DEFINITIONS["wide"])."""
    widths = [args.d] if args.d_given else sorted(WIDE_SIZES)
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    directory = args.dir or tempfile.gettempdir()
    repeat = args.repeats["wide"]
    records = []
    print("wide suite: default arguments, X a warm memmap; %% GEMM = necessary flops at the rate of a "
          "GEMM timed just before each call (median of %d); target >= %d%%, peak extra <= 64 MiB"
          % (repeat, round(100 * WIDE_LIMIT_TARGET)))
    print("%-26s %-8s %7s %7s %9s %8s %8s %10s" % ("kernel", "dtype", "d", "n", "seconds", "GFLOP/s", "% GEMM",
                                                  "peak extra"))
    for d in widths:
        n = args.n if args.n_given else WIDE_SIZES.get(d, max(1000, int(4e11 / d**2)))
        for dtype in dtypes:
            X, path, Q, noisy, c, w, Qs, centers, R = wide_operands(n, d, np.dtype(dtype), directory)
            k = Qs.shape[0]
            try:
                np.asarray(X).sum()  # warm: the page cache holds X
                paired = PairedGemm(dtype, args.gemm_size)
                q_out = np.zeros(n, dtype=dtype)
                g_out = np.full((d, d), 0, dtype=dtype)
                qk_out = np.full((n, k), 0, dtype=dtype)
                gk_out = np.full((k, d, d), 0, dtype=dtype)
                nnz = float(np.count_nonzero(w))
                cases = [
                    ("wide quadform", lambda: gmmkernels.quadform(X, Q, center=c, out=q_out), float(n) * d * d),
                    ("wide quadform Q=inv(C)", lambda: gmmkernels.quadform(X, noisy, center=c, out=q_out),
                     float(n) * d * d),
                    ("wide weighted_gram", lambda: gmmkernels.weighted_gram(X, w, center=c, out=g_out), nnz * d * d),
                    ("wide quadform_many", lambda: gmmkernels.quadform_many(X, Qs, centers=centers, out=qk_out),
                     float(k) * n * d * d),
                    ("wide weighted_gram_many",
                     lambda: gmmkernels.weighted_gram_many(X, R, centers=centers, out=gk_out),
                     float(np.count_nonzero(R)) * d * d),
                ]
                for name, fn, flops in cases:
                    r = _wide_call(name, fn, flops, paired, repeat)
                    r.update(dtype=dtype, n=n, d=d)
                    records.append(r)
                    print("%-26s %-8s %7d %7d %9s %8.1f %8.1f %10s %s"
                          % (name[5:], dtype, d, n, fmt_seconds(r["seconds"]), r["gflops"], r["percent_of_gemm"],
                             format_bytes(r["peak_bytes"]),
                             _verdict(r["percent_of_gemm"] >= 100 * WIDE_LIMIT_TARGET
                                      and r["peak_bytes"] <= CORE_MEMORY_TARGET)), flush=True)
            finally:
                del X
                os.unlink(path)
        if len(dtypes) == 2:
            for name in [c[0] for c in cases]:
                pair = {r["dtype"]: r["seconds"] for r in records if r["kernel"] == name and r["d"] == d}
                ratio = pair["float64"] / pair["float32"]
                print("  %s d=%d: float32 %.2fx float64's speed (target >= %.1f) %s"
                      % (name[5:], d, ratio, FLOAT32_SPEEDUP_TARGET, _verdict(ratio >= FLOAT32_SPEEDUP_TARGET)))
        records.append(run_wide_gmm(args, n, d, directory))
    return records


def run_wide_gmm(args, n, d, directory):
    """One EM iteration (full, K = 3, float64) at width d against its necessary flops."""
    import warnings

    from .mixture import GaussianMixture

    k = WIDE_COMPONENTS
    X, path, Q, _, _, _, _, centers, _ = wide_operands(n, d, np.dtype(np.float64), directory, seed=12)
    try:
        np.asarray(X).sum()
        precisions = np.stack([Q] * k)
        params = dict(n_components=k, covariance_type="full", max_iter=2, tol=0,
                      weights_init=np.full(k, 1.0 / k), means_init=centers.astype(np.float64),
                      precisions_init=precisions)
        paired = PairedGemm(np.float64, args.gemm_size)
        rate = paired.rate()
        Clocked = _iteration_clock(GaussianMixture)
        model = Clocked(**params)
        del precisions
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PeakMemory() as mem:
                model.fit(X)
        ends = model.iteration_ends_
        seconds = ends[1] - ends[0]
        rate = (rate + paired.rate()) / 2
        flops = 2.0 * n * k * d * d + (2.0 / 3.0) * k * d**3
        ratio = seconds / (flops / rate / 1e9)
        budget = 5 * k * d * d * 8 + CORE_MEMORY_TARGET
        print("%-26s %-8s %7d %7d %9s %8.1f %7.2fx %10s %s  (time / necessary flops at %.0f GFLOP/s, "
              "target <= %.1fx; peak beyond X budget %s)"
              % ("gmm iteration (full, K=3)", "float64", d, n, fmt_seconds(seconds), flops / seconds / 1e9, ratio,
                 format_bytes(mem.peak), _verdict(ratio <= WIDE_GMM_TARGET and mem.peak <= budget), rate,
                 WIDE_GMM_TARGET, format_bytes(budget)), flush=True)
        return {"kernel": "wide gmm iteration", "dtype": "float64", "n": n, "d": d, "seconds": seconds,
                "gflops": flops / seconds / 1e9, "time_ratio_vs_necessary": ratio, "paired_gemm_gflops": rate,
                "peak_bytes": mem.peak, "peak_budget_bytes": budget}
    finally:
        del X
        os.unlink(path)


PRECISIONS_SIZE = (100_000, 900)
PRECISIONS_COMPONENTS = 200


def run_precisions(args):
    """K = 200 precision matrices against one memmap'd X: quadform_many, K quadform calls, and
    the hand-blocked numpy code once per Q (one of them timed, the total stated as K times it)."""
    n, d = PRECISIONS_SIZE
    n = args.n if args.n_given else n
    d = args.d if args.d_given else d
    k = args.components if args.components_given else PRECISIONS_COMPONENTS
    dtype = np.dtype("float64" if args.dtype == "both" else args.dtype)
    directory = args.dir or tempfile.gettempdir()
    path = _data_file_path(directory, _datafiles.nbytes((n, d), dtype), dtype, "--n")
    rng = np.random.default_rng(31)
    try:
        X = _datafiles.make_data_file(path, (n, d), dtype, seed=32, mean=1.0)
        np.asarray(X).sum()  # warm: X in the page cache, as in the EM iterations after the first
        Qs = np.empty((k, d, d), dtype=dtype)
        for j in range(k):
            B = rng.standard_normal((d, d)) * (0.3 / np.sqrt(d))
            Qs[j] = B @ B.T + np.eye(d)
        paired = PairedGemm(dtype, args.gemm_size)
        flops = float(k) * n * d * d
        out = np.full((n, k), 0, dtype=dtype)  # faulted in: the outputs' pages are not counted as peak
        one = np.full(n, 0, dtype=dtype)
        print("precisions suite: X (%s, %d) %s memmap (%s, warm), K = %d precision matrices (%s in RAM); "
              "necessary flops K*n*d^2 = %.3g; %% GEMM at the rate of a GEMM timed just before each call"
              % (f"{n:,}", d, dtype.name, format_bytes(X.nbytes), k, format_bytes(Qs.nbytes), flops))
        print("%-34s %10s %8s %8s %11s %9s" % ("method", "seconds", "GFLOP/s", "% GEMM", "peak extra", "speedup"))
        rows = []

        def single_calls():
            for j in range(k):
                gmmkernels.quadform(X, Qs[j], out=one)
                out[:, j] -= one  # the difference from quadform_many, checked below

        ours = _wide_call("precisions quadform_many", lambda: gmmkernels.quadform_many(X, Qs, out=out), flops,
                          paired, 1)
        rows.append(("gmmkernels.quadform_many", ours))
        singles = _wide_call("precisions K quadform calls", single_calls, flops, paired, 1)
        singles["max_rel_diff"] = float(np.max(np.abs(out))) / max(float(np.max(np.abs(one))), 1e-300)
        rows.append(("%d gmmkernels.quadform calls" % k, singles))
        reference = baselines.blocked_quadform(X, Qs[k - 1])
        blocked = _wide_call("precisions blocked numpy, one Q", lambda: baselines.blocked_quadform(X, Qs[k - 1]),
                             flops / k, paired, 1)
        blocked["max_rel_diff"] = max_rel_diff(one, reference)
        blocked["stated_seconds_for_all"] = k * blocked["seconds"]
        rows.append(("blocked numpy, one Q (x%d stated)" % k, blocked))
        for label, r in rows:
            r.update(dtype=dtype.name, n=n, d=d, components=k)
            seconds = r.get("stated_seconds_for_all", r["seconds"])
            print("%-34s %10s %8.1f %8.1f %11s %8.1fx" % (label, fmt_seconds(seconds), r["gflops"],
                                                          r["percent_of_gemm"], format_bytes(r["peak_bytes"]),
                                                          seconds / ours["seconds"]))
        tol = 1e-4 if dtype == np.float32 else 1e-10
        worst = max(singles["max_rel_diff"], blocked["max_rel_diff"])
        print("speedup = the method's time / quadform_many's (blocked numpy: K times one Q's time); results: "
              "quadform_many against the single calls and blocked numpy, max rel diff %.1e %s"
              % (worst, "ok" if worst <= tol else "MISMATCH"))
        return [r for _, r in rows]
    finally:
        X = None
        os.unlink(path)


OUT_OF_CORE_SIZE = (2_500_000, 1600)
OUT_OF_CORE_TARGET = 0.85


def sequential_read(path, d, itemsize, check_vector, chunk_bytes=_datafiles.CHUNK_BYTES):
    """Reads the file from start to end in large reads: (bytes per second in the reads, X·v).

    X·v (for the Gram check) is computed between the reads and not counted in the rate.
    """
    row_bytes = d * itemsize
    buf = np.empty(max(1, chunk_bytes // row_bytes) * row_bytes, dtype=np.uint8)
    dtype = np.float64 if itemsize == 8 else np.float32
    products, total, reading = [], 0, 0.0
    with open(path, "rb", buffering=0) as f:
        while True:
            t0 = time.perf_counter()
            got = f.readinto(buf)
            reading += time.perf_counter() - t0
            if not got:
                break
            total += got
            products.append(buf[:got].view(dtype).reshape(-1, d) @ check_vector)
    return total / reading, np.concatenate(products)


def run_out_of_core(args):
    """quadform and weighted_gram on a file larger than RAM, each call starting from the disk."""
    n, d = OUT_OF_CORE_SIZE
    n = args.n if args.n_given else n
    d = args.d if args.d_given else d
    dtype = np.dtype("float64" if args.dtype == "both" else args.dtype)
    directory = args.dir or tempfile.gettempdir()
    size = _datafiles.nbytes((n, d), dtype)
    ram = total_ram()
    path = os.path.join(directory, "gmmkernels-out-of-core-%dx%d-%s.dat" % (n, d, dtype.name))
    print("out-of-core suite: X (%s, %d) %s = %s in %s; RAM %s%s"
          % (f"{n:,}", d, dtype.name, format_bytes(size), directory, format_bytes(ram),
             "" if size > ram else " (X is not larger than RAM: the page cache may hold part of it)"))
    if os.path.isfile(path) and os.path.getsize(path) == size:
        print("reusing %s" % path)
    else:
        free = _datafiles.free_bytes(directory)
        if size + (1 << 30) > free:
            raise SystemExit("not enough disk space in %s for the out-of-core suite: X needs %s plus 1 GiB to "
                             "spare, %s is free; use --dir, or a smaller --n" % (directory, format_bytes(size),
                                                                                  format_bytes(free)))
        t0 = time.perf_counter()
        _datafiles.make_data_file(path, (n, d), dtype, seed=21, mean=2.0)
        seconds = time.perf_counter() - t0
        print("wrote X in %.0f s (%.2f GB/s)" % (seconds, size / seconds / 1e9))
    records = []
    try:
        rng = np.random.default_rng(22)
        v = rng.standard_normal(d).astype(dtype)
        _datafiles.evict(path)
        read_rate, xv = sequential_read(path, d, dtype.itemsize, v)
        print("sequential read of the whole file (%d MiB reads, page cache dropped first): %.2f GB/s, %.0f s"
              % (_datafiles.CHUNK_BYTES >> 20, read_rate / 1e9, size / read_rate))
        B = rng.standard_normal((d, d)) * (0.1 / np.sqrt(d))
        Q = (B + B.T + np.eye(d)).astype(dtype)
        c = np.full(d, 2.0, dtype=dtype)
        w = rng.uniform(0.1, 2.0, n).astype(dtype)
        q_out = np.full(n, 0, dtype=dtype)
        g_out = np.full((d, d), 0, dtype=dtype)
        paired = PairedGemm(dtype, args.gemm_size)
        flops = float(n) * d * d
        cases = [("quadform", lambda X: gmmkernels.quadform(X, Q, center=c, out=q_out)),
                 ("weighted_gram", lambda X: gmmkernels.weighted_gram(X, w, out=g_out))]
        print("%-16s %9s %8s %8s %10s %10s %9s %10s" % ("kernel", "seconds", "GB/s", "GFLOP/s", "compute s",
                                                     "read s", "% limit", "peak extra"))
        for name, call in cases:
            _datafiles.evict(path)
            X = np.memmap(path, dtype=dtype, mode="r", shape=(n, d))
            rate = paired.rate()
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                call(X)
                seconds = time.perf_counter() - t0
            del X
            compute = flops / (rate * 1e9)
            reading = size / read_rate
            share = max(compute, reading) / seconds
            records.append({"kernel": "out-of-core " + name, "dtype": dtype.name, "n": n, "d": d,
                            "seconds": seconds, "gb_per_s": size / seconds / 1e9,
                            "gflops": flops / seconds / 1e9, "paired_gemm_gflops": rate,
                            "sequential_read_gb_per_s": read_rate / 1e9, "compute_seconds": compute,
                            "read_seconds": reading, "percent_of_limit": 100 * share, "peak_bytes": mem.peak})
            print("%-16s %9s %8.2f %8.1f %10.1f %10.1f %9.1f %10s %s"
                  % (name, fmt_seconds(seconds), size / seconds / 1e9, flops / seconds / 1e9, compute, reading,
                     100 * share, format_bytes(mem.peak),
                     _verdict(share >= OUT_OF_CORE_TARGET and mem.peak <= CORE_MEMORY_TARGET)), flush=True)
        # Results: quadform on sampled rows against numpy; the Gram through v'Gv = sum_i w_i (x_i.v)^2.
        X = np.memmap(path, dtype=dtype, mode="r", shape=(n, d))
        rows = np.sort(rng.choice(n, size=min(n, 2000), replace=False))
        Xs = np.asarray(X[rows], dtype=np.float64) - 2.0
        q_ref = np.einsum("ij,ij->i", Xs @ Q.astype(np.float64), Xs)
        del X
        q_diff = max_rel_diff(q_out[rows], q_ref)
        vgv = float(v.astype(np.float64) @ g_out.astype(np.float64) @ v.astype(np.float64))
        vgv_ref = float(np.dot(w.astype(np.float64), xv.astype(np.float64) ** 2))
        g_diff = abs(vgv - vgv_ref) / abs(vgv_ref)
        tol = 1e-3 if dtype == np.float32 else 1e-9
        print("results: quadform on %d sampled rows max rel diff %.1e, weighted_gram v'Gv rel diff %.1e (tolerance "
              "%.0e) %s" % (len(rows), q_diff, g_diff, tol, "ok" if max(q_diff, g_diff) <= tol else "MISMATCH"))
        for r in records:
            r["max_rel_diff"] = q_diff if r["kernel"].endswith("quadform") else g_diff
    finally:
        if args.keep:
            print("kept %s" % path)
        else:
            os.unlink(path)
    return records


def suite_work(args):
    """Necessary flops of the largest selected batch or matmul problem (0 for outer alone)."""
    work = [0.0]
    if any(k in BATCH_KERNELS for k in args.kernels):
        n, d = args.sizes["batch"]
        work.append(args.components * necessary_flops(n, d))
    if "matmul" in args.kernels:
        n, d = args.sizes["matmul"]
        work.append(2.0 * n * d * d)
    if "gmm" in args.kernels:
        n, d = args.sizes["gmm"]
        work.append(2.0 * args.components * n * d * d)
    if "wide" in args.kernels or "out-of-core" in args.kernels or "precisions" in args.kernels:
        work.append(4e11)
    return max(work)


SUITE_KERNELS = {"batch": BATCH_KERNELS, "matmul": ("matmul",), "outer": ("outer",), "gmm": ("gmm",),
                 "wide": ("wide quadform", "wide quadform Q=inv(C)", "wide weighted_gram",
                          "wide quadform_many", "wide weighted_gram_many", "wide gmm iteration"),
                 "out-of-core": ("out-of-core quadform", "out-of-core weighted_gram"),
                 "precisions": ("precisions quadform_many", "precisions K quadform calls",
                                "precisions blocked numpy, one Q")}
SUITE_DEFINITIONS = {
    "precisions": "X a warm float64 memmap of (100000, 900) (or --n, --d), K = 200 random SPD Q_k in RAM (or "
                  "--components); quadform_many(X, Qs) against K quadform calls and against "
                  "baselines.blocked_quadform of one Q (stated_seconds_for_all = K times its time); "
                  "percent_of_gemm = K*n*d^2 (n*d^2 for one Q) at the rate of a GEMM timed just before the "
                  "call / seconds",
    "out-of-core": "X a file of [2.5e6, 1600] float64 (or --n, --d, --dtype) in --dir, larger than RAM, "
                   "its pages dropped from the page cache before each call; default arguments; quadform "
                   "with a center, weighted_gram with weights in [0.1, 2); compute_seconds = n*d^2 at the "
                   "rate of a GEMM timed just before the call; read_seconds = file size / the rate of one "
                   "sequential read of the whole file in 64 MiB reads; percent_of_limit = "
                   "max(compute_seconds, read_seconds) / seconds (target >= 85)",
    "wide": "d = 2500 and 10000 (or --d), n = --n or 64000 / 4000, X a warm float memmap, default "
            "arguments (64 MiB of workspace); K = 3 for the batch kernels; necessary flops = n*d^2 per "
            "matrix (nnz*d^2 for the Gram kernels); percent_of_gemm = median over the calls of necessary "
            "flops at the rate of a GEMM of X's dtype timed just before the call / the call's seconds "
            "(target >= 85); peak_bytes = RssAnon growth beyond the prefaulted outputs (target <= 64 MiB); "
            "gmm iteration: full, K = 3, float64, one EM iteration from fixed initial parameters against "
            "2*n*K*d^2 + (2/3)*K*d^3 at the paired DGEMM rate (target time ratio <= 1.2); its peak beyond X "
            "against 5*K*d^2*8 bytes + 64 MiB",
    "batch": "quadform_many / weighted_gram_many: K = components; gflops = K*n*d^2 / seconds / 1e9; "
             "the page cache holds none of X at the start of each timed call; 'gmmkernels K calls' = "
             "K calls of quadform / weighted_gram (w = R[:, k]); 'blocked numpy K passes' = "
             "baselines.blocked_quadform_many / blocked_weighted_gram_many; max_rel_diff against the batch call",
    "matmul": "gflops = 2*n*k*m / seconds / 1e9; time_ratio_vs_numpy = gmmkernels seconds / numpy A @ B "
              "seconds (target <= 1.10); max_rel_diff on up to 1000 sampled rows against gmmkernels",
    "outer": "gb_per_s = bytes of out / seconds / 1e9; write bandwidth = the faster of out.fill by 1 thread "
             "and by gmmkernels' thread count on the same out; max_rel_diff against y_i*x_j on sampled rows",
    "gmm": "full covariance, K = components, fixed initial parameters, max_iter=5, tol=0; seconds_per_iteration = "
           "(end of the last iteration - end of the first) / (iterations - 1); gflops = 2*n*K*d^2 / "
           "seconds_per_iteration / 1e9; peak_bytes = RssAnon growth of this process during the fit "
           "(worker_peak_bytes: of each dask worker); speedup_vs_sklearn per iteration (target >= 8 with "
           "memory_ratio_vs_sklearn <= 0.1); time_ratio_vs_in_process = dask fit / in-process fit on the same "
           "file, per iteration (target <= 1.3); max_rel_diff of means_ and covariances_ against scikit-learn's fit",
}


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------

TABLE_HEADER = "%-14s %-15s %9s %8s %8s %10s %11s %13s"


PEAK_NOTE = ("peak extra = growth of this process's anonymous memory (RssAnon) during the call, result "
             "included; memory the allocator kept from earlier calls is reused without growth, so values "
             "of a few MiB are lower bounds")


def print_row(r, first):
    kernel = r["kernel"] if first else ""
    if "skipped" in r:
        print("%-14s %-15s skipped: %s" % (kernel, r["method"], r["skipped"]))
        return
    diff = "(reference)" if r["max_rel_diff"] is None else "%.1e" % r["max_rel_diff"]
    speedup = "%.2fx" % r["speedup_vs_blocked"] if "speedup_vs_blocked" in r else "-"
    print(TABLE_HEADER % (kernel, r["method"], "%.3f" % r["seconds"], "%.1f" % r["gflops"],
                          "%.0f%%" % r["percent_of_gemm"], speedup, format_bytes(r["peak_bytes"]), diff))


BATCH_HEADER = "%-18s %-22s %9s %8s %8s %11s %11s %11s %13s"
MATMUL_HEADER = "%-32s %-22s %9s %8s %8s %9s %11s %13s"
OUTER_HEADER = "%-22s %9s %8s %11s %9s %11s %13s"
GMM_HEADER = "%-13s %-36s %8s %8s %8s %7s %10s %11s %13s"


def _secs(seconds):
    return "%.3f" % seconds if seconds >= 0.1 else "%.5f" % seconds


def _diff_text(r):
    return "(reference)" if r["max_rel_diff"] is None else "%.1e" % r["max_rel_diff"]


def print_batch_row(r, first):
    print(BATCH_HEADER % (r["kernel"] if first else "", r["method"], _secs(r["seconds"]), "%.1f" % r["gflops"],
                          "%.0f%%" % r["percent_of_gemm"], "%.2fx" % r["speedup_vs_k_calls"],
                          "%.2fx" % r["speedup_vs_blocked"], format_bytes(r["peak_bytes"]), _diff_text(r)))


def print_matmul_row(r, first):
    print(MATMUL_HEADER % (r["case"] if first else "", r["method"], _secs(r["seconds"]), "%.1f" % r["gflops"],
                           "%.0f%%" % r["percent_of_gemm"], "%.2fx" % r["speedup_vs_numpy"],
                           format_bytes(r["peak_bytes"]), _diff_text(r)))


def print_outer_row(r):
    speedup = "%.2fx" % r["speedup_vs_numpy"] if "speedup_vs_numpy" in r else "-"
    diff = "-" if r["method"].startswith("out.fill") else "%.1e" % r["max_rel_diff"]
    print(OUTER_HEADER % (r["method"], _secs(r["seconds"]), "%.2f" % r["gb_per_s"],
                          "%.0f%%" % r["percent_of_write_bandwidth"], speedup, format_bytes(r["peak_bytes"]), diff))


def print_gmm_row(r):
    print(GMM_HEADER % (r["method"], r["where"], _secs(r["seconds_per_iteration"]), "%.2f" % r["seconds"],
                        "%.1f" % r["gflops"], "%.0f%%" % r["percent_of_gemm"], "%.2fx" % r["speedup_vs_sklearn"],
                        format_bytes(r["peak_bytes"]), _diff_text(r)))


def print_scaling(records, dtypes, kernels):
    """Time per row and peak memory against n for each method: linear time, flat memory."""
    print("scaling: time per row (µs) and peak extra memory against n")
    for dtype in dtypes:
        for kernel in kernels:
            rows = [r for r in records if r["dtype"] == dtype and r["kernel"] == kernel and "seconds" in r]
            ns = sorted({r["n"] for r in rows})
            print("%s %s   n = %s" % (dtype, kernel, "  ".join("%9s" % f"{n:,}" for n in ns)))
            for method, _ in METHODS[kernel]:
                by_n = {r["n"]: r for r in rows if r["method"] == method}
                if not by_n:
                    continue
                per_row = ["%9.2f" % (by_n[n]["seconds"] / n * 1e6) if n in by_n else "%9s" % "-" for n in ns]
                peaks = ["%9s" % format_bytes(by_n[n]["peak_bytes"]) if n in by_n else "%9s" % "-" for n in ns]
                lo, hi = min(by_n), max(by_n)
                t_ratio = (by_n[hi]["seconds"] / hi) / (by_n[lo]["seconds"] / lo)
                growth = by_n[hi]["peak_bytes"] - by_n[lo]["peak_bytes"]
                print("  %-15s µs/row  %s   time per row, n=%s vs n=%s: %.2fx"
                      % (method, "  ".join(per_row), f"{hi:,}", f"{lo:,}", t_ratio))
                print("  %-15s peak    %s   peak, n=%s vs n=%s: %s%s"
                      % ("", "  ".join(peaks), f"{hi:,}", f"{lo:,}", "+" if growth >= 0 else "-",
                         format_bytes(abs(growth))))
    print("linear time: time per row stays the same; flat memory: peak does not grow with n "
          "(beyond the result: n values for quadform)")
    print()


def plot(records, path, kernels):
    """Time and peak memory against n, one column per kernel, one line per method and dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(2, len(kernels), figsize=(6 * len(kernels), 8), squeeze=False)
    styles = {"float64": dict(linestyle="-", marker="o"),
              "float32": dict(linestyle="--", marker="s", fillstyle="none")}
    colors = {m: "C%d" % i for i, (m, _) in enumerate(METHODS[KERNELS[0]])}
    for col, kernel in enumerate(kernels):
        t_ax, m_ax = axes[0][col], axes[1][col]
        for dtype in ("float64", "float32"):
            for method, _ in METHODS[kernel]:
                pts = sorted((r["n"], r["seconds"], r["peak_bytes"]) for r in records
                             if r["kernel"] == kernel and r["method"] == method
                             and r["dtype"] == dtype and "seconds" in r)
                if not pts:
                    continue
                n, t, m = zip(*pts)
                label = "%s (%s)" % (method, dtype)
                t_ax.plot(n, t, color=colors[method], label=label, **styles[dtype])
                m_ax.plot(n, [max(b, 1) / 2**20 for b in m], color=colors[method], label=label,
                          **styles[dtype])
        ns = sorted({r["n"] for r in records if r["kernel"] == kernel})
        for ax in (t_ax, m_ax):
            ax.set_xticks(ns)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: "{:,.0f}".format(x)))
            ax.tick_params(axis="x", labelrotation=30)
        t_ax.set_title("%s: time" % kernel)
        t_ax.set_xlabel("n (rows)")
        t_ax.set_ylabel("seconds (median)")
        t_ax.set_ylim(bottom=0)
        t_ax.grid(alpha=0.3)
        m_ax.set_title("%s: peak extra memory" % kernel)
        m_ax.set_xlabel("n (rows)")
        m_ax.set_ylabel("MiB")
        m_ax.set_yscale("log")
        m_ax.grid(alpha=0.3, which="both")
        t_ax.legend(fontsize="small")
    d = records[0]["d"] if records else 0
    fig.suptitle("gmmkernels vs numpy and dask, d = %d" % d)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt_seconds(s):
    return "%.3f s" % s if s < 100 else "%.0f s" % s


def _load_average():
    try:
        return "%.1f" % os.getloadavg()[0]
    except OSError:
        return "unknown"


def _dask_version():
    import dask

    return dask.__version__


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m gmmkernels.bench",
        description="Time and peak memory of gmmkernels against hand-blocked numpy, the "
                    "naive numpy expressions and dask.array, with the GEMM rate as the ceiling.")
    p.add_argument("--n", type=int,
                   help="rows of X (default 200000); rows of A for matmul (default 20000), of out for outer "
                        "(default 20000)")
    p.add_argument("--d", type=int,
                   help="columns of X (default 900; 300 for the batch kernels, 64 for gmm); columns of A and order of "
                        "B for matmul (default 2000); columns of out for outer (default 20000)")
    p.add_argument("--dtype", choices=("float64", "float32", "both"),
                   help="dtype of X (default both for quadform and weighted_gram, float64 for the others)")
    p.add_argument("--repeat", type=int,
                   help="timed calls per method; the median is shown (default 3; 1 for the batch kernels)")
    p.add_argument("--kernels", nargs="+", choices=ALL_KERNELS + OPT_IN_KERNELS + tuple(KERNEL_GROUPS),
                   default=list(KERNELS), metavar="KERNEL",
                   help="kernels to run: %s, or the groups core (the default: quadform, weighted_gram), "
                        "batch (quadform_many, weighted_gram_many), all (all but out-of-core, which writes "
                        "a file larger than RAM: [2.5e6, 1600] float64 = 32 GB unless --n/--d say otherwise)"
                   % ", ".join(ALL_KERNELS + OPT_IN_KERNELS))
    p.add_argument("--zero-fraction", type=float, default=0.3,
                   help="fraction of zero weights for weighted_gram (default 0.3)")
    p.add_argument("--components", type=int,
                   help="K: matrices for quadform_many, columns of R for weighted_gram_many, components of the "
                        "gmm suite (default 16); precision matrices of the precisions suite (default %d)"
                        % PRECISIONS_COMPONENTS)
    p.add_argument("--centers", action="store_true",
                   help="batch kernels: subtract K random centres, as EM does (default: none, as in the "
                        "hand-blocked code)")
    p.add_argument("--outer-memmap", action="store_true",
                   help="outer: also write into a memmap out on disk (as large as the in-RAM one)")
    p.add_argument("--scaling", action="store_true",
                   help="also run n = 50k, 100k, 200k, 400k: time should grow linearly, memory stay flat")
    p.add_argument("--json", default=os.path.join("bench-results", "bench.json"),
                   help="write results here (default bench-results/bench.json; '' for none)")
    p.add_argument("--plot", metavar="FILE.png", help="plot time and peak memory against n (matplotlib)")
    p.add_argument("--dir", help="directory for the memmap'd X file (default: the temp directory)")
    p.add_argument("--keep", action="store_true",
                   help="out-of-core: keep X's file, and reuse a kept file of the same shape")
    p.add_argument("--gemm-size", type=int,
                   help="order of the matrices timed for the GEMM ceiling (default %d; %d when "
                        "n*d^2 < 1e11, where a smaller ceiling run is enough)" % (GEMM_SIZE, SMALL_GEMM_SIZE))
    args = p.parse_args(argv)
    kernels = []
    for name in args.kernels:
        for kernel in KERNEL_GROUPS.get(name, (name,)):
            if kernel not in kernels:
                kernels.append(kernel)
    args.kernels = kernels
    args.n_given, args.d_given = args.n is not None, args.d is not None
    args.components_given = args.components is not None
    args.components = 16 if args.components is None else args.components
    args.sizes = {suite: (n if args.n is None else args.n, d if args.d is None else args.d)
                  for suite, (n, d) in SUITE_SIZES.items()}
    args.repeats = {suite: r if args.repeat is None else args.repeat for suite, r in SUITE_REPEATS.items()}
    args.suite_dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype or "float64"]
    args.n, args.d = args.sizes["core"]
    args.dtype = args.dtype or "both"
    args.repeat = args.repeats["core"]
    if args.gemm_size is None:
        if any(k in KERNELS for k in kernels):
            n_max = max([args.n] + (list(SCALING_N) if args.scaling else []))
            work = float(n_max) * args.d**2
        else:
            work = suite_work(args)
        args.gemm_size = GEMM_SIZE if work >= 1e11 else SMALL_GEMM_SIZE
    if min(args.n, args.d, args.repeat, args.gemm_size, args.components) < 1:
        p.error("--n, --d, --repeat, --gemm-size and --components must be positive")
    if not 0.0 <= args.zero_fraction <= 1.0:
        p.error("--zero-fraction must be between 0 and 1")
    return args


def main(argv=None):
    run(parse_args(argv))


if __name__ == "__main__":
    main()
