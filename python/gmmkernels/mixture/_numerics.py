"""The M-step from the pass statistics, and the Cholesky numerics of the precisions
(per covariance type, as in scikit-learn's ``_gaussian_mixture.py``).
"""
import math

import numpy as np

from .._kernels import weighted_gram


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

_EPS = np.finfo(np.float64).eps

# The second moment the fused pass accumulates for each covariance type.
_SCATTER = {"full": "full", "tied": "tied", "diag": "diagonal", "spherical": "diagonal"}

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

def _blend(weights, covariances, reg_covar, delta, batch, batch_scale, kept_scale, covariance_type):
    """``kept_scale·s + batch_scale·ŝ``, the update of stepwise EM.

    ``s`` are the statistics per unit weight that the parameters stand for, centred at their
    means: N_k = weights_k and the scatter N_k (Σ_k − reg_covar·I) (summed over k for 'tied',
    its diagonal for 'diag'; for 'spherical' the variance on every diagonal entry, as only
    their mean over the features enters an M-step), moved to the batch's centres (the means −
    ``delta``). ``ŝ`` is the batch's (N, S1, S2) at those centres, scaled in place; 'full'
    needs no temporary larger than d².
    """
    counts, first, second = batch
    kept_counts = np.asarray(weights, dtype=np.float64)
    moved = kept_counts[:, np.newaxis] * delta  # S1 of the kept statistics at the centres
    counts = kept_scale * kept_counts + batch_scale * counts
    first = kept_scale * moved + batch_scale * first
    if covariance_type == "full":
        for k in range(second.shape[0]):
            kept = covariances[k] * kept_counts[k]
            kept.flat[:: kept.shape[0] + 1] -= reg_covar * kept_counts[k]
            kept += np.multiply.outer(moved[k], delta[k])
            second[k] *= batch_scale
            second[k] += kept_scale * kept
    elif covariance_type == "tied":
        kept = covariances * np.sum(kept_counts)
        kept.flat[:: kept.shape[0] + 1] -= reg_covar * np.sum(kept_counts)
        second *= batch_scale
        second += kept_scale * (kept + moved.T @ delta)
    else:
        spread = covariances - reg_covar
        kept = kept_counts[:, np.newaxis] * (spread if covariance_type == "diag" else spread[:, np.newaxis])
        second *= batch_scale
        second += kept_scale * (kept + moved * delta)
    return counts, first, second

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

def _pass_operands(weights, means, precisions_chol, covariance_type, dtype, precisions=None):
    """What :func:`mixture_pass` needs, in X's dtype; ``precisions``, if given, are the
    model's ``precisions_`` (U Uᵀ already formed: used in place for float64 X).

    Returns
    -------
    log_norm : ndarray of shape (n_components,)
        ``log π_k + log det U_k − ½ d log 2π``.
    centers : ndarray of shape (n_components, n_features)
        The means in X's dtype: the pass's statistics are centred at exactly these.
    precisions : ndarray of shape (n_components, n_features, n_features) or (n_components, n_features)
        A tied model passes one matrix broadcast K times, a spherical one a broadcast column.
    """
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    return _pass_operands_from_log_weights(log_weights, means, precisions_chol, covariance_type, dtype, precisions)

def _pass_operands_from_log_weights(log_weights, means, precisions_chol, covariance_type, dtype, precisions=None):
    """:func:`_pass_operands` from the log-weights (a variational model's expected ones)."""
    n_components, n_features = means.shape
    log_det = _compute_log_det_cholesky(precisions_chol, covariance_type, n_features)
    log_norm = log_weights + log_det - 0.5 * n_features * math.log(2 * math.pi)
    if precisions is None:
        precisions = _precisions_from_cholesky(precisions_chol, covariance_type, dtype)
    else:
        precisions = precisions.astype(dtype, copy=False)
    if covariance_type == "tied":
        precisions = np.broadcast_to(precisions, (n_components, n_features, n_features))
    elif covariance_type == "spherical":
        precisions = np.broadcast_to(precisions[:, np.newaxis], (n_components, n_features))
    return log_norm, means.astype(dtype), precisions

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
