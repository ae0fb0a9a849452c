"""gmmkernels.GaussianMixture: parity with scikit-learn, the streaming initialisation,
sample weights, out=, memmaps, bad input, and scikit-learn's estimator checks."""
import os
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import gmmkernels
from gmmkernels import GaussianMixture, mixture
from gmmkernels import _kmeans
from gmmkernels._kernels import mixture_pass
from support.references import blobs, given_inits

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture  # noqa: E402
from sklearn.mixture import _gaussian_mixture as sk_gm  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
INIT_PARAMS = ["kmeans", "k-means++", "random", "random_from_data"]
PARITY = dict(rtol=1e-8, atol=1e-12)


def fit_both(X, sample_weight=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(**params).fit(X, sample_weight=sample_weight)
        theirs = SklearnGaussianMixture(**params).fit(X)
    return ours, theirs


def assert_same_fit(ours, theirs, means_order=None, first_bound_rtol=1e-8):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.converged_ == theirs.converged_
    assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-8)
    order = np.arange(ours.n_components) if means_order is None else means_order
    assert_allclose(ours.weights_, theirs.weights_[order], **PARITY)
    assert_allclose(ours.means_, theirs.means_[order], **PARITY)
    covariances = theirs.covariances_ if theirs.covariance_type == "tied" else theirs.covariances_[order]
    assert_allclose(ours.covariances_, covariances, **PARITY)
    precisions = theirs.precisions_ if theirs.covariance_type == "tied" else theirs.precisions_[order]
    assert_allclose(ours.precisions_, precisions, rtol=1e-8, atol=1e-10)
    if hasattr(theirs, "lower_bounds_"):
        assert_allclose(ours.lower_bounds_[0], theirs.lower_bounds_[0], rtol=first_bound_rtol)
        assert_allclose(ours.lower_bounds_[1:], theirs.lower_bounds_[1:], rtol=1e-8)


###############################################################################
# Parity with scikit-learn


@pytest.mark.parametrize("tol", [1e-3, 1e-10])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parity_with_given_initial_parameters(covariance_type, tol):
    X, centers = blobs()
    params = dict(n_components=3, covariance_type=covariance_type, tol=tol, max_iter=25,
                  **given_inits(covariance_type, centers))
    ours, theirs = fit_both(X, **params)
    assert ours.n_iter_ >= 2
    assert_same_fit(ours, theirs)
    assert_allclose(ours.precisions_cholesky_, theirs.precisions_cholesky_, rtol=1e-8, atol=1e-10)
    assert_array_equal(ours.predict(X), theirs.predict(X))
    assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-7, atol=1e-10)
    assert_allclose(ours.score_samples(X), theirs.score_samples(X), rtol=1e-9)
    assert_allclose(ours.score(X), theirs.score(X), rtol=1e-10)
    assert_allclose(ours.bic(X), theirs.bic(X), rtol=1e-10)
    assert_allclose(ours.aic(X), theirs.aic(X), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["k-means++", "random", "random_from_data"])
def test_parity_of_random_initialisations(init_params, covariance_type):
    # The same random draws as scikit-learn: the same starting responsibilities.
    X, _ = blobs(n=600, seed=2)
    ours, theirs = fit_both(X, n_components=3, covariance_type=covariance_type,
                            init_params=init_params, random_state=7, max_iter=40)
    # Started from one-hot rows, the covariances are reg_covar plus rounding: scikit-learn's
    # E[x²] − μ² leaves ~1e-13, the centred scatter ~1e-29, and the first lower bound
    # (about −7e6) shows it at 1e-7. From the second iteration on they agree to 1e-8.
    one_hot = init_params != "random"
    assert_same_fit(ours, theirs, first_bound_rtol=1e-6 if one_hot else 1e-8)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_kmeans_initialisation_finds_sklearns_fit(covariance_type):
    # Own k-means, scikit-learn's KMeans: on separated blobs both find the same partition
    # (up to the order of the components).
    X, _ = blobs(seed=3)
    ours, theirs = fit_both(X, n_components=3, covariance_type=covariance_type, random_state=0)
    order = [int(np.argmin(np.sum((theirs.means_ - m) ** 2, axis=1))) for m in ours.means_]
    assert sorted(order) == [0, 1, 2]
    assert_same_fit(ours, theirs, means_order=np.array(order))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["random", "random_from_data", "k-means++"])
def test_initial_m_step_streams_x_in_blocks(init_params, covariance_type):
    # max_iter=0 keeps the initialisation; a tiny memory_limit makes many row blocks.
    X, _ = blobs(n=700, seed=4)
    params = dict(n_components=3, covariance_type=covariance_type, init_params=init_params,
                  random_state=5, max_iter=0)
    ours = GaussianMixture(memory_limit=4096, **params).fit(X)
    theirs = SklearnGaussianMixture(**params).fit(X)
    assert_allclose(ours.weights_, theirs.weights_, **PARITY)
    assert_allclose(ours.means_, theirs.means_, **PARITY)
    assert_allclose(ours.covariances_, theirs.covariances_, rtol=1e-8, atol=1e-12)
    assert ours.n_iter_ == 0 and ours.lower_bound_ == -np.inf and not ours.converged_


# Settings whose initialisations end at clearly different lower bounds (so which one is
# best does not hang on rounding).
@pytest.mark.parametrize("covariance_type, init_params, max_iter", [
    ("full", "random_from_data", 4), ("diag", "random_from_data", 4),
    ("spherical", "random_from_data", 4), ("tied", "random", 2),
])
def test_n_init_keeps_the_best_like_sklearn(covariance_type, init_params, max_iter):
    X, _ = blobs(n=500, k=4, seed=6)
    ours, theirs = fit_both(X, n_components=4, covariance_type=covariance_type, n_init=3,
                            init_params=init_params, random_state=1, max_iter=max_iter)
    assert_same_fit(ours, theirs, first_bound_rtol=1e-6)  # one-hot start: see above


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_warm_start_like_sklearn(covariance_type):
    X, centers = blobs(n=800, seed=7)
    # tol=0: every fit runs max_iter iterations and warns.
    params = dict(n_components=3, covariance_type=covariance_type, warm_start=True, max_iter=1,
                  tol=0.0, **given_inits(covariance_type, centers))
    ours, theirs = GaussianMixture(**params), SklearnGaussianMixture(**params)
    for _ in range(3):
        with pytest.warns(ConvergenceWarning):
            ours.fit(X)
        with pytest.warns(ConvergenceWarning):
            theirs.fit(X)
        assert_same_fit(ours, theirs)


def test_sample_like_sklearn():
    X, centers = blobs(n=600, seed=8)
    for covariance_type in COVARIANCE_TYPES:
        ours, theirs = fit_both(X, n_components=3, covariance_type=covariance_type, random_state=3,
                                **given_inits(covariance_type, centers))
        Xs, ys = ours.sample(50)
        Xt, yt = theirs.sample(50)
        assert_array_equal(ys, yt)
        assert_allclose(Xs, Xt, rtol=1e-6, atol=1e-8)
        assert Xs.shape == (50, 5) and Xs.dtype == np.float64
    with pytest.raises(ValueError, match="n_samples"):
        ours.sample(0)


def test_fit_predict_equals_predict_with_one_pass_per_iteration(monkeypatch):
    X, centers = blobs(n=900, seed=9)
    calls = []

    def counting(X, *args, **kwargs):
        calls.append((X.shape[0], kwargs.get("scatter")))
        return mixture_pass(X, *args, **kwargs)

    monkeypatch.setattr(mixture._passes, "mixture_pass", counting)
    model = GaussianMixture(3, tol=1e-8, max_iter=30, **given_inits("full", centers))
    labels = model.fit_predict(X)
    em_passes = [c for c in calls if c[1] != "none"]
    assert len(em_passes) == model.n_iter_ and all(rows == 900 for rows, _ in em_passes)
    assert len(calls) == model.n_iter_ + 1  # the final E-step
    calls.clear()
    model.fit(X)
    assert len(calls) == model.n_iter_  # fit itself needs no final E-step
    assert_array_equal(labels, model.predict(X))
    for init_params in INIT_PARAMS:
        calls.clear()
        fitted = GaussianMixture(3, init_params=init_params, random_state=0).fit(X)
        assert len(calls) == fitted.n_iter_  # the initialisation makes no EM pass


###############################################################################
# The M-step from pass statistics, and the Cholesky factors


def centred_statistics(X, resp, centers, covariance_type, sample_weight=None):
    w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    rw = resp * w[:, None]
    counts = rw.sum(axis=0)
    first = np.stack([rw[:, k] @ (X - c) for k, c in enumerate(centers)])
    full = np.stack([((X - c).T * rw[:, k]) @ (X - c) for k, c in enumerate(centers)])
    second = {"full": full, "tied": full.sum(axis=0)}.get(
        covariance_type, np.diagonal(full, axis1=1, axis2=2).copy())
    return counts, first, second


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_identities_against_sklearns_m_step(covariance_type):
    rng = np.random.RandomState(10)
    X = rng.normal(size=(300, 4)) * [1, 2, 3, 0.5] + [3, -1, 10, 0]
    resp = rng.uniform(size=(300, 3))
    resp /= resp.sum(axis=1, keepdims=True)
    centers = rng.normal(size=(3, 4)) * 2  # anywhere: the identities are exact
    stats = centred_statistics(X, resp, centers, covariance_type)
    nk, means, covariances = mixture._numerics._estimate_gaussian_parameters(*stats, centers, 1e-6, covariance_type)
    nk_sk, means_sk, covariances_sk = sk_gm._estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    assert_allclose(nk, nk_sk, rtol=1e-14)
    assert_allclose(means, means_sk, rtol=1e-12, atol=1e-13)
    assert_allclose(covariances, covariances_sk, rtol=1e-11)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_pass_statistics_give_the_m_step(covariance_type):
    # mixture_pass's statistics, centred at the means it is given, against numpy's.
    X, centers = blobs(n=500, seed=11)
    model = GaussianMixture(3, covariance_type=covariance_type, max_iter=0,
                            **given_inits(covariance_type, centers)).fit(X)
    log_norm, mu, precisions = mixture._numerics._pass_operands(model.weights_, model.means_,
                                                      model.precisions_cholesky_, covariance_type, X.dtype)
    resp = np.empty((500, 3))
    ll, counts, first, second = mixture_pass(X, log_norm, mu, precisions,
                                             scatter=mixture._numerics._SCATTER[covariance_type], resp_out=resp)
    reference = centred_statistics(X, resp, mu, covariance_type)
    for got, expected in zip((counts, first, second), reference):
        assert_allclose(got, expected, rtol=1e-10, atol=1e-9)
    assert_allclose(ll, model.score(X) * 500, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [6, 140])  # the lifted pass, the per-component pass
def test_statistics_of_separated_components(d, dtype):
    # Far components' responsibilities are tiny but not zero (e^-140 and less); the second
    # moments skip those below 1e-60 and must still equal numpy's sums over all of them.
    rng = np.random.RandomState(13)
    k, n = 6, 3000
    spacing = np.sqrt(560.0 / d)
    mu = np.arange(k)[:, None] * spacing * np.ones(d)
    X = (mu[rng.randint(k, size=n)] + rng.uniform(-0.5, 0.5, size=(n, d))).astype(dtype)
    scales = rng.uniform(0.5, 1.0, size=k)
    log_norm = np.log(np.full(k, 1.0 / k)) + 0.5 * d * np.log(scales) - 0.5 * d * np.log(2 * np.pi)
    # The reference takes the operands as rounded to dtype.
    log_norm, mu, scales = (a.astype(dtype).astype(np.float64) for a in (log_norm, mu, scales))
    precisions = scales[:, None, None] * np.eye(d)
    X64 = X.astype(np.float64)
    logp = log_norm - 0.5 * scales * ((X64[:, None, :] - mu) ** 2).sum(axis=2)
    top = logp.max(axis=1, keepdims=True)
    lse = top + np.log(np.exp(logp - top).sum(axis=1, keepdims=True))
    resp = np.exp(logp - lse)
    assert (resp >= 1e-60).mean() <= 0.25 and ((resp > 0) & (resp < 1e-60)).mean() > 0.2
    for covariance_type in ("full", "tied"):
        ll, counts, first, second = mixture_pass(X, log_norm.astype(dtype), mu.astype(dtype),
                                                 precisions.astype(dtype),
                                                 scatter=mixture._numerics._SCATTER[covariance_type])
        want = centred_statistics(X64, resp, mu, covariance_type)
        rtol = 1e-10 if dtype == np.float64 or d <= 128 else 1e-5
        assert_allclose(ll, lse.sum(), rtol=rtol)
        for got, expected in zip((counts, first, second), want):
            assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_mixture_pass_rejects_negative_weights():
    X = np.random.RandomState(15).normal(size=(50, 3))
    w = np.ones(50)
    w[20] = -1e-70  # below the weights the moments skip: still refused, not dropped
    resp = np.full((50, 2), np.nan)
    for precisions in (np.array([np.eye(3)] * 2), np.ones((2, 3))):
        with pytest.raises(ValueError, match="non-negative"):
            mixture_pass(X, np.zeros(2), np.zeros((2, 3)), precisions, sample_weight=w, resp_out=resp)
    assert np.isnan(resp).all()


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_parity_with_separated_components(covariance_type):
    # Far apart blobs: most responsibilities are negligible, and the statistics skip them.
    X, centers = blobs(n=3000, d=4, k=6, seed=14, scale=15.0)
    params = dict(n_components=6, covariance_type=covariance_type, tol=1e-10, max_iter=15,
                  **given_inits(covariance_type, centers))
    ours, theirs = fit_both(X, **params)
    proba = theirs.predict_proba(X)
    assert (proba >= 1e-60).mean() <= 0.25 and ((proba > 0) & (proba < 1e-60)).mean() > 0.1
    assert_same_fit(ours, theirs)


def test_solve_lower_against_inverse():
    rng = np.random.RandomState(12)
    for n in (1, 2, 5, 16, 17, 40, 67):
        a = rng.normal(size=(3, n, n))
        lower = np.linalg.cholesky(a @ np.swapaxes(a, 1, 2) + n * np.eye(n))
        rhs = rng.normal(size=(3, n, 4))
        assert_allclose(mixture._numerics._solve_lower(lower, rhs), np.linalg.solve(lower, rhs), rtol=1e-10, atol=1e-12)
        assert_allclose(mixture._numerics._solve_lower(lower[0], np.eye(n)), np.linalg.inv(lower[0]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_cholesky_factors_and_log_det_like_sklearn(covariance_type):
    rng = np.random.RandomState(13)
    k, d = 3, 6
    a = rng.normal(size=(k, d, d))
    full = a @ np.swapaxes(a, 1, 2) + np.eye(d)
    covariances = {"full": full, "tied": full[0], "diag": rng.uniform(0.5, 2, (k, d)),
                   "spherical": rng.uniform(0.5, 2, k)}[covariance_type]
    ours = mixture._numerics._compute_precision_cholesky(covariances, covariance_type)
    theirs = sk_gm._compute_precision_cholesky(covariances, covariance_type)
    assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    precisions = mixture._numerics._precisions_from_cholesky(ours, covariance_type)
    assert_allclose(mixture._numerics._compute_precision_cholesky_from_precisions(precisions, covariance_type),
                    sk_gm._compute_precision_cholesky_from_precisions(precisions, covariance_type, xp=np),
                    rtol=1e-10, atol=1e-12)
    assert_allclose(mixture._numerics._covariances_from_precision_cholesky(ours, covariance_type), covariances,
                    rtol=1e-10, atol=1e-12)
    assert_allclose(mixture._numerics._compute_log_det_cholesky(ours, covariance_type, d),
                    sk_gm._compute_log_det_cholesky(theirs, covariance_type, d), rtol=1e-12)


def test_diagonal_model_is_a_full_model_with_diagonal_precisions():
    X, centers = blobs(n=400, seed=14)
    diag = GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    full = GaussianMixture(3, covariance_type="full", max_iter=0, weights_init=diag.weights_,
                           means_init=diag.means_,
                           precisions_init=np.stack([np.diag(p) for p in diag.precisions_])).fit(X)
    assert_allclose(full.score_samples(X), diag.score_samples(X), rtol=1e-11)
    assert_allclose(full.covariances_, np.stack([np.diag(c) for c in diag.covariances_]), rtol=1e-10, atol=1e-15)


###############################################################################
# k-means for the initialisation


def test_kmeans_plusplus_picks_sklearns_seeds():
    from sklearn.cluster import kmeans_plusplus

    X, _ = blobs(n=3000, k=6, seed=15)
    _, expected = kmeans_plusplus(X, 6, random_state=3)
    w = np.random.RandomState(0).uniform(0.5, 2, size=3000)
    _, expected_weighted = kmeans_plusplus(X, 6, random_state=3, sample_weight=w)
    # Keep the candidates' distances (default) or recompute them (small memory_limit).
    for memory_limit in (None, 20000):
        _, indices = _kmeans.kmeans_plusplus(X, 6, np.random.RandomState(3), memory_limit=memory_limit)
        assert_array_equal(indices, expected)
        _, indices = _kmeans.kmeans_plusplus(X, 6, np.random.RandomState(3), sample_weight=w,
                                             memory_limit=memory_limit)
        assert_array_equal(indices, expected_weighted)


def test_lloyd_reaches_sklearns_kmeans_and_moves_empty_clusters():
    from sklearn.cluster import KMeans

    X, _ = blobs(n=3000, k=4, seed=16)
    expected = KMeans(4, n_init=1, random_state=0).fit(X).cluster_centers_
    centers = _kmeans.kmeans_centers(X, 4, np.random.RandomState(0), memory_limit=50000)
    order = [int(np.argmin(np.sum((expected - c) ** 2, axis=1))) for c in centers]
    assert_allclose(centers, expected[order], rtol=1e-10)
    # Two seeds on one point: one cluster is empty after the first pass and is moved.
    start = np.array([X[0], X[0], X[1], X[2]])
    moved, _ = _kmeans.lloyd(X, start, memory_limit=50000)
    assert len({tuple(np.round(c, 6)) for c in moved}) == 4


def test_kmeans_on_all_of_x_after_the_subsample(monkeypatch):
    # A subsample smaller than X makes Lloyd continue on all of X by row blocks.
    monkeypatch.setattr(_kmeans, "_SUBSAMPLE_ROWS", 200)
    X, centers = blobs(n=4000, k=3, seed=17)
    found = _kmeans.kmeans_centers(X, 3, np.random.RandomState(1), memory_limit=30000)
    order = [int(np.argmin(np.sum((found - c) ** 2, axis=1))) for c in centers]
    assert sorted(order) == [0, 1, 2]
    assert_allclose(found[order], centers, atol=0.3)


###############################################################################
# Sample weights


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type):
    X, centers = blobs(n=400, seed=18)
    counts = np.random.RandomState(0).randint(0, 4, size=400)
    params = dict(n_components=3, covariance_type=covariance_type, max_iter=30, tol=1e-6,
                  **given_inits(covariance_type, centers))
    weighted = GaussianMixture(**params).fit(X, sample_weight=counts)
    repeated = GaussianMixture(**params).fit(np.repeat(X, counts, axis=0))
    assert weighted.n_iter_ == repeated.n_iter_
    assert_allclose(weighted.lower_bound_, repeated.lower_bound_, rtol=1e-10)
    for name in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_zero_weights_equal_removed_rows(init_params):
    X, _ = blobs(n=600, seed=19)
    w = np.ones(600)
    w[np.random.RandomState(1).rand(600) < 0.3] = 0
    params = dict(n_components=3, init_params=init_params, random_state=4, max_iter=40)
    weighted = GaussianMixture(**params).fit(X, sample_weight=w)
    removed = GaussianMixture(**params).fit(X[w > 0])
    assert weighted.n_iter_ == removed.n_iter_
    assert_allclose(weighted.lower_bound_, removed.lower_bound_, rtol=1e-10)
    for name in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(weighted, name), getattr(removed, name), rtol=1e-8, atol=1e-12)
    # Weights of one are no weights.
    ones = GaussianMixture(**params).fit(X, sample_weight=np.ones(600))
    unweighted = GaussianMixture(**params).fit(X)
    assert_allclose(ones.means_, unweighted.means_, rtol=1e-12)
    assert_allclose(ones.lower_bound_, unweighted.lower_bound_, rtol=1e-12)


def test_sample_weight_errors():
    X, _ = blobs(n=50, seed=20)
    model = GaussianMixture(3)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(49,\), expected \(50,\)"):
        model.fit(X, sample_weight=np.ones(49))
    with pytest.raises(ValueError, match="1D array or scalar"):
        model.fit(X, sample_weight=np.ones((50, 1)))
    with pytest.raises(ValueError, match="Negative values"):
        model.fit(X, sample_weight=-np.ones(50))
    with pytest.raises(ValueError, match="at least one non-zero"):
        model.fit(X, sample_weight=np.zeros(50))
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.fit(X, sample_weight=np.full(50, np.nan))
    w = np.zeros(50)
    w[:2] = 1
    with pytest.raises(ValueError, match="positive sample_weight"):
        model.fit(X, sample_weight=w)


###############################################################################
# float32, memmaps, out=


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_end_to_end(covariance_type):
    X, centers = blobs(seed=21)
    params = dict(n_components=3, covariance_type=covariance_type, max_iter=30,
                  **given_inits(covariance_type, centers))
    single = GaussianMixture(**params).fit(X.astype(np.float32))
    double = GaussianMixture(**params).fit(X)
    assert single.means_.dtype == np.float64  # float64 statistics and parameters
    assert single.n_iter_ == double.n_iter_
    assert_allclose(single.lower_bound_, double.lower_bound_, rtol=1e-6)
    assert_allclose(single.means_, double.means_, rtol=1e-4, atol=1e-5)
    assert_allclose(single.covariances_, double.covariances_, rtol=1e-4, atol=1e-5)
    X32 = X.astype(np.float32)
    proba = single.predict_proba(X32)
    assert proba.dtype == np.float32 and single.score_samples(X32).dtype == np.float32
    assert_allclose(proba, double.predict_proba(X), atol=1e-4)
    assert (single.predict(X32) == double.predict(X)).mean() > 0.999


@pytest.fixture
def memmap_blobs(tmp_path):
    """Blobs in a file read through an np.memmap at an offset that is not 8-byte aligned."""
    X, centers = blobs(n=3000, seed=22)
    path = tmp_path / "X.bin"
    offset = 12
    with open(path, "wb") as f:
        f.write(b"\0" * offset)
        f.write(X.tobytes())
    return np.memmap(path, dtype=np.float64, mode="r", offset=offset, shape=X.shape), X, centers


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_memmap_fit_equals_in_memory_fit(memmap_blobs, init_params):
    Xm, X, _ = memmap_blobs
    params = dict(n_components=3, init_params=init_params, random_state=0, memory_limit=30000)
    on_file = GaussianMixture(**params).fit(Xm)
    in_memory = GaussianMixture(**params).fit(X)
    assert on_file.n_iter_ == in_memory.n_iter_
    # Not bitwise: multithreaded kernel sums are not reproducible (see the last test).
    assert_allclose(on_file.means_, in_memory.means_, rtol=1e-11)
    assert_allclose(on_file.lower_bound_, in_memory.lower_bound_, rtol=1e-12)


def test_outputs_written_into_memmaps(memmap_blobs, tmp_path):
    Xm, X, centers = memmap_blobs
    model = GaussianMixture(3, random_state=0, memory_limit=30000).fit(Xm)
    resp = np.memmap(tmp_path / "resp.bin", dtype=np.float64, mode="w+", shape=(3000, 3))
    score = np.memmap(tmp_path / "score.bin", dtype=np.float64, mode="w+", shape=(3000,))
    assert model.predict_proba(Xm, out=resp) is resp
    assert model.score_samples(Xm, out=score) is score
    assert_allclose(resp, model.predict_proba(X), rtol=1e-12, atol=1e-300)
    assert_allclose(score, model.score_samples(X), rtol=1e-12)
    assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        model.predict_proba(Xm, out=np.empty((3000, 2)))
    with pytest.raises(TypeError, match="dtype"):
        model.score_samples(Xm, out=np.empty(3000, dtype=np.float32))


def test_memmap_is_not_read_into_memory(tmp_path):
    n, d = 100000, 40
    X, _ = blobs(n=n, d=d, k=3, seed=23)
    path = tmp_path / "big.npy"
    np.save(path, X)
    del X
    Xm = np.load(path, mmap_mode="r")
    tracemalloc.start()
    try:
        model = GaussianMixture(3, random_state=0, memory_limit=1 << 20).fit(Xm)
        labels = model.predict(Xm)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels.shape == (n,)
    # Vectors of length n (8 bytes × n = 0.8 MB each) are expected; X is 32 MB.
    assert peak < Xm.nbytes / 6, peak


def test_predict_by_row_blocks(monkeypatch):
    X, _ = blobs(n=1000, seed=24)
    model = GaussianMixture(3, random_state=0, memory_limit=2400).fit(X)
    rows = []

    def recording(X, *args, **kwargs):
        rows.append(X.shape[0])
        return mixture_pass(X, *args, **kwargs)

    monkeypatch.setattr(mixture._passes, "mixture_pass", recording)
    labels = model.predict(X)
    assert max(rows) == 2400 // (8 * 4) and sum(rows) == 1000
    assert_array_equal(labels, np.argmax(model.predict_proba(X), axis=1))


def test_any_layout_of_x():
    X, centers = blobs(n=800, seed=25)
    params = dict(n_components=3, max_iter=20, **given_inits("full", centers))
    reference = GaussianMixture(**params).fit(X)
    wide = np.zeros((800, 10))
    wide[:, ::2] = X
    for layout in (np.asfortranarray(X), wide[:, ::2], X[::-1], X.tolist()):
        model = GaussianMixture(**params).fit(layout)
        assert_allclose(model.means_, reference.means_, rtol=1e-10)
    assert_allclose(GaussianMixture(**params).fit(np.rint(X * 100).astype(np.int64)).means_,
                    GaussianMixture(**params).fit(np.rint(X * 100)).means_, rtol=1e-12)


###############################################################################
# Model selection


def test_select_n_components():
    X, _ = blobs(n=900, seed=26)
    best, scores = mixture.select_n_components(X, [1, 2, 3, 4], random_state=0)
    assert best.n_components == 3 and scores.shape == (4,)
    assert int(np.argmin(scores)) == 2
    assert_allclose(scores[2], best.bic(X), rtol=1e-12)
    best_aic, aic = mixture.select_n_components(X, range(2, 5), criterion="aic",
                                                covariance_type="diag", random_state=0)
    assert_allclose(aic[best_aic.n_components - 2], best_aic.aic(X), rtol=1e-12)
    with pytest.raises(ValueError, match="criterion"):
        mixture.select_n_components(X, [1], criterion="likelihood")


###############################################################################
# Bad input: the same errors as scikit-learn


def same_error(X, fit=True, **params):
    """Both estimators raise a ValueError with the same message on fit(X)."""
    with pytest.raises(ValueError) as theirs:
        SklearnGaussianMixture(**params).fit(X)
    with pytest.raises(ValueError) as ours:
        GaussianMixture(**params).fit(X)
    assert str(ours.value) == str(theirs.value)
    return str(ours.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_x(bad):
    X, _ = blobs(n=100, seed=27)
    X[57, 3] = bad
    message = same_error(X, n_components=2)
    assert "NaN" in message or "infinity" in message
    model = GaussianMixture(2, random_state=0).fit(np.nan_to_num(X, posinf=0, neginf=0))
    for method in (model.predict, model.predict_proba, model.score_samples, model.score, model.bic):
        with pytest.raises(ValueError, match="NaN|infinity"):
            method(X)


def test_shapes_of_x():
    same_error(np.zeros((4, 2)) + np.arange(4)[:, None], n_components=5)
    same_error(np.arange(10.0), n_components=2)
    same_error(np.ones((1, 3)), n_components=1)
    model = GaussianMixture(2, random_state=0).fit(blobs(n=50, seed=28)[0])
    with pytest.raises(ValueError, match="X has 4 features, but GaussianMixture is expecting 5"):
        model.predict(np.zeros((3, 4)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bad_initial_parameters(covariance_type):
    X, centers = blobs(n=60, seed=29)
    k, d = centers.shape
    base = dict(n_components=k, covariance_type=covariance_type)
    same_error(X, weights_init=np.ones(k + 1) / (k + 1), **base)
    same_error(X, weights_init=np.array([0.5, 0.7, -0.2]), **base)
    same_error(X, weights_init=np.array([0.2, 0.2, 0.2]), **base)
    same_error(X, weights_init=np.array([np.nan, 0.5, 0.5]), **base)
    same_error(X, means_init=np.full((k, d), np.inf), **base)
    same_error(X, means_init=np.zeros((k, d + 1)), **base)
    wrong = {"full": np.ones((k, d, d + 1)), "tied": np.eye(d + 1), "diag": np.ones((k + 1, d)),
             "spherical": np.ones(k + 1)}[covariance_type]
    same_error(X, precisions_init=wrong, **base)
    not_positive = {
        "full": np.array([np.eye(d)] * (k - 1) + [-np.eye(d)]),
        "tied": np.eye(d) - 2 * np.ones((d, d)),
        "diag": -np.ones((k, d)),
        "spherical": np.array([1.0, 0.0, 1.0]),
    }[covariance_type]
    message = same_error(X, precisions_init=not_positive, **base)
    assert "precision" in message
    if covariance_type in ("full", "tied"):
        asymmetric = np.triu(np.ones((d, d))) + np.eye(d)
        same_error(X, precisions_init=asymmetric if covariance_type == "tied" else np.array([asymmetric] * k), **base)


def test_ill_defined_covariance_message():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 0.0]]), 10, axis=0)
    params = dict(n_components=3, reg_covar=0, means_init=X[[0, 10, 20]], random_state=0)
    message = same_error(X, **params)
    assert message.startswith("Fitting the mixture model failed because some components have ill-defined")
    with pytest.raises(ValueError, match="passing float64"):
        GaussianMixture(**params).fit(X.astype(np.float32))


def test_not_fitted():
    model = GaussianMixture(2)
    for method in (model.predict, model.predict_proba, model.score_samples, model.score):
        with pytest.raises(NotFittedError) as ours:
            method(np.zeros((3, 2)))
        with pytest.raises(NotFittedError) as theirs:
            getattr(SklearnGaussianMixture(2), method.__name__)(np.zeros((3, 2)))
        assert str(ours.value) == str(theirs.value)
        assert isinstance(ours.value, ValueError)
    with pytest.raises(NotFittedError):
        model.sample()


@pytest.mark.parametrize("name, value", [
    ("n_components", 0), ("n_components", 1.5), ("covariance_type", "banded"), ("tol", -1.0),
    ("reg_covar", -1e-6), ("max_iter", -1), ("n_init", 0), ("init_params", "kmeans++"),
    ("random_state", "seed"), ("warm_start", "yes"), ("verbose", -1), ("verbose_interval", 0),
    ("threads", 0), ("memory_limit", 0), ("memory_limit", 1.5),
])
def test_bad_parameters(name, value):
    X, _ = blobs(n=50, seed=30)
    with pytest.raises(ValueError, match="'%s' parameter of GaussianMixture" % name):
        GaussianMixture(**{name: value}).fit(X)
    if name not in ("threads", "memory_limit"):
        with pytest.raises(ValueError, match="'%s' parameter of GaussianMixture" % name):
            SklearnGaussianMixture(**{name: value}).fit(X)


###############################################################################
# Messages and warnings


def test_convergence_warning():
    X, _ = blobs(n=300, seed=31)
    with pytest.warns(ConvergenceWarning) as record:
        model = GaussianMixture(3, max_iter=1, random_state=0).fit(X)
    assert not model.converged_ and model.n_iter_ == 1
    assert str(record[0].message).startswith("Best performing initialization did not converge.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GaussianMixture(3, max_iter=0, random_state=0).fit(X)


def test_verbose_output_like_sklearn(capsys):
    X, centers = blobs(n=400, seed=32)
    params = dict(n_components=3, n_init=1, tol=1e-9, max_iter=25, verbose_interval=3,
                  **given_inits("full", centers))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixture(verbose=1, **params).fit(X)
        ours = capsys.readouterr().out
        SklearnGaussianMixture(verbose=1, **params).fit(X)
        theirs = capsys.readouterr().out
        assert ours == theirs
        assert ours.startswith("Initialization 0\n  Iteration 3\n")
        GaussianMixture(verbose=2, **params).fit(X)
        ours = capsys.readouterr().out
    lines = ours.splitlines()
    assert lines[0] == "Initialization 0"
    assert lines[1].startswith("  Iteration 3\t time lapse ") and "\t ll change " in lines[1]
    assert any(line.startswith("Initialization converged. time lapse ") or
               line.startswith("Initialization did not converge. time lapse ") for line in lines)


def test_verbose_output_of_runs_sharing_passes_names_them(capsys):
    X, _ = blobs(n=400, seed=32)
    params = dict(n_components=3, n_init=2, tol=1e-9, max_iter=6, verbose_interval=3, random_state=0,
                  init_params="random_from_data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixture(verbose=1, **params).fit(X)
        ours = capsys.readouterr().out.splitlines()
        GaussianMixture(verbose=2, **params).fit(X)
        timed = capsys.readouterr().out.splitlines()
    assert ours[:2] == ["Initialization 0", "Initialization 1"]
    assert ours[2:6] == ["  Iteration 3 (initialization 0)", "  Iteration 3 (initialization 1)",
                         "  Iteration 6 (initialization 0)", "Initialization 0 did not converge."]
    assert timed[2].startswith("  Iteration 3 (initialization 0)\t time lapse ")
    assert timed[-1].startswith("Initialization 1 did not converge. time lapse ") and "lower bound" in timed[-1]


###############################################################################
# The estimator protocol


def test_clone_and_params():
    model = GaussianMixture(4, covariance_type="diag", threads=1, memory_limit=1 << 20, random_state=3)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    expected = set(SklearnGaussianMixture().get_params()) | {"threads", "memory_limit", "checkpoint", "learning_decay"}
    assert set(model.get_params()) == expected
    assert copy.set_params(n_components=2).n_components == 2
    assert "threads=1" in repr(model)
    X, _ = blobs(n=200, seed=33)
    fitted = clone(model).fit(X)
    assert fitted.n_features_in_ == 5 and fitted.precisions_.shape == (4, 5)
    assert model.get_params()["weights_init"] is None  # fit does not write its parameters


def test_without_sklearn():
    code = r"""
import sys, warnings
sys.modules["sklearn"] = None  # makes every "import sklearn..." fail
import numpy as np
import gmmkernels
from gmmkernels import mixture
assert not mixture._fallbacks._HAVE_SKLEARN
assert issubclass(mixture.ConvergenceWarning, UserWarning)
assert issubclass(mixture.NotFittedError, ValueError)
rng = np.random.RandomState(0)
X = np.concatenate([rng.normal(size=(200, 3)), rng.normal(size=(200, 3)) + 8])
model = gmmkernels.GaussianMixture(2, random_state=0, covariance_type="tied")
try:
    model.predict(X)
except mixture.NotFittedError:
    pass
else:
    raise AssertionError("predict before fit")
labels = model.fit_predict(X)
assert model.converged_ and len(set(labels[:200])) == 1 and labels[0] != labels[-1]
assert np.allclose(model.predict_proba(X).sum(axis=1), 1)
assert model.lower_bounds_[-1] == model.lower_bound_
params = model.get_params()
assert params["n_components"] == 2 and params["threads"] is None and len(params) == 18
copy = type(model)(**params)
assert copy.set_params(n_components=3).n_components == 3
assert "n_components=2" in repr(model) and "covariance_type='tied'" in repr(model)
for bad in (dict(bogus=1),):
    try:
        model.set_params(**bad)
    except ValueError:
        pass
    else:
        raise AssertionError("set_params")
for X_bad, words in ((np.arange(5.0), "2D"), (X[:1], "minimum of 2"), (np.where(X > 9, np.nan, X), "NaN")):
    try:
        gmmkernels.GaussianMixture(2).fit(X_bad)
    except ValueError as e:
        assert words in str(e), str(e)
    else:
        raise AssertionError(words)
try:
    gmmkernels.GaussianMixture(0).fit(X)
except ValueError as e:
    assert "n_components" in str(e)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gmmkernels.GaussianMixture(2, max_iter=1, random_state=0).fit(X + rng.normal(size=X.shape))
assert any(issubclass(w.category, mixture.ConvergenceWarning) for w in caught)
print("ok")
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(gmmkernels.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# Checks that cannot pass, with the reason (none at present; "pandas is not installed"
# and "SCIPY_ARRAY_API is not set" skip two checks in some environments).
EXPECTED_FAILED_CHECKS = {}


@parametrize_with_checks([GaussianMixture(n_init=2, max_iter=5), GaussianMixture()],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


###############################################################################
# Kernel behaviour the estimator relies on


def test_mixture_pass_is_reproducible():
    """Identical calls of mixture_pass give identical statistics.

    Fails at present: with more than one thread the partial sums of the row blocks are
    combined in an order that changes from call to call (threads=1 is reproducible), so
    two fits with the same random_state differ in the last bits, and an n_init choice
    between initialisations whose lower bounds tie to rounding can flip between runs.
    """
    rng = np.random.RandomState(40)
    X = rng.normal(size=(100000, 20))
    means = rng.normal(size=(4, 20))
    precisions = np.broadcast_to(np.eye(20), (4, 20, 20))
    log_norm = rng.normal(size=4)
    for scatter in ("full", "none"):
        first = mixture_pass(X, log_norm, means, precisions, scatter=scatter)
        for _ in range(4):
            again = mixture_pass(X, log_norm, means, precisions, scatter=scatter)
            assert again[0] == first[0], (scatter, again[0] - first[0])
            assert_array_equal(again[1], first[1])
            assert_array_equal(again[2], first[2])
