"""gmmkernels: the heavy linear algebra of Gaussian-mixture EM on data larger than RAM.

Blocked, multithreaded, memory-bounded kernels (written in Swift, on OpenBLAS) called on
numpy arrays and memmaps without copying them.
"""
from ._kernels import (
    matmul,
    mixture_pass,
    outer,
    quadform,
    quadform_many,
    weighted_gram,
    weighted_gram_many,
    weighted_sum,
)
from ._library import default_threads, library_path, library_version
from ._threadpoolctl import register as _register_with_threadpoolctl
from ._validation import get_thread_limit, set_thread_limit

_register_with_threadpoolctl()

__version__ = "0.1.0"


def __getattr__(name):
    # The estimator's module imports scikit-learn when it is installed (to be a proper
    # sklearn estimator); load it on first use so that `import gmmkernels` stays numpy-only.
    if name in ("GaussianMixture", "BayesianGaussianMixture"):
        from . import mixture

        return getattr(mixture, name)
    raise AttributeError("module 'gmmkernels' has no attribute %r" % name)

__all__ = [
    "quadform",
    "quadform_many",
    "weighted_gram",
    "weighted_gram_many",
    "weighted_sum",
    "matmul",
    "outer",
    "mixture_pass",
    "GaussianMixture",
    "BayesianGaussianMixture",
    "default_threads",
    "get_thread_limit",
    "set_thread_limit",
    "library_path",
    "library_version",
    "__version__",
]
