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
from ._passes import _InMemoryPasses, _one_hot_statistics

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

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
            head_rows = slice(0, _kmeans.block_rows(self.memory_limit, 16 * X.shape[1]))
            head = _kmeans.as_float64(passes.rows(X, head_rows))
            w_head = None if sample_weight is None else _kmeans.as_float64(passes.rows(sample_weight, head_rows))
            if w_head is None or not np.any(w_head > 0):
                reference = head.mean(axis=0)
            else:
                reference = w_head @ head / w_head.sum()
            centers = np.tile(reference, (k, 1))
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

    def _passes(self, X):
        return _passes_for(X, threads=self.threads, memory_limit=self.memory_limit)

    def _fit(self, X, sample_weight):
        """EM from ``n_init`` initialisations; returns the pass backend and the validated X."""
        self._check_params()
        passes = self._passes(X)
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
        passes.check_finite(X)
        initial = self._check_initial_parameters(passes, X, sample_weight)

        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        max_lower_bound = -np.inf
        best_lower_bounds = []
        best_converged = False
        random_state = _check_random_state(self.random_state)
        checkpoint = None
        if self.checkpoint is not None and self.max_iter > 0:
            checkpoint = Checkpoint(self.checkpoint, fit_key(self, passes, X, sample_weight))
        resumed = None if checkpoint is None else checkpoint.load()
        first_init = 0
        if resumed is not None:
            random_state.set_state(resumed["random_state"])
            first_init = resumed["init"]
            max_lower_bound, best_n_iter = resumed["max_lower_bound"], resumed["best_n_iter"]
            best_params, best_lower_bounds = resumed["best_params"], resumed["best_lower_bounds"]
            if resumed["best_is_current"]:
                best_params = resumed["params"]
            best_converged = resumed["best_converged"]
            if resumed["finished"]:
                first_init += 1
            if self.verbose >= 1:
                print("Resumed from iteration %d of initialization %d (%s)"
                      % (resumed["n_iter"], resumed["init"], checkpoint.path))

        for init in range(first_init, n_init):
            self._print_verbose_msg_init_beg(init)
            first_iter = 1
            if resumed is not None and init == resumed["init"]:
                params, lower_bound = resumed["params"], resumed["lower_bound"]
                current_lower_bounds = list(resumed["lower_bounds"])
                first_iter = resumed["n_iter"] + 1
            else:
                if do_init:
                    params = self._initialize_parameters(passes, X, sample_weight, total_weight, random_state,
                                                         initial)
                else:
                    params = self._get_parameters()
                lower_bound = -np.inf if do_init else self.lower_bound_
                current_lower_bounds = []

            if self.max_iter == 0:
                best_params = params
                best_n_iter = 0
                continue
            converged = False
            for n_iter in range(first_iter, self.max_iter + 1):
                prev_lower_bound = lower_bound
                # Handed over in a list that the iteration empties, so that the old
                # parameters (K·d² each for 'full') go as soon as it is done with them.
                state = [params]
                params = None
                lower_bound, params = self._em_iteration(passes, X, sample_weight, total_weight, state)
                current_lower_bounds.append(lower_bound)
                change = lower_bound - prev_lower_bound
                self._print_verbose_msg_iter_end(n_iter, change)
                converged = abs(change) < self.tol
                finished = converged or n_iter == self.max_iter
                if finished and (lower_bound > max_lower_bound or max_lower_bound == -np.inf):
                    max_lower_bound = lower_bound
                    best_params = params
                    best_n_iter = n_iter
                    best_lower_bounds = current_lower_bounds
                    best_converged = converged
                if checkpoint is not None:
                    checkpoint.save({
                        "init": init, "n_iter": n_iter, "finished": finished, "params": params,
                        "lower_bound": lower_bound, "lower_bounds": current_lower_bounds,
                        "random_state": random_state.get_state(),
                        "max_lower_bound": max_lower_bound, "best_n_iter": best_n_iter if best_lower_bounds else 0,
                        # The best fit's parameters, unless they are the current ones.
                        "best_is_current": bool(best_lower_bounds) and best_params is params,
                        "best_params": best_params if best_lower_bounds and best_params is not params else None,
                        "best_lower_bounds": best_lower_bounds, "best_converged": best_converged,
                    })
                if converged:
                    break
            self._print_verbose_msg_init_end(lower_bound, converged)
        self.converged_ = best_converged
        if checkpoint is not None:
            checkpoint.remove()

        # No warning with max_iter=0: the caller asked for the initialisation only.
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(_CONVERGENCE_MESSAGE, ConvergenceWarning)

        self._set_parameters(best_params)
        self.n_iter_ = best_n_iter
        self.lower_bound_ = max_lower_bound
        if _reports_lower_bounds():
            self.lower_bounds_ = best_lower_bounds
        return passes, X

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

    def _print_verbose_msg_iter_end(self, n_iter, diff_ll):
        if n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print("  Iteration %d" % n_iter)
            elif self.verbose >= 2:
                cur_time = time()
                print("  Iteration %d\t time lapse %.5fs\t ll change %.5f"
                      % (n_iter, cur_time - self._iter_prev_time, diff_ll))
                self._iter_prev_time = cur_time

    def _print_verbose_msg_init_end(self, lb, init_has_converged):
        converged_msg = "converged" if init_has_converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {converged_msg}.")
        elif self.verbose >= 2:
            t = time() - self._init_prev_time
            print(f"Initialization {converged_msg}. time lapse {t:.5f}s\t lower bound {lb:.5f}.")
