"""Benchmark: gmmkernels against the numpy and dask code it replaces, judged against GEMM.

    python -m gmmkernels.bench [--n 200000] [--d 900] [--dtype both] [--repeat 3]
                               [--kernels quadform weighted_gram] [--zero-fraction 0.3]
                               [--scaling] [--json bench-results/bench.json] [--plot FILE.png]

What is measured, in one run:

- the GEMM rate of the BLAS in this process (numpy's own OpenBLAS: ``np.dot`` of two
  4000 × 4000 matrices, 2·m³ flops), in float64 (dgemm) and float32 (sgemm). That is the
  ceiling; gmmkernels links the system OpenBLAS, which is not reachable from Python
  without a second binding, so the two BLAS builds may differ somewhat;
- for each kernel and method: the median wall time of ``--repeat`` calls, the effective
  rate, the percentage of the GEMM rate of the same precision, the speedup over the
  hand-blocked numpy code, the peak extra anonymous memory (heap and anonymous mappings,
  including the result; pages of the memmap'd file do not count), and the largest
  difference from gmmkernels' result.

Necessary flops: both kernels need n·d² flops at best, which is what the effective rate
counts. x_iᵀ Q x_i needs one triangle of the symmetric part of Q (d²/2 multiply-adds per
row), and Σ w_i x_i x_iᵀ is a symmetric rank-k update (SYRK: d²/2 multiply-adds per row),
so 2·(d²/2) = d² flops per row in both cases. Plain GEMM does twice that, 2·n·d², so a
GEMM-based method can reach at most 50% of the GEMM rate by this count. The "limit" line
is the time of n·d² flops at the GEMM rate. Rows with w_i = 0 are counted as work although
gmmkernels and the blocked code skip them.

X is a memmap of a file on disk (in ``--dir``), read once before the timed calls so that
it sits in the page cache: compute is measured, not the disk.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

import gmmkernels

from . import _datafiles, baselines
from ._datafiles import format_bytes
from ._measure import timed

KERNELS = ("quadform", "weighted_gram")
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


def run_one(kernel, method, fn, X, operand, *, repeat, reference, dask_ok, ram):
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
    seconds, peak, result = timed(fn, X, operand, repeat=repeat)
    record.update(seconds=seconds, peak_bytes=int(peak),
                  max_rel_diff=None if reference is None else max_rel_diff(result, reference))
    return record, result


def run(args):
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    ns = sorted(set([args.n] + (list(SCALING_N) if args.scaling else [])))
    d = args.d
    ram = total_ram()
    dask_ok = baselines.have_dask()

    print("gmmkernels %s (%s), %d threads, default memory_limit 64 MiB"
          % (gmmkernels.library_version, gmmkernels.library_path, gmmkernels.default_threads()))
    print("machine: %s, %d CPUs, %s RAM, load average %s at start; numpy %s; dask %s"
          % (platform.machine(), os.cpu_count() or 0, format_bytes(ram), _load_average(), np.__version__,
             _dask_version() if dask_ok else "not installed"))
    print("GEMM ceiling measured with numpy's own BLAS (%s), np.dot of %d x %d matrices; "
          "gmmkernels calls the system OpenBLAS" % (numpy_blas_name(), args.gemm_size, args.gemm_size))
    rates = {}
    for dtype, name in (("float64", "dgemm"), ("float32", "sgemm")):
        rates[dtype] = gemm_rate(dtype, args.gemm_size, max(1, args.repeat))
        print("  %s: %.1f GFLOP/s" % (name, rates[dtype]))
    print("necessary flops = n*d^2 for both kernels (one triangle / SYRK); GEMM-based code does 2*n*d^2")
    print("GFLOP/s = n*d^2 / seconds (median of %d); %% of the GEMM rate of X's precision; "
          "vs blocked = speedup over the hand-blocked numpy code" % args.repeat)
    if "weighted_gram" in args.kernels and args.zero_fraction > 0:
        print("weighted_gram: rows with w_i = 0 (%.0f%% here) are counted as work; gmmkernels and the blocked "
              "code skip them, so they can pass 100%%" % (100 * args.zero_fraction))
    print(PEAK_NOTE)
    print()

    records = []
    for dtype in dtypes:
        records += run_dtype(args, np.dtype(dtype), ns, d, rates[dtype], ram, dask_ok)

    if len(ns) > 1:
        print_scaling(records, dtypes, args.kernels)
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
                 "dgemm_gflops": rates["float64"], "sgemm_gflops": rates["float32"]},
        "flops_definition": "necessary flops = n*d^2 for quadform (one triangle of Q) and "
                            "weighted_gram (SYRK); gflops = n*d^2 / seconds / 1e9; "
                            "percent_of_gemm uses dgemm for float64 and sgemm for float32",
        "results": records,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print("wrote %s" % args.json)
    if args.plot:
        plot(records, args.plot, args.kernels)
        print("wrote %s" % args.plot)
    return result


def run_dtype(args, dtype, ns, d, rate, ram, dask_ok):
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
        for n in ns:
            X, w = X_all[:n], w_all[:n]
            flops = necessary_flops(n, d)
            print()
            print("%s  n=%s  d=%d  necessary work n*d^2 = %.1f GFLOP" % (dtype.name, f"{n:,}", d, flops / 1e9))
            print("limit: n*d^2 flops at the %s rate (%.1f GFLOP/s) = %s"
                  % (gemm_name, rate, fmt_seconds(flops / (rate * 1e9))))
            print(TABLE_HEADER % ("kernel", "method", "seconds", "GFLOP/s", "% " + gemm_name,
                                  "vs blocked", "peak extra", "max rel diff"))
            for kernel in args.kernels:
                operand = Q if kernel == "quadform" else w
                reference, block = None, []
                for method, fn in METHODS[kernel]:
                    record, result = run_one(kernel, method, fn, X, operand, repeat=args.repeat,
                                             reference=reference, dask_ok=dask_ok, ram=ram)
                    if method == REFERENCE:
                        reference = result
                    del result
                    if "seconds" in record:
                        record["gflops"] = flops / record["seconds"] / 1e9
                        record["percent_of_gemm"] = 100.0 * record["gflops"] / rate
                        record["gemm"] = gemm_name
                    block.append(record)
                blocked = next((r["seconds"] for r in block if r["method"] == BLOCKED and "seconds" in r), None)
                for record in block:
                    if blocked is not None and "seconds" in record:
                        record["speedup_vs_blocked"] = blocked / record["seconds"]
                    print_row(record, first=record is block[0])
                records += block
                del reference
            sys.stdout.flush()
        del X_all
    finally:
        os.remove(path)
    print()
    return records


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
    p.add_argument("--n", type=int, default=200_000, help="rows of X (default 200000)")
    p.add_argument("--d", type=int, default=900, help="columns of X (default 900)")
    p.add_argument("--dtype", choices=("float64", "float32", "both"), default="both",
                   help="dtype of X (default both)")
    p.add_argument("--repeat", type=int, default=3, help="timed calls per method; the median is shown (default 3)")
    p.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS), metavar="KERNEL",
                   help="kernels to run: quadform, weighted_gram (default both)")
    p.add_argument("--zero-fraction", type=float, default=0.3,
                   help="fraction of zero weights for weighted_gram (default 0.3)")
    p.add_argument("--scaling", action="store_true",
                   help="also run n = 50k, 100k, 200k, 400k: time should grow linearly, memory stay flat")
    p.add_argument("--json", default=os.path.join("bench-results", "bench.json"),
                   help="write results here (default bench-results/bench.json; '' for none)")
    p.add_argument("--plot", metavar="FILE.png", help="plot time and peak memory against n (matplotlib)")
    p.add_argument("--dir", help="directory for the memmap'd X file (default: the temp directory)")
    p.add_argument("--gemm-size", type=int,
                   help="order of the matrices timed for the GEMM ceiling (default %d; %d when "
                        "n*d^2 < 1e11, where a smaller ceiling run is enough)" % (GEMM_SIZE, SMALL_GEMM_SIZE))
    args = p.parse_args(argv)
    if args.gemm_size is None:
        n_max = max([args.n] + (list(SCALING_N) if args.scaling else []))
        args.gemm_size = GEMM_SIZE if float(n_max) * args.d**2 >= 1e11 else SMALL_GEMM_SIZE
    if args.n < 1 or args.d < 1 or args.repeat < 1 or args.gemm_size < 1:
        p.error("--n, --d, --repeat and --gemm-size must be positive")
    if not 0.0 <= args.zero_fraction <= 1.0:
        p.error("--zero-fraction must be between 0 and 1")
    return args


def main(argv=None):
    run(parse_args(argv))


if __name__ == "__main__":
    main()
