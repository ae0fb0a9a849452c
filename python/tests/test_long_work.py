"""Long calls of the K-component kernels, matmul and outer: progress reports, tqdm bars,
Ctrl-C in a child interpreter, calls from many Python threads at once, and kernels in a
child forked after the library was used.

Long inputs are mostly broadcast rows (row stride 0): any number of rows without memory.
"""
import multiprocessing
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import gmmkernels as gk
from support.processes import run_in_threads
from support.references import (
    general_qs,
    gram_many_error,
    gram_many_reference,
    product_error,
    quadform_many_error,
    quadform_many_reference,
    ratio,
    spd,
    weighted_sum_error,
)

PYTHON_DIR = Path(gk.__file__).resolve().parent.parent


# --- progress ---------------------------------------------------------------------------------

def check_reports(seen, n, *, intermediate):
    assert seen, "the progress callable was never called"
    assert all(isinstance(r, int) for r in seen), seen
    assert all(0 <= r <= n for r in seen), seen
    assert all(a <= b for a, b in zip(seen, seen[1:])), "row counts went down: %s" % seen
    assert seen[-1] == n, seen
    if intermediate:
        assert any(0 < r < n for r in seen), "no report before the end: %s" % seen


def long_calls(rng):
    """name → (rows, call(progress)) for calls of a few tenths of a second on one thread."""
    d = 50
    row = rng.standard_normal(d)
    Qs = general_qs(rng, 20, d)
    calls = {}
    n = 60_000
    calls["quadform_many"] = (n, lambda p: gk.quadform_many(np.broadcast_to(row, (n, d)), Qs, threads=1, progress=p))
    n2 = 150_000
    R = np.broadcast_to(rng.random(10), (n2, 10))
    calls["weighted_gram_many"] = (n2, lambda p: gk.weighted_gram_many(np.broadcast_to(row, (n2, d)), R, threads=1, progress=p))
    n3 = 6_000_000
    R3 = np.broadcast_to(rng.random(8), (n3, 8))
    calls["weighted_sum"] = (n3, lambda p: gk.weighted_sum(np.broadcast_to(row, (n3, d)), R3, threads=1, progress=p))
    n4 = 8_000_000
    A = np.broadcast_to(rng.standard_normal(64), (n4, 64))
    B = rng.standard_normal((64, 1))
    calls["matmul"] = (n4, lambda p: gk.matmul(A, B, threads=1, progress=p))
    return calls


@pytest.mark.parametrize("fn", ["quadform_many", "weighted_gram_many", "weighted_sum", "matmul"])
def test_progress_callable_long_call(rng, fn):
    n, call = long_calls(rng)[fn]
    seen = []
    result = call(seen.append)
    check_reports(seen, n, intermediate=True)
    assert np.isfinite(result).all()


def test_progress_callable_long_results_right(rng):
    # The long inputs give the right answers too: every row is the same row.
    d, n = 30, 200_000
    row = rng.standard_normal(d)
    X = np.broadcast_to(row, (n, d))
    Qs = np.stack([spd(rng, d) for _ in range(3)])
    seen = []
    q = gk.quadform_many(X, Qs, progress=seen.append)
    check_reports(seen, n, intermediate=False)
    np.testing.assert_allclose(q, np.broadcast_to([row @ Q @ row for Q in Qs], (n, 3)), rtol=1e-12)
    r = np.array([0.5, -1.0])
    G = gk.weighted_gram_many(X, np.broadcast_to(r, (n, 2)), progress=seen.append)
    ref = n * r[:, None, None] * np.outer(row, row)
    assert np.max(np.abs(G - ref)) <= 1e-12 * n * np.max(row**2)


@pytest.mark.parametrize("n", [0, 1, 777])
def test_progress_callable_short_calls(rng, n):
    d, K = 4, 3
    X = rng.standard_normal((n, d))
    R = rng.random((n, K))
    y = rng.standard_normal(n)
    calls = {
        "quadform_many": lambda p: gk.quadform_many(X, general_qs(rng, K, d), progress=p),
        "weighted_gram_many": lambda p: gk.weighted_gram_many(X, R, progress=p),
        "weighted_sum": lambda p: gk.weighted_sum(X, R, progress=p),
        "matmul": lambda p: gk.matmul(X, np.ones((d, 2)), progress=p),
        "outer": lambda p: gk.outer(y, np.ones(5), progress=p),
    }
    for name, call in calls.items():
        seen = []
        call(seen.append)
        check_reports(seen, n, intermediate=False)


def test_progress_callable_outer(rng):
    n, m = 20_000, 3000
    y = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal(m).astype(np.float32)
    seen = []
    r = gk.outer(y, x, threads=1, memory_limit=100_000, progress=seen.append)
    check_reports(seen, n, intermediate=False)
    assert np.array_equal(r[::97], np.multiply(y[::97, None], x[None, :]))


def test_progress_bar(rng, capfd):
    pytest.importorskip("tqdm")
    n, d, K = 3000, 4, 2
    X = rng.standard_normal((n, d))
    R = rng.random((n, K))
    Qs = general_qs(rng, K, d)
    q = gk.quadform_many(X, Qs, progress=True)
    G = gk.weighted_gram_many(X, R, progress=True)
    S = gk.weighted_sum(X, R, progress=True)
    C = gk.matmul(X, Qs[0], progress=True)
    r = gk.outer(X[:, 0], X[0], progress=True)
    assert quadform_many_error(q, X, Qs) <= 1e-12
    assert gram_many_error(G, X, R) <= 1e-12
    assert weighted_sum_error(S, X, R) <= 1e-12
    assert product_error(C, X, Qs[0]) <= 1e-12
    assert np.array_equal(r, np.multiply(X[:, 0, None], X[None, 0]))
    err = capfd.readouterr().err
    # Each bar counts rows to the end (tqdm prints 3000 as 3.00k).
    for name in ("quadform_many", "weighted_gram_many", "weighted_sum", "matmul", "outer"):
        assert re.search(r"%s: 100%%.* 3\.00k/3\.00k" % name, err), (name, err)


# --- Ctrl-C -----------------------------------------------------------------------------------

# The child times a call on a few rows, sizes the whole call to take about TARGET seconds,
# prints its estimate and "started", then runs the whole call. On KeyboardInterrupt it checks at once and again a
# little later that out no longer changes (the call must have ended when the exception
# arrives), prints the traceback, checks what was written and that the library still works,
# and exits with status 3. (Left uncaught, KeyboardInterrupt makes Python 3.8+ end itself by
# SIGINT, which would look like the crash this test must tell apart.) Row blocks are made
# slow (large d) so that a call still running after the exception is caught in the act.
CHILD = textwrap.dedent(
    """
    import sys, threading, time, traceback
    import numpy as np
    import gmmkernels as gk

    TARGET = 10.0  # seconds the whole call should take, whatever the machine's speed
    which = sys.argv[1]
    rng = np.random.default_rng(5)
    if which == "quadform_many":
        d, K, probe, most = 256, 100, 3000, 350_000  # most rows: X and out in about 1 GB
        Qs = np.empty((K, d, d))
        for k in range(K):  # (numpy's stacked matmul is far slower than K calls here)
            A = rng.standard_normal((d, d))
            Qs[k] = A @ A.T / d + np.eye(d)
        def setup(n):
            X = rng.standard_normal((n, d))
            return X, np.full((n, K), np.nan), lambda out: gk.quadform_many(X, Qs, out=out)
    else:
        d, K, probe, most = 256, 30, 30000, 10_000_000  # X and R are broadcast rows
        x, r = rng.standard_normal(d), rng.random(K)
        def setup(n):
            X, R = np.broadcast_to(x, (n, d)), np.broadcast_to(r, (n, K))
            return X, np.full((K, d, d), np.nan), lambda out: gk.weighted_gram_many(X, R, out=out)

    gk.quadform_many(np.ones((100, d)), np.ones((2, d, d)))  # first use: thread pools, BLAS buffers
    _, _, small = setup(probe)
    t0 = time.perf_counter()
    small(None)
    per_row = (time.perf_counter() - t0) / probe
    n = min(max(10 * probe, int(TARGET / per_row)), most)
    X, out, call = setup(n)
    print("estimate %.3f" % (n * per_row), flush=True)
    print("started", flush=True)
    t0 = time.perf_counter()
    try:
        call(out)
    except KeyboardInterrupt:
        stopped = time.perf_counter() - t0
        snapshot = out.copy()
        others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        time.sleep(0.3)
        traceback.print_exc()
        print("interrupted after %.3f" % stopped, flush=True)
        changed = int(np.sum(~((snapshot == out) | (np.isnan(snapshot) & np.isnan(out)))))
        print("entries of out changed in the 0.3 s after KeyboardInterrupt: %d "
              "(other threads at that time: %s)" % (changed, others), flush=True)
        assert changed == 0, "out was still being written after KeyboardInterrupt was raised"
        if which == "quadform_many":
            # Whole row blocks are written, each right; the rest is untouched.
            written = ~np.isnan(out)
            rows = written.any(axis=1)
            assert np.array_equal(written[rows], np.ones((rows.sum(), K), bool))
            assert 0 < rows.sum() < n, rows.sum()
            idx = np.flatnonzero(rows)[:: max(1, rows.sum() // 100)]
            Xs = X[idx]
            ref = np.stack([np.sum(Xs @ Q * Xs, axis=1) for Q in Qs], axis=1)
            assert np.max(np.abs(out[idx] - ref) / ref) <= 1e-12
            print("partial result right", flush=True)
        Xs = rng.standard_normal((10, 3))
        q = gk.quadform_many(Xs, np.eye(3)[None].repeat(2, axis=0))
        assert np.allclose(q, np.sum(Xs * Xs, axis=1)[:, None], rtol=1e-12)
        print("usable afterwards", flush=True)
        sys.exit(3)
    print("finished after %.3f" % (time.perf_counter() - t0), flush=True)
    sys.exit(4)
    """
)


def read_lines(stream, lines):
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.mark.parametrize("which", ["quadform_many", "weighted_gram_many"])
def test_ctrl_c_in_a_child_interpreter(which):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + ((":" + env["PYTHONPATH"]) if env.get("PYTHONPATH") else "")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, which], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    lines = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(child.stdout, lines), daemon=True)
    reader.start()
    out_lines = []
    try:
        estimate = None
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "child ended before starting: %s\n%s" % (out_lines, child.stderr.read())
            out_lines.append(line)
            if line.startswith("estimate"):
                estimate = float(line.split()[1])
            if line == "started":
                break
        assert estimate is not None, out_lines
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("the child did not stop within 5 s of SIGINT (estimate of the whole call: %s s)" % estimate)
        reader.join(timeout=5)
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                out_lines.append(line)
        err = child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    report = "stdout: %s\nstderr: %s" % (out_lines, err)
    assert child.returncode >= 0, "child killed by signal %d\n%s" % (-child.returncode, report)
    assert child.returncode == 3, report
    assert "KeyboardInterrupt" in err and "Traceback" in err, report
    assert "usable afterwards" in out_lines, report
    if which == "quadform_many":
        assert "partial result right" in out_lines, report
    # The call was stopped soon after the signal (sent 0.5 s into it), well before it would
    # have finished.
    assert estimate >= 5.0, "the child's call is too short to show anything: %s" % report
    stopped = [float(line.split()[-1]) for line in out_lines if line.startswith("interrupted after")]
    assert stopped and stopped[0] <= 2.5, report
    assert stopped[0] <= estimate / 2, report


# --- many Python threads at once -----------------------------------------------------------------

def test_concurrent_calls_on_shared_inputs(rng):
    # 8 Python threads, each repeating one of quadform / weighted_gram / quadform_many on the
    # same X, Q, w, Qs with its own threads= and memory_limit; every result must equal the
    # serial call's to rounding, and the float64 reference.
    n, d, K = 6000, 40, 5
    X = rng.standard_normal((n, d))
    X32 = X.astype(np.float32)
    Q = spd(rng, d)
    w = rng.uniform(-0.5, 1.5, n)
    Qs = general_qs(rng, K, d)
    centers = rng.standard_normal((K, d))

    def job(i):
        fn = ("quadform", "weighted_gram", "quadform_many")[i % 3]
        threads = (1, 2, 3, None)[i % 4]
        limit = (100_000, None, 300_000, 2_000_000)[(i // 2) % 4]
        Xi = X32 if i in (6, 7) else X
        if fn == "quadform":
            return lambda: gk.quadform(Xi, Q, center=centers[0], threads=threads, memory_limit=limit)
        if fn == "weighted_gram":
            return lambda: gk.weighted_gram(Xi, w, center=centers[1], threads=threads, memory_limit=limit)
        return lambda: gk.quadform_many(Xi, Qs, centers=centers, threads=threads, memory_limit=limit)

    jobs = [job(i) for i in range(8)]
    serial = [call() for call in jobs]
    results = [[] for _ in jobs]
    barrier = threading.Barrier(len(jobs))

    def work(i):
        barrier.wait(timeout=30)
        for _ in range(6):
            results[i].append(jobs[i]())

    run_in_threads(work, len(jobs))

    for i, (first, got) in enumerate(zip(serial, results)):
        Xi = X32 if i in (6, 7) else X
        tol = 1e-5 if Xi.dtype == np.float32 else 1e-12
        fn = ("quadform", "weighted_gram", "quadform_many")[i % 3]
        if fn == "quadform":
            ref, scale = quadform_many_reference(Xi, Q[None], centers[:1])
            ref, scale = ref[:, 0], scale[:, 0]
        elif fn == "weighted_gram":
            ref, scale = gram_many_reference(Xi, w[:, None], centers[1:2])
            ref, scale = ref[0], scale[0]
        else:
            ref, scale = quadform_many_reference(Xi, Qs, centers)
        assert ratio(np.abs(first - ref), scale) <= tol, i
        assert len(got) == 6
        for r in got:
            assert r.shape == first.shape and r.dtype == first.dtype
            assert ratio(np.abs(r.astype(np.float64) - first), scale) <= 2 * tol, i


# --- fork ------------------------------------------------------------------------------------

def _forked_child(conn, X, Qs, R, A, B):
    try:
        conn.send((
            "ok",
            gk.quadform_many(X, Qs, threads=2),
            gk.weighted_gram_many(X, R, threads=2),
            gk.weighted_sum(X, R, threads=2),
            gk.matmul(A, B, threads=2, memory_limit=200_000),
            gk.quadform(X, Qs[0], threads=1),
        ))
    except BaseException as e:
        conn.send(("error", repr(e)))
    finally:
        conn.close()


def test_kernels_in_a_child_forked_after_use(rng):
    n, d, K = 20_000, 30, 4
    X = rng.standard_normal((n, d))
    Qs = general_qs(rng, K, d)
    R = rng.random((n, K))
    A = rng.standard_normal((50_000, 20))
    B = rng.standard_normal((20, 7))
    # Use the library first, with several threads: pools and OpenBLAS threads exist at fork.
    parent = (
        gk.quadform_many(X, Qs, threads=2),
        gk.weighted_gram_many(X, R, threads=2),
        gk.weighted_sum(X, R, threads=2),
        gk.matmul(A, B, threads=2, memory_limit=200_000),
        gk.quadform(X, Qs[0], threads=1),
    )
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_forked_child, args=(theirs, X, Qs, R, A, B))
    child.start()
    theirs.close()
    try:
        assert mine.poll(60), "the forked child sent nothing within 60 s (hang after fork?)"
        message = mine.recv()
        child.join(timeout=30)
        assert not child.is_alive(), "the forked child did not exit"
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert message[0] == "ok", message
    assert child.exitcode == 0, child.exitcode
    q, G, S, C, q1 = message[1:]
    assert quadform_many_error(q, X, Qs) <= 1e-12
    assert gram_many_error(G, X, R) <= 1e-12
    assert weighted_sum_error(S, X, R) <= 1e-12
    assert product_error(C, A, B) <= 1e-12
    assert quadform_many_error(q1[:, None], X, Qs[:1]) <= 1e-12
    _, scale = quadform_many_reference(X, Qs)
    assert ratio(np.abs(q - parent[0]), scale) <= 2e-12
    # The parent still works after the fork.
    assert quadform_many_error(gk.quadform_many(X, Qs, threads=2), X, Qs) <= 1e-12
