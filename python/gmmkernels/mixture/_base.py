"""The EM loop that every mixture estimator shares: n_init, warm start, verbosity,
convergence, and predict/score through the reading backends.

A subclass gives the model: ``_check_params()``, ``_check_initial_parameters(n_features)``,
``_initialize_parameters(passes, X, sample_weight, total_weight, random_state, initial)``,
``_em_iteration(passes, X, sample_weight, state)`` (one pass over X: the lower bound's sum
and the new parameters), ``_get_parameters()``, ``_set_parameters(params)``,
``_operands(dtype)`` (the fitted model as :func:`gmmkernels.mixture_pass` takes it) and
``_n_parameters()``.
"""
import math
import sys
import warnings
from time import time

import numpy as np

from ._checks import _check_random_state, _reports_lower_bounds
from ._fallbacks import BaseEstimator, ConvergenceWarning, DensityMixin, NotFittedError
from ._passes import _InMemoryPasses

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
        initial = self._check_initial_parameters(n_features)

        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        max_lower_bound = -np.inf
        best_lower_bounds = []
        self.converged_ = False
        random_state = _check_random_state(self.random_state)

        for init in range(n_init):
            self._print_verbose_msg_init_beg(init)
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
            else:
                converged = False
                for n_iter in range(1, self.max_iter + 1):
                    prev_lower_bound = lower_bound
                    # Handed over in a list that the iteration empties, so that the old
                    # parameters (K·d² each for 'full') go as soon as it is done with them.
                    state = [params]
                    params = None
                    log_likelihood, params = self._em_iteration(passes, X, sample_weight, state)
                    lower_bound = log_likelihood / total_weight
                    current_lower_bounds.append(lower_bound)
                    change = lower_bound - prev_lower_bound
                    self._print_verbose_msg_iter_end(n_iter, change)
                    if abs(change) < self.tol:
                        converged = True
                        break
                self._print_verbose_msg_init_end(lower_bound, converged)
                if lower_bound > max_lower_bound or max_lower_bound == -np.inf:
                    max_lower_bound = lower_bound
                    best_params = params
                    best_n_iter = n_iter
                    best_lower_bounds = current_lower_bounds
                    self.converged_ = converged

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

    def _information_criterion(self, X, criterion, sample_weight=None):
        self._check_is_fitted()
        passes = self._passes(X)
        X = passes.validate(self, X, reset=False)
        sample_weight, _, total_weight = passes.sample_weight(sample_weight, X)
        log_likelihood = self._log_likelihood(passes, X, sample_weight)
        penalty = math.log(total_weight) if criterion == "bic" else 2.0
        return -2.0 * log_likelihood + self._n_parameters() * penalty

    def bic(self, X):
        """Bayesian information criterion of the model on X (the lower the better).

        Returns
        -------
        bic : float
        """
        return self._information_criterion(X, "bic")

    def aic(self, X):
        """Akaike information criterion of the model on X (the lower the better).

        Returns
        -------
        aic : float
        """
        return self._information_criterion(X, "aic")

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
