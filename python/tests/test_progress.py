"""Long calls: progress reports and Ctrl-C.

The long inputs are broadcast rows (row stride 0): any number of rows without memory, and
every q_i is the same number, so a partly written out= is easy to check.
"""
import _thread
import re
import threading
import time

import numpy as np
import pytest

import gmmkernels as gk


def long_input(rng, n, d=100):
    row = rng.standard_normal(d)
    X = np.broadcast_to(row, (n, d))
    A = rng.standard_normal((d, d))
    Q = A @ A.T / d + np.eye(d)
    Q = (Q + Q.T) / 2
    return X, Q, float(row @ Q @ row)


def check_reports(seen, n):
    assert seen, "the progress callable was never called"
    assert all(0 <= r <= n for r in seen), seen
    assert all(a <= b for a, b in zip(seen, seen[1:])), "row counts went down: %s" % seen
    assert seen[-1] == n


@pytest.mark.parametrize("fn", ["quadform", "weighted_gram"])
@pytest.mark.parametrize("n", [0, 1, 1000])
def test_progress_callable_short_calls(rng, fn, n):
    X = rng.standard_normal((n, 5))
    seen = []
    args = (np.eye(5),) if fn == "quadform" else ()
    getattr(gk, fn)(X, *args, progress=seen.append)
    check_reports(seen, n)


def test_progress_callable_long_call(rng):
    # About a second of work on one thread: several reports arrive before the end.
    n = 2_000_000
    X, Q, q0 = long_input(rng, n)
    seen = []
    q = gk.quadform(X, Q, threads=1, progress=seen.append)
    check_reports(seen, n)
    assert any(0 < r < n for r in seen), seen
    np.testing.assert_allclose(q, q0, rtol=1e-12)


def test_progress_callable_long_weighted_gram(rng):
    n = 1_500_000
    X, _, _ = long_input(rng, n)
    w = np.ones(n)
    seen = []
    G = gk.weighted_gram(X, w, threads=1, progress=seen.append)
    check_reports(seen, n)
    assert any(0 < r < n for r in seen), seen
    row = X[0]
    np.testing.assert_allclose(G, n * np.outer(row, row), rtol=1e-12, atol=1e-12 * n * np.max(row**2))


def test_progress_bar(rng, capfd):
    pytest.importorskip("tqdm")
    X = rng.standard_normal((3000, 4))
    q = gk.quadform(X, np.eye(4), progress=True)
    np.testing.assert_allclose(q, np.sum(X * X, axis=1), rtol=1e-12)
    G = gk.weighted_gram(X, progress=True)
    np.testing.assert_allclose(G, X.T @ X, rtol=1e-12, atol=1e-12 * np.abs(X.T @ X).max())
    err = capfd.readouterr().err
    # The bar counts rows to the end (tqdm prints 3000 as 3.00k).
    assert re.search(r"quadform: 100%.* 3\.00k/3\.00k", err), err
    assert re.search(r"weighted_gram: 100%.* 3\.00k/3\.00k", err), err


def test_ctrl_c_cancels_within_a_block(rng):
    n = 6_000_000
    X, Q, q0 = long_input(rng, n)
    out = np.full(n, np.nan)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            gk.quadform(X, Q, out=out, threads=1, memory_limit=1 << 20)
            # Reached only if the call finished before the interrupt: wait for it to land.
            time.sleep(5)
    finally:
        timer.cancel()
    elapsed = time.perf_counter() - t0
    written = ~np.isnan(out)
    # Stopped early (a full call takes several seconds on one thread) ...
    assert elapsed < 2.0, elapsed
    assert 0 < written.sum() < n
    # ... and what was written is right.
    np.testing.assert_allclose(out[written], q0, rtol=1e-12)
    # The library is usable afterwards.
    Xs = rng.standard_normal((10, 3))
    np.testing.assert_allclose(gk.quadform(Xs, np.eye(3)), np.sum(Xs * Xs, axis=1), rtol=1e-12)
