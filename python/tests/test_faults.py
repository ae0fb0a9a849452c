"""What happens when the environment fails under a call: the file behind a memmap shrinks,
memory runs out, the process forks. Each fault runs in a subprocess, so that an outcome
that kills a process fails (or documents) one test instead of ending the run.

(a) A memmap whose file is truncated after it was mapped: reading the lost pages raises
    SIGBUS and the process dies, in gmmkernels exactly as in numpy itself (X.sum() dies
    the same way). Nothing a library can do cheaply turns that into an exception: the
    signal arrives on whichever thread touches the page, mid-BLAS. Do not shrink a file
    while it is mapped.
(b) Out of memory: numpy's own allocation of the default out fails with MemoryError
    before the kernel runs; a memory_limit below what one row block needs is a
    ValueError that says how many bytes are needed; when the library's workspace
    allocation itself fails (RLIMIT_AS lowered in a subprocess) the call raises
    MemoryError and the process goes on.
(d) A memmap `out` in a sparse file on a disk too full to hold it: writing it would stop the
    process with SIGBUS, so the call raises OSError (ENOSPC) before any work. Run on a small
    tmpfs mounted in a private mount namespace (root only).
(c) fork: a child forked after the library was used (multiprocessing's "fork" start
    method), even while another thread of the parent is inside a kernel, calls the
    kernels and gets the right results.
"""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gmmkernels as gk
from gmmkernels import _library
from gmmkernels._kernels import mixture_pass
from support.processes import child_environment

TESTS = Path(__file__).resolve().parent
ENV = child_environment()


def run_python(source, *args, timeout=300):
    """Runs `source` in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def describe(proc):
    how = ("killed by %s" % signal.Signals(-proc.returncode).name if proc.returncode < 0
           else "exit status %d" % proc.returncode)
    return "%s\nstdout: %s\nstderr: %s" % (how, proc.stdout[-1500:], proc.stderr[-1500:])


# --- (a) a memmap whose file shrinks ---------------------------------------------------------

TRUNCATED = """
    import os, sys
    import numpy as np
    import gmmkernels as gk
    path, reader = sys.argv[1], sys.argv[2]
    n, d = 20000, 50
    np.random.default_rng(0).standard_normal((n, d)).tofile(path)
    X = np.memmap(path, dtype=np.float64, mode="r", shape=(n, d))
    gk.quadform(X[:10], np.eye(d))            # the mapping works
    os.truncate(path, 3 * 4096)               # the file shrinks under it
    print("calling", flush=True)
    try:
        if reader == "numpy":
            X.sum()
        else:
            gk.quadform(X, np.eye(d))
    except Exception as e:
        print("raised %s: %s" % (type(e).__name__, e))
        sys.exit(0)
    print("returned")
"""


@pytest.mark.parametrize("reader", ["gmmkernels", "numpy"])
def test_truncated_memmap_dies_of_sigbus(tmp_path, reader):
    # The documented outcome: the process dies of SIGBUS, with or without gmmkernels.
    # (Should a check of the file's size before the call be added, truncation before the
    # call would become a clean ValueError for gmmkernels; truncation during a call would
    # still be SIGBUS.)
    proc = run_python(TRUNCATED, tmp_path / "x.f64", reader, timeout=120)
    assert "calling" in proc.stdout, describe(proc)
    if reader == "gmmkernels" and proc.returncode == 0:
        assert "raised ValueError" in proc.stdout and "X" in proc.stdout, describe(proc)
    else:
        assert proc.returncode == -signal.SIGBUS, describe(proc)


# --- (b) out of memory ------------------------------------------------------------------------

HUGE = 2**40


@pytest.mark.parametrize("name, call", [
    ("quadform", lambda: gk.quadform(np.broadcast_to(np.ones(3), (HUGE, 3)), np.eye(3))),
    ("quadform_many", lambda: gk.quadform_many(np.broadcast_to(np.ones(3), (HUGE, 3)), np.eye(3)[None])),
    ("matmul", lambda: gk.matmul(np.broadcast_to(np.ones(3), (HUGE, 3)), np.ones((3, 2)))),
    ("outer", lambda: gk.outer(np.broadcast_to(1.0, (HUGE,)), np.ones(4))),
    ("weighted_gram_many", lambda: gk.weighted_gram_many(np.ones((2, 3)), np.broadcast_to(1.0, (2, HUGE)))),
])
def test_default_out_too_large_is_numpys_memory_error(monkeypatch, name, call):
    # 8 TiB and more: numpy cannot allocate the default out and raises MemoryError before
    # any kernel runs.
    called = []
    monkeypatch.setattr(_library, "call", lambda *a, **k: called.append(a))
    with pytest.raises(MemoryError):
        call()
    assert not called, "the kernel ran although out could not be allocated"


SMALL_LIMIT_CALLS = {
    "quadform": lambda X, lim: gk.quadform(X, np.eye(X.shape[1]), memory_limit=lim),
    "quadform_many": lambda X, lim: gk.quadform_many(X, np.stack([np.eye(X.shape[1])] * 3), memory_limit=lim),
    "weighted_gram": lambda X, lim: gk.weighted_gram(X, np.ones(X.shape[0]), memory_limit=lim),
    "weighted_gram_many": lambda X, lim: gk.weighted_gram_many(X, np.ones((X.shape[0], 3)), memory_limit=lim),
    "weighted_sum": lambda X, lim: gk.weighted_sum(X, np.ones((X.shape[0], 3)), memory_limit=lim),
    # (contiguous operands go to BLAS in place and need no workspace; reversed rows are packed)
    "matmul": lambda X, lim: gk.matmul(X[::-1], np.ones((X.shape[1], 40)), memory_limit=lim),
    "outer": lambda X, lim: gk.outer(X[:, 0].copy(), np.ones(400), memory_limit=lim),
    "mixture_pass": lambda X, lim: mixture_pass(X, np.zeros(3), np.zeros((3, X.shape[1])),
                                                np.stack([np.eye(X.shape[1])] * 3), memory_limit=lim),
}


@pytest.mark.parametrize("name", list(SMALL_LIMIT_CALLS))
@pytest.mark.parametrize("limit", [1, 16])
def test_memory_limit_too_small_is_a_value_error(name, limit):
    X = np.random.default_rng(1).standard_normal((300, 40))
    with pytest.raises(ValueError) as info:
        SMALL_LIMIT_CALLS[name](X, limit)
    message = str(info.value)
    assert "memory_limit" in message and str(limit) in message, message


# RLIMIT_AS is lowered to a little above what the process has mapped, after a first call
# (threads, OpenBLAS buffers) and with every Python-side array allocated, then raised
# again after each call. The call runs on a thread started before the limit, which the
# library's Python layer runs the kernel on directly (it starts no helper thread there).
RLIMIT_HARNESS = """
    import queue, resource, sys, threading
    import numpy as np
    import gmmkernels as gk
    from gmmkernels._kernels import mixture_pass

    def mapped():
        with open("/proc/self/status") as f:
            return int(f.read().split("VmSize:")[1].split()[0]) * 1024

    jobs, results = queue.Queue(), queue.Queue()

    def worker():
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                job()
                results.put("ok")
            except MemoryError as e:
                results.put("MemoryError: %s" % e)
            except BaseException as e:
                results.put("%s: %s" % (type(e).__name__, e))

    threading.Thread(target=worker, daemon=True).start()

    def under_limit(fn, margins):
        jobs.put(fn)
        assert results.get() == "ok"   # a first call with no limit
        for m in margins:
            resource.setrlimit(resource.RLIMIT_AS, (mapped() + (m << 20), resource.RLIM_INFINITY))
            jobs.put(fn)
            r = results.get()
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            print("margin %d MiB: %s" % (m, r), flush=True)
"""

WORKSPACE_FAILS = RLIMIT_HARNESS + """
    rng = np.random.default_rng(0)
    # d x d float64 is 35 MB: above glibc's largest mmap threshold (32 MiB), so every such
    # allocation needs fresh address space and cannot reuse memory freed by an earlier call.
    n, d = 300, 2100
    X = rng.standard_normal((n, d))
    Qs = np.stack([np.eye(d)] * 2)
    w = rng.standard_normal(n)
    resp, score = np.empty((n, 2)), np.empty(n)
    outs = {"quadform": np.empty(n), "quadform_many": np.empty((n, 2)), "weighted_gram": np.empty((d, d))}
    limit = 1 << 32   # the kernel may take what it likes: the system refuses
    calls = {
        "quadform": lambda: gk.quadform(X, Qs[0], out=outs["quadform"], memory_limit=limit),
        "quadform_many": lambda: gk.quadform_many(X, Qs, out=outs["quadform_many"], memory_limit=limit),
        "weighted_gram": lambda: gk.weighted_gram(X, w, out=outs["weighted_gram"], memory_limit=limit),
        # (scatter="none": the full statistics would be numpy's allocation, made before the kernel)
        "mixture_pass": lambda: mixture_pass(X, np.zeros(2), np.zeros((2, d)), Qs, scatter="none",
                                             resp_out=resp, score_out=score, memory_limit=limit),
    }
    under_limit(calls[sys.argv[1]], [0, 1, 4, 8, 16])
"""


@pytest.mark.parametrize("name", ["quadform", "quadform_many", "weighted_gram", "mixture_pass"])
def test_workspace_allocation_failure_is_a_memory_error(name):
    # d = 2100: a copy or triangle of Q, or a d x d accumulator, is 35 MB of workspace, more
    # than the address space left. Every call either works or raises MemoryError naming
    # the workspace; the process survives them all.
    proc = run_python(WORKSPACE_FAILS, name)
    assert proc.returncode == 0, describe(proc)
    outcomes = [line.split(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("margin")]
    assert len(outcomes) == 5, describe(proc)
    assert all(o == "ok" or o.startswith("MemoryError: ") for o in outcomes), proc.stdout
    assert any("could not allocate" in o and "workspace" in o for o in outcomes), proc.stdout


SWIFT_ARRAYS_FAIL = RLIMIT_HARNESS + """
    K = 2**20   # components: the per-component views and sums are Swift arrays of ~10-40 MB
    X = np.ones((3, 2))
    out = np.empty((K, 2, 2))
    R = np.broadcast_to(1.0, (3, K))
    log_norm, means = np.broadcast_to(0.0, (K,)), np.broadcast_to(0.0, (K, 2))
    precisions = np.broadcast_to(np.eye(2), (K, 2, 2))
    calls = {
        "weighted_gram_many": lambda: gk.weighted_gram_many(X, R, out=out),
        "mixture_pass": lambda: mixture_pass(X, log_norm, means, precisions, scatter="none", memory_limit=1 << 30),
    }
    under_limit(calls[sys.argv[1]], [8])
"""


@pytest.mark.parametrize("name", ["weighted_gram_many", "mixture_pass"])
def test_allocation_failure_outside_the_workspace_is_not_a_crash(name):
    # K = 2**20 components of a zero-stride view: the library's own arrays of K entries
    # (views of the K matrices, per-component results) are Swift arrays, and the Swift
    # runtime aborts the process when their allocation fails ("Fatal error: failed to
    # allocate ... bytes of memory", SIGABRT). The library must find out before it builds
    # them and return GMK_ERR_MEMORY (MemoryError) instead.
    proc = run_python(SWIFT_ARRAYS_FAIL, name)
    assert proc.returncode == 0, describe(proc)
    outcome = proc.stdout.splitlines()[-1].split(": ", 1)[1]
    assert outcome == "ok" or outcome.startswith("MemoryError: "), proc.stdout


# --- (c) fork ---------------------------------------------------------------------------------

FORK_AFTER_USE = """
    import multiprocessing as mp
    import sys
    import numpy as np
    import gmmkernels as gk

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 60))
    Q = rng.standard_normal((60, 60))

    def work(threads):
        return gk.quadform(X, Q, threads=threads), gk.weighted_gram(X, threads=threads)

    if __name__ == "__main__":
        want = work(None)                 # the library has run: threads, BLAS, workspace
        ctx = mp.get_context("fork")
        with ctx.Pool(2) as pool:
            results = pool.map_async(work, [None, 1, 2, 2]).get(timeout=120)
        for q, g in results:
            assert np.allclose(q, want[0], rtol=1e-12, atol=1e-9)
            assert np.allclose(g, want[1], rtol=1e-12, atol=1e-9)
        print("ok", len(results))
"""


def test_fork_after_first_use(tmp_path):
    script = tmp_path / "fork_after_use.py"
    script.write_text(textwrap.dedent(FORK_AFTER_USE))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=ENV)
    assert proc.returncode == 0 and "ok 4" in proc.stdout, describe(proc)


FORK_DURING_USE = """
    import os, signal, threading, time
    import numpy as np
    import gmmkernels as gk

    X = np.random.default_rng(0).standard_normal((200000, 100))
    Q = np.eye(100)
    want = gk.quadform(X[:1000], Q)
    stop = threading.Event()

    def busy():                 # a thread that is inside a kernel most of the time
        while not stop.is_set():
            gk.weighted_gram(X)

    t = threading.Thread(target=busy)
    t.start()
    time.sleep(0.3)
    bad = []
    for i in range(10):
        time.sleep(0.05)
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)    # a deadlocked child dies of SIGALRM instead of hanging
            got = gk.quadform(X[:1000], Q, threads=2)
            gk.weighted_gram(X[:5000])
            os._exit(0 if np.allclose(got, want) else 3)
        _, status = os.waitpid(pid, 0)
        if status:
            bad.append((i, status))
    stop.set()
    t.join()
    print("bad", bad)
"""


def test_fork_while_another_thread_is_in_a_kernel():
    proc = run_python(FORK_DURING_USE, timeout=300)
    assert proc.returncode == 0 and "bad []" in proc.stdout, describe(proc)


FULL_DISK = textwrap.dedent("""
    import errno, os, sys
    import numpy as np
    import gmmkernels as gk
    folder = sys.argv[1]
    X = np.random.default_rng(0).standard_normal((20000, 6))
    model = gk.GaussianMixture(3, random_state=0, max_iter=5, tol=1e30).fit(X)
    # 4 MiB of tmpfs; the sparse out files are larger, nothing of them is on disk yet.
    resp = np.memmap(os.path.join(folder, "resp.dat"), np.float64, "w+", shape=(len(X) * 10, 3))
    out = np.memmap(os.path.join(folder, "q.dat"), np.float64, "w+", shape=(len(X) * 40,))
    for call in (lambda: model.predict_proba(np.vstack([X] * 10), out=resp),
                 lambda: gk.quadform(np.vstack([X] * 40), np.eye(6), out=out)):
        try:
            call()
        except OSError as e:
            assert e.errno == errno.ENOSPC and "SIGBUS" in str(e), e
        else:
            raise AssertionError("no error")
    # Nothing written: only the last byte numpy wrote to size each file is on disk.
    assert os.stat(resp.filename).st_blocks * 512 <= 4096 and os.stat(out.filename).st_blocks * 512 <= 4096
    # What fits is written.
    small = np.memmap(os.path.join(folder, "small.dat"), np.float64, "w+", shape=(len(X), 3))
    np.testing.assert_allclose(model.predict_proba(X, out=small), model.predict_proba(X))
    print("ok")
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs in a private mount namespace (needs root)")
def test_memmap_out_on_a_full_disk_is_an_error_not_sigbus(tmp_path):
    folder = tmp_path / "small-disk"
    folder.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    script = 'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$2" -c "$3" "$1"'
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), sys.executable, FULL_DISK],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.strip() == "ok"
