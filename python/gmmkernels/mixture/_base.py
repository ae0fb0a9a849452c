"""The EM loop that every mixture estimator shares: parameter checks, n_init, warm start,
verbosity, convergence, the initial responsibilities, sampling, and predict/score through the
reading backends.

A subclass gives the model: ``_check_params()`` (extending this one),
``_check_initial_parameters(passes, X, sample_weight)``,
``_initialize_parameters(passes, X, sample_weight, total_weight, random_state, initial)``,
``_em_iteration(passes, X, sample_weight, total_weight, state)`` (one pass over X: the lower
bound and the new parameters), ``_get_parameters()``, ``_set_parameters(params)`` and
``_operands(dtype)`` (the fitted model as :func:`gmmkernels.mixture_pass` takes it).
"""
import numbers
import os
import sys
import warnings
from time import time

import numpy as np

from .. import _kmeans
from ._checkpoint import Checkpoint, fit_key
from ._checks import _check_integer, _check_option, _check_random_state, _check_real, _reports_lower_bounds
from ._fallbacks import BaseEstimator, ConvergenceWarning, DensityMixin, InvalidParameterError, NotFittedError
from ._numerics import _SCATTER
from ._passes import _InMemoryPasses, _one_hot_statistics

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

_DEFAULT_MEMORY_LIMIT = 64 << 20

_INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")

_CONVERGENCE_MESSAGE = (
    "Best performing initialization did not converge. "
    "Try different init parameters, or increase max_iter, "
    "tol, or check for degenerate data."
)


def _passes_for(X, *, threads=None, memory_limit=None):
    """The pass backend for X: :class:`_InMemoryPasses` for numpy arrays, memmaps and
    array-likes, ``_dask_passes.DaskPasses`` for a dask array."""
    # A dask array exists only if dask.array was imported: without it, dask is not loaded.
    dask_array = sys.modules.get("dask.array")
    if dask_array is not None and isinstance(X, dask_array.Array):
        from ._dask_passes import DaskPasses

        return DaskPasses(threads=threads, memory_limit=memory_limit)
    return _InMemoryPasses(threads=threads, memory_limit=memory_limit)


def _run_side_by_side(passes, X, sample_weight, fits):
    """Runs EM generators (:meth:`BaseMixture._em_runs`) together: each round, the passes all
    of them ask for are one joint pass over X (``passes.mixture_passes``), so X is read once
    per round however many runs and estimators share it."""
    requests = {}
    for fit in fits:
        try:
            requests[fit] = next(fit)
        except StopIteration:
            pass
    while requests:
        order = list(requests)
        results = passes.mixture_passes(X, [r for fit in order for r in requests[fit]], sample_weight)
        start = 0
        for fit in order:
            count = len(requests[fit])
            try:
                requests[fit] = fit.send(results[start:start + count])
            except StopIteration:
                del requests[fit]
            start += count


class BaseMixture(DensityMixin, BaseEstimator):
    """Base class of the mixture estimators: the EM loop, n_init, verbosity, predict and score."""

    def _check_is_fitted(self):
        if not hasattr(self, "precisions_cholesky_"):
            raise NotFittedError(
                "This %s instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator." % type(self).__name__
            )

    def _check_params(self):
        """Types and ranges of the parameters every mixture has (scikit-learn's constraints)."""
        _check_integer(self, "n_components", 1)
        _check_option(self, "covariance_type", _COVARIANCE_TYPES)
        _check_real(self, "tol", 0.0)
        _check_real(self, "reg_covar", 0.0)
        _check_integer(self, "max_iter", 0)
        _check_integer(self, "n_init", 1)
        _check_option(self, "init_params", _INIT_PARAMS)
        rs = self.random_state
        if not (rs is None or isinstance(rs, np.random.RandomState)
                or (isinstance(rs, numbers.Integral) and not isinstance(rs, (bool, np.bool_))
                    and 0 <= rs <= 2**32 - 1)):
            raise InvalidParameterError(
                "The 'random_state' parameter of %s must be an int in the range [0, 4294967295], "
                "an instance of 'numpy.random.mtrand.RandomState' or None. Got %r instead."
                % (type(self).__name__, rs)
            )
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise InvalidParameterError(
                "The 'warm_start' parameter of %s must be an instance of 'bool'. Got %r instead."
                % (type(self).__name__, self.warm_start)
            )
        if not isinstance(self.verbose, (numbers.Integral, bool, np.bool_)) or self.verbose < 0:
            raise InvalidParameterError(
                "The 'verbose' parameter of %s must be an int in the range [0, inf) or a bool. "
                "Got %r instead." % (type(self).__name__, self.verbose)
            )
        _check_integer(self, "verbose_interval", 1)
        _check_integer(self, "threads", 1, allow_none=True)
        _check_integer(self, "memory_limit", 1, allow_none=True)
        if not (self.checkpoint is None or isinstance(self.checkpoint, (str, os.PathLike))):
            raise InvalidParameterError(
                "The 'checkpoint' parameter of %s must be a path (str or os.PathLike) or None. Got %r instead."
                % (type(self).__name__, self.checkpoint))

    def _initial_statistics(self, passes, X, sample_weight, random_state):
        """Statistics (N, S1, S2, centers) of the responsibilities ``init_params`` gives."""
        n, _ = X.shape
        k = self.n_components
        if self.init_params == "kmeans":
            centers = passes.kmeans_centers(X, k, random_state, sample_weight)
            stats = passes.hard_statistics(X, centers, self.covariance_type, sample_weight)
            return tuple(stats) + (centers,)
        if self.init_params == "random":
            # Reference point of the statistics: the mean of the first block (any point
            # near the data avoids cancellation; all components start near the data mean).
            centers = np.tile(self._head_mean(passes, X, sample_weight), (k, 1))
            stats = passes.uniform_statistics(X, random_state, centers, self.covariance_type, sample_weight)
            return tuple(stats) + (centers,)
        if self.init_params == "random_from_data":
            if sample_weight is None:
                indices = random_state.choice(n, size=k, replace=False)
            else:
                positive = np.flatnonzero(passes.rows(sample_weight, slice(None)) > 0)
                indices = positive[random_state.choice(positive.shape[0], size=k, replace=False)]
        else:  # "k-means++"
            indices = passes.kmeans_plusplus(X, k, random_state, sample_weight)
        return _one_hot_statistics(passes, X, indices, self.covariance_type, sample_weight)

    def _head_mean(self, passes, X, sample_weight):
        """The (weighted) mean of a first block of rows of X: a point near the data, to centre
        statistics at so that a large mean offset does not cancel."""
        head_rows = slice(0, _kmeans.block_rows(self.memory_limit, 16 * X.shape[1]))
        head = _kmeans.as_float64(passes.rows(X, head_rows))
        w_head = None if sample_weight is None else _kmeans.as_float64(passes.rows(sample_weight, head_rows))
        if w_head is None or not np.any(w_head > 0):
            return head.mean(axis=0)
        return w_head @ head / w_head.sum()

    def _passes(self, X):
        return _passes_for(X, threads=self.threads, memory_limit=self.memory_limit)

    def _prepare(self, passes, X, sample_weight, check_finite=True):
        """The checks before a fit: the validated (X, sample_weight, total weight, initial
        parameters given by the user)."""
        X = passes.validate(self, X, reset=True)
        n_samples, n_features = X.shape
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}"
            )
        sample_weight, n_positive, total_weight = passes.sample_weight(sample_weight, X)
        if sample_weight is not None and n_positive < self.n_components:
            raise ValueError(
                "Expected at least n_components samples of positive sample_weight "
                f"but got n_components = {self.n_components}, "
                f"samples of positive weight = {n_positive}"
            )
        if check_finite:
            passes.check_finite(X)
        initial = self._check_initial_parameters(passes, X, sample_weight)
        return X, sample_weight, total_weight, initial

    def _fit(self, X, sample_weight):
        """EM from ``n_init`` initialisations; returns the pass backend and the validated X."""
        self._check_params()
        passes = self._passes(X)
        X, sample_weight, total_weight, initial = self._prepare(passes, X, sample_weight)
        _run_side_by_side(passes, X, sample_weight,
                          [self._em_runs(passes, X, sample_weight, total_weight, initial)])
        return passes, X

    def _statistics_bytes(self, n_features):
        """Bytes of one pass's statistics: 1 + K + K·d + the scatter's values, float64."""
        k = self.n_components
        second = {"full": k * n_features**2, "tied": n_features**2}.get(self.covariance_type, k * n_features)
        return 8 * (1 + k + k * n_features + second)

    def _runs_per_pass(self, n_features):
        """How many initialisations share a pass: as many as their statistics fit in
        ``memory_limit`` (default 64 MiB), at least one, at most ``n_init``."""
        budget = self.memory_limit or _DEFAULT_MEMORY_LIMIT
        return max(1, min(self.n_init, budget // self._statistics_bytes(n_features)))

    def _em_runs(self, passes, X, sample_weight, total_weight, initial, alone=True):
        """EM from ``n_init`` initialisations, as a generator that a driver
        (:func:`_run_side_by_side`) runs: each round it yields the operands of the passes over
        X it needs, one per live run, and is sent their results. Runs are started in groups
        of :meth:`_runs_per_pass`, in the order of the initialisations, so they draw from
        ``random_state`` as one after another would; a run that converges drops out of the
        passes; the best run is chosen as scikit-learn's sequential loop chooses it. At the
        end it sets the fitted attributes. ``alone``: no other generator shares the driver,
        so a single live run makes its own passes (exactly one ``mixture_pass`` each)."""
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        group_size = self._runs_per_pass(X.shape[1]) if do_init else 1
        scatter = _SCATTER[self.covariance_type]
        best = {"lower_bound": -np.inf, "n_iter": 0, "params": None, "lower_bounds": [], "converged": False}
        random_state = _check_random_state(self.random_state)
        checkpoint = None
        if self.checkpoint is not None and self.max_iter > 0:
            start = None if do_init else (self._get_parameters(), self.lower_bound_)
            checkpoint = Checkpoint(self.checkpoint, fit_key(self, passes, X, sample_weight, start))
        resumed = None if checkpoint is None else checkpoint.load()
        next_init, runs = 0, None
        if resumed is not None:
            random_state.set_state(resumed["random_state"])
            next_init, runs, best = resumed["next_init"], resumed["runs"], resumed["best"]
            if self.verbose >= 1:
                print("Resumed from iteration %s of initialization %s (%s)"
                      % ("/".join(str(r["n_iter"]) for r in runs), "/".join(str(r["init"]) for r in runs),
                         checkpoint.path))

        while runs is not None or next_init < n_init:
            if runs is None:
                runs = []
                for init in range(next_init, min(next_init + group_size, n_init)):
                    self._print_verbose_msg_init_beg(init)
                    if do_init:
                        params = self._initialize_parameters(passes, X, sample_weight, total_weight, random_state,
                                                             initial)
                    else:
                        params = self._get_parameters()
                    runs.append({"init": init, "params": params, "n_iter": 0, "lower_bounds": [],
                                 "lower_bound": -np.inf if do_init else self.lower_bound_,
                                 "converged": False, "finished": self.max_iter == 0})
                    params = None  # held by the run only, so that an iteration can let it go
                next_init = runs[-1]["init"] + 1
            while True:
                live = [r for r in runs if not r["finished"]]
                if not live:
                    break
                if alone and len(live) == 1:
                    # Handed over in a list that the iteration empties, so that the old
                    # parameters (K·d² each for 'full') go as soon as it is done with them.
                    state = [live[0]["params"]]
                    live[0]["params"] = None
                    updates = [self._em_iteration(passes, X, sample_weight, total_weight, state)]
                else:
                    operands = [list(self._iteration_operands(r["params"], X.dtype)) for r in live]
                    results = yield [(tuple(o), scatter) for o in operands]
                    updates = [self._m_step(o, result, total_weight, X.dtype) for o, result in zip(operands, results)]
                # Messages name the run when runs share passes.
                named = len(runs) > 1
                for run, (lower_bound, params) in zip(live, updates):
                    change = lower_bound - run["lower_bound"]
                    run["params"], run["lower_bound"] = params, lower_bound
                    run["n_iter"] += 1
                    run["lower_bounds"].append(lower_bound)
                    self._print_verbose_msg_iter_end(run["n_iter"], change, init=run["init"] if named else None)
                    run["converged"] = abs(change) < self.tol
                    run["finished"] = run["converged"] or run["n_iter"] == self.max_iter
                    if run["finished"]:
                        self._print_verbose_msg_init_end(lower_bound, run["converged"],
                                                         init=run["init"] if named else None)
                # The runs hold the parameters; the old ones go in the next pass.
                updates = params = None
                if named and self.verbose >= 2:
                    self._iter_prev_time = time()
                if checkpoint is not None:
                    checkpoint.save({"next_init": next_init, "runs": runs, "best": best,
                                     "random_state": random_state.get_state()})
            for run in runs:  # in the order of the initialisations, as one after another
                if self.max_iter == 0:
                    best.update(params=run["params"], n_iter=0)
                elif run["lower_bound"] > best["lower_bound"] or best["lower_bound"] == -np.inf:
                    best.update(lower_bound=run["lower_bound"], params=run["params"], n_iter=run["n_iter"],
                                lower_bounds=run["lower_bounds"], converged=run["converged"])
            runs = None
        if checkpoint is not None:
            checkpoint.remove()

        self.converged_ = best["converged"]
        # No warning with max_iter=0: the caller asked for the initialisation only.
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(_CONVERGENCE_MESSAGE, ConvergenceWarning)
        self._set_parameters(best["params"])
        self.n_iter_ = best["n_iter"]
        self.lower_bound_ = best["lower_bound"]
        if _reports_lower_bounds():
            self.lower_bounds_ = best["lower_bounds"]

    def _em_iteration(self, passes, X, sample_weight, total_weight, state):
        """One E-step and M-step: one pass over X.

        ``state`` is a list holding the parameters; they are taken out of it and let go
        once the pass has read them. Returns the lower bound and the new parameters.
        """
        operands = list(self._iteration_operands(state.pop(), X.dtype))
        result = passes.mixture_pass(X, tuple(operands), _SCATTER[self.covariance_type], sample_weight)
        return self._m_step(operands, result, total_weight, X.dtype)

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with EM, one pass over X per iteration.

        Fits ``n_init`` times (once with ``warm_start`` after the first fit) and keeps the
        fit of largest lower bound; warns with ``ConvergenceWarning`` if it did not converge.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            float32 or float64 arrays (and memmaps) are used in place. A dask array
            (chunked by rows, one chunk along the columns) is fitted by dask: each EM
            iteration is one :func:`gmmkernels.dask.mixture_pass`.
        y : Ignored
        sample_weight : array-like or dask array of shape (n_samples,), default=None
            Weights ≥ 0 of the samples (weighted EM); rows of weight 0 are skipped. With a
            dask X, a dask array with X's row chunks or a numpy array.

        Returns
        -------
        self : GaussianMixture
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then label X with a final E-step (the labels ``predict(X)`` gives).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            A lazy dask array (X's row chunks) for a dask X.
        """
        passes, X = self._fit(X, sample_weight)
        return passes.row_outputs(X, self._operands(X.dtype), "labels")

    def _row_outputs(self, X, output, out=None):
        """A fitted model's per-row results on X (see ``_InMemoryPasses.row_outputs``)."""
        self._check_is_fitted()
        passes = self._passes(X)
        X = passes.validate(self, X, reset=False)
        return passes.row_outputs(X, self._operands(X.dtype), output, out)

    def predict(self, X):
        """Label of the most probable component of each sample.

        X is scored by row blocks: no (n_samples, n_components) array is made.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            A lazy dask array (X's row chunks) for a dask X.
        """
        return self._row_outputs(X, "labels")

    def predict_proba(self, X, out=None):
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
        out : ndarray of shape (n_samples, n_components), optional
            Written in place (a memmap too); X's dtype. Not for a dask X.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            For a dask X, a lazy dask array with X's row chunks: nothing is computed until
            it is (``.compute()``, ``da.store``, ``.to_zarr``, ...).
        """
        return self._row_outputs(X, "resp", out)

    def score_samples(self, X, out=None):
        """Log-likelihood of each sample, ``log Σ_k π_k N(x | μ_k, Σ_k)``.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
        out : ndarray of shape (n_samples,), optional
            Written in place (a memmap too); X's dtype. Not for a dask X.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            For a dask X, a lazy dask array with X's row chunks.
        """
        return self._row_outputs(X, "score", out)

    def _log_likelihood(self, passes, X, sample_weight=None):
        """Σ_i w_i log p(x_i) for validated X, in one pass."""
        log_likelihood, _, _, _ = passes.mixture_pass(X, self._operands(X.dtype), "none", sample_weight)
        if not np.isfinite(log_likelihood):
            passes.check_finite(X)
        return log_likelihood

    def score(self, X, y=None):
        """Mean log-likelihood of the samples of X (one pass; computed also for a dask X).

        Returns
        -------
        log_likelihood : float
        """
        self._check_is_fitted()
        passes = self._passes(X)
        X = passes.validate(self, X, reset=False)
        return float(self._log_likelihood(passes, X) / X.shape[0])

    def sample(self, n_samples=1):
        """Draw samples from the fitted mixture (scikit-learn's draws, from ``random_state``).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component labels.
        """
        self._check_is_fitted()
        if n_samples < 1:
            raise ValueError(
                "Invalid value for 'n_samples': %d . The sampling requires at "
                "least one sample." % n_samples
            )
        _, n_features = self.means_.shape
        rng = _check_random_state(self.random_state)
        n_samples_comp = rng.multinomial(n_samples, self.weights_)
        if self.covariance_type == "full":
            X = np.vstack([
                rng.multivariate_normal(mean, covariance, int(sample))
                for (mean, covariance, sample) in zip(self.means_, self.covariances_, n_samples_comp)
            ])
        elif self.covariance_type == "tied":
            X = np.vstack([
                rng.multivariate_normal(mean, self.covariances_, int(sample))
                for (mean, sample) in zip(self.means_, n_samples_comp)
            ])
        else:
            X = np.vstack([
                mean + rng.standard_normal(size=(sample, n_features)) * np.sqrt(covariance)
                for (mean, covariance, sample) in zip(self.means_, self.covariances_, n_samples_comp)
            ])
        y = np.concatenate([np.full(sample, j, dtype=np.int64) for j, sample in enumerate(n_samples_comp)])
        return X.astype(np.float64, copy=False), y

    def _print_verbose_msg_init_beg(self, n_init):
        if self.verbose == 1:
            print("Initialization %d" % n_init)
        elif self.verbose >= 2:
            print("Initialization %d" % n_init)
            self._init_prev_time = time()
            self._iter_prev_time = self._init_prev_time

    def _print_verbose_msg_iter_end(self, n_iter, diff_ll, init=None):
        """scikit-learn's message; with ``init`` (runs sharing passes) it names the run, and
        the time lapse is that of the shared pass (the caller restarts the clock)."""
        if n_iter % self.verbose_interval == 0:
            run = "" if init is None else " (initialization %d)" % init
            if self.verbose == 1:
                print("  Iteration %d%s" % (n_iter, run))
            elif self.verbose >= 2:
                cur_time = time()
                print("  Iteration %d%s\t time lapse %.5fs\t ll change %.5f"
                      % (n_iter, run, cur_time - self._iter_prev_time, diff_ll))
                if init is None:
                    self._iter_prev_time = cur_time

    def _print_verbose_msg_init_end(self, lb, init_has_converged, init=None):
        converged_msg = "converged" if init_has_converged else "did not converge"
        run = "" if init is None else " %d" % init
        if self.verbose == 1:
            print(f"Initialization{run} {converged_msg}.")
        elif self.verbose >= 2:
            t = time() - self._init_prev_time
            print(f"Initialization{run} {converged_msg}. time lapse {t:.5f}s\t lower bound {lb:.5f}.")
