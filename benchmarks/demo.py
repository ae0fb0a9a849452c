"""Demo: the E-step and M-step products on a memmap'd X at the scale where numpy hits a wall.

    python -m benchmarks.demo [--n 1000000] [--d 900] [--dtype float64] [--dir DIR] [--keep] [--cold]

Writes X of shape (n, d) to a file (default 1,000,000 × 900 float64 = 7.2 GB), makes a
random SPD Q and weights w with 30% zeros, and runs side by side:

- E-step  q_i = x_iᵀ Q x_i:      gmmkernels.quadform(X, Q)  and the hand-blocked numpy
  code (1 GiB row blocks: ``np.dot(b, Q, out=buf)``, then ``np.sum(buf * b, axis=1)``);
- M-step  G = Σ_i w_i x_i x_iᵀ:  gmmkernels.weighted_gram(X, w)  and the hand-blocked
  numpy code (per block: ``nz = w != 0; acc += (b[nz] * w[nz, None]).T.dot(b[nz])``).

It prints time and peak extra memory of each, checks that the results agree, and removes
the file unless --keep is given (a kept file of the same shape is reused next time).

Then it fits a Gaussian mixture (gmmkernels.GaussianMixture, full covariances) on a second
memmap file of clustered data ([200000, 64], 16 components by default), showing EM's
progress, and prints the fitted model's summary and time beside scikit-learn's
GaussianMixture started from the same draws, when scikit-learn is installed.
The naive one-liners are not run here: at this size their temporaries alone are as large
as X or twice as large (see ``python -m benchmarks`` for them at smaller n).
"""
import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

import gmmkernels

from . import baselines, datafiles
from .common import format_bytes, max_rel_diff, total_ram
from .measure import timed

#: Disk kept free beside X.
DISK_MARGIN = 256 << 20


def _tqdm_available():
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _write_progress(n, show):
    """A callback for make_data_file: a tqdm bar on a terminal, nothing otherwise."""
    if not show:
        return None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="writing X", unit="rows", unit_scale=True)
    return (lambda done: bar.update(done - bar.n)), bar.close


def _data_file(args, dtype):
    """The path of X's file, made (or reused, when kept from an earlier run) at args' shape."""
    n, d = args.n, args.d
    size = datafiles.nbytes((n, d), dtype)
    path = os.path.join(args.dir, "gmmkernels-demo-X-%dx%d-%s.dat" % (n, d, dtype.name))
    if os.path.isfile(path) and os.path.getsize(path) == size:
        print("reusing %s (%s)" % (path, format_bytes(size)))
        return path
    free = datafiles.free_bytes(args.dir)
    if size + DISK_MARGIN > free:
        print("Not enough disk space for X in %s: X needs %s (plus %s to spare), only %s is free.\n"
              "Choose a directory on a larger disk with --dir, or a smaller X, e.g. --n %d."
              % (args.dir, format_bytes(size), format_bytes(DISK_MARGIN), format_bytes(free),
                 max(1000, int((free - DISK_MARGIN) // (d * dtype.itemsize) // 1000 * 1000))),
              file=sys.stderr)
        raise SystemExit(2)
    print("writing X to %s (%s, %s free on that disk) ..." % (path, format_bytes(size), format_bytes(free)))
    update, close = _write_progress(n, args.progress)
    t0 = time.perf_counter()
    try:
        datafiles.make_data_file(path, (n, d), dtype, seed=0, progress=update)
    except BaseException:
        close()
        if os.path.exists(path):
            os.remove(path)
        raise
    close()
    seconds = time.perf_counter() - t0
    print("  written in %.1f s (%.0f MB/s)" % (seconds, size / seconds / 1e6))
    return path


def _open(path, n, d, dtype, cold):
    """A read-only memmap of X; with `cold`, the file's pages are dropped from the cache first."""
    if cold:
        datafiles.evict(path)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n, d))


def _run(label, fn, X, path, args, dtype, operand, **kwargs):
    if args.cold:
        # A fresh memmap per call: pages still mapped by an old one could not be evicted.
        X = _open(path, args.n, args.d, dtype, cold=True)
    print("  %s ..." % label, flush=True)
    return timed(fn, X, operand, repeat=1, **kwargs)


def main(argv=None):
    args = parse_args(argv)
    args.progress = _tqdm_available() and sys.stdout.isatty()
    start = time.perf_counter()
    if not args.skip_kernels:
        kernels_demo(args)
    if not args.skip_mixture:
        print()
        mixture_demo(args)
    print()
    print("demo finished in %.1f min" % ((time.perf_counter() - start) / 60))


def _clustered_file(path, n, d, k, dtype, seed=0):
    """Writes n rows drawn from a random k-component Gaussian mixture, chunk by chunk."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    factors = rng.normal(scale=1.0 / np.sqrt(d), size=(k, d, d)) + np.eye(d)
    X = np.memmap(path, dtype=dtype, mode="w+", shape=(n, d))
    chunk = max(1, datafiles.CHUNK_BYTES // (d * 8))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        labels = rng.integers(k, size=hi - lo)
        z = rng.standard_normal((hi - lo, d))
        X[lo:hi] = centers[labels] + np.einsum("ij,ijl->il", z, factors[labels])
    X.flush()
    del X
    return np.memmap(path, dtype=dtype, mode="r", shape=(n, d))


def mixture_demo(args):
    """Fits GaussianMixture on a memmap'd clustered X, beside scikit-learn's when installed."""
    from .measure import PeakMemory

    n, d, k, dtype = args.mixture_n, args.mixture_d, args.components, np.dtype(args.dtype)
    size = datafiles.nbytes((n, d), dtype)
    path = os.path.join(args.dir, "gmmkernels-demo-mixture-%dx%d-%s.dat" % (n, d, dtype.name))
    print("Gaussian mixture: X %s x %d %s memmap (%s) from %d clusters; full covariances, "
          "init_params='random_from_data', max_iter=%d"
          % (f"{n:,}", d, dtype.name, format_bytes(size), k, args.mixture_iter))
    X = _clustered_file(path, n, d, k, dtype)
    try:
        params = dict(n_components=k, covariance_type="full", init_params="random_from_data",
                      max_iter=args.mixture_iter, random_state=0)
        fits = [("gmmkernels.GaussianMixture", gmmkernels.GaussianMixture)]
        if not args.no_sklearn:
            try:
                from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
            except ImportError:
                print("scikit-learn is not installed: fitting with gmmkernels only")
            else:
                fits.append(("sklearn GaussianMixture", SklearnGaussianMixture))
        rows, models = [], {}
        for label, cls in fits:
            print("fitting with %s ..." % label, flush=True)
            verbose = {"verbose": 2, "verbose_interval": 1} if cls is gmmkernels.GaussianMixture else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning at a small max_iter is expected
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    model = cls(**params, **verbose).fit(X)
                    seconds = time.perf_counter() - t0
            models[label] = model
            rows.append((label, seconds, model.n_iter_, mem.peak, model.lower_bound_, model.converged_))
        print()
        fmt = "%-28s %9s %7s %12s %12s %16s %10s"
        print(fmt % ("estimator", "seconds", "n_iter", "s/iteration", "peak extra", "lower bound", "converged"))
        for label, seconds, n_iter, peak, bound, converged in rows:
            print(fmt % (label, "%.2f" % seconds, n_iter, "%.3f" % (seconds / max(n_iter, 1)),
                         format_bytes(peak), "%.10f" % bound, converged))
        ours = models["gmmkernels.GaussianMixture"]
        print()
        print("fitted model: weights %s" % np.array2string(np.sort(ours.weights_)[::-1][:8], precision=3)
              + (" ..." if k > 8 else ""))
        print("              log-likelihood per sample %.6f, BIC %.6g" % (ours.score(X), ours.bic(X)))
        if len(rows) == 2:
            theirs = models["sklearn GaussianMixture"]
            same = ours.n_iter_ == theirs.n_iter_
            diff = max_rel_diff(ours.means_, theirs.means_)
            print("agreement with scikit-learn: n_iter %s, means max rel diff %.1e, lower bound rel diff %.1e"
                  % ("equal" if same else "DIFFERENT", diff,
                     abs(ours.lower_bound_ - theirs.lower_bound_) / abs(theirs.lower_bound_)))
            print("speed: %.1fx scikit-learn per iteration" % (
                (rows[1][1] / max(rows[1][2], 1)) / (rows[0][1] / max(rows[0][2], 1))))
    finally:
        del X
        if os.path.exists(path):
            os.remove(path)


def kernels_demo(args):
    dtype = np.dtype(args.dtype)
    n, d = args.n, args.d
    size = datafiles.nbytes((n, d), dtype)
    flops = float(n) * d * d

    print("gmmkernels %s, %d threads; %d CPUs; numpy %s"
          % (gmmkernels.library_version, gmmkernels.default_threads(), os.cpu_count() or 0, np.__version__))
    print("X: %s x %s %s memmap, %s" % (f"{n:,}", f"{d:,}", dtype.name, format_bytes(size)))
    path = _data_file(args, dtype)
    try:
        Q, w = datafiles.random_operands(d, n, dtype, zero_fraction=0.3)
        X = None
        ram = total_ram()
        if args.cold:
            print("cold: X's pages are dropped from the page cache before each call, so each reads the disk")
        elif ram and size > ram:
            print("X is larger than RAM (%s): every call reads it from the disk" % format_bytes(ram))
        else:
            read, seconds = datafiles.warm(path)
            X = _open(path, n, d, dtype, cold=False)
            seconds += datafiles.map_pages(X)
            print("read X once into the page cache and mapped it (%s in %.1f s): the calls below compare compute"
                  % (format_bytes(read), seconds))
        print("Q: random SPD (%d, %d); w: %d weights, 30%% of them zero" % (d, d, n))
        print()
        progress = {"progress": True} if args.progress else {}
        runs = [
            ("E-step", "quadform", "gmmkernels.quadform", gmmkernels.quadform, Q, progress),
            ("E-step", "quadform", "blocked numpy", baselines.blocked_quadform, Q, {}),
            ("M-step", "weighted_gram", "gmmkernels.weighted_gram", gmmkernels.weighted_gram, w, progress),
            ("M-step", "weighted_gram", "blocked numpy", baselines.blocked_weighted_gram, w, {}),
        ]
        rows, results = [], {}
        print("running (one call each):")
        for step, kernel, method, fn, operand, kwargs in runs:
            if X is None and not args.cold:
                X = _open(path, n, d, dtype, cold=False)
            seconds, peak, result = _run(method, fn, X, path, args, dtype, operand, **kwargs)
            results[kernel, method] = result
            rows.append((step, kernel, method, seconds, peak))
        print()
        print_table(rows, flops, size)
        print()
        print("results agree (max |difference| / max |gmmkernels result|):")
        for kernel, ours in (("quadform", "gmmkernels.quadform"), ("weighted_gram", "gmmkernels.weighted_gram")):
            diff = max_rel_diff(results[kernel, "blocked numpy"], results[kernel, ours])
            tol = 1e-3 if dtype == np.float32 else 1e-10
            print("  %-14s %.1e  %s" % (kernel, diff, "ok" if diff <= tol else "MISMATCH (tolerance %.0e)" % tol))
        itemsize = dtype.itemsize
        print()
        print("not run: the naive one-liners would allocate %s (np.sum(X.dot(Q) * X, axis=1)) and %s "
              "((X.T * W).dot(X)) of temporaries" % (format_bytes(2 * n * d * itemsize), format_bytes(n * d * itemsize)))
    finally:
        if args.keep:
            print("kept %s" % path)
        elif os.path.exists(path):
            os.remove(path)
            print("removed %s" % path)


def print_table(rows, flops, size):
    blocked = {kernel: s for _, kernel, method, s, _ in rows if method == "blocked numpy"}
    fmt = "%-7s %-26s %9s %10s %8s %12s %9s"
    print(fmt % ("step", "method", "seconds", "GFLOP/s*", "GB/s", "peak extra", "speedup"))
    for step, kernel, method, seconds, peak in rows:
        print(fmt % (step, method, ("%.3f" if seconds < 10 else "%.1f") % seconds, "%.1f" % (flops / seconds / 1e9),
                     "%.2f" % (size / seconds / 1e9), format_bytes(peak), "%.1fx" % (blocked[kernel] / seconds)))
    print("* n*d^2 flops (what either product needs at best) per second; GB/s = bytes of X / seconds; speedup "
          "over the hand-blocked numpy code; peak extra = anonymous memory beyond X's file pages, result included")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.demo",
        description="gmmkernels.quadform and weighted_gram beside hand-blocked numpy on a memmap'd X.")
    p.add_argument("--n", type=int, default=1_000_000, help="rows of X (default 1000000)")
    p.add_argument("--d", type=int, default=900, help="columns of X (default 900)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="dtype of X (default float64)")
    p.add_argument("--dir", default=tempfile.gettempdir(),
                   help="directory for X's file (default %s)" % tempfile.gettempdir())
    p.add_argument("--keep", action="store_true", help="keep X's file (and reuse it next time)")
    p.add_argument("--cold", action="store_true",
                   help="drop X from the page cache before each call, so the disk is read each time")
    p.add_argument("--skip-kernels", action="store_true", help="skip the quadform/weighted_gram part")
    p.add_argument("--skip-mixture", action="store_true", help="skip the Gaussian mixture part")
    p.add_argument("--mixture-n", type=int, default=200_000, help="rows of the mixture's X (default 200000)")
    p.add_argument("--mixture-d", type=int, default=64, help="columns of the mixture's X (default 64)")
    p.add_argument("--components", type=int, default=16, help="mixture components (default 16)")
    p.add_argument("--mixture-iter", type=int, default=10, help="EM iterations at most (default 10)")
    p.add_argument("--no-sklearn", action="store_true", help="do not fit scikit-learn's estimator beside")
    args = p.parse_args(argv)
    if args.n < 1 or args.d < 1 or args.mixture_n < 1 or args.mixture_d < 1 or args.components < 1:
        p.error("--n, --d, --mixture-n, --mixture-d and --components must be positive")
    if not os.path.isdir(args.dir):
        p.error("--dir %s is not a directory" % args.dir)
    return args


if __name__ == "__main__":
    main()
