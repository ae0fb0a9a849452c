"""The core suite: quadform and weighted_gram against hand-blocked numpy, the naive one-liners and
dask.array, at the GEMM ceiling."""
import os
import sys
import tempfile

import numpy as np

import gmmkernels

from . import baselines, datafiles
from .common import (
    CORE_MEMORY_TARGET, FLOAT32_SPEEDUP_TARGET, PairedGemm, _verdict, format_bytes, format_seconds,
    max_rel_diff,
)
from .measure import timed


KERNELS = ("quadform", "weighted_gram")

SCALING_N = (50_000, 100_000, 200_000, 400_000)

#: The naive expressions are skipped when their temporaries would exceed this share of RAM.
NAIVE_RAM_SHARE = 1 / 3

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

#: Targets of the core kernels at the default size (n=200000, d=900, median of 3); the
#: speedups over the blocked code are float64's.
LIMIT_TARGET = 0.90

BLOCKED_SPEEDUP_TARGETS = {"quadform": 2.4, "weighted_gram": 2.8}

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
    size = datafiles.nbytes((n_max, d), dtype)
    directory = args.dir or tempfile.gettempdir()
    free = datafiles.free_bytes(directory)
    if size + (256 << 20) > free:
        raise SystemExit("not enough disk space in %s for X: need %s, %s free; use --dir or a smaller --n"
                         % (directory, format_bytes(size), format_bytes(free)))
    fd, path = tempfile.mkstemp(prefix="gmmkernels-bench-", suffix="." + dtype.name, dir=directory)
    os.close(fd)
    records = []
    try:
        X_all = datafiles.make_data_file(path, (n_max, d), dtype, seed=0)
        read, seconds = datafiles.warm(path)
        seconds += datafiles.map_pages(X_all)
        print("%s: X is a memmap of %s (%s), warm in page cache and mapped (read once: %.2f s)"
              % (dtype.name, path, format_bytes(read), seconds))
        Q, w_all = datafiles.random_operands(d, n_max, dtype, zero_fraction=args.zero_fraction)
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
                      % (kernel + ":", work, flops / 1e9, gemm_name, rate, format_seconds(flops / (rate * 1e9))))
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

TABLE_HEADER = "%-14s %-15s %9s %8s %8s %10s %11s %13s"

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
