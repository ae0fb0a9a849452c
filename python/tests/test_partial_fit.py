"""GaussianMixture.partial_fit: stepwise EM's update against a numpy reference, batches that
reach the full-batch fit, the inputs the pass takes, and bad batches that change nothing."""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from gmmkernels import GaussianMixture
from support.references import blobs, given_inits

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def full_covariances(model):
    """covariances_ as (K, d, d) whatever the covariance type."""
    k, d = model.means_.shape
    c = model.covariances_
    return {
        "full": lambda: c,
        "tied": lambda: np.broadcast_to(c, (k, d, d)),
        "diag": lambda: np.array([np.diag(v) for v in c]),
        "spherical": lambda: np.array([v * np.eye(d) for v in c]),
    }[model.covariance_type]()


def reference_step(weights, means, covariances, raw, X, covariance_type, reg, gamma, sample_weight=None):
    """One stepwise-EM step in raw moments: the responsibilities of the batch at the given
    parameters, s ← (1 − γ) s + γ ŝ, the M-step. ``raw`` is (s0, s1, s2) per unit weight,
    s2 = Σ r x xᵀ in full for every type. Returns the new parameters and statistics."""
    n, d = X.shape
    k = weights.shape[0]
    w = np.ones(n) if sample_weight is None else sample_weight
    log_dens = np.empty((n, k))
    for j in range(k):
        diff = X - means[j]
        _, logdet = np.linalg.slogdet(covariances[j])
        maha = np.einsum("ij,ij->i", diff @ np.linalg.inv(covariances[j]), diff)
        log_dens[:, j] = np.log(weights[j]) - 0.5 * (d * np.log(2 * np.pi) + logdet + maha)
    log_dens -= log_dens.max(axis=1, keepdims=True)
    resp = np.exp(log_dens)
    resp /= resp.sum(axis=1, keepdims=True)
    resp *= w[:, np.newaxis] / w.sum()
    batch = (resp.sum(axis=0), resp.T @ X, np.einsum("ik,ij,il->kjl", resp, X, X))
    s0, s1, s2 = [(1 - gamma) * old + gamma * new for old, new in zip(raw, batch)]
    new_means = s1 / s0[:, np.newaxis]
    scatter = s2 / s0[:, np.newaxis, np.newaxis] - np.einsum("kj,kl->kjl", new_means, new_means)
    eye = np.eye(d)
    if covariance_type == "full":
        cov = scatter + reg * eye
    elif covariance_type == "tied":
        cov = np.broadcast_to(np.einsum("k,kjl->jl", s0, scatter) / s0.sum() + reg * eye, (k, d, d))
    elif covariance_type == "diag":
        cov = np.array([np.diag(np.diag(c)) for c in scatter]) + reg * eye
    else:
        cov = np.array([np.trace(c) / d * eye for c in scatter]) + reg * eye
    return (s0 / s0.sum(), new_means, cov), (s0, s1, s2)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_steps_match_the_reference(covariance_type, dtype):
    X, centers = blobs(n=3000, d=4, k=3, seed=2)
    X += 100.0  # a large mean offset: the statistics are kept centred, not raw
    centers = centers + 100.0
    inits = given_inits(covariance_type, centers)
    reg, decay = 1e-6, 0.7
    model = GaussianMixture(3, covariance_type=covariance_type, reg_covar=reg, learning_decay=decay, **inits)
    batches = [X[:1000], X[1000:2500], X[2500:]]
    weights = np.random.RandomState(3).uniform(0.0, 2.0, size=batches[1].shape[0])
    rtol = 1e-9 if dtype == np.float64 else 2e-4

    # The state the initial parameters stand for, in raw moments.
    precisions = np.asarray(inits["precisions_init"], dtype=np.float64)
    k, d = centers.shape
    cov0 = {
        "full": lambda: np.linalg.inv(precisions),
        "tied": lambda: np.broadcast_to(np.linalg.inv(precisions), (k, d, d)),
        "diag": lambda: np.array([np.diag(1.0 / p) for p in precisions]),
        "spherical": lambda: np.array([np.eye(d) / p for p in precisions]),
    }[covariance_type]()
    params = (inits["weights_init"], inits["means_init"], cov0)
    w0, m0, c0 = params
    raw = (w0, w0[:, np.newaxis] * m0,
           w0[:, np.newaxis, np.newaxis] * (c0 - reg * np.eye(d) + np.einsum("kj,kl->kjl", m0, m0)))
    for t, batch in enumerate(batches):
        sw = weights if t == 1 else None
        model.partial_fit(batch.astype(dtype), sample_weight=sw)
        params, raw = reference_step(*params, raw, batch.astype(dtype).astype(np.float64), covariance_type, reg,
                                     (t + 2.0) ** -decay, sw)
        assert model.n_steps_ == t + 1
        assert_allclose(model.weights_, params[0], rtol=rtol)
        assert_allclose(model.means_, params[1], rtol=rtol)
        assert_allclose(full_covariances(model), params[2], rtol=rtol * 10, atol=rtol * 1e-3)
        assert model.means_.dtype == np.float64


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_epochs_of_batches_reach_the_full_batch_fit(covariance_type, tmp_path):
    X, _ = blobs(n=40000, d=6, k=4, seed=5, scale=8.0)
    X += 50.0
    full = GaussianMixture(4, covariance_type=covariance_type, random_state=0).fit(X)
    target = full.score(X)
    path = tmp_path / "x.f64"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X[np.random.RandomState(1).permutation(X.shape[0])]  # a stream in random order
    mm.flush()
    stream = np.memmap(path, dtype=np.float64, mode="r", shape=X.shape)
    online = GaussianMixture(4, covariance_type=covariance_type, random_state=0)
    for _ in range(3):
        for start in range(0, X.shape[0], 2000):
            online.partial_fit(stream[start:start + 2000])
    assert online.n_steps_ == 3 * 20
    assert abs(online.score(X) - target) <= 0.01 * abs(target), (online.score(X), target)


def test_first_call_initialises_like_fit_and_fit_resets_the_steps():
    X, _ = blobs(n=2000, d=3, k=3, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        initial = GaussianMixture(3, random_state=4, max_iter=0).fit(X)
    online = GaussianMixture(3, random_state=4, learning_decay=1.0).partial_fit(X)
    # One step of γ = 1/2 from the initial parameters, on the batch they came from.
    _, (s0, _, _) = reference_step(initial.weights_, initial.means_, full_covariances(initial),
                                   (initial.weights_, 0, 0), X, "full", 1e-6, 0.5)
    assert_allclose(online.weights_, s0 / s0.sum(), rtol=1e-9)
    online.partial_fit(X)
    assert online.n_steps_ == 2
    online.set_params(max_iter=5).fit(X)
    assert online.n_steps_ == 0
    before = online.means_.copy()
    online.partial_fit(X[:500])
    assert online.n_steps_ == 1
    assert np.abs(online.means_ - before).max() < 1.0  # went on from the fitted model


def test_float32_and_dask_batches():
    dask_array = pytest.importorskip("dask.array")
    X, _ = blobs(n=4000, d=5, k=2, seed=8)
    a = GaussianMixture(2, random_state=0)
    b = GaussianMixture(2, random_state=0)
    c = GaussianMixture(2, random_state=0)
    for start in range(0, 4000, 1000):
        batch = X[start:start + 1000]
        a.partial_fit(batch)
        b.partial_fit(dask_array.from_array(batch, chunks=(300, 5)))
        c.partial_fit(batch.astype(np.float32))
    assert_allclose(b.means_, a.means_, rtol=1e-10)
    assert_allclose(b.covariances_, a.covariances_, rtol=1e-9)
    assert_allclose(c.means_, a.means_, rtol=1e-4, atol=1e-4)


def state(model):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(model).items()
            if k.endswith("_") and not k.startswith("__")}


def assert_same_state(before, after):
    assert before.keys() == after.keys()
    for key in before:
        if isinstance(before[key], np.ndarray):
            assert np.array_equal(before[key], after[key]), key
        else:
            assert before[key] == after[key], key


def test_bad_batches_raise_before_the_state_changes():
    X, _ = blobs(n=3000, d=4, k=3, seed=9)
    model = GaussianMixture(3, random_state=0)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        model.partial_fit(X[:2])
    assert not hasattr(model, "means_")
    model.partial_fit(X[:1000]).partial_fit(X[1000:2000])
    before = state(model)
    nan = X[2000:].copy()
    nan[5, 1] = np.nan
    bad = [
        (X[2000:, :3], ValueError, "features"),
        (nan, ValueError, "NaN"),
        (X[:0], ValueError, "sample"),
    ]
    for batch, error, message in bad:
        with pytest.raises(error, match=message):
            model.partial_fit(batch)
        assert_same_state(before, state(model))
    with pytest.raises(ValueError, match="non-zero"):
        model.partial_fit(X[2000:], sample_weight=np.zeros(1000))
    with pytest.raises(ValueError):
        model.partial_fit(X[2000:], sample_weight=-np.ones(1000))
    assert_same_state(before, state(model))


@pytest.mark.parametrize("decay", [0.5, 1.5, 0, "0.7", True])
def test_learning_decay_is_checked(decay):
    X, _ = blobs(n=200, d=2, k=2)
    with pytest.raises(ValueError, match="learning_decay"):
        GaussianMixture(2, learning_decay=decay).partial_fit(X)
    with pytest.raises(ValueError, match="learning_decay"):
        GaussianMixture(2, learning_decay=decay).fit(X)


# --- BayesianGaussianMixture -----------------------------------------------------------------

def sklearn_twin(model):
    """A scikit-learn BayesianGaussianMixture holding `model`'s priors and parameters."""
    from sklearn.mixture import BayesianGaussianMixture as Sklearn

    twin = Sklearn(n_components=model.n_components, covariance_type=model.covariance_type,
                   weight_concentration_prior_type=model.weight_concentration_prior_type, reg_covar=model.reg_covar)
    for name in ("weight_concentration_prior_", "mean_precision_prior_", "mean_prior_", "degrees_of_freedom_prior_",
                 "covariance_prior_", "weight_concentration_", "mean_precision_", "means_", "degrees_of_freedom_",
                 "covariances_", "precisions_cholesky_"):
        setattr(twin, name, getattr(model, name))
    return twin


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("prior_type", ["dirichlet_process", "dirichlet_distribution"])
def test_bayesian_steps_match_sklearns_variational_steps(covariance_type, prior_type):
    """Each step: the E-step of scikit-learn's model at the same parameters, the moments
    blended in raw form, scikit-learn's variational M-step from them scaled to the weight seen."""
    pytest.importorskip("sklearn")
    from gmmkernels import BayesianGaussianMixture

    X, _ = blobs(n=3000, d=4, k=3, seed=12)
    X += 100.0
    decay = 0.8
    model = BayesianGaussianMixture(n_components=3, covariance_type=covariance_type, learning_decay=decay,
                                    weight_concentration_prior_type=prior_type, random_state=0,
                                    init_params="random_from_data")
    batches = [X[:1000], X[1000:2200], X[2200:]]
    model.partial_fit(batches[0])
    s0, xk, sk = model._online_moments
    k, d = xk.shape
    cov = full_covariances_of(sk, covariance_type, k, d)
    raw = [s0, s0[:, np.newaxis] * xk,
           s0[:, np.newaxis, np.newaxis] * (cov - 1e-6 * np.eye(d) + np.einsum("kj,kl->kjl", xk, xk))]
    seen = 1000.0
    for t, batch in enumerate(batches[1:], start=1):
        twin = sklearn_twin(model)
        _, log_resp = twin._estimate_log_prob_resp(batch)
        resp = np.exp(log_resp) / batch.shape[0]
        gamma = (t + 2.0) ** -decay
        batch_moments = [resp.sum(axis=0), resp.T @ batch, np.einsum("ik,ij,il->kjl", resp, batch, batch)]
        raw = [(1 - gamma) * old + gamma * new for old, new in zip(raw, batch_moments)]
        model.partial_fit(batch)
        seen += batch.shape[0]
        s0, xk, sk = model._online_moments
        assert_allclose(s0, raw[0], rtol=1e-9)
        assert_allclose(xk, raw[1] / raw[0][:, np.newaxis], rtol=1e-9)
        scatter = raw[2] / raw[0][:, np.newaxis, np.newaxis] - np.einsum("kj,kl->kjl", xk, xk)
        expected = {"full": scatter + 1e-6 * np.eye(d),
                    "tied": np.einsum("k,kjl->jl", raw[0], scatter) / raw[0].sum() + 1e-6 * np.eye(d),
                    "diag": np.einsum("kjj->kj", scatter) + 1e-6, "spherical": np.einsum("kjj->k", scatter) / d + 1e-6}
        assert_allclose(sk, expected[covariance_type], rtol=1e-7, atol=1e-9)
        # scikit-learn's variational M-step from the same moments, scaled to the weight seen.
        twin._estimate_weights(seen * s0)
        twin._estimate_means(seen * s0, xk)
        twin._estimate_precisions(seen * s0, xk, sk.copy())
        for name in ("mean_precision_", "means_", "degrees_of_freedom_", "covariances_", "precisions_cholesky_"):
            assert_allclose(getattr(model, name), getattr(twin, name), rtol=1e-9, err_msg=name)
        assert_allclose(np.ravel(model.weight_concentration_), np.ravel(twin.weight_concentration_), rtol=1e-9)
    assert model.n_steps_ == 3 and model.n_samples_seen_ == 3000


def full_covariances_of(sk, covariance_type, k, d):
    return {"full": lambda: sk, "tied": lambda: np.broadcast_to(sk, (k, d, d)),
            "diag": lambda: np.array([np.diag(v) for v in sk]),
            "spherical": lambda: np.array([v * np.eye(d) for v in sk])}[covariance_type]()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bayesian_epochs_reach_the_full_batch_fit(covariance_type):
    from gmmkernels import BayesianGaussianMixture

    X, _ = blobs(n=40000, d=6, k=4, seed=5, scale=8.0)
    X += 50.0
    params = dict(n_components=4, covariance_type=covariance_type, random_state=0)
    target = BayesianGaussianMixture(**params).fit(X).score(X)
    online = BayesianGaussianMixture(total_samples=X.shape[0], **params)
    order = np.random.RandomState(1).permutation(X.shape[0])
    for _ in range(3):
        for start in range(0, X.shape[0], 2000):
            online.partial_fit(X[order[start:start + 2000]])
    assert abs(online.score(X) - target) <= 0.01 * abs(target), (online.score(X), target)


def test_bayesian_bad_batches_change_nothing_and_fit_starts_afresh():
    from gmmkernels import BayesianGaussianMixture

    X, _ = blobs(n=3000, d=4, k=3, seed=9)
    model = BayesianGaussianMixture(n_components=3, random_state=0).partial_fit(X[:1000])
    before = state(model)
    moments = [m.copy() for m in model._online_moments]
    nan = X[1000:2000].copy()
    nan[3, 0] = np.inf
    for batch in (X[1000:, :2], nan, X[:0]):
        with pytest.raises(ValueError):
            model.partial_fit(batch)
        assert_same_state(before, state(model))
        assert all(np.array_equal(a, b) for a, b in zip(moments, model._online_moments))
    with pytest.raises(ValueError, match="learning_decay"):
        BayesianGaussianMixture(learning_decay=0.3).partial_fit(X)
    with pytest.raises(ValueError, match="total_samples"):
        BayesianGaussianMixture(total_samples=-1).partial_fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_params(max_iter=5).fit(X)
    assert model.n_steps_ == 0 and model._online_moments is None
    model.partial_fit(X[:500])
    assert model.n_steps_ == 1 and model.n_samples_seen_ == 500
