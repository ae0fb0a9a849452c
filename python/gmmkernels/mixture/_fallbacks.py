"""What scikit-learn provides when it is installed, and small stand-ins when it is not:
the estimator base classes, ``ConvergenceWarning``, ``NotFittedError`` and
``InvalidParameterError``.
"""
import inspect
import numbers


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
