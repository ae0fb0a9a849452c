"""The variational Gaussian mixture: a Dirichlet-process or Dirichlet-distribution prior on
the weights and a Gaussian-Wishart prior on each component, fitted by variational EM.

Its E-step is the fused mixture pass: the expected log-density of x under component k is
the Gaussian log-density at the mean and the normalised precision, plus a constant per
component (the expected log-weight and log-determinant, as in scikit-learn's
``_estimate_log_prob``). The lower bound's entropy term Σ_i Σ_k r_ik log r_ik comes from the
same pass's statistics: Σ_k c_k N_k − ½ Σ_k tr(Λ_k S2_k) − Σ_i log p(x_i), with S2_k the
scatter about the means that the pass read.
"""
import math
import numbers

import numpy as np

from ._base import BaseMixture
from ._checks import (_check_array, _check_learning_decay, _check_option, _check_precision_matrix,
                      _check_precision_positivity, _check_random_state, _check_shape)
from ._fallbacks import InvalidParameterError
from ._numerics import (
    _SCATTER, _blend, _compute_log_det_cholesky, _compute_precision_cholesky, _estimate_gaussian_parameters,
    _pass_operands_from_log_weights, _precisions_from_cholesky, _tied_covariance_of_all_rows,
)
from ._special import betaln, digamma, gammaln

_WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


def _log_dirichlet_norm(dirichlet_concentration):
    """log of the Dirichlet distribution's normaliser."""
    return gammaln(np.sum(dirichlet_concentration)) - np.sum(gammaln(dirichlet_concentration))


def _log_wishart_norm(degrees_of_freedom, log_det_precisions_chol, n_features):
    """log of the Wishart distributions' normalisers, without the log π term (scikit-learn's)."""
    return -(
        degrees_of_freedom * log_det_precisions_chol
        + degrees_of_freedom * n_features * 0.5 * math.log(2.0)
        + np.sum(gammaln(0.5 * (degrees_of_freedom - np.arange(n_features)[:, np.newaxis])), 0)
    )


def _check_positive(estimator, name):
    """None or a real number > 0 (scikit-learn's ``Interval(Real, 0, None, closed='neither')``)."""
    value = getattr(estimator, name)
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not value > 0:
        raise InvalidParameterError(
            "The %r parameter of %s must be a float in the range (0.0, inf) or None. Got %r instead."
            % (name, type(estimator).__name__, value)
        )


class BayesianGaussianMixture(BaseMixture):
    """Variational Bayesian Gaussian mixture, one pass over X per iteration.

    scikit-learn's ``sklearn.mixture.BayesianGaussianMixture`` (same parameters, attributes
    and numerics) on gmmkernels' fused pass: X may be a memmap larger than RAM or a dask
    array, and ``sample_weight`` weights the rows (as frequencies: a weight of 2 counts a row
    twice, in the priors' data moments too).

    Parameters
    ----------
    n_components : int, default=1
        Upper bound on the number of components; the weight prior lets the fit leave some
        of them almost empty.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound.
    reg_covar : float, default=1e-6
    max_iter : int, default=100
    n_init : int, default=1
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}, default='dirichlet_process'
    weight_concentration_prior : float > 0, default=None
        1 / n_components when None.
    mean_precision_prior : float > 0, default=None
        1 when None.
    mean_prior : array-like of shape (n_features,), default=None
        The (weighted) mean of X when None.
    degrees_of_freedom_prior : float > n_features − 1, default=None
        n_features when None.
    covariance_prior : float or array-like, default=None
        (n_features, n_features) 'full' and 'tied', (n_features,) 'diag', a float
        'spherical'. The (weighted) covariance of X when None (one extra pass over X).
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
        α of :meth:`partial_fit`'s step size ``(t + 2)^(−α)``; in (0.5, 1].
    total_samples : float, default=None
        The data size :meth:`partial_fit`'s posterior stands for (default: the weight of the
        batches seen so far).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    weight_concentration_ : ndarray or tuple of two ndarrays
        The Dirichlet parameters, or the Beta parameters of the stick-breaking process.
    mean_precision_ : ndarray of shape (n_components,)
    degrees_of_freedom_ : ndarray of shape (n_components,) (a float for 'tied')
    weight_concentration_prior_, mean_precision_prior_, mean_prior_,
    degrees_of_freedom_prior_, covariance_prior_ :
        The priors used (the defaults resolved against X).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        The variational lower bound of the best fit (up to scikit-learn's dropped constants).
    lower_bounds_ : list of float
    n_features_in_ : int
    n_steps_, n_samples_seen_ : int, float
        :meth:`partial_fit`'s steps and the weight of their batches since the parameters were
        initialised (or last fitted by :meth:`fit`).
    """

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        threads=None,
        memory_limit=None,
        checkpoint=None,
        learning_decay=0.6,
        total_samples=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.threads = threads
        self.memory_limit = memory_limit
        self.checkpoint = checkpoint
        self.learning_decay = learning_decay
        self.total_samples = total_samples

    def _check_params(self):
        super()._check_params()
        _check_learning_decay(self)
        if self.total_samples is not None:
            _check_positive(self, "total_samples")
        _check_option(self, "weight_concentration_prior_type", _WEIGHT_PRIOR_TYPES)
        for name in ("weight_concentration_prior", "mean_precision_prior", "degrees_of_freedom_prior"):
            _check_positive(self, name)
        prior = self.covariance_prior
        if isinstance(prior, numbers.Real) and not isinstance(prior, (bool, np.bool_)) and not prior > 0:
            raise InvalidParameterError(
                "The 'covariance_prior' parameter of %s must be None, an array-like or a float in the "
                "range (0.0, inf). Got %r instead." % (type(self).__name__, prior)
            )

    def _check_initial_parameters(self, passes, X, sample_weight):
        """The priors (scikit-learn's ``_check_parameters``), set as the ``*_prior_`` attributes;
        the data's mean and covariance are read in one pass when a default needs them."""
        n_features = X.shape[1]
        cov_type = self.covariance_type
        self.weight_concentration_prior_ = (
            1.0 / self.n_components if self.weight_concentration_prior is None else self.weight_concentration_prior
        )
        self.mean_precision_prior_ = 1.0 if self.mean_precision_prior is None else self.mean_precision_prior
        mean_prior = covariance_prior = None
        if self.mean_prior is not None:
            mean_prior = _check_array(self.mean_prior)
            _check_shape(mean_prior, (n_features,), "means")
        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = n_features
        elif self.degrees_of_freedom_prior > n_features - 1.0:
            self.degrees_of_freedom_prior_ = self.degrees_of_freedom_prior
        else:
            raise ValueError(
                "The parameter 'degrees_of_freedom_prior' should be greater than %d, but got %.3f."
                % (n_features - 1, self.degrees_of_freedom_prior)
            )
        if self.covariance_prior is not None:
            if cov_type in ("full", "tied"):
                covariance_prior = _check_array(self.covariance_prior)
                _check_shape(covariance_prior, (n_features, n_features), "%s covariance_prior" % cov_type)
                _check_precision_matrix(covariance_prior, cov_type)
            elif cov_type == "diag":
                covariance_prior = _check_array(self.covariance_prior)
                _check_shape(covariance_prior, (n_features,), "%s covariance_prior" % cov_type)
                _check_precision_positivity(covariance_prior, cov_type)
            else:
                covariance_prior = self.covariance_prior
        if mean_prior is None or covariance_prior is None:
            mean, covariance = self._data_moments(passes, X, sample_weight)
            mean_prior = mean if mean_prior is None else mean_prior
            if covariance_prior is None:
                covariance_prior = {"full": covariance, "tied": covariance, "diag": covariance,
                                    "spherical": covariance.mean() if covariance.ndim else covariance}[cov_type]
        self.mean_prior_ = mean_prior
        self.covariance_prior_ = covariance_prior
        return None

    def _data_moments(self, passes, X, sample_weight):
        """The (weighted) mean of the rows and their covariance with one degree of freedom
        removed (``np.cov(X.T)``; its diagonal for 'diag' and 'spherical'), in one pass.

        The pass takes every row as one component's, centred at the mean of a first block
        of rows, so a large mean offset does not cancel.
        """
        n, d = X.shape
        reference = self._head_mean(passes, X, sample_weight)
        full = self.covariance_type in ("full", "tied")
        counts, first, second = passes.hard_statistics(
            X, reference[np.newaxis, :], "tied" if full else "diag", sample_weight)
        total = float(counts[0])
        offset = first[0] / total
        mean = reference + offset
        if full:
            scatter = second - total * np.multiply.outer(offset, offset)
            covariance = np.atleast_2d(scatter / (total - 1.0))
        else:
            covariance = (second[0] - total * offset * offset) / (total - 1.0)
        return mean, covariance

    def _initial_moments(self, passes, X, sample_weight, random_state):
        """(N_k, the data means x̄_k, the data covariances S_k) of the initial responsibilities."""
        counts, first, second, centers = self._initial_statistics(passes, X, sample_weight, random_state)
        nk, xk, sk = _estimate_gaussian_parameters(counts, first, second, centers, self.reg_covar,
                                                   self.covariance_type)
        if self.covariance_type == "tied" and self.init_params in ("k-means++", "random_from_data"):
            sk = _tied_covariance_of_all_rows(passes.gram(X, sample_weight), nk, xk, self.reg_covar)
        return nk, xk, sk

    def _initialize_parameters(self, passes, X, sample_weight, total_weight, random_state, initial):
        """The variational parameters after one M-step on the initial responsibilities."""
        nk, xk, sk = self._initial_moments(passes, X, sample_weight, random_state)
        return self._variational_m_step(nk, xk, sk, X.dtype == np.float32)

    def partial_fit(self, X, y=None, sample_weight=None):
        """One step of stochastic variational inference on a batch of rows.

        The stepwise EM of :meth:`GaussianMixture.partial_fit` on the data's moments: the
        model keeps N_k, x̄_k and S_k per unit weight; each call is one variational E-step on
        the batch (one pass over it), the update ``s ← (1 − γ_t) s + γ_t ŝ_batch`` with
        ``γ_t = (t + 2)^(−learning_decay)``, and the variational M-step from ``s`` scaled to
        the data size ``total_samples`` (default: the weight of the batches seen since the
        parameters were initialised). The first call resolves the priors against its batch and
        initialises as :meth:`fit` would; after :meth:`fit`, the first call's moments are its
        batch's under the fitted model. ``lower_bound_`` is left as it is (the bound needs all
        of the data). A bad batch raises before anything changes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : BayesianGaussianMixture
        """
        self._check_params()
        fitted = hasattr(self, "precisions_cholesky_")
        passes = self._passes(X)
        X = passes.validate(self, X, reset=not fitted)
        if not fitted and X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components in the first batch "
                f"but got n_components = {self.n_components}, n_samples = {X.shape[0]}")
        sample_weight, _, total_weight = passes.sample_weight(sample_weight, X)
        passes.check_finite(X)
        float32 = X.dtype == np.float32
        covariance_type = self.covariance_type
        if fitted:
            moments = self.__dict__.get("_online_moments")
            params, steps, seen = self._get_parameters(), self.n_steps_, self.n_samples_seen_
        else:
            self._check_initial_parameters(passes, X, sample_weight)
            nk, xk, sk = self._initial_moments(passes, X, sample_weight, _check_random_state(self.random_state))
            moments = (nk / total_weight, xk, sk.copy())
            params = self._variational_m_step(nk, xk, sk, float32)
            steps, seen = 0, 0.0
        operands = list(self._variational_operands(params, X.dtype))
        del params
        centers = operands[1].astype(np.float64)
        counts, first, second = passes.mixture_pass(X, tuple(operands), _SCATTER[covariance_type], sample_weight)[1:]
        operands.clear()
        if moments is None:  # after fit: the batch's moments alone
            gamma = 1.0
            counts, first, second = counts / total_weight, first / total_weight, second / total_weight
        else:
            gamma = (steps + 2.0) ** -float(self.learning_decay)
            kept_counts, kept_means, kept_covariances = moments
            counts, first, second = _blend(kept_counts, kept_covariances, self.reg_covar, kept_means - centers,
                                           (counts, first, second), gamma / total_weight, 1.0 - gamma,
                                           covariance_type)
        del moments
        nk, xk, sk = _estimate_gaussian_parameters(counts, first, second, centers, self.reg_covar, covariance_type)
        seen += total_weight
        scale = seen if self.total_samples is None else float(self.total_samples)
        params = self._variational_m_step(scale * nk, xk, sk.copy(), float32)
        for name in ("covariances_", "precisions_cholesky_", "precisions_"):
            self.__dict__.pop(name, None)
        self._set_parameters(params)
        self._online_moments = (nk, xk, sk)
        self.n_steps_, self.n_samples_seen_ = steps + 1, seen
        if not hasattr(self, "converged_"):
            self.converged_, self.n_iter_, self.lower_bound_ = False, 0, -np.inf
        return self

    def _variational_m_step(self, nk, xk, sk, float32_input):
        """(weight_concentration, mean_precision, means, degrees_of_freedom, covariances,
        precisions_cholesky) from the statistics (scikit-learn's ``_estimate_*``); ``sk`` is
        overwritten."""
        k = self.n_components
        if self.weight_concentration_prior_type == "dirichlet_process":
            weight_concentration = (
                1.0 + nk,
                self.weight_concentration_prior_ + np.hstack((np.cumsum(nk[::-1])[-2::-1], 0)),
            )
        else:
            weight_concentration = self.weight_concentration_prior_ + nk
        mean_precision = self.mean_precision_prior_ + nk
        means = (self.mean_precision_prior_ * self.mean_prior_ + nk[:, np.newaxis] * xk) / mean_precision[:, np.newaxis]
        diff = xk - self.mean_prior_
        prior = self.covariance_prior_
        if self.covariance_type == "full":
            degrees_of_freedom = self.degrees_of_freedom_prior_ + nk
            covariances = sk
            for j in range(k):
                # prior + N_k S_k + N_k β₀/β_k (x̄_k − m₀)(x̄_k − m₀)ᵀ, one component at a time.
                c = covariances[j]
                c *= nk[j]
                c += prior
                c += nk[j] * self.mean_precision_prior_ / mean_precision[j] * np.multiply.outer(diff[j], diff[j])
                c /= degrees_of_freedom[j]
        elif self.covariance_type == "tied":
            degrees_of_freedom = self.degrees_of_freedom_prior_ + nk.sum() / k
            covariances = (prior + sk * nk.sum() / k
                           + self.mean_precision_prior_ / k * np.dot((nk / mean_precision) * diff.T, diff))
            covariances /= degrees_of_freedom
        elif self.covariance_type == "diag":
            degrees_of_freedom = self.degrees_of_freedom_prior_ + nk
            covariances = prior + nk[:, np.newaxis] * (
                sk + (self.mean_precision_prior_ / mean_precision)[:, np.newaxis] * np.square(diff))
            covariances /= degrees_of_freedom[:, np.newaxis]
        else:
            degrees_of_freedom = self.degrees_of_freedom_prior_ + nk
            covariances = prior + nk * (
                sk + self.mean_precision_prior_ / mean_precision * np.mean(np.square(diff), 1))
            covariances /= degrees_of_freedom
        precisions_cholesky = _compute_precision_cholesky(covariances, self.covariance_type, float32_input)
        return (weight_concentration, mean_precision, means, degrees_of_freedom, covariances,
                precisions_cholesky)

    def _estimate_log_weights(self, weight_concentration):
        """E[log π_k] under the weights' posterior."""
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = weight_concentration
            digamma_sum = digamma(a + b)
            digamma_a = digamma(a)
            digamma_b = digamma(b)
            return digamma_a - digamma_sum + np.hstack((0, np.cumsum(digamma_b - digamma_sum)[:-1]))
        return digamma(weight_concentration) - digamma(np.sum(weight_concentration))

    def _variational_operands(self, params, dtype):
        """The E-step as :func:`mixture_pass` takes it: each component's constant folded
        into its log-weight, the normalised precision as the precision."""
        weight_concentration, mean_precision, means, degrees_of_freedom, _, precisions_cholesky = params
        n_features = means.shape[1]
        log_lambda = n_features * np.log(2.0) + np.sum(
            digamma(0.5 * (degrees_of_freedom - np.arange(0, n_features)[:, np.newaxis])), 0)
        log_weights = (self._estimate_log_weights(weight_concentration)
                       - 0.5 * n_features * np.log(degrees_of_freedom)
                       + 0.5 * (log_lambda - n_features / mean_precision))
        return _pass_operands_from_log_weights(log_weights, means, precisions_cholesky, self.covariance_type, dtype)

    def _lower_bound(self, params, neg_entropy):
        """scikit-learn's ``_compute_lower_bound`` at the new parameters, with Σ r log r given."""
        weight_concentration, mean_precision, _, degrees_of_freedom, _, precisions_cholesky = params
        n_features = self.mean_prior_.shape[0]
        log_det_precisions_chol = (_compute_log_det_cholesky(precisions_cholesky, self.covariance_type, n_features)
                                   - 0.5 * n_features * np.log(degrees_of_freedom))
        if self.covariance_type == "tied":
            log_wishart = self.n_components * np.sum(
                _log_wishart_norm(degrees_of_freedom, log_det_precisions_chol, n_features))
        else:
            log_wishart = np.sum(_log_wishart_norm(degrees_of_freedom, log_det_precisions_chol, n_features))
        if self.weight_concentration_prior_type == "dirichlet_process":
            log_norm_weight = -np.sum(betaln(weight_concentration[0], weight_concentration[1]))
        else:
            log_norm_weight = _log_dirichlet_norm(weight_concentration)
        return float(-neg_entropy - log_wishart - log_norm_weight
                     - 0.5 * n_features * np.sum(np.log(mean_precision)))

    def _iteration_operands(self, params, dtype):
        """The variational E-step at ``params`` as :func:`mixture_pass` takes it."""
        return self._variational_operands(params, dtype)

    def _m_step(self, operands, result, total_weight, dtype):
        """The lower bound at the new parameters (with the E-step's responsibilities) and the
        new parameters, from a pass's ``result`` at ``operands`` (a list, emptied)."""
        log_norm, centers, precisions = operands
        operands.clear()
        log_likelihood, counts, first, second = result
        # Σ_i w_i Σ_k r_ik log p_ik = Σ_k c_k N_k − ½ Σ_k tr(Λ_k S2_k), S2 about `centers`.
        if self.covariance_type == "full":
            trace = sum(float(np.vdot(p.astype(np.float64, copy=False), s)) for p, s in zip(precisions, second))
        elif self.covariance_type == "tied":
            trace = float(np.vdot(precisions[0].astype(np.float64, copy=False), second))
        else:
            trace = float(np.sum(precisions.astype(np.float64) * second))
        neg_entropy = float(np.dot(log_norm, counts)) - 0.5 * trace - log_likelihood
        del precisions
        nk, xk, sk = _estimate_gaussian_parameters(
            counts, first, second, centers.astype(np.float64), self.reg_covar, self.covariance_type)
        params = self._variational_m_step(nk, xk, sk, dtype == np.float32)
        return self._lower_bound(params, neg_entropy), params

    def _get_parameters(self):
        return (self.weight_concentration_, self.mean_precision_, self.means_, self.degrees_of_freedom_,
                self.covariances_, self.precisions_cholesky_)

    def _set_parameters(self, params):
        (self.weight_concentration_, self.mean_precision_, self.means_, self.degrees_of_freedom_,
         self.covariances_, self.precisions_cholesky_) = params
        if self.weight_concentration_prior_type == "dirichlet_process":
            a, b = self.weight_concentration_
            tmp = b / (a + b)
            self.weights_ = a / (a + b) * np.hstack((1, np.cumprod(tmp[:-1])))
            self.weights_ /= np.sum(self.weights_)
        else:
            self.weights_ = self.weight_concentration_ / np.sum(self.weight_concentration_)
        self.precisions_ = _precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)
        # New parameters: partial_fit steps on from them with its moments afresh.
        self._online_moments = None
        self.n_steps_, self.n_samples_seen_ = 0, 0.0

    def _operands(self, dtype):
        """The fitted model's E-step as :func:`mixture_pass` takes it, in X's dtype."""
        return self._variational_operands(self._get_parameters(), dtype)
