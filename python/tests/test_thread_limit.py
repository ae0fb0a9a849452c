"""The process-wide thread limit and threadpoolctl's control of it."""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from numpy.testing import assert_allclose

import gmmkernels
from gmmkernels import _validation

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture(autouse=True)
def no_limit():
    gmmkernels.set_thread_limit(None)
    yield
    gmmkernels.set_thread_limit(None)


def ours(info):
    entries = [i for i in info if i["user_api"] == "gmmkernels"]
    assert len(entries) == 1, info
    return entries[0]


def test_set_thread_limit_caps_calls_without_threads():
    assert gmmkernels.get_thread_limit() == gmmkernels.default_threads()
    assert _validation.threads_arg(None) == 0  # the library's own default: every CPU
    gmmkernels.set_thread_limit(1)
    assert gmmkernels.get_thread_limit() == 1
    assert _validation.threads_arg(None) == 1
    assert _validation.threads_arg(3) == 3  # an explicit threads= wins
    X = np.random.default_rng(0).standard_normal((3000, 7))
    Q = np.eye(7)
    assert_allclose(gmmkernels.quadform(X, Q), np.einsum("ij,ij->i", X, X), rtol=1e-12)
    gmmkernels.set_thread_limit(None)
    assert _validation.threads_arg(None) == 0
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            gmmkernels.set_thread_limit(bad)


def test_threadpool_info_lists_gmmkernels_and_limits_restore():
    before = ours(threadpoolctl.threadpool_info())
    assert before["num_threads"] == gmmkernels.default_threads()
    assert before["version"] == gmmkernels.library_version
    assert os.path.realpath(before["filepath"]) == os.path.realpath(gmmkernels.library_path)
    with threadpoolctl.threadpool_limits(1):
        assert ours(threadpoolctl.threadpool_info())["num_threads"] == 1
        assert _validation.threads_arg(None) == 1
    after = ours(threadpoolctl.threadpool_info())
    assert after["num_threads"] == before["num_threads"]
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        # A limit for another API leaves gmmkernels alone.
        assert gmmkernels.get_thread_limit() == before["num_threads"]


@pytest.mark.filterwarnings("ignore:Best performing initialization did not converge")
def test_limit_reaches_calls_in_worker_threads(monkeypatch):
    """Calls inside threadpool_limits(1), made from a thread pool, hand the library one
    thread; an explicit threads= still wins."""
    from gmmkernels import _library

    passed = []
    real_call = _library.call

    def spy(name, arguments, *, threads, memory_limit, progress=None):
        passed.append(threads)
        return real_call(name, arguments, threads=threads, memory_limit=memory_limit, progress=progress)

    monkeypatch.setattr(_library, "call", spy)
    X = np.random.default_rng(1).standard_normal((2000, 5))

    def call(_):
        return gmmkernels.weighted_gram(X)

    with threadpoolctl.threadpool_limits(1):
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(call, range(8)))
        gmmkernels.GaussianMixture(2, max_iter=3, random_state=0).fit(X)
    assert len(passed) > 8 and set(passed) == {1}, passed
    for gram in results:
        assert_allclose(gram, X.T @ X, rtol=1e-12)
    passed.clear()
    with threadpoolctl.threadpool_limits(1):
        gmmkernels.weighted_gram(X, threads=2)
    gmmkernels.weighted_gram(X)
    assert passed == [2, 0]
