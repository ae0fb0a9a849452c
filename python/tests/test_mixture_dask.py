"""gmmkernels.GaussianMixture on dask arrays, on a real dask.distributed cluster (two worker
processes of one thread each): every fit equals the in-memory fit of the same data from the
same initialisation, each EM iteration is one distributed pass, the per-row outputs are lazy
dask arrays, and bad input is refused with the fix in the message."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

da = pytest.importorskip("dask.array", reason="needs dask (pip install 'dask[array]')")
distributed = pytest.importorskip("distributed", reason="runs on dask.distributed (pip install distributed)")
pytest.importorskip("sklearn")
import dask  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import gmmkernels  # noqa: E402
import gmmkernels.dask as gd  # noqa: E402
from gmmkernels import GaussianMixture, mixture  # noqa: E402
from gmmkernels.mixture._dask_passes import DaskPasses  # noqa: E402
from support.references import blobs, given_inits  # noqa: E402

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
INIT_PARAMS = ["kmeans", "k-means++", "random", "random_from_data"]
# Sums over blocks are added in another order than in memory: equal to rounding.
SAME = dict(rtol=1e-10, atol=1e-13)


def by_rows(X, rows):
    """X as a dask array of `rows` rows per block (the last one shorter), one column chunk."""
    return da.from_array(X, chunks=(rows, -1))


def fit(X, sample_weight=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(**params).fit(X, sample_weight=sample_weight)


def assert_same_fit(on_dask, in_memory, **tolerance):
    tolerance = tolerance or SAME
    assert on_dask.n_iter_ == in_memory.n_iter_
    assert on_dask.converged_ == in_memory.converged_
    assert_allclose(on_dask.lower_bound_, in_memory.lower_bound_, **tolerance)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_allclose(getattr(on_dask, name), getattr(in_memory, name), err_msg=name, **tolerance)
    assert_allclose(on_dask.lower_bounds_, in_memory.lower_bounds_, **tolerance)


# --- the fit equals the in-memory fit ---------------------------------------------------------

@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_from_given_parameters_equals_in_memory_fit(client, covariance_type, monkeypatch):
    X, centers = blobs(n=2400, seed=1)
    params = dict(n_components=3, covariance_type=covariance_type, tol=1e-9, max_iter=40,
                  **given_inits(covariance_type, centers))
    Xd = by_rows(X, 350)  # 7 blocks, the last one short
    # Each EM iteration is one distributed pass; the client makes no in-memory pass of its own.
    passes = []

    def counting(*args, **kwargs):
        passes.append(kwargs["scatter"])
        return gd_mixture_pass(*args, **kwargs)

    def refused(*args, **kwargs):
        raise AssertionError("an in-memory mixture_pass on the client")

    gd_mixture_pass = gd.mixture_pass
    monkeypatch.setattr(gd, "mixture_pass", counting)
    monkeypatch.setattr(mixture._passes, "mixture_pass", refused)
    on_dask = fit(Xd, **params)
    monkeypatch.undo()

    in_memory = fit(X, **params)
    assert on_dask.n_iter_ >= 3
    assert passes == [mixture._numerics._SCATTER[covariance_type]] * on_dask.n_iter_
    assert_same_fit(on_dask, in_memory)

    # Scores are computed; per-row outputs are lazy dask arrays with X's row chunks.
    assert_allclose(on_dask.score(Xd), in_memory.score(X), rtol=1e-12)
    assert_allclose(on_dask.bic(Xd), in_memory.bic(X), rtol=1e-12)
    assert_allclose(on_dask.aic(Xd), in_memory.aic(X), rtol=1e-12)
    labels, resp, log_prob = on_dask.predict(Xd), on_dask.predict_proba(Xd), on_dask.score_samples(Xd)
    for lazy in (labels, resp, log_prob):
        assert isinstance(lazy, da.Array) and lazy.chunks[0] == Xd.chunks[0]
    assert resp.shape == (X.shape[0], 3) and resp.dtype == X.dtype
    labels, resp, log_prob = dask.compute(labels, resp, log_prob)
    assert_array_equal(labels, in_memory.predict(X))
    assert_allclose(resp, in_memory.predict_proba(X), rtol=1e-9, atol=1e-12)
    assert_allclose(log_prob, in_memory.score_samples(X), rtol=1e-12)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_initialisations_draw_as_for_numpy(client, init_params, covariance_type):
    # The same draws from the same random_state: the same start, so the same fit, and the
    # random stream left where a numpy fit leaves it (where a next n_init would draw). A
    # small memory_limit makes 'kmeans' cluster a subsample and continue on all of X.
    X, _ = blobs(n=3000, seed=2)
    params = dict(n_components=3, covariance_type=covariance_type, init_params=init_params,
                  max_iter=15, memory_limit=40_000)
    assert gmmkernels._kmeans.block_rows(40_000, 16 * 5 + 64) < 3000
    streams = np.random.RandomState(7), np.random.RandomState(7)
    on_dask = fit(by_rows(X, 400), random_state=streams[0], **params)
    assert_same_fit(on_dask, fit(X, random_state=streams[1], **params))
    after = [s.get_state() for s in streams]
    assert_array_equal(after[0][1], after[1][1])
    assert after[0][2:] == after[1][2:]


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_sample_weight_as_dask_or_numpy(client, init_params):
    X, _ = blobs(n=2000, seed=3)
    w = np.random.RandomState(0).randint(0, 4, size=2000).astype(np.float64)  # a quarter are 0
    params = dict(n_components=3, covariance_type="full", init_params=init_params, random_state=3,
                  max_iter=10, memory_limit=40_000)
    in_memory = fit(X, sample_weight=w, **params)
    Xd = by_rows(X, 300)
    assert_same_fit(fit(Xd, sample_weight=da.from_array(w, chunks=300), **params), in_memory)
    assert_same_fit(fit(Xd, sample_weight=w, **params), in_memory)


def test_kmeans_plusplus_picks_the_same_rows(client):
    # The cumulative sums are formed block after block with numpy's additions; the picked
    # rows are the ones numpy X gives, with and without weights, from one block or many.
    X, _ = blobs(n=1500, k=6, seed=4)
    w = np.random.RandomState(1).uniform(0, 2, size=1500)
    for weights in (None, w):
        want = mixture._passes._InMemoryPasses().kmeans_plusplus(X, 6, np.random.RandomState(5), weights)
        for rows in (1500, 128):
            passes = DaskPasses()
            dw = None if weights is None else passes.sample_weight(weights, by_rows(X, rows))[0]
            got = passes.kmeans_plusplus(by_rows(X, rows), 6, np.random.RandomState(5), dw)
            assert_array_equal(got, want)


def test_float32_and_integer_x(client):
    X, centers = blobs(n=1200, seed=5)
    params = dict(n_components=3, max_iter=20, **given_inits("full", centers))
    single = X.astype(np.float32)
    on_dask = fit(by_rows(single, 250), **params)
    assert on_dask.means_.dtype == np.float64
    assert_same_fit(on_dask, fit(single, **params), rtol=1e-6, atol=1e-8)
    assert on_dask.predict_proba(by_rows(single, 250)).dtype == np.float32
    integers = np.round(X * 4).astype(np.int64)  # converted block by block, as scikit-learn converts
    assert_same_fit(fit(by_rows(integers, 250), **params), fit(integers, **params))


def test_fit_on_a_file(client, tmp_path):
    X, centers = blobs(n=5000, seed=6)
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xd = gd.from_memmap(path, chunks=700)
    for params in (dict(random_state=0), dict(max_iter=30, **given_inits("diag", centers)),):
        params = dict(n_components=3, covariance_type="diag", **params)
        on_file = fit(Xd, **params)
        assert_same_fit(on_file, fit(X, **params))
    # fit_predict's labels are predict's, lazy like them.
    model = GaussianMixture(3, random_state=0)
    labels = model.fit_predict(Xd)
    assert isinstance(labels, da.Array)
    assert_array_equal(labels.compute(), model.predict(X))


def test_outputs_are_lazy(client, tmp_path):
    X, _ = blobs(n=900, seed=7)
    model = GaussianMixture(3, random_state=0).fit(X)
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xd = gd.from_memmap(path, chunks=200)
    resp, log_prob = model.predict_proba(Xd), model.score_samples(Xd)
    refit = fit(X + 1, n_components=3, random_state=1, max_iter=1)
    model.means_ = refit.means_  # the graphs hold the parameters they were made with
    assert_allclose(resp.compute(), GaussianMixture(3, random_state=0).fit(X).predict_proba(X), rtol=1e-12)
    os.remove(path)  # nothing was read when the arrays were made, so nothing is left to read ...
    with pytest.raises(FileNotFoundError):
        log_prob.compute()  # ... until they are computed

    # Non-finite X: the fit refuses it from the workers; a lazy output when it is computed.
    bad = X.copy()
    bad[700, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        GaussianMixture(3).fit(by_rows(bad, 200))
    lazy = model.predict_proba(by_rows(bad, 200))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        lazy.compute()
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.score(by_rows(bad, 200))


# --- bad input ------------------------------------------------------------------------------

def test_bad_input_names_the_fix(client):
    X, _ = blobs(n=400, seed=8)
    model = GaussianMixture(3, random_state=0, max_iter=5)
    with pytest.raises(ValueError, match=r"X is chunked along columns.*X\.rechunk\(\{1: -1\}\)"):
        model.fit(da.from_array(X, chunks=(100, 2)))
    Xd = by_rows(X, 100)
    with pytest.raises(ValueError, match=r"sample_weight\.rechunk\(\{0: X\.chunks\[0\]\}\)"):
        model.fit(Xd, sample_weight=da.ones(400, chunks=150))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(399,\), expected \(400,\)"):
        model.fit(Xd, sample_weight=da.ones(399, chunks=100))
    with pytest.raises(ValueError, match="Negative values"):
        model.fit(Xd, sample_weight=-da.ones(400, chunks=100))
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.fit(Xd, sample_weight=da.full(400, np.inf, chunks=100))
    with pytest.raises(ValueError, match="positive sample_weight"):
        model.fit(Xd, sample_weight=da.from_array(np.r_[1.0, 1.0, np.zeros(398)], chunks=100))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        model.fit(Xd[Xd[:, 0] > -1e9])
    with pytest.raises(ValueError, match="Expected 2D array"):
        model.fit(Xd[:, 0])
    with pytest.raises(ValueError, match="minimum of 2"):
        model.fit(Xd[:1])
    model.fit(Xd)
    with pytest.raises(ValueError, match="X has 4 features, but GaussianMixture is expecting 5"):
        model.predict(Xd[:, :4])
    with pytest.raises(TypeError, match=r"out= .*lazy dask array.*da\.store"):
        model.predict_proba(Xd, out=np.empty((400, 3)))


def test_mixture_imports_without_dask():
    code = r"""
import sys
sys.modules["dask"] = None  # makes every "import dask..." fail
import numpy as np
from gmmkernels import mixture
rng = np.random.RandomState(0)
X = np.concatenate([rng.normal(size=(200, 3)), rng.normal(size=(200, 3)) + 8])
model = mixture.GaussianMixture(2, random_state=0).fit(X)
assert model.converged_ and model.predict_proba(X).shape == (400, 2)
print("ok")
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(gmmkernels.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- faults -------------------------------------------------------------------------------------

def test_a_worker_killed_mid_fit_does_not_stop_it(tmp_path, monkeypatch):
    """SIGKILL of a worker process after the second EM iteration: its nanny starts a new one,
    the scheduler recomputes what was lost, and the fit ends with the in-memory result."""
    import signal

    X, centers = blobs(n=6000, d=5, k=3, seed=41)
    path = tmp_path / "x.npy"
    np.save(path, X)
    params = dict(n_components=3, max_iter=8, tol=0.0, **given_inits("full", centers))
    expected = fit(X, **params)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        env={"GMMKERNELS_LIBRARY": str(gmmkernels.library_path)}, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    with cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        iteration = GaussianMixture._em_iteration
        done = []

        def iterate_then_kill(self, *args):
            result = iteration(self, *args)
            done.append(1)
            if len(done) == 2:
                os.kill(next(iter(pids.values())), signal.SIGKILL)
            return result

        monkeypatch.setattr(GaussianMixture, "_em_iteration", iterate_then_kill)
        on_dask = fit(gd.from_memmap(str(path), chunks=500), **params)
        assert len(done) == 8
        assert set(client.run(os.getpid).values()) != set(pids.values())  # a new worker process
    assert_same_fit(on_dask, expected)
