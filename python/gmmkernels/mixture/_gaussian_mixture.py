"""The Gaussian mixture estimator: its parameters, initialisation and EM step per covariance type,
and the choice of the number of components."""
import math

import numpy as np

from ._base import _DEFAULT_MEMORY_LIMIT, BaseMixture, _run_side_by_side
from ._checks import _check_learning_decay, _check_means, _check_precisions, _check_random_state, _check_weights
from ._numerics import (
    _SCATTER, _blend, _compute_precision_cholesky, _compute_precision_cholesky_from_precisions, _covariances_from_precision_cholesky,
    _estimate_gaussian_parameters, _pass_operands, _precisions_from_cholesky, _tied_covariance_of_all_rows,
)


class GaussianMixture(BaseMixture):
    """Gaussian mixture fitted by EM, one pass over X per iteration.

    scikit-learn's ``sklearn.mixture.GaussianMixture`` (same parameters, attributes and
    numerics), on gmmkernels' fused pass: X may be an ``np.memmap`` larger than RAM.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound (the mean log-likelihood).
    reg_covar : float, default=1e-6
        Added to the diagonal of the covariances.
    max_iter : int, default=100
    n_init : int, default=1
        Initialisations tried; the one with the largest lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    precisions_init : array-like, default=None
        (n_components,) 'spherical', (n_features, n_features) 'tied',
        (n_components, n_features) 'diag', (n_components, n_features, n_features) 'full'.
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
    verbose : int, default=0
    verbose_interval : int, default=10
    threads : int, default=None
        Threads of the kernels (default: every CPU this process may use).
    memory_limit : int, default=None
        Bytes of workspace of each kernel call and of the row blocks read by the
        initialisation and by ``predict`` (default 64 MiB).
    checkpoint : str or os.PathLike, default=None
        A file where :meth:`fit` writes its state after every EM iteration (atomically: a
        temporary file, fsync, rename). A fit that finds a checkpoint written by a fit of the
        same parameters on the same data (shape, dtype, a fingerprint of rows spread over X)
        resumes from it and ends with the result the uninterrupted fit would have had; one of
        other data or parameters is an error naming what differs (``threads`` and
        ``memory_limit`` may differ: they change the last bits of a result at most). Removed
        when the fit ends. The file holds the parameters of the runs that share passes and of
        the best run so far: for 'full', 2·K·d² floats each, written every iteration.
    learning_decay : float, default=0.6
        α of :meth:`partial_fit`'s step size ``(t + 2)^(−α)`` at its step t = 0, 1, …; in
        (0.5, 1]. Smaller values forget old batches faster.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        Shape as ``precisions_init``.
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
        Upper-triangular U with precision = U Uᵀ ('full', 'tied'); the square root of the
        precisions ('diag', 'spherical').
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean (sample-weighted) log-likelihood of the training data at the best fit's last E-step.
    lower_bounds_ : list of float
        The lower bound of every iteration of the best fit (set when the installed
        scikit-learn sets it, and without scikit-learn).
    n_features_in_ : int
    n_steps_ : int
        Batches :meth:`partial_fit` has stepped on since the parameters were initialised
        (or last fitted by :meth:`fit`).
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        threads=None,
        memory_limit=None,
        checkpoint=None,
        learning_decay=0.6,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.threads = threads
        self.memory_limit = memory_limit
        self.checkpoint = checkpoint
        self.learning_decay = learning_decay

    def _check_params(self):
        super()._check_params()
        _check_learning_decay(self)

    def partial_fit(self, X, y=None, sample_weight=None):
        """One step of stepwise (online) EM on a batch of rows.

        Stepwise EM (Cappé & Moulines, 2009) on the sufficient statistics of the data seen so
        far, per unit weight: those the current parameters stand for (N_k = weights_k and the
        scatter N_k (Σ_k − reg_covar·I), so nothing is kept beside the parameters). Each call is one E-step on the batch (one pass
        over it), an update of those statistics with step size ``γ_t = (t + 2)^(−α)``
        (α = ``learning_decay``, t = ``n_steps_``), ``s ← (1 − γ_t) s + γ_t ŝ_batch``, and
        the M-step from them. The first call initialises the parameters from its batch as
        :meth:`fit` would (``init_params``, ``weights_init``, ``means_init``,
        ``precisions_init``); after :meth:`fit`, calls go on from the fitted parameters.
        A bad batch (other width, NaN or infinity, no rows, no positive weight) raises
        before anything changes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch: numpy array or memmap, used in place. The first batch needs at least
            ``n_components`` rows.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : GaussianMixture
        """
        self._check_params()
        fitted = hasattr(self, "precisions_cholesky_")
        passes = self._passes(X)
        X = passes.validate(self, X, reset=not fitted)
        n_samples = X.shape[0]
        if not fitted and n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components in the first batch "
                f"but got n_components = {self.n_components}, n_samples = {n_samples}")
        sample_weight, _, total_weight = passes.sample_weight(sample_weight, X)
        passes.check_finite(X)
        covariance_type = self.covariance_type
        if not fitted:
            initial = self._check_initial_parameters(passes, X, sample_weight)
            params = self._initialize_parameters(passes, X, sample_weight, total_weight,
                                                 _check_random_state(self.random_state), initial)
        else:
            params = self._get_parameters()
        steps = self.n_steps_ if fitted else 0

        weights, means, covariances, precisions_chol = params
        del params
        # The fitted precisions_ are the pass's operand as they are (no second K·d² copy).
        log_norm, centers, precisions = _pass_operands(weights, means, precisions_chol, covariance_type, X.dtype,
                                                       self.__dict__.get("precisions_"))
        del precisions_chol
        log_likelihood, counts, first, second = passes.mixture_pass(
            X, (log_norm, centers, precisions), _SCATTER[covariance_type], sample_weight)
        del precisions
        gamma = (steps + 2.0) ** -float(self.learning_decay)
        centers = centers.astype(np.float64)
        counts, first, second = _blend(weights, covariances, self.reg_covar, means - centers,
                                       (counts, first, second), gamma / total_weight, 1.0 - gamma, covariance_type)
        del covariances
        nk, new_means, new_covariances = _estimate_gaussian_parameters(counts, first, second, centers,
                                                                       self.reg_covar, covariance_type)
        del second  # now the covariances (written over it for 'full')
        new_weights = nk / np.sum(nk)
        new_chol = _compute_precision_cholesky(new_covariances, covariance_type, X.dtype == np.float32)

        # The computations that can fail on the data are done: the old parameters go before
        # the new precisions are formed (only a MemoryError could still stop the step).
        for name in ("covariances_", "precisions_cholesky_", "precisions_"):
            self.__dict__.pop(name, None)
        self._set_parameters((new_weights, new_means, new_covariances, new_chol))
        self.n_steps_ = steps + 1
        self.lower_bound_ = log_likelihood / total_weight
        if not hasattr(self, "converged_"):
            self.converged_ = False
            self.n_iter_ = 0
        return self

    def _check_initial_parameters(self, passes, X, sample_weight):
        """The validated (weights_init, means_init, precisions_init), float64 or None."""
        n_features = X.shape[1]
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = _check_weights(self.weights_init, self.n_components)
        if self.means_init is not None:
            means = _check_means(self.means_init, self.n_components, n_features)
        if self.precisions_init is not None:
            precisions = _check_precisions(self.precisions_init, self.covariance_type,
                                           self.n_components, n_features)
        return weights, means, precisions

    def _initialize_parameters(self, passes, X, sample_weight, total_weight, random_state, initial):
        """Initial (weights, means, covariances, precisions_cholesky)."""
        weights_init, means_init, precisions_init = initial
        weights = means = covariances = None
        if weights_init is None or means_init is None or precisions_init is None:
            counts, first, second, centers = self._initial_statistics(passes, X, sample_weight, random_state)
            nk, means, covariances = _estimate_gaussian_parameters(
                counts, first, second, centers, self.reg_covar, self.covariance_type)
            if self.covariance_type == "tied" and self.init_params in ("k-means++", "random_from_data"):
                covariances = _tied_covariance_of_all_rows(passes.gram(X, sample_weight), nk, means,
                                                           self.reg_covar)
            weights = nk / total_weight
        if weights_init is not None:
            weights = weights_init
        if means_init is not None:
            means = means_init
        if precisions_init is None:
            precisions_chol = _compute_precision_cholesky(covariances, self.covariance_type,
                                                          X.dtype == np.float32)
        else:
            precisions_chol = _compute_precision_cholesky_from_precisions(precisions_init,
                                                                          self.covariance_type)
            covariances = _covariances_from_precision_cholesky(precisions_chol, self.covariance_type)
        return weights, means, covariances, precisions_chol

    def _iteration_operands(self, params, dtype):
        """The E-step at ``params`` as :func:`mixture_pass` takes it: (log_norm, centers, precisions)."""
        weights, means, _, precisions_chol = params
        return _pass_operands(weights, means, precisions_chol, self.covariance_type, dtype)

    def _m_step(self, operands, result, total_weight, dtype):
        """The lower bound (the mean weighted log-likelihood at the E-step's parameters) and
        the new parameters, from a pass's ``result`` at ``operands`` (a list, emptied first:
        its K·d² precisions are not needed for the M-step)."""
        _, centers, _ = operands
        operands.clear()
        log_likelihood, counts, first, second = result
        nk, means, covariances = _estimate_gaussian_parameters(
            counts, first, second, centers.astype(np.float64), self.reg_covar, self.covariance_type)
        weights = nk / np.sum(nk)
        precisions_chol = _compute_precision_cholesky(covariances, self.covariance_type, dtype == np.float32)
        return log_likelihood / total_weight, (weights, means, covariances, precisions_chol)

    def _get_parameters(self):
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _set_parameters(self, params):
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params
        self.precisions_ = _precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)
        self.n_steps_ = 0  # partial_fit steps on from these parameters

    def _n_parameters(self):
        """Number of free parameters of the model."""
        _, n_features = self.means_.shape
        if self.covariance_type == "full":
            cov_params = self.n_components * n_features * (n_features + 1) / 2.0
        elif self.covariance_type == "diag":
            cov_params = self.n_components * n_features
        elif self.covariance_type == "tied":
            cov_params = n_features * (n_features + 1) / 2.0
        else:
            cov_params = self.n_components
        mean_params = n_features * self.n_components
        return int(cov_params + mean_params + self.n_components - 1)

    def _operands(self, dtype):
        """The fitted parameters as :func:`mixture_pass` takes them, in X's dtype."""
        return _pass_operands(self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type, dtype,
                              self.precisions_)

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

def select_n_components(X, n_components_range, *, criterion="bic", sample_weight=None, **params):
    """Fit a :class:`GaussianMixture` for each number of components and score it.

    The candidates are fitted side by side: each EM round is one pass over X for all of
    them (each with its own log-sum-exp; a candidate that has converged drops out), and one
    more pass scores them all. Candidates are grouped when their statistics do not fit
    ``memory_limit`` together, so X is read about as often as the longest fit of each group
    needs, plus the initialisations' reads.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components_range : iterable of int
    criterion : {'bic', 'aic'}, default='bic'
        With ``sample_weight``, the log-likelihood is weighted and BIC's sample count is
        ``sum(sample_weight)``.
    sample_weight : array-like of shape (n_samples,), optional
    **params
        Other :class:`GaussianMixture` parameters (covariance_type, random_state, ...);
        not ``checkpoint``.

    Returns
    -------
    best : GaussianMixture
        The fitted model of lowest criterion.
    scores : ndarray of shape (len(n_components_range),)
        The criterion of each model, in the order of ``n_components_range``.
    """
    if criterion not in ("bic", "aic"):
        raise ValueError("criterion must be 'bic' or 'aic', got %r" % (criterion,))
    n_components_range = list(n_components_range)
    if not n_components_range:
        raise ValueError("n_components_range is empty")
    if params.get("checkpoint") is not None:
        raise ValueError("select_n_components fits its candidates side by side and takes no checkpoint; "
                         "fit each GaussianMixture(n_components=k, checkpoint=...) on its own instead")
    models = [GaussianMixture(n_components=k, **params) for k in n_components_range]
    for model in models:
        model._check_params()
    passes = models[0]._passes(X)
    X, sample_weight, total_weight, initial = models[0]._prepare(passes, X, sample_weight)
    # The other candidates take the validated X (no copy) and weights, without another check.
    prepared = [initial] + [model._prepare(passes, X, sample_weight, check_finite=False)[3] for model in models[1:]]
    penalty = math.log(total_weight) if criterion == "bic" else 2.0
    budget = models[0].memory_limit or _DEFAULT_MEMORY_LIMIT
    groups, used = [[]], 0
    for i, model in enumerate(models):
        size = model._runs_per_pass(X.shape[1]) * model._statistics_bytes(X.shape[1])
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += size
    scores = np.empty(len(models))
    best = None
    for group in groups:
        _run_side_by_side(passes, X, sample_weight,
                          [models[i]._em_runs(passes, X, sample_weight, total_weight, prepared[i], alone=len(group) == 1)
                           for i in group])
        # The group scored in one more pass; only the best model so far is kept.
        results = passes.mixture_passes(X, [(models[i]._operands(X.dtype), "none") for i in group], sample_weight)
        for i, result in zip(group, results):
            scores[i] = -2.0 * result[0] + models[i]._n_parameters() * penalty
            if best is None or scores[i] < scores[best]:
                best = i
        for i in range(group[-1] + 1):
            if i != best:
                models[i] = None  # its K·d² arrays go
    return models[best], scores
