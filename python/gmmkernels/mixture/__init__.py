"""Gaussian mixture models fitted by EM in one pass over X per iteration.

:class:`GaussianMixture` has scikit-learn's API and numerics
(``sklearn.mixture.GaussianMixture``: same parameters, attributes, convergence test,
``n_init`` loop, warm start, messages and warnings), but each EM iteration is a single
:func:`gmmkernels.mixture_pass` over X: the E-step (log-densities, log-sum-exp,
responsibilities) and the sufficient statistics of the next M-step are computed per row
block, so X (an ``np.memmap`` larger than RAM, say) is read once per iteration and nothing
of size n_samples × n_features is allocated. The initialisation reads X by row blocks too.

:class:`BayesianGaussianMixture` is ``sklearn.mixture.BayesianGaussianMixture`` on the
same pass and the same EM loop: the variational E-step is the Gaussian pass at the
normalised precisions with a constant per component folded into the log-weights, and the
bound's entropy Σ r log r comes from that pass's statistics. Its priors' data moments
(``mean_prior`` and ``covariance_prior`` left at None) take one more pass over X.

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
from ._base import BaseMixture
from ._bayesian_mixture import BayesianGaussianMixture
from ._fallbacks import ConvergenceWarning, NotFittedError
from ._gaussian_mixture import GaussianMixture, select_n_components

__all__ = ["BaseMixture", "BayesianGaussianMixture", "ConvergenceWarning", "GaussianMixture", "NotFittedError", "select_n_components"]
