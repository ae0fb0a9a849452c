"""The gmm suite: GaussianMixture against scikit-learn's, in memory, on a memmap and through
dask.distributed; then both estimators (GaussianMixture, BayesianGaussianMixture) and all
four covariance types against scikit-learn from the same start."""
import os
import sys
import tempfile
import time

import numpy as np

import gmmkernels

from . import datafiles
from .common import _data_file_path, _diff_text, _verdict, format_bytes, format_seconds, max_rel_diff
from .measure import PeakMemory


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

        def _print_verbose_msg_iter_end(self, n_iter, diff_ll, **run):
            self.iteration_ends_.append(time.perf_counter())
            super()._print_verbose_msg_iter_end(n_iter, diff_ll, **run)

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
    path = _data_file_path(directory, datafiles.nbytes((n, d), dtype) + 4096, dtype, "--n/--d")
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
    records += run_gmm_types(n, d, k, dtype, repeat)
    records += run_partial_fit(n, d, k, dtype)
    records += run_checkpoint(n, d, k, dtype)
    records += run_n_init(args, n, d, k, dtype)
    sys.stdout.flush()
    return records

N_INIT = 4

def _read_bytes():
    """Bytes this process has read from storage (/proc/self/io), or None where unknown."""
    try:
        with open("/proc/self/io") as f:
            return int(next(line for line in f if line.startswith("read_bytes:")).split()[1])
    except (OSError, StopIteration):
        return None

def run_n_init(args, n, d, k, dtype):
    """n_init = 4 side by side against one after another and against n_init = 1, X a memmap
    whose pages are dropped from the page cache after every pass (as for X larger than RAM):
    seconds and bytes read from disk per fit."""
    import mmap
    import warnings

    from gmmkernels.mixture import _base

    X, _ = gmm_problem(n, d, k, dtype, seed=6)
    folder = tempfile.mkdtemp(prefix="gmmkernels-n-init-", dir=args.dir)
    path = os.path.join(folder, "x.npy")
    np.save(path, X)
    del X
    X = np.load(path, mmap_mode="r")

    def evict():
        X._mmap.madvise(mmap.MADV_DONTNEED)
        datafiles.evict(path)

    class Evicting(gmmkernels.GaussianMixture):
        def _print_verbose_msg_iter_end(self, n_iter, diff_ll, **run):
            evict()
            super()._print_verbose_msg_iter_end(n_iter, diff_ll, **run)

    params = dict(n_components=k, init_params="random_from_data", random_state=0, max_iter=GMM_MAX_ITER * 2,
                  tol=1e-3)
    runs_per_pass = _base.BaseMixture._runs_per_pass
    results = []
    try:
        for label, n_init, side_by_side in (("n_init=1", 1, True), ("n_init=%d one after another" % N_INIT, N_INIT, False),
                                            ("n_init=%d side by side" % N_INIT, N_INIT, True)):
            _base.BaseMixture._runs_per_pass = runs_per_pass if side_by_side else (lambda self, n_features: 1)
            evict()
            before = _read_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                model = Evicting(n_init=n_init, **params).fit(X)
                seconds = time.perf_counter() - t0
            read = None if before is None else _read_bytes() - before
            results.append((label, seconds, read, model.n_iter_, model.lower_bound_))
    finally:
        _base.BaseMixture._runs_per_pass = runs_per_pass
        X = None  # unmapped before the file goes
        os.remove(path)
        os.rmdir(folder)
    size = n * d * np.dtype(dtype).itemsize
    print("%s  n_init: full, K=%d, max_iter=%d, tol=1e-3, X a memmap of %s dropped from the page cache after every "
          "pass" % (dtype.name, k, params["max_iter"], format_bytes(size)))
    records = []
    for label, seconds, read, n_iter, lower_bound in results:
        print("  %-28s %8.2f s  read %10s (%5.1f x X)  best run: %d iterations, lower bound %.6f"
              % (label, seconds, "?" if read is None else format_bytes(read), float("nan") if read is None else read / size,
                 n_iter, lower_bound))
        records.append({"kernel": "gmm n_init", "method": label, "n": n, "d": d, "components": k, "dtype": dtype.name,
                        "seconds": seconds, "read_bytes": read, "x_bytes": size, "n_iter": n_iter,
                        "lower_bound": lower_bound})
    print()
    return records

CHECKPOINT_PAIRS = 5
CHECKPOINT_TARGET = 0.02

def run_checkpoint(n, d, k, dtype):
    """The cost of checkpoint=: seconds per iteration with and without it, in alternating
    pairs (the checkpoint in the temporary directory, written and fsynced every iteration)."""

    X, _ = gmm_problem(n, d, k, dtype, seed=6)
    params = dict(n_components=k, init_params="random_from_data", random_state=0, max_iter=GMM_MAX_ITER, tol=0.0)
    clock = _iteration_clock(gmmkernels.GaussianMixture)
    from gmmkernels.mixture import _checkpoint

    save = _checkpoint.Checkpoint.save
    save_seconds = []

    def timed_save(self, state):
        t0 = time.perf_counter()
        save(self, state)
        save_seconds.append(time.perf_counter() - t0)

    ratios, plain, saved = [], [], []
    _checkpoint.Checkpoint.save = timed_save
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "fit.ckpt")
            for _ in range(CHECKPOINT_PAIRS):
                without = _fit_clocked(clock, X, params, 1)[0]
                with_checkpoint = _fit_clocked(clock, X, dict(params, checkpoint=path), 1)[0]
                plain.append(without)
                saved.append(with_checkpoint)
                ratios.append(with_checkpoint / without)
    finally:
        _checkpoint.Checkpoint.save = save
    ratio = sorted(ratios)[len(ratios) // 2]
    per_iteration = sorted(plain)[len(plain) // 2]
    one_save = sorted(save_seconds)[len(save_seconds) // 2]
    print("%s  checkpoint: full, K=%d: one save (write, fsync, rename) takes %s, %.2f%% of an iteration's %s "
          "(target < %.0f%%: %s); per iteration with it / without, median of %d alternating pairs: %+.1f%% (noise: "
          "%s)" % (dtype.name, k, format_seconds(one_save), 100 * one_save / per_iteration, format_seconds(per_iteration),
                   100 * CHECKPOINT_TARGET, _verdict(one_save / per_iteration < CHECKPOINT_TARGET), CHECKPOINT_PAIRS,
                   100 * (ratio - 1), ", ".join("%+.1f%%" % (100 * (r - 1)) for r in ratios)))
    print()
    return [{"kernel": "gmm checkpoint", "n": n, "d": d, "components": k, "dtype": dtype.name,
             "save_seconds": one_save, "seconds_per_iteration_without": per_iteration,
             "seconds_per_iteration": sorted(saved)[len(saved) // 2], "overhead_of_save": one_save / per_iteration,
             "paired_ratio": ratio}]

PARTIAL_FIT_BATCH = 10_000
PARTIAL_FIT_EPOCHS = 3

def run_partial_fit(n, d, k, dtype):
    """partial_fit on batches of X in order against fit: seconds per row of one step and of one
    EM iteration, and the mean log-likelihood on X after each epoch against fit's."""
    import warnings

    X, _ = gmm_problem(n, d, k, dtype, seed=6)
    params = dict(n_components=k, init_params="random_from_data", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clock = _iteration_clock(gmmkernels.GaussianMixture)
        per_iteration, _, _, fitted = _fit_clocked(clock, X, dict(params, max_iter=GMM_MAX_ITER, tol=0.0), 1)
        target = fitted.score(X)
        online = gmmkernels.GaussianMixture(**params)
        steps, epochs = [], []
        for _ in range(PARTIAL_FIT_EPOCHS):
            for start in range(0, n, PARTIAL_FIT_BATCH):
                batch = X[start:start + PARTIAL_FIT_BATCH]
                t0 = time.perf_counter()
                online.partial_fit(batch)
                steps.append((time.perf_counter() - t0) / batch.shape[0])
            epochs.append(online.score(X))
    step = sorted(steps[1:])[len(steps[1:]) // 2]  # the first step also initialises
    fit_row = per_iteration / n
    print("%s  partial_fit: batches of %s rows, full, K=%d: %.3g us per row per step (median), fit %.3g us per row "
          "per iteration (%.2fx); mean log-likelihood after epochs %s, fit after %d iterations %.4f"
          % (dtype.name, f"{PARTIAL_FIT_BATCH:,}", k, step * 1e6, fit_row * 1e6, step / fit_row,
             ", ".join("%.4f" % e for e in epochs), GMM_MAX_ITER, target))
    print()
    return [{"kernel": "gmm partial_fit", "n": n, "d": d, "components": k, "dtype": dtype.name,
             "batch_rows": PARTIAL_FIT_BATCH, "seconds_per_row_step": step, "seconds_per_row_fit_iteration": fit_row,
             "epoch_scores": epochs, "fit_score": target}]

TYPES_HEADER = "%-24s %-10s %9s %9s %8s %11s %11s %13s"

def run_gmm_types(n, d, k, dtype, repeat):
    """Each estimator and covariance type from scikit-learn's 'random_from_data' start (the
    same rows for both), seconds per iteration, peak extra memory, and the limit: the time of
    one read of X from RAM (an ``X.sum()``), the floor of a pass for 'diag' and 'spherical'."""
    import warnings

    from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    X, _ = gmm_problem(n, d, k, dtype, seed=6)
    reads = []
    for _ in range(3):
        t0 = time.perf_counter()
        X.sum()
        reads.append(time.perf_counter() - t0)
    read = sorted(reads)[1]
    print("%s  gmm by covariance type: n=%s d=%d K=%d, init_params='random_from_data', random_state=0, "
          "max_iter=%d, tol=0; one read of X from RAM (X.sum(), median of 3) takes %s"
          % (dtype.name, f"{n:,}", d, k, GMM_MAX_ITER, format_seconds(read)))
    print(TYPES_HEADER % ("estimator", "type", "s/iter", "sklearn", "speedup", "x read", "peak extra", "max rel diff"))
    pairs = [("GaussianMixture", gmmkernels.GaussianMixture, SklearnGaussianMixture),
             ("BayesianGaussianMixture", gmmkernels.BayesianGaussianMixture, SklearnBayesianGaussianMixture)]
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, ours_class, theirs_class in pairs:
            for covariance_type in ("full", "tied", "diag", "spherical"):
                params = dict(n_components=k, covariance_type=covariance_type, max_iter=GMM_MAX_ITER, tol=0.0,
                              init_params="random_from_data", random_state=0)
                ours = _fit_clocked(_iteration_clock(ours_class), X, params, repeat)
                theirs = _fit_clocked(_iteration_clock(theirs_class), X, params, repeat)
                difference = _fit_difference(ours[3], theirs[3])
                record = {"kernel": "gmm types", "estimator": name, "covariance_type": covariance_type, "n": n,
                          "d": d, "components": k, "dtype": dtype.name, "seconds_per_iteration": ours[0],
                          "sklearn_seconds_per_iteration": theirs[0], "speedup_vs_sklearn": theirs[0] / ours[0],
                          "read_seconds": read, "times_read": ours[0] / read, "peak_bytes": int(ours[2]),
                          "sklearn_peak_bytes": int(theirs[2]), "max_rel_diff": difference}
                records.append(record)
                print(TYPES_HEADER % (name, covariance_type, format_seconds(ours[0], unit=False),
                                      format_seconds(theirs[0], unit=False), "%.2fx" % record["speedup_vs_sklearn"],
                                      "%.1f" % record["times_read"], format_bytes(ours[2]), "%.1e" % difference))
    print("  s/iter = median over %d fit(s) of the mean time of iterations 2..%d; x read = s/iter over one read "
          "of X; max rel diff = largest relative difference of the means and covariances from scikit-learn's fit"
          % (repeat, GMM_MAX_ITER))
    print()
    return records

GMM_HEADER = "%-13s %-36s %8s %8s %8s %7s %10s %11s %13s"

def print_gmm_row(r):
    print(GMM_HEADER % (r["method"], r["where"], format_seconds(r["seconds_per_iteration"], unit=False), "%.2f" % r["seconds"],
                        "%.1f" % r["gflops"], "%.0f%%" % r["percent_of_gemm"], "%.2fx" % r["speedup_vs_sklearn"],
                        format_bytes(r["peak_bytes"]), _diff_text(r)))
