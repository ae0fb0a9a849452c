"""The precisions suite: hundreds of precision matrices against one memmap'd X."""
import os
import tempfile

import numpy as np

import gmmkernels

from . import baselines, datafiles
from .common import PairedGemm, _data_file_path, format_bytes, format_seconds, max_rel_diff
from .wide import _wide_call


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
    path = _data_file_path(directory, datafiles.nbytes((n, d), dtype), dtype, "--n")
    rng = np.random.default_rng(31)
    try:
        X = datafiles.make_data_file(path, (n, d), dtype, seed=32, mean=1.0)
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
            print("%-34s %10s %8.1f %8.1f %11s %8.1fx" % (label, format_seconds(seconds), r["gflops"],
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
