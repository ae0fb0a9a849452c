"""Gaussian mixture models fitted by EM in one pass over X per iteration.

:class:`GaussianMixture` has scikit-learn's API and numerics
(``sklearn.mixture.GaussianMixture``: same parameters, attributes, convergence test,
``n_init`` loop, warm start, messages and warnings), but each EM iteration is a single
:func:`gmmkernels._kernels.mixture_pass` over X: the E-step (log-densities, log-sum-exp,
responsibilities) and the sufficient statistics of the next M-step are computed per row
block, so X (an ``np.memmap`` larger than RAM, say) is read once per iteration and nothing
of size n_samples × n_features is allocated. The initialisation reads X by row blocks too.

Beyond scikit-learn: ``fit(X, sample_weight=...)`` (weighted EM; rows of weight zero are
not read by the EM passes), ``predict_proba(X, out=...)`` and ``score_samples(X, out=...)``
writing into a given array (a memmap too), ``threads`` and ``memory_limit`` passed to every
kernel, and :func:`select_n_components`.

Dask arrays
-----------
X may be a dask array chunked by rows (one chunk along the columns), e.g. from
:func:`gmmkernels.dask.from_memmap`; ``sample_weight`` is then a numpy array or a dask
array with X's row chunks. ``fit`` runs on dask's scheduler (a ``distributed.Client`` if
one is active): each EM iteration is one :func:`gmmkernels.dask.mixture_pass`, fused
statistics per row block added up by a tree of tasks, and the initialisation is made of
such reductions too, with the same random draws as for numpy X, so a fit from the same
``random_state`` or initial parameters equals the in-memory fit to rounding. ``score``,
``bic`` and ``aic`` are computed; ``predict``, ``predict_proba``, ``score_samples`` and
``fit_predict``'s labels are **lazy dask arrays** with X's row chunks (nothing is read until
they are computed; ``out=`` is for numpy X only). The estimator's reads of X are the
methods of one small backend chosen by the type of X (:class:`_InMemoryPasses`, and
``_dask_passes.DaskPasses`` for dask); dask is imported only when X is a dask array.

The M-step from the pass statistics
-----------------------------------
The pass returns, centred at the means μ° it was given, ``N_k = Σ_i w_i r_ik``,
``S1_k = Σ_i w_i r_ik (x_i − μ°_k)`` and ``S2_k = Σ_i w_i r_ik (x_i − μ°_k)(x_i − μ°_k)ᵀ``
(or its diagonal, or Σ_k S2_k for a tied model). With ``nk = N + 10·eps`` (scikit-learn's
guard) the new mean is ``μ = (S1 + N μ°) / nk``, and with ``δ = μ − μ°`` the scatter about
μ is ``S2 − δ S1ᵀ − S1 δᵀ + N δ δᵀ`` (diagonal: ``S2 − 2 δ∘S1 + N δ²``), exactly
``Σ_i w_i r_ik (x_i − μ_k)(x_i − μ_k)ᵀ``. Covariances are scatter / nk + reg_covar·I
(tied: Σ_k scatter_k / Σ_k nk; spherical: the mean of the diagonal), as in scikit-learn.
Centring at the previous means avoids the cancellation of ``E[x xᵀ] − μ μᵀ``.

Differences from scikit-learn
-----------------------------
- Fitted parameters are float64 also for float32 X (the statistics are float64);
  ``predict_proba`` and ``score_samples`` return X's dtype.
- ``init_params='kmeans'`` runs this module's blocked k-means (k-means++ and Lloyd on a
  subsample, then Lloyd on all of X), not ``sklearn.cluster.KMeans``: the labels it starts
  from may differ. ``'k-means++'``, ``'random'`` and ``'random_from_data'`` make the same
  random draws as scikit-learn and so start from the same responsibilities.
- ``fit`` does not run the final E-step (its labels would be thrown away); ``fit_predict``
  does, so its labels equal ``predict``'s.
- With ``precisions_init``, ``covariances_`` is the inverse of the precisions until the
  first M-step (scikit-learn leaves it unset), so ``max_iter=0`` works.
- Input checks use scikit-learn's ``validate_data`` when it is installed, but the
  finiteness of X is checked by one multithreaded kernel pass (at ``fit``) or from the
  results (at ``predict``, ``score_samples``, ...) rather than by ``np.sum(X)``.

scikit-learn is optional: without it the class still works, with a minimal
``get_params``/``set_params``, a local ``ConvergenceWarning`` (a ``UserWarning``) and a local
``NotFittedError`` (a ``ValueError``).

scikit-learn's ``check_estimator`` passes every check on this class.
"""
import functools
import inspect
import math
import numbers
import sys
import warnings
from time import time

import numpy as np

from . import _kmeans
from ._kernels import mixture_pass, weighted_gram, weighted_gram_many, weighted_sum

try:
    from sklearn.base import BaseEstimator, DensityMixin
    from sklearn.exceptions import ConvergenceWarning, NotFittedError

    _HAVE_SKLEARN = True
except ImportError:
    _HAVE_SKLEARN = False

    class ConvergenceWarning(UserWarning):
        """EM stopped at ``max_iter`` before the lower bound converged."""

    class NotFittedError(ValueError, AttributeError):
        """The estimator is used before ``fit``."""

    class DensityMixin:
        """Marks a density estimator (as scikit-learn's mixin does)."""

        _estimator_type = "DensityEstimator"

    class BaseEstimator:
        """``get_params``/``set_params`` from the constructor's signature, when scikit-learn is absent."""

        @classmethod
        def _get_param_names(cls):
            signature = inspect.signature(cls.__init__)
            return sorted(
                p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            )

        def get_params(self, deep=True):
            params = {}
            for name in self._get_param_names():
                value = getattr(self, name)
                if deep and hasattr(value, "get_params") and not isinstance(value, type):
                    params.update((name + "__" + k, v) for k, v in value.get_params().items())
                params[name] = value
            return params

        def set_params(self, **params):
            valid = self._get_param_names()
            for name, value in params.items():
                if name not in valid:
                    raise ValueError(
                        "Invalid parameter %r for estimator %s. Valid parameters are: %r."
                        % (name, self, valid)
                    )
                setattr(self, name, value)
            return self

        def __repr__(self):
            defaults = {
                p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
            }
            changed = []
            for name in self._get_param_names():
                value = getattr(self, name)
                default = defaults.get(name, inspect.Parameter.empty)
                if value is default or (isinstance(value, (str, numbers.Number)) and value == default):
                    continue
                changed.append("%s=%r" % (name, value))
            return "%s(%s)" % (type(self).__name__, ", ".join(changed))

try:
    from sklearn.utils._param_validation import InvalidParameterError
except ImportError:

    class InvalidParameterError(ValueError, TypeError):
        """A constructor parameter has a wrong type or value."""


_ESTIMATE_PRECISION_ERROR_MESSAGE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)
_FLOAT32_ADVICE = (
    " The numerical accuracy can also be improved by passing float64"
    " data instead of float32."
)
_CONVERGENCE_MESSAGE = (
    "Best performing initialization did not converge. "
    "Try different init parameters, or increase max_iter, "
    "tol, or check for degenerate data."
)
_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
# The second moment the fused pass accumulates for each covariance type.
_SCATTER = {"full": "full", "tied": "tied", "diag": "diagonal", "spherical": "diagonal"}
_EPS = np.finfo(np.float64).eps


###############################################################################
# Shape checkers of the user-provided initial parameters


def _check_array(a):
    """``a`` as a finite float64/float32 array (scikit-learn's ``check_array(ensure_2d=False)``)."""
    a = np.asarray(a)
    if a.dtype.kind == "c":
        raise ValueError("Complex data not supported\n%s\n" % (a,))
    if a.dtype not in (np.float64, np.float32):
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        if np.any(np.isnan(a)):
            raise ValueError("Input contains NaN.")
        raise ValueError("Input contains infinity or a value too large for %r." % (a.dtype,))
    return a


def _check_shape(param, param_shape, name):
    """Raise scikit-learn's ValueError if ``param`` does not have ``param_shape``."""
    if param.shape != param_shape:
        raise ValueError(
            "The parameter '%s' should have the shape of %s, but got %s"
            % (name, param_shape, param.shape)
        )


def _check_weights(weights, n_components):
    """Validate ``weights_init``: shape (n_components,), in [0, 1], summing to 1."""
    weights = _check_array(weights)
    _check_shape(weights, (n_components,), "weights")
    if np.any(np.less(weights, 0.0)) or np.any(np.greater(weights, 1.0)):
        raise ValueError(
            "The parameter 'weights' should be in the range "
            "[0, 1], but got max value %.5f, min value %.5f"
            % (np.min(weights), np.max(weights))
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(float(np.abs(1.0 - np.sum(weights))), 0.0, atol=atol):
        raise ValueError(
            "The parameter 'weights' should be normalized, but got sum(weights) = %.5f"
            % np.sum(weights)
        )
    return weights.astype(np.float64)


def _check_means(means, n_components, n_features):
    """Validate ``means_init``: shape (n_components, n_features)."""
    means = _check_array(means)
    _check_shape(means, (n_components, n_features), "means")
    return means.astype(np.float64)


def _check_precision_positivity(precision, covariance_type):
    if np.any(np.less_equal(precision, 0.0)):
        raise ValueError("'%s precision' should be positive" % covariance_type)


def _check_precision_matrix(precision, covariance_type):
    if not (np.allclose(precision, precision.T, rtol=1e-5, atol=1e-8)
            and np.all(np.linalg.eigvalsh(precision) > 0.0)):
        raise ValueError("'%s precision' should be symmetric, positive-definite" % covariance_type)


def _check_precisions_full(precisions, covariance_type):
    for precision in precisions:
        _check_precision_matrix(precision, covariance_type)


def _check_precisions(precisions, covariance_type, n_components, n_features):
    """Validate ``precisions_init`` for its covariance type.

    Shapes: 'full' (n_components, n_features, n_features), 'tied' (n_features, n_features),
    'diag' (n_components, n_features), 'spherical' (n_components,).
    """
    precisions = _check_array(precisions)
    shapes = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }
    _check_shape(precisions, shapes[covariance_type], "%s precision" % covariance_type)
    {
        "full": _check_precisions_full,
        "tied": _check_precision_matrix,
        "diag": _check_precision_positivity,
        "spherical": _check_precision_positivity,
    }[covariance_type](precisions, covariance_type)
    return precisions.astype(np.float64)


###############################################################################
# Gaussian mixture parameters estimators (the M-step, from pass statistics)


def _estimate_gaussian_covariances_full(counts, nk, first, second, delta, reg_covar):
    """Full covariances, shape (n_components, n_features, n_features), written over ``second``.

    Scatter about the new means, Σ_i w_i r_ik (x_i − μ_k)(x_i − μ_k)ᵀ =
    S2_k − δ_k S1_kᵀ − S1_k δ_kᵀ + N_k δ_k δ_kᵀ, one component at a time, so that the only
    temporary is one (n_features, n_features) array however many components there are.
    """
    n_features = delta.shape[1]
    covariances = second
    for k in range(covariances.shape[0]):
        c = covariances[k]
        cross = np.multiply.outer(delta[k], first[k] - 0.5 * counts[k] * delta[k])
        c -= cross
        c -= cross.T
        c /= nk[k]
        c.flat[:: n_features + 1] += reg_covar
    return covariances


def _estimate_gaussian_covariances_tied(counts, nk, first, second, delta, reg_covar):
    """The tied covariance, shape (n_features, n_features): Σ_k scatter_k / Σ_k nk."""
    cross = delta.T @ first
    scatter = second - cross - cross.T + (delta.T * counts) @ delta
    covariance = scatter / np.sum(nk)
    covariance.flat[:: covariance.shape[0] + 1] += reg_covar
    return covariance


def _estimate_gaussian_covariances_diag(counts, nk, first, second, delta, reg_covar):
    """Diagonal covariances, shape (n_components, n_features)."""
    scatter = second - 2.0 * delta * first + counts[:, np.newaxis] * delta ** 2
    return scatter / nk[:, np.newaxis] + reg_covar


def _estimate_gaussian_covariances_spherical(counts, nk, first, second, delta, reg_covar):
    """Spherical variances, shape (n_components,): the mean of the diagonal covariances."""
    return _estimate_gaussian_covariances_diag(counts, nk, first, second, delta, reg_covar).mean(axis=1)


_COVARIANCE_ESTIMATORS = {
    "full": _estimate_gaussian_covariances_full,
    "tied": _estimate_gaussian_covariances_tied,
    "diag": _estimate_gaussian_covariances_diag,
    "spherical": _estimate_gaussian_covariances_spherical,
}


def _estimate_gaussian_parameters(counts, first, second, centers, reg_covar, covariance_type):
    """The M-step from statistics centred at ``centers``.

    Parameters
    ----------
    counts : ndarray of shape (n_components,)
        ``N_k = Σ_i w_i r_ik``.
    first : ndarray of shape (n_components, n_features)
        ``S1_k = Σ_i w_i r_ik (x_i − c_k)``.
    second : ndarray
        ``S2_k = Σ_i w_i r_ik (x_i − c_k)(x_i − c_k)ᵀ``: (n_components, n_features, n_features)
        for 'full', its sum over k (n_features, n_features) for 'tied', its diagonals
        (n_components, n_features) for 'diag' and 'spherical'.
    centers : ndarray of shape (n_components, n_features)
    reg_covar : float
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    nk : ndarray of shape (n_components,)
        ``N_k + 10·eps``.
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        Shape as ``covariances_`` for the covariance type.
    """
    nk = counts + 10 * _EPS
    means = (first + counts[:, np.newaxis] * centers) / nk[:, np.newaxis]
    delta = means - centers
    covariances = _COVARIANCE_ESTIMATORS[covariance_type](counts, nk, first, second, delta, reg_covar)
    return nk, means, covariances


###############################################################################
# Cholesky factors of the precisions


def _solve_lower(lower, rhs):
    """``L⁻¹ B`` for lower-triangular L (…, n, n) and B (…, n, m), by blocked forward substitution.

    Recursive halving puts almost all the work in matrix products; the leaves are small
    forward substitutions.
    """
    n = lower.shape[-1]
    if n <= 16:
        out = np.empty(np.broadcast_shapes(lower.shape[:-2], rhs.shape[:-2]) + rhs.shape[-2:])
        for i in range(n):
            acc = rhs[..., i, :] - np.einsum("...j,...jm->...m", lower[..., i, :i], out[..., :i, :])
            out[..., i, :] = acc / lower[..., i, i, np.newaxis]
        return out
    h = n // 2
    top = _solve_lower(lower[..., :h, :h], rhs[..., :h, :])
    bottom = _solve_lower(lower[..., h:, h:], rhs[..., h:, :] - lower[..., h:, :h] @ top)
    return np.concatenate([top, bottom], axis=-2)


def _compute_precision_cholesky(covariances, covariance_type, float32_input=False):
    """Cholesky factors U of the precisions (Λ = U Uᵀ, U upper-triangular) from covariances.

    For full and tied covariances, ``Σ = L Lᵀ`` gives ``U = (L⁻¹)ᵀ``.

    Parameters
    ----------
    covariances : ndarray
        (n_components, n_features, n_features) 'full', (n_features, n_features) 'tied',
        (n_components, n_features) 'diag', (n_components,) 'spherical'.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    precisions_cholesky : ndarray, same shape as ``covariances``.
    """
    message = _ESTIMATE_PRECISION_ERROR_MESSAGE + (_FLOAT32_ADVICE if float32_input else "")
    if not np.all(np.isfinite(covariances)):
        raise ValueError(message)
    if covariance_type in ("full", "tied"):
        # One component at a time: the temporaries are (n_features, n_features), whatever K.
        out = np.empty_like(covariances)
        for cov, chol in zip(covariances.reshape((-1,) + covariances.shape[-2:]),
                             out.reshape((-1,) + out.shape[-2:])):
            try:
                cov_chol = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                raise ValueError(message) from None
            chol[...] = _invert_lower(cov_chol).T
        return out
    if np.any(covariances <= 0.0):
        raise ValueError(message)
    return 1.0 / np.sqrt(covariances)


def _invert_lower(lower):
    """``L⁻¹`` for one lower-triangular L (n, n): about (2/3)·n³ flops, in matrix products.

    By halves, [[A, 0], [B, C]]⁻¹ = [[A⁻¹, 0], [−C⁻¹ B A⁻¹, C⁻¹]]; the leaves are
    forward substitutions against the identity.
    """
    n = lower.shape[0]
    out = np.zeros_like(lower)
    _invert_lower_into(lower, out)
    return out


def _invert_lower_into(lower, out):
    n = lower.shape[0]
    if n <= 64:
        out[...] = _solve_lower(lower, np.eye(n))
        return
    h = n // 2
    _invert_lower_into(lower[:h, :h], out[:h, :h])
    _invert_lower_into(lower[h:, h:], out[h:, h:])
    out[h:, :h] = -(out[h:, h:] @ (lower[h:, :h] @ out[:h, :h]))


def _compute_precision_cholesky_from_precisions(precisions, covariance_type):
    """Upper-triangular U with Λ = U Uᵀ, from the precisions themselves.

    With J the exchange matrix (ones on the anti-diagonal), J Λ J = L Lᵀ by Cholesky, and
    U = J L J is upper-triangular with U Uᵀ = Λ (scikit-learn's identity, #26415).
    """
    if covariance_type in ("full", "tied"):
        flipped = np.flip(precisions, axis=(-2, -1))
        return np.flip(np.linalg.cholesky(flipped), axis=(-2, -1)).copy()
    return np.sqrt(precisions)


def _covariances_from_precision_cholesky(precisions_chol, covariance_type):
    """Σ = Λ⁻¹ = U⁻ᵀ U⁻¹ from the precision Cholesky factors."""
    if covariance_type in ("full", "tied"):
        # Uᵀ is lower-triangular: with V = (Uᵀ)⁻¹ = U⁻ᵀ, Σ = U⁻ᵀ U⁻¹ = V Vᵀ, the Gram matrix
        # of the rows of Vᵀ; one component at a time.
        out = np.empty(precisions_chol.shape)
        for u, cov in zip(precisions_chol.reshape((-1,) + out.shape[-2:]), out.reshape((-1,) + out.shape[-2:])):
            weighted_gram(_invert_lower(u.T).T, out=cov)
        return out
    return 1.0 / precisions_chol ** 2


def _precisions_from_cholesky(precisions_chol, covariance_type, dtype=np.float64):
    """Λ = U Uᵀ (full, tied) or U² (diag, spherical), in ``dtype``.

    U Uᵀ is the Gram matrix of the rows of Uᵀ: :func:`weighted_gram` forms it for half
    GEMM's flops, exactly symmetric (so the pass reads it in place), one component at a time.
    """
    if covariance_type not in ("full", "tied"):
        return (precisions_chol ** 2).astype(dtype, copy=False)
    out = np.empty(precisions_chol.shape, dtype=dtype)
    flat = out.reshape((-1,) + out.shape[-2:])
    scratch = None if dtype == np.float64 else np.empty(out.shape[-2:])
    for u, lam in zip(precisions_chol.reshape((-1,) + precisions_chol.shape[-2:]), flat):
        if scratch is None:
            weighted_gram(u.T, out=lam)
        else:
            lam[...] = weighted_gram(u.T, out=scratch)
    return out


###############################################################################
# Gaussian mixture probability estimators


def _compute_log_det_cholesky(matrix_chol, covariance_type, n_features):
    """log det of the Cholesky factors, shape (n_components,) (a scalar for 'tied').

    det(U) = Π diag(U) = det(Λ)^½, so this is ½ log det Λ: the density's normaliser.
    """
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(matrix_chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(matrix_chol)))
    if covariance_type == "diag":
        return np.sum(np.log(matrix_chol), axis=1)
    return n_features * np.log(matrix_chol)


def _pass_operands(weights, means, precisions_chol, covariance_type, dtype):
    """What :func:`mixture_pass` needs, in X's dtype.

    Returns
    -------
    log_norm : ndarray of shape (n_components,)
        ``log π_k + log det U_k − ½ d log 2π``.
    centers : ndarray of shape (n_components, n_features)
        The means in X's dtype: the pass's statistics are centred at exactly these.
    precisions : ndarray of shape (n_components, n_features, n_features) or (n_components, n_features)
        A tied model passes one matrix broadcast K times, a spherical one a broadcast column.
    """
    n_components, n_features = means.shape
    log_det = _compute_log_det_cholesky(precisions_chol, covariance_type, n_features)
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    log_norm = log_weights + log_det - 0.5 * n_features * math.log(2 * math.pi)
    precisions = _precisions_from_cholesky(precisions_chol, covariance_type, dtype)
    if covariance_type == "tied":
        precisions = np.broadcast_to(precisions, (n_components, n_features, n_features))
    elif covariance_type == "spherical":
        precisions = np.broadcast_to(precisions[:, np.newaxis], (n_components, n_features))
    return log_norm, means.astype(dtype), precisions


###############################################################################
# Streaming statistics for the initial M-step


def _statistics_from_responsibilities(X, responsibilities, centers, covariance_type, sample_weight,
                                      *, threads=None, memory_limit=None):
    """N, S1, S2 centred at ``centers`` for responsibilities given block by block.

    X is read once, by row blocks bounded by ``memory_limit``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    responsibilities : callable
        ``responsibilities(rows, block)`` → (n_rows, n_components) float64 for the slice
        ``rows`` of X (``block`` is those rows in float64); called in order.
    centers : ndarray of shape (n_components, n_features)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    sample_weight : ndarray of shape (n_samples,) or None

    Returns
    -------
    counts, first, second
        As :func:`mixture_pass` returns them for the covariance type's scatter.
    """
    n, d = X.shape
    k = centers.shape[0]
    counts = np.zeros(k)
    first = np.zeros((k, d))
    second = np.zeros({"full": (k, d, d), "tied": (d, d)}.get(covariance_type, (k, d)))
    rows_per_block = _kmeans.block_rows(memory_limit, 8 * (3 * d + 2 * k + 2))
    # Full and tied second moments: one weighted_gram_many over as many rows as the
    # responsibilities of (rows, K) fit the memory limit, accumulated in its own output (X is
    # read in place: no float64 copy of X, no d² array per block).
    matrices = covariance_type in ("full", "tied")
    chunk_rows = max(rows_per_block, _kmeans.block_rows(memory_limit, (8 + X.dtype.itemsize) * k))
    kernel_centers = centers.astype(X.dtype)
    grams = None
    for chunk in _kmeans.row_blocks(n, chunk_rows):
        chunk_resp = np.empty((chunk.stop - chunk.start, k), dtype=X.dtype) if matrices else None
        chunk_counts = np.zeros(k)
        for start in range(chunk.start, chunk.stop, rows_per_block):
            rows = slice(start, min(start + rows_per_block, chunk.stop))
            block = _kmeans.as_float64(X[rows])
            resp = responsibilities(rows, block)
            if sample_weight is not None:
                resp = resp * sample_weight[rows, np.newaxis]
            block_counts = resp.sum(axis=0)
            chunk_counts += block_counts
            first += weighted_sum(block, resp, threads=threads, memory_limit=memory_limit)
            first -= block_counts[:, np.newaxis] * centers
            if matrices:
                chunk_resp[rows.start - chunk.start:rows.stop - chunk.start] = resp
                continue
            for j in range(k):
                r = resp[:, j]
                used = np.flatnonzero(r)
                if used.size == 0:
                    continue
                if used.size < r.shape[0]:
                    diff, r = block[used] - centers[j], r[used]
                else:
                    diff = block - centers[j]
                second[j] += r @ (diff * diff)
        counts += chunk_counts
        if not matrices:
            continue
        # Rows of weight zero cost nothing in weighted_gram_many.
        direct = covariance_type == "full" and X.dtype == np.float64 and chunk.start == 0 and chunk.stop == n
        if direct:
            grams = second
        elif grams is None:
            grams = np.empty((k, d, d), dtype=X.dtype)
        weighted_gram_many(X[chunk], chunk_resp, centers=kernel_centers, out=grams, threads=threads,
                           memory_limit=memory_limit)
        if direct:
            continue
        if X.dtype != np.float64:
            # Centred at the means rounded to X's dtype: moved to the exact ones, S2(c) =
            # S2(c') + δ S1'ᵀ + S1' δᵀ + N δδᵀ with δ = c' − c and S1' = Σ r x − N c'.
            offset = kernel_centers - centers
            s1 = (weighted_sum(X[chunk], chunk_resp, threads=threads, memory_limit=memory_limit)
                  - chunk_counts[:, np.newaxis] * kernel_centers)
        for j in range(k):
            g = grams[j].astype(np.float64)
            if X.dtype != np.float64:
                cross = np.multiply.outer(offset[j], s1[j] + 0.5 * chunk_counts[j] * offset[j])
                g += cross
                g += cross.T
            if covariance_type == "full":
                second[j] += g
            else:
                second += g
    return counts, first, second


def _hard_responsibilities(centers, center_norms, rows, block, *, threads=None, memory_limit=None):
    """One-hot responsibilities of each row's nearest center, shape (n_rows, n_components)."""
    labels, _ = _kmeans.nearest_center(block, centers, center_norms, threads=threads, memory_limit=memory_limit)
    resp = np.zeros((block.shape[0], centers.shape[0]))
    resp[np.arange(block.shape[0]), labels] = 1.0
    return resp


def _uniform_responsibilities(random_state, n_components, sample_weight, rows, block):
    """scikit-learn's ``uniform(size=(n_samples, n_components))``, normalised, drawn block by
    block (the same stream); with sample weights, only rows of positive weight draw."""
    if sample_weight is None:
        resp = random_state.uniform(size=(block.shape[0], n_components))
        resp /= resp.sum(axis=1)[:, np.newaxis]
        return resp
    drawing = np.flatnonzero(sample_weight[rows] > 0)
    draws = random_state.uniform(size=(drawing.shape[0], n_components))
    resp = np.zeros((block.shape[0], n_components))
    resp[drawing] = draws / draws.sum(axis=1)[:, np.newaxis]
    return resp


def _gram_of_rows(X, sample_weight, *, threads=None, memory_limit=None):
    """``Σ_i w_i x_i x_iᵀ`` in float64, shape (n_features, n_features); X read by row blocks."""
    n, d = X.shape
    gram = np.zeros((d, d))
    for rows in _kmeans.row_blocks(n, _kmeans.block_rows(memory_limit, 8 * d + 8)):
        w = None if sample_weight is None else sample_weight[rows]
        gram += weighted_gram(_kmeans.as_float64(X[rows]), w, threads=threads, memory_limit=memory_limit)
    return gram


def _tied_covariance_of_all_rows(gram, nk, means, reg_covar):
    """scikit-learn's tied estimator, ``(Σ_i w_i x_i x_iᵀ − Σ_k nk_k μ_k μ_kᵀ) / Σ_k nk_k + reg_covar·I``.

    It equals Σ_k scatter_k / Σ_k nk only when every row's responsibilities sum to one. For
    responsibilities one-hot at K seed rows ('k-means++', 'random_from_data') the other rows
    still enter through Σ x xᵀ (``gram``, one pass over X); this reproduces that so those
    initialisations start where scikit-learn's start.
    """
    d = gram.shape[0]
    covariance = (gram - (nk * means.T) @ means) / np.sum(nk)
    covariance.flat[:: d + 1] += reg_covar
    return covariance


def _one_hot_statistics(passes, X, indices, covariance_type, sample_weight):
    """Statistics of responsibilities that are one-hot at rows ``indices`` (one per component),
    centred at those rows: N_k = w_i, S1 = S2 = 0. Reads only those rows of X."""
    centers = _kmeans.as_float64(passes.rows(X, indices))
    k, d = centers.shape
    counts = np.ones(k) if sample_weight is None else _kmeans.as_float64(passes.rows(sample_weight, indices))
    second = np.zeros({"full": (k, d, d), "tied": (d, d)}.get(covariance_type, (k, d)))
    return counts, np.zeros((k, d)), second, centers


###############################################################################
# Input checks


def _check_random_state(seed):
    """A ``numpy.random.RandomState`` from None, an int or an instance (scikit-learn's rule)."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError("%r cannot be used to seed a numpy.random.RandomState instance" % (seed,))


def _check_sample_weight(sample_weight, n_samples):
    """Weights as a float64 (n_samples,) array ≥ 0 with a positive entry, or None."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight, dtype=np.float64)
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise ValueError("sample_weight must be real numbers, got dtype %s" % w.dtype)
    w = w.astype(np.float64, copy=False)
    if w.ndim != 1:
        raise ValueError(
            "Sample weights must be 1D array or scalar, got %dD array. Expected either a "
            "scalar value or a 1D array of length %d." % (w.ndim, n_samples)
        )
    if w.shape != (n_samples,):
        raise ValueError("sample_weight.shape == %s, expected %s!" % (w.shape, (n_samples,)))
    if not np.all(np.isfinite(w)):
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if np.any(w < 0):
        raise ValueError("Negative values in data passed to `sample_weight`")
    if not np.any(w > 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return w


def _raise_if_not_finite(X, *, memory_limit=None):
    """Scan X by row blocks and raise scikit-learn's ValueError at the first NaN or infinity."""
    n, d = X.shape
    for rows in _kmeans.row_blocks(n, _kmeans.block_rows(memory_limit, 2 * d * X.dtype.itemsize + 1)):
        block = np.asarray(X[rows])
        if np.all(np.isfinite(block)):
            continue
        if _HAVE_SKLEARN:
            try:
                from sklearn.utils.validation import _assert_all_finite
            except ImportError:  # pragma: no cover - a private helper that may move
                pass
            else:
                _assert_all_finite(block, input_name="X", estimator_name="GaussianMixture")
        if np.any(np.isnan(block)):
            raise ValueError("Input X contains NaN.")
        raise ValueError("Input X contains infinity or a value too large for %r." % (X.dtype,))


def _check_all_finite(X, *, threads=None, memory_limit=None):
    """Raise unless X is all finite; one kernel pass (the column sums) in the common case."""
    n = X.shape[0]
    if n == 0:
        return
    totals = weighted_sum(X, np.ones((n, 1), dtype=X.dtype), threads=threads, memory_limit=memory_limit)
    if not np.all(np.isfinite(totals)):
        _raise_if_not_finite(X, memory_limit=memory_limit)


def _validate_without_sklearn(estimator, X, reset):
    """scikit-learn's ``validate_data`` checks (2-D float, sizes, n_features_in_) in numpy."""
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(
            "Sparse data was passed for X, but dense data is required. Use '.toarray()' to "
            "convert to a dense numpy array."
        )
    X = np.asarray(X)
    if X.dtype.kind == "c":
        raise ValueError("Complex data not supported\n%s\n" % (X,))
    if X.dtype not in (np.float64, np.float32):
        X = X.astype(np.float64)
    if X.ndim != 2:
        raise ValueError(
            "Expected 2D array, got %s array instead:\narray=%s.\nReshape your data either "
            "using array.reshape(-1, 1) if your data has a single feature or "
            "array.reshape(1, -1) if it contains a single sample."
            % ("scalar" if X.ndim == 0 else "%dD" % X.ndim, X)
        )
    _check_sizes(estimator, X.shape, reset)
    return X


def _check_sizes(estimator, shape, reset):
    """scikit-learn's checks of the number of samples and features of a 2-D X of ``shape``;
    sets ``n_features_in_`` (``reset``) or checks X against it."""
    n, d = shape
    min_samples = 2 if reset else 1
    if n < min_samples:
        raise ValueError(
            "Found array with %d sample(s) (shape=%s) while a minimum of %d is required by %s."
            % (n, shape, min_samples, type(estimator).__name__)
        )
    if d < 1:
        raise ValueError(
            "Found array with 0 feature(s) (shape=%s) while a minimum of 1 is required by %s."
            % (shape, type(estimator).__name__)
        )
    if reset:
        estimator.n_features_in_ = d
    elif d != estimator.n_features_in_:
        raise ValueError(
            "X has %d features, but %s is expecting %d features as input."
            % (d, type(estimator).__name__, estimator.n_features_in_)
        )


def _validate_with_sklearn(estimator, X, reset):
    from sklearn import config_context

    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # scikit-learn < 1.6

        def validate_data(est, X, **kwargs):
            return est._validate_data(X, **kwargs)

    # Finiteness is checked separately, by a kernel pass or from the results.
    with config_context(assume_finite=True):
        return validate_data(estimator, X, dtype=[np.float64, np.float32],
                             ensure_min_samples=2 if reset else 1, reset=reset)


def _validate_data(estimator, X, reset):
    """X as a 2-D float32/float64 array (a memmap stays a view of the file, never a copy)."""
    if _HAVE_SKLEARN:
        return _validate_with_sklearn(estimator, X, reset)
    return _validate_without_sklearn(estimator, X, reset)


@functools.lru_cache(maxsize=None)
def _reports_lower_bounds():
    """Whether to set ``lower_bounds_``: when the installed scikit-learn does (or without it)."""
    if not _HAVE_SKLEARN:
        return True
    try:
        from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
    except ImportError:  # pragma: no cover
        return True
    return "lower_bounds_" in (SklearnGaussianMixture.__doc__ or "")


def _check_integer(estimator, name, low, allow_none=False):
    value = getattr(estimator, name)
    if allow_none and value is None:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < low:
        raise InvalidParameterError(
            "The %r parameter of %s must be an int in the range [%d, inf)%s. Got %s instead."
            % (name, type(estimator).__name__, low, " or None" if allow_none else "", repr(value))
        )


def _check_real(estimator, name, low):
    value = getattr(estimator, name)
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
            or not value >= low):
        raise InvalidParameterError(
            "The %r parameter of %s must be a float in the range [%.1f, inf). Got %s instead."
            % (name, type(estimator).__name__, low, repr(value))
        )


def _check_option(estimator, name, options):
    value = getattr(estimator, name)
    if not isinstance(value, str) or value not in options:
        raise InvalidParameterError(
            "The %r parameter of %s must be a str among %s. Got %s instead."
            % (name, type(estimator).__name__, "{%s}" % ", ".join(repr(o) for o in sorted(options)),
               repr(value))
        )


###############################################################################
# Passes over X: the one place that depends on the type of X


def _passes_for(X, *, threads=None, memory_limit=None):
    """The pass backend for X: :class:`_InMemoryPasses` for numpy arrays, memmaps and
    array-likes, ``_dask_passes.DaskPasses`` for a dask array."""
    # A dask array exists only if dask.array was imported: without it, dask is not loaded.
    dask_array = sys.modules.get("dask.array")
    if dask_array is not None and isinstance(X, dask_array.Array):
        from ._dask_passes import DaskPasses

        return DaskPasses(threads=threads, memory_limit=memory_limit)
    return _InMemoryPasses(threads=threads, memory_limit=memory_limit)


class _InMemoryPasses:
    """Every read of X the estimator makes, for X in memory or in a memmap.

    Each method reads X once (or a few rows of it) with the kernels and the streaming
    helpers above, by row blocks bounded by ``memory_limit``. ``DaskPasses`` has the same
    methods for a dask X; its tasks call these on their row blocks.
    """

    def __init__(self, *, threads=None, memory_limit=None):
        self.threads = threads
        self.memory_limit = memory_limit
        self.options = {"threads": threads, "memory_limit": memory_limit}

    def validate(self, estimator, X, reset):
        """X as a 2-D float32/float64 array (a memmap stays a view of the file)."""
        return _validate_data(estimator, X, reset)

    def sample_weight(self, sample_weight, X):
        """(validated weights or None, count of positive weights, total weight)."""
        n = X.shape[0]
        w = _check_sample_weight(sample_weight, n)
        if w is None:
            return None, n, n
        return w, int(np.count_nonzero(w)), float(np.sum(w))

    def check_finite(self, X):
        """Raise scikit-learn's ValueError if X holds NaN or infinity."""
        _check_all_finite(X, **self.options)

    def rows(self, a, index):
        """``a[index]`` (rows of X or entries of the weights) as an in-memory array."""
        return np.asarray(a[index])

    def mixture_pass(self, X, operands, scatter, sample_weight=None):
        """The fused pass: (log_likelihood, counts, first, second) at ``operands``, the
        (log_norm, centers, precisions) of :func:`_pass_operands`."""
        return mixture_pass(X, *operands, scatter=scatter, sample_weight=sample_weight, **self.options)

    def row_outputs(self, X, operands, output, out=None):
        """Per-row results at ``operands``: ``output`` 'labels' (n_samples,) of intp, 'resp'
        (n_samples, n_components) or 'score' (n_samples,) of X's dtype, written into ``out``."""
        n = X.shape[0]
        k = operands[0].shape[0]
        if output == "labels":
            # By row blocks: no (n_samples, n_components) array.
            labels = np.empty(n, dtype=np.intp)
            rows = min(max(n, 1), _kmeans.block_rows(self.memory_limit, X.dtype.itemsize * (k + 1)))
            resp = np.empty((rows, k), dtype=X.dtype)
            score = np.empty(rows, dtype=X.dtype)
            for block in _kmeans.row_blocks(n, rows):
                m = block.stop - block.start
                self._score_rows(X[block], operands, resp[:m], score[:m])
                np.argmax(resp[:m], axis=1, out=labels[block])
            return labels
        if output == "resp":
            if out is None:
                out = np.empty((n, k), dtype=X.dtype)
            self._score_rows(X, operands, out, np.empty(n, dtype=X.dtype))
        else:
            if out is None:
                out = np.empty(n, dtype=X.dtype)
            self._score_rows(X, operands, None, out)
        return out

    def _score_rows(self, X, operands, resp, score):
        mixture_pass(X, *operands, scatter="none", resp_out=resp, score_out=score, **self.options)
        if not np.all(np.isfinite(score)):
            _raise_if_not_finite(X, memory_limit=self.memory_limit)

    def gram(self, X, sample_weight=None):
        """``Σ_i w_i x_i x_iᵀ``, float64 of shape (n_features, n_features)."""
        return _gram_of_rows(X, sample_weight, **self.options)

    def kmeans_centers(self, X, n_components, random_state, sample_weight=None):
        """The centers of :func:`_kmeans.kmeans_centers`, shape (n_components, n_features)."""
        return _kmeans.kmeans_centers(X, n_components, random_state, sample_weight=sample_weight,
                                      **self.options)

    def kmeans_plusplus(self, X, n_components, random_state, sample_weight=None):
        """The rows that scikit-learn's k-means++ picks, shape (n_components,)."""
        _, indices = _kmeans.kmeans_plusplus(X, n_components, random_state, sample_weight=sample_weight,
                                             **self.options)
        return indices

    def hard_statistics(self, X, centers, covariance_type, sample_weight=None):
        """Statistics (counts, first, second) of one-hot responsibilities at the nearest center."""
        center_norms = np.einsum("ij,ij->i", centers, centers)
        hard = functools.partial(_hard_responsibilities, centers, center_norms, **self.options)
        return _statistics_from_responsibilities(X, hard, centers, covariance_type, sample_weight,
                                                 **self.options)

    def uniform_statistics(self, X, random_state, centers, covariance_type, sample_weight=None):
        """Statistics (counts, first, second) of uniformly drawn responsibilities."""
        uniform = functools.partial(_uniform_responsibilities, random_state, centers.shape[0], sample_weight)
        return _statistics_from_responsibilities(X, uniform, centers, covariance_type, sample_weight,
                                                 **self.options)


###############################################################################
# The estimator


class GaussianMixture(DensityMixin, BaseEstimator):
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

    # -- checks ---------------------------------------------------------------

    def _check_params(self):
        """Types and ranges of the constructor parameters (scikit-learn's constraints)."""
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

    def _check_initial_parameters(self, n_features):
        """The validated (weights_init, means_init, precisions_init), float64 or None."""
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = _check_weights(self.weights_init, self.n_components)
        if self.means_init is not None:
            means = _check_means(self.means_init, self.n_components, n_features)
        if self.precisions_init is not None:
            precisions = _check_precisions(self.precisions_init, self.covariance_type,
                                           self.n_components, n_features)
        return weights, means, precisions

    def _check_is_fitted(self):
        if not hasattr(self, "precisions_cholesky_"):
            raise NotFittedError(
                "This %s instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator." % type(self).__name__
            )

    def _passes(self, X):
        return _passes_for(X, threads=self.threads, memory_limit=self.memory_limit)

    # -- initialisation ------------------------------------------------------------

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

    # -- EM ------------------------------------------------------------------------

    def _em_iteration(self, passes, X, sample_weight, state):
        """One E-step and M-step: one pass over X.

        ``state`` is a list holding the parameters; they are taken out of it and let go
        once the pass has read them. Returns the (weighted) log-likelihood at those
        parameters and the new parameters.
        """
        weights, means, _, precisions_chol = state.pop()
        log_norm, centers, precisions = _pass_operands(weights, means, precisions_chol,
                                                       self.covariance_type, X.dtype)
        del precisions_chol
        log_likelihood, counts, first, second = passes.mixture_pass(
            X, (log_norm, centers, precisions), _SCATTER[self.covariance_type], sample_weight)
        del precisions  # K·d² at most: not needed for the M-step
        nk, means, covariances = _estimate_gaussian_parameters(
            counts, first, second, centers.astype(np.float64), self.reg_covar, self.covariance_type)
        weights = nk / np.sum(nk)
        precisions_chol = _compute_precision_cholesky(covariances, self.covariance_type,
                                                      X.dtype == np.float32)
        return log_likelihood, (weights, means, covariances, precisions_chol)

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

    # -- parameters ----------------------------------------------------------------

    def _get_parameters(self):
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _set_parameters(self, params):
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params
        self.precisions_ = _precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)

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

    # -- scoring -------------------------------------------------------------------

    def _operands(self, dtype):
        """The fitted parameters as :func:`mixture_pass` takes them, in X's dtype."""
        return _pass_operands(self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type, dtype)

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

    # -- verbose output (scikit-learn's) -----------------------------------------------

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


###############################################################################
# Model selection


def select_n_components(X, n_components_range, *, criterion="bic", sample_weight=None, **params):
    """Fit a :class:`GaussianMixture` for each number of components and score it.

    Each fit costs its EM passes plus one scoring pass over X for the criterion.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components_range : iterable of int
    criterion : {'bic', 'aic'}, default='bic'
        With ``sample_weight``, the log-likelihood is weighted and BIC's sample count is
        ``sum(sample_weight)``.
    sample_weight : array-like of shape (n_samples,), optional
    **params
        Other :class:`GaussianMixture` parameters (covariance_type, random_state, ...).

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
    scores = np.empty(len(n_components_range))
    best = None
    for i, n_components in enumerate(n_components_range):
        model = GaussianMixture(n_components=n_components, **params)
        model.fit(X, sample_weight=sample_weight)
        scores[i] = model._information_criterion(X, criterion, sample_weight)
        if best is None or scores[i] < scores[:i].min():
            best = model
    return best, scores
