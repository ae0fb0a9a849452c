"""The wide suite: the users' next widths (d = 2500 and 10000) with default arguments."""
import os
import tempfile
import time

import numpy as np

import gmmkernels

from .common import (
    CORE_MEMORY_TARGET, FLOAT32_SPEEDUP_TARGET, PairedGemm, _verdict, format_bytes, format_seconds,
)
from .gmm import _iteration_clock
from .measure import PeakMemory


#: The wide suite's widths and rows: n·d² = 4e11 flops per matrix, 4-5 s per call at the DGEMM rate.
WIDE_SIZES = {2500: 64_000, 10_000: 4_000}

WIDE_COMPONENTS = 3

WIDE_LIMIT_TARGET = 0.85

WIDE_GMM_TARGET = 1.2

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
                          % (name[5:], dtype, d, n, format_seconds(r["seconds"]), r["gflops"], r["percent_of_gemm"],
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
              % ("gmm iteration (full, K=3)", "float64", d, n, format_seconds(seconds), flops / seconds / 1e9, ratio,
                 format_bytes(mem.peak), _verdict(ratio <= WIDE_GMM_TARGET and mem.peak <= budget), rate,
                 WIDE_GMM_TARGET, format_bytes(budget)), flush=True)
        return {"kernel": "wide gmm iteration", "dtype": "float64", "n": n, "d": d, "seconds": seconds,
                "gflops": flops / seconds / 1e9, "time_ratio_vs_necessary": ratio, "paired_gemm_gflops": rate,
                "peak_bytes": mem.peak, "peak_budget_bytes": budget}
    finally:
        del X
        os.unlink(path)
