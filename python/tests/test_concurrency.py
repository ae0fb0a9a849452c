"""Calls from several Python threads at once, with different thread counts: OpenBLAS's
thread count is process-wide, so the library must serialise what conflicts and still give
every caller its own right answer."""
import threading

import numpy as np

import gmmkernels as gk
from support.processes import run_in_threads
from support.references import gram_error, quadform_error_spd, rtol, spd


def test_concurrent_calls_with_different_thread_counts(rng):
    cases = []
    for i in range(8):
        dtype = (np.float32, np.float64)[i % 2]
        X = rng.standard_normal((3000 + 101 * i, 60 + i)).astype(dtype)
        Q = spd(rng, X.shape[1], dtype)
        w = rng.uniform(-1, 2, X.shape[0])
        cases.append((X, Q, w, 1 + i % 3))
    results = [None] * len(cases)

    def work(k):
        X, Q, w, threads = cases[k]
        for _ in range(5):
            q = gk.quadform(X, Q, threads=threads, memory_limit=200_000)
            G = gk.weighted_gram(X, w, threads=threads, memory_limit=400_000)
        results[k] = (q, G)

    run_in_threads(work, len(cases))
    for (X, Q, w, _), (q, G) in zip(cases, results):
        assert quadform_error_spd(q, X, Q) <= rtol(X.dtype)
        assert gram_error(G, X, w) <= rtol(X.dtype)


def test_progress_from_a_worker_thread(rng):
    # Off the main thread, a progress callable still gets its reports.
    X = rng.standard_normal((5000, 20))
    seen = []
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("q", gk.quadform(X, np.eye(20), progress=seen.append)))
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()
    np.testing.assert_allclose(result["q"], np.sum(X * X, axis=1), rtol=1e-12)
    assert seen and seen[-1] == 5000
