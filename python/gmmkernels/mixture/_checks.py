"""Checks of the estimators' parameters, of the initial parameters and of X and the sample weights.
"""
import functools
import numbers

import numpy as np

from .. import _kmeans
from .._kernels import weighted_sum
from ._fallbacks import _HAVE_SKLEARN, InvalidParameterError


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


def _check_learning_decay(estimator):
    """partial_fit's α: a float in (0.5, 1]."""
    value = estimator.learning_decay
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not 0.5 < value <= 1.0):
        raise InvalidParameterError(
            "The 'learning_decay' parameter of %s must be a float in the range (0.5, 1.0]. Got %r instead."
            % (type(estimator).__name__, value))
