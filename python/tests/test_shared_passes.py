"""n_init and select_n_components in shared passes: the runs of a fit (and the candidates of
a model selection) go through X together, each with its own log-sum-exp, so X is read about
as often as by the longest run; the result is scikit-learn's sequential loop's."""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from gmmkernels import BayesianGaussianMixture, GaussianMixture, mixture
from gmmkernels.mixture import _passes

sklearn = pytest.importorskip("sklearn")
from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture  # noqa: E402
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture  # noqa: E402

PAIRS = {"GaussianMixture": (GaussianMixture, SklearnGaussianMixture),
         "BayesianGaussianMixture": (BayesianGaussianMixture, SklearnBayesianGaussianMixture)}


def clusters(n=1500, d=4, seed=0, offset=100.0):
    """Six clusters for three components: each initialisation ends in its own optimum."""
    rng = np.random.RandomState(seed)
    centers = rng.normal(scale=5.0, size=(6, d)) + offset
    return centers[rng.randint(6, size=n)] + rng.normal(size=(n, d))


class PassCounter:
    """Counts what the in-memory backend reads: joint passes and single passes over X."""

    def __init__(self, monkeypatch):
        self.joint, self.single, self.inside = [], 0, False
        joint, single = _passes._InMemoryPasses.mixture_passes, _passes._InMemoryPasses.mixture_pass
        counter = self

        def mixture_passes(self, X, requests, sample_weight=None):
            counter.joint.append(len(requests))
            counter.inside = True
            try:
                return joint(self, X, requests, sample_weight)
            finally:
                counter.inside = False

        def mixture_pass(self, X, operands, scatter, sample_weight=None):
            if X.shape[0] == counter.rows and not counter.inside:
                counter.single += 1
            return single(self, X, operands, scatter, sample_weight)

        monkeypatch.setattr(_passes._InMemoryPasses, "mixture_passes", mixture_passes)
        monkeypatch.setattr(_passes._InMemoryPasses, "mixture_pass", mixture_pass)
        self.rows = None


def fit_both(name, X, **params):
    ours, theirs = PAIRS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ours(**params).fit(X), theirs(**params).fit(X)


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("init_params", ["random_from_data", "k-means++", "random"])
def test_n_init_side_by_side_is_sklearns_sequential_loop(name, covariance_type, init_params, monkeypatch):
    X = clusters()
    counter = PassCounter(monkeypatch)
    counter.rows = X.shape[0]
    params = dict(n_components=3, covariance_type=covariance_type, n_init=4, max_iter=40, tol=1e-6,
                  init_params=init_params, random_state=1)
    ours, theirs = fit_both(name, X, **params)
    assert counter.joint and counter.joint[0] == 4  # all four runs in the first passes
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.converged_ == theirs.converged_
    assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-8)
    for attribute in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(ours, attribute), getattr(theirs, attribute), rtol=1e-7, atol=1e-9)


def test_x_is_read_as_often_as_by_the_longest_run(monkeypatch):
    X = clusters(n=3000)
    counter = PassCounter(monkeypatch)
    counter.rows = X.shape[0]
    # The four runs one at a time, from the random state the shared fit draws from.
    rs = np.random.RandomState(7)
    iterations = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(4):
            iterations.append(GaussianMixture(3, max_iter=30, tol=1e-4, random_state=rs,
                                              init_params="random_from_data").fit(X).n_iter_)
        counter.joint.clear()
        counter.single = 0
        shared = GaussianMixture(3, max_iter=30, tol=1e-4, random_state=7, init_params="random_from_data",
                                 n_init=4).fit(X)
    assert len(set(iterations)) > 1  # runs of different lengths: some drop out early
    # Each round carries the runs still going; the last run, once alone, makes plain passes.
    live = [sum(n > i for n in iterations) for i in range(max(iterations))]
    assert counter.joint == [m for m in live if m > 1]
    assert counter.single == sum(1 for m in live if m == 1)
    assert len(counter.joint) + counter.single == max(iterations)  # X read as often as by the longest run
    assert shared.n_iter_ in iterations


def test_runs_are_grouped_when_their_statistics_do_not_fit(monkeypatch):
    X = clusters(n=2000, d=40)
    counter = PassCounter(monkeypatch)
    counter.rows = X.shape[0]
    statistics = 8 * (1 + 3 + 3 * 40 + 3 * 40 * 40)
    params = dict(n_components=3, n_init=4, max_iter=5, tol=0.0, init_params="random_from_data", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = GaussianMixture(memory_limit=2 * statistics + 100, **params).fit(X)
        theirs = SklearnGaussianMixture(**params).fit(X)
    assert counter.joint == [2] * 5 + [2] * 5  # two groups of two runs, five rounds each
    assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-8)
    assert_allclose(ours.means_, theirs.means_, rtol=1e-7)


def test_a_dask_fit_shares_its_passes_too(monkeypatch):
    """On a dask X, each block's task runs all live runs on its rows: the blocks are visited
    as often as the longest run needs, not as often as all runs together."""
    da = pytest.importorskip("dask.array")
    from gmmkernels import _dask_graph
    from gmmkernels.mixture import _dask_passes

    X = clusters(n=2000)
    visits = []
    single, joint = _dask_graph.mixture_block, _dask_passes._BLOCK_METHODS["mixture_passes"]

    def counted_single(x, *w, **keywords):
        visits.append(1)
        return single(x, *w, **keywords)

    def counted_joint(x, *rows, requests, **keywords):
        visits.append(len(requests))
        return joint(x, *rows, requests=requests, **keywords)

    monkeypatch.setattr(_dask_graph, "mixture_block", counted_single)
    monkeypatch.setitem(_dask_passes._BLOCK_METHODS, "mixture_passes", counted_joint)
    params = dict(n_components=3, n_init=3, max_iter=20, tol=1e-6, init_params="random_from_data", random_state=2)

    def fit_dask(**extra):
        visits.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = GaussianMixture(**dict(params, **extra)).fit(da.from_array(X, chunks=(500, 4)))
        return model, list(visits)

    in_memory = GaussianMixture(**params).fit(X)
    shared, shared_visits = fit_dask()
    rs = np.random.RandomState(2)
    lengths = [GaussianMixture(**dict(params, n_init=1, random_state=rs)).fit(X).n_iter_ for _ in range(3)]
    monkeypatch.setattr(mixture._base.BaseMixture, "_runs_per_pass", lambda self, n_features: 1)
    sequential, sequential_visits = fit_dask()
    assert shared.n_iter_ == in_memory.n_iter_ == sequential.n_iter_
    assert_allclose(shared.lower_bound_, in_memory.lower_bound_, rtol=1e-10)
    assert_allclose(shared.means_, in_memory.means_, rtol=1e-10)
    # Four blocks per pass over X.
    assert len(sequential_visits) == 4 * sum(lengths)
    assert len(shared_visits) == 4 * max(lengths)
    assert sum(shared_visits) == 4 * sum(lengths)  # the same work, in fewer reads of X


def test_select_n_components_fits_all_candidates_in_shared_passes(monkeypatch):
    X = clusters(n=2000)
    counter = PassCounter(monkeypatch)
    counter.rows = X.shape[0]
    candidates = [1, 2, 3, 4, 5]
    params = dict(max_iter=6, tol=0.0, random_state=0, init_params="random_from_data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best, scores = mixture.select_n_components(X, candidates, **params)
        rounds = list(counter.joint)
        alone = [GaussianMixture(k, **params).fit(X) for k in candidates]
    assert rounds == [5] * 6 + [5]  # six EM rounds of all five candidates, one scoring pass
    assert_allclose(scores, [m.bic(X) for m in alone], rtol=1e-10)
    assert best.n_components == candidates[int(np.argmin(scores))]
    assert_allclose(best.means_, alone[int(np.argmin(scores))].means_, rtol=1e-10)
    with pytest.raises(ValueError, match="checkpoint"):
        mixture.select_n_components(X, candidates, checkpoint="x.ckpt")


def test_file_backed_dask_arrays_share_passes(tmp_path):
    """from_memmap arrays, whose tasks read their own rows: the shared operands of every run
    reach the block tasks (n_init and select_n_components)."""
    pytest.importorskip("dask.array")
    import gmmkernels.dask as gd

    X = clusters(n=2000)
    path = tmp_path / "x.npy"
    np.save(path, X)
    params = dict(n_components=3, n_init=3, max_iter=20, tol=1e-6, init_params="random_from_data", random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_memory = GaussianMixture(**params).fit(X)
        on_file = GaussianMixture(**params).fit(gd.from_memmap(str(path), chunks=500))
        _, scores_file = mixture.select_n_components(gd.from_memmap(str(path), chunks=500), [1, 2, 3], random_state=0)
        _, scores = mixture.select_n_components(X, [1, 2, 3], random_state=0)
    assert on_file.n_iter_ == in_memory.n_iter_
    assert_allclose(on_file.means_, in_memory.means_, rtol=1e-10)
    assert_allclose(scores_file, scores, rtol=1e-10)
