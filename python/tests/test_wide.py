"""The widths users are heading for, d = 2500 and d = 10000, with default arguments and a
few hundred rows: every kernel on a memmap against a float64 numpy reference, a precision
matrix as users compute it (not bitwise symmetric), memmap Qs, the workspace beside the
outputs held to the default 64 MiB, the estimator against scikit-learn, and the dask layer."""
import numpy as np
import pytest

import gmmkernels as gk
from gmmkernels._kernels import mixture_pass
from support.layouts import memmap_of
from support.processes import measured
from support.references import DTYPES, gram_error, rtol

DEFAULT_LIMIT = 64 << 20
WIDTHS = [2500, 10000]


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """{d: (X float64 memmap (n, d), Q (d, d) not symmetric, center)} for each width."""
    rng = np.random.default_rng(2500)
    tmp = tmp_path_factory.mktemp("wide")
    cases = {}
    for d in WIDTHS:
        n = 150
        X = 3.0 + rng.standard_normal((n, d))
        Q = rng.standard_normal((d, d)) / np.sqrt(d)
        Q += Q.T
        Q[0, 1] += 1e-3  # symmetric but for one pair, as inv(C) is but for rounding
        cases[d] = (memmap_of(X, tmp), Q, X.mean(axis=0))
    return cases


def componentwise_scale(Z, Q):
    """Σ_jk |z_j| |Q_jk| |z_k| per row: the size a quadratic form's rounding scales with."""
    A = np.abs(Z)
    return np.sum((A @ np.abs(Q)) * A, axis=1)


def faulted(shape, dtype):
    """An output whose pages are already resident, so that they do not count as workspace."""
    out = np.empty(shape, dtype=dtype)
    out.fill(0)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", WIDTHS)
def test_quadform(wide, d, dtype):
    X64, Q, c = wide[d]
    X = X64 if dtype == np.float64 else np.asarray(X64, dtype=dtype)
    Qd = Q.astype(dtype)
    out = faulted(X.shape[0], dtype)
    q, peak = measured(lambda: gk.quadform(X, Qd, center=c, out=out))
    Z = np.asarray(X, dtype=np.float64) - c.astype(dtype)
    Q64 = Qd.astype(np.float64)
    ref = np.sum((Z @ Q64) * Z, axis=1)
    assert np.max(np.abs(q - ref) / componentwise_scale(Z, Q64)) <= rtol(dtype)
    assert peak <= DEFAULT_LIMIT


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", WIDTHS)
def test_weighted_gram(wide, d, dtype):
    X64, _, c = wide[d]
    X = X64 if dtype == np.float64 else np.asarray(X64, dtype=dtype)
    n = X.shape[0]
    w = np.random.default_rng(d).uniform(-0.5, 2.0, n).astype(dtype)
    w[::7] = 0
    out = faulted((d, d), dtype)
    G, peak = measured(lambda: gk.weighted_gram(X, w, center=c, out=out))
    assert np.array_equal(G, G.T)
    assert gram_error(G, X, w, c) <= rtol(dtype)
    assert peak <= DEFAULT_LIMIT


def test_weighted_gram_many_and_quadform_many_with_memmap_qs(wide, tmp_path):
    d = 2500
    X, Q, c = wide[d]
    n = X.shape[0]
    rng = np.random.default_rng(5)
    k = 3
    R = rng.random((n, k))
    R[rng.random((n, k)) < 0.3] = 0
    centers = c + rng.standard_normal((k, d))
    out = faulted((k, d, d), np.float64)
    G, peak = measured(lambda: gk.weighted_gram_many(X, R, centers=centers, out=out))
    assert peak <= DEFAULT_LIMIT
    for j in range(k):
        assert gram_error(G[j], X, R[:, j], centers[j]) <= rtol(np.float64)
    # K precision matrices in a file, each read where it lies.
    Qs = np.memmap(tmp_path / "qs.dat", dtype=np.float64, mode="w+", shape=(k, d, d))
    for j in range(k):
        Qs[j] = Q * (j + 1)
    Qs.flush()
    Qs = np.memmap(tmp_path / "qs.dat", dtype=np.float64, mode="r", shape=(k, d, d))
    q, peak = measured(lambda: gk.quadform_many(X, Qs, centers=centers, out=faulted((n, k), np.float64)))
    assert peak <= DEFAULT_LIMIT
    for j in range(k):
        Z = np.asarray(X) - centers[j]
        ref = np.sum((Z @ Qs[j]) * Z, axis=1)
        assert np.max(np.abs(q[:, j] - ref) / componentwise_scale(Z, Qs[j])) <= rtol(np.float64)


def test_mixture_pass_statistics(wide):
    d = 2500
    X, _, c = wide[d]
    n = X.shape[0]
    rng = np.random.default_rng(6)
    means = np.stack([c, c + 0.01 * rng.standard_normal(d)])
    # Close enough that both components take part in every row.
    precisions = np.stack([np.eye(d), 1.0005 * np.eye(d)])
    log_norm = np.array([-1.0, -0.4])
    ll, counts, first, second = mixture_pass(X, log_norm, means, precisions, scatter="full")
    assert np.all(counts > 10)
    Z = [np.asarray(X) - m for m in means]
    logp = np.stack([log_norm[j] - 0.5 * np.einsum("ij,jk,ik->i", Z[j], precisions[j], Z[j])
                     for j in range(2)], axis=1)
    top = logp.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
    resp = np.exp(logp - lse[:, None])
    np.testing.assert_allclose(ll, lse.sum(), rtol=1e-12)
    np.testing.assert_allclose(counts, resp.sum(axis=0), rtol=1e-10)
    for j in range(2):
        np.testing.assert_allclose(first[j], resp[:, j] @ Z[j], rtol=1e-9, atol=1e-9 * n)
        want = (Z[j] * resp[:, j:j + 1]).T @ Z[j]
        scale = np.sqrt(np.outer(np.diag(want), np.diag(want)))
        assert np.max(np.abs(second[j] - want) / scale) <= 1e-12


def test_estimator_against_sklearn_at_2500():
    sklearn_mixture = pytest.importorskip("sklearn.mixture")
    rng = np.random.default_rng(7)
    d, k = 2500, 2
    centers = 4.0 * rng.standard_normal((k, d))
    X = np.concatenate([c + rng.standard_normal((250, d)) for c in centers])
    params = dict(n_components=k, init_params="random_from_data", random_state=3, max_iter=2,
                  reg_covar=0.1, tol=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = gk.GaussianMixture(**params).fit(X)
        theirs = sklearn_mixture.GaussianMixture(**params).fit(X)
    assert ours.n_iter_ == theirs.n_iter_ == 2
    np.testing.assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-8)
    np.testing.assert_allclose(ours.weights_, theirs.weights_, rtol=1e-8)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.covariances_, theirs.covariances_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.precisions_cholesky_, theirs.precisions_cholesky_, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_dask_layer_at_2500(wide):
    gd = pytest.importorskip("gmmkernels.dask")
    da = pytest.importorskip("dask.array")
    d = 2500
    X, Q, c = wide[d]
    dX = da.from_array(np.asarray(X), chunks=(50, d))
    q = gd.quadform(dX, Q, center=c).compute(scheduler="synchronous")
    np.testing.assert_allclose(q, gk.quadform(X, Q, center=c), rtol=1e-10)
    G = gd.weighted_gram(dX, center=c).compute(scheduler="synchronous")
    assert gram_error(G, X, None, c) <= rtol(np.float64)


def test_quadform_many_takes_a_large_memmap_of_qs_in_groups(tmp_path, monkeypatch):
    from gmmkernels import _kernels
    rng = np.random.default_rng(8)
    n, d, k = 300, 40, 7
    X = memmap_of(rng.standard_normal((n, d)), tmp_path)
    Qs = np.memmap(tmp_path / "qs.dat", dtype=np.float32, mode="w+", shape=(k, d, d))
    Qs[:] = rng.standard_normal((k, d, d))
    centers = rng.standard_normal((k, d))
    in_ram = gk.quadform_many(X, np.array(Qs), centers=centers)
    assert _kernels.matrix_groups(Qs, 8) == [slice(0, k)]
    # As if only six float64 matrices fitted in memory: groups of three, X read three times.
    monkeypatch.setattr(_kernels, "available_memory", lambda: 6 * d * d * 8)
    assert _kernels.matrix_groups(Qs, 8) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert _kernels.matrix_groups(np.array(Qs), 8) == [slice(0, k)]  # in memory: one pass
    seen = []
    grouped = gk.quadform_many(X, Qs, centers=centers, progress=seen.append)
    np.testing.assert_allclose(grouped, in_ram, rtol=1e-12, atol=1e-12)
    assert seen == sorted(seen) and seen[-1] == 3 * n
