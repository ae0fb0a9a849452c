"""The command line of the benchmark: the suites to run, their sizes, the JSON record."""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import gmmkernels

from . import baselines
from .batch import BATCH_KERNELS, run_batch
from .common import (
    GEMM_SIZE, PEAK_NOTE, SMALL_GEMM_SIZE, _dask_version, _load_average, format_bytes, gemm_rate,
    numpy_blas_name, total_ram,
)
from .core import KERNELS, SCALING_N, necessary_flops, plot, print_float32_verdict, print_scaling, run_dtype
from .gmm import run_gmm
from .matmul import run_matmul, run_outer
from .out_of_core import run_out_of_core
from .precisions import PRECISIONS_COMPONENTS, run_precisions
from .wide import run_wide


ALL_KERNELS = KERNELS + BATCH_KERNELS + ("matmul", "outer", "gmm", "wide", "precisions")

#: Suites that only run when named: they write a file larger than this machine's RAM.
OPT_IN_KERNELS = ("out-of-core",)

#: Names --kernels accepts for several kernels at once.
KERNEL_GROUPS = {"core": KERNELS, "batch": BATCH_KERNELS, "all": ALL_KERNELS}

#: Suite -> (n, d) when --n/--d are not given. matmul: A (n, d) @ B (d, d); outer: out (n, d).
SUITE_SIZES = {"core": (200_000, 900), "batch": (200_000, 300), "matmul": (20_000, 2_000),
               "outer": (20_000, 20_000), "gmm": (200_000, 64)}

#: Timed calls per method when --repeat is not given. A batch call starts from a cold page
#: cache and K blocked numpy passes take minutes at the default size, so once is the default.
SUITE_REPEATS = {"core": 3, "batch": 1, "matmul": 3, "outer": 3, "gmm": 1, "wide": 3}

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

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
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
