"""gmmkernels.dask on a real dask.distributed cluster: two worker processes of one thread each.

Each result is compared with the in-memory kernel on the same data (the in-memory kernels
are tested against references elsewhere); the graphs of file-backed arrays are checked to
carry no data; each worker's peak memory is measured while it reads a file much larger
than one chunk.
"""
import os
import sys
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="gmmkernels.dask needs dask (pip install 'dask[array]')")
distributed = pytest.importorskip("distributed", reason="these tests run on dask.distributed (pip install distributed)")
import cloudpickle  # noqa: E402  (a dependency of distributed)
import dask  # noqa: E402

import gmmkernels as gk  # noqa: E402
from gmmkernels import _dask_graph  # noqa: E402
import gmmkernels.dask as gd  # noqa: E402
from gmmkernels._kernels import mixture_pass  # noqa: E402

MiB = 1 << 20
# Functions of this module run on the workers; send them by value (the workers need not
# be able to import this file).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def rows_dask(X, chunks):
    return da.from_array(X, chunks=(chunks, -1))


def assert_close(got, want, dtype):
    """got == want to rounding: float32 results to 1e-5 of the result's scale, float64 to 1e-12."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    tol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


def spd(rng, d, k=None):
    shape = (d, d) if k is None else (k, d, d)
    A = rng.standard_normal(shape)
    return A @ np.swapaxes(A, -1, -2) / d + np.eye(d)


# --- the workers -------------------------------------------------------------------------

def _worker_facts():
    import gmmkernels
    from gmmkernels import _dask_graph as graph_worker
    with graph_worker.kernel_threads(None) as t:
        return str(gmmkernels.library_path), t, os.getpid()


def test_workers_load_the_library_and_use_their_one_thread(client):
    workers = list(client.scheduler_info()["workers"])
    assert len(workers) == 2
    facts = [client.submit(_worker_facts, pure=False, workers=[w]).result() for w in workers]
    assert {f[0] for f in facts} == {str(gk.library_path)}
    assert [f[1] for f in facts] == [1, 1]  # nthreads=1: a kernel call runs on one thread
    assert len({f[2] for f in facts} | {os.getpid()}) == 3  # separate processes


def test_thread_budget_is_shared_by_calls_running_at_once():
    # Outside a worker the budget is every CPU of the process; calls running together share it.
    budget = gk.default_threads()
    with _dask_graph.kernel_threads(None) as first:
        with _dask_graph.kernel_threads(None) as second:
            assert (first, second) == (budget, max(1, budget // 2))
    with _dask_graph.kernel_threads(3) as explicit:
        assert explicit == 3
    assert _dask_graph._running == 0


# --- results equal the in-memory kernels ----------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_wise_kernels(client, rng, dtype):
    n, d, k = 1003, 9, 4
    X = rng.standard_normal((n, d)).astype(dtype)
    Xd = rows_dask(X, 150)  # 7 blocks, the last one short
    Q, Qs = rng.standard_normal((d, d)), rng.standard_normal((k, d, d))
    c, cs = rng.standard_normal(d), rng.standard_normal((k, d))
    B, y, x = rng.standard_normal((d, 5)), X[:, 0].copy(), rng.standard_normal(6)

    got = dask.compute(
        gd.quadform(Xd, Q, center=c),
        gd.quadform_many(Xd, Qs, centers=cs),
        gd.matmul(Xd, B),
        gd.outer(da.from_array(y, chunks=150), x),
    )
    want = (
        gk.quadform(X, Q, center=c),
        gk.quadform_many(X, Qs, centers=cs),
        gk.matmul(X, B),
        gk.outer(y, x),
    )
    for g, w in zip(got, want):
        assert g.dtype == X.dtype
        assert_close(g, w, dtype)
    q = gd.quadform(Xd, Q)
    assert q.chunks == (Xd.chunks[0],) and q.dtype == X.dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_over_rows_tree_reduced(client, rng, dtype):
    n, d, k = 1011, 8, 3
    X = rng.standard_normal((n, d)).astype(dtype)
    Xd = rows_dask(X, 100)  # 11 blocks: a reduction tree of depth 4 with split_every=2
    w = rng.standard_normal(n)
    R = rng.random((n, k))
    c, cs = rng.standard_normal(d), rng.standard_normal((k, d))
    wd = da.from_array(w, chunks=Xd.chunks[0])
    Rd = da.from_array(R, chunks=(Xd.chunks[0], (1, 2)))  # columns of R get merged

    got = dask.compute(
        gd.weighted_gram(Xd),
        gd.weighted_gram(Xd, w, center=c, split_every=2),
        gd.weighted_gram(Xd, wd, split_every=7),
        gd.weighted_gram_many(Xd, R, centers=cs),
        gd.weighted_gram_many(Xd, Rd, split_every=3),
        gd.weighted_sum(Xd, Rd),
        gd.weighted_sum(Xd, R, split_every=2),
    )
    want = (
        gk.weighted_gram(X),
        gk.weighted_gram(X, w, center=c),
        gk.weighted_gram(X, w),
        gk.weighted_gram_many(X, R, centers=cs),
        gk.weighted_gram_many(X, R),
        gk.weighted_sum(X, R),
        gk.weighted_sum(X, R),
    )
    for g, want_ in zip(got, want):
        assert g.dtype == X.dtype
        assert_close(g, want_, dtype)


def test_reduction_is_a_tree(rng):
    # 21 partial results, 2 per addition (a lone last one moves up as it is):
    # 10 + 5 + 3 + 1 + 1 additions, none adding more than 2.
    Xd = rows_dask(rng.standard_normal((2100, 3)), 100)
    G = gd.weighted_gram(Xd, split_every=2)
    tree = [layer for name, layer in G.dask.layers.items() if name.startswith("weighted_gram-sum-")]
    assert len(tree) == 1
    levels = sorted(key[1] for key in tree[0] if len(key) == 3)
    assert levels == [0] * 10 + [1] * 5 + [2] * 3 + [3] + [4]
    assert all(len(task) == 3 for key, task in tree[0].items() if len(key) == 3)


@pytest.mark.parametrize("scatter, dtype", [("full", np.float64), ("tied", np.float64),
                                            ("diagonal", np.float64), ("none", np.float64),
                                            ("full", np.float32)])
def test_mixture_pass(client, rng, scatter, dtype):
    n, d, k = 1500, 6, 3
    X = (rng.standard_normal((n, d)) + rng.integers(0, 3, size=(n, 1))).astype(dtype)
    Xd = rows_dask(X, 400)
    w = rng.random(n)
    means = rng.standard_normal((k, d))
    if scatter == "diagonal":
        precisions = rng.random((k, d)) + 0.5
    elif scatter == "tied":
        precisions = np.broadcast_to(spd(rng, d), (k, d, d))  # enters the graph as one matrix
    else:
        precisions = spd(rng, d, k)
    log_norm = np.log(np.full(k, 1.0 / k)) - 0.5 * d * np.log(2 * np.pi)

    # The per-row values of float32 data are float32, their sums float64: compare both to
    # float32's rounding then.
    rel = 1e-12 if dtype == np.float64 else 1e-5
    resp, score = np.empty((n, k), dtype=dtype), np.empty(n, dtype=dtype)
    want = mixture_pass(X, log_norm, means, precisions, scatter=scatter, sample_weight=w,
                        resp_out=resp, score_out=score)
    got = gd.mixture_pass(Xd, log_norm, means, precisions, scatter=scatter,
                          sample_weight=da.from_array(w, chunks=400), return_resp=True, return_score=True)
    assert len(got) == 6
    assert isinstance(got[0], float)
    assert got[0] == pytest.approx(want[0], rel=rel)
    for g, w_ in zip(got[1:4], want[1:4]):
        if w_ is None:
            assert g is None
        else:
            assert g.dtype == np.float64
            assert_close(g, w_, dtype)
    assert got[4].chunks == (Xd.chunks[0], (k,)) and got[5].chunks == (Xd.chunks[0],)
    assert got[4].dtype == got[5].dtype == X.dtype
    assert_close(got[4].compute(), resp, dtype)
    assert_close(got[5].compute(), score, dtype)

    # Lazy: the statistics as dask arrays, computed together in one pass.
    lazy = gd.mixture_pass(Xd, log_norm, means, precisions, scatter=scatter, compute=False)
    assert len(lazy) == 4 and lazy[0].shape == ()
    computed = dask.compute(*lazy)
    plain = mixture_pass(X, log_norm, means, precisions, scatter=scatter)
    assert float(computed[0]) == pytest.approx(plain[0], rel=rel)
    for g, w_ in zip(computed[1:], plain[1:]):
        if w_ is not None:
            assert_close(g, w_, dtype)


def test_mixture_pass_reads_the_file_once(client, rng, tmp_path):
    # With compute=True the per-row outputs are persisted in the same pass as the statistics:
    # after it, they are computed without the file.
    n, d, k = 600, 4, 2
    X = rng.standard_normal((n, d))
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xd = gd.from_memmap(path, chunks=128)
    means, precisions = rng.standard_normal((k, d)), spd(rng, d, k)
    log_norm = np.zeros(k)
    ll, counts, first, second, resp = gd.mixture_pass(Xd, log_norm, means, precisions, return_resp=True)
    os.remove(path)
    want_resp = np.empty((n, k))
    want = mixture_pass(X, log_norm, means, precisions, resp_out=want_resp)
    assert_close(resp.compute(), want_resp, np.float64)
    assert ll == pytest.approx(want[0], rel=1e-12)


def test_empty_rows(client):
    Xd = da.zeros((0, 3), chunks=(10, 3))
    assert gd.quadform(Xd, np.eye(3)).compute().shape == (0,)
    np.testing.assert_array_equal(gd.weighted_gram(Xd).compute(), np.zeros((3, 3)))
    np.testing.assert_array_equal(gd.weighted_sum(Xd, np.zeros((0, 2))).compute(), np.zeros((2, 3)))


# --- from_memmap ------------------------------------------------------------------------

def test_from_memmap_layouts(client, rng, tmp_path):
    n, d = 333, 7
    X = rng.standard_normal((n, d))
    Q = spd(rng, d)
    want = gk.quadform(X, Q)

    raw = tmp_path / "X.bin"
    with open(raw, "wb") as f:
        f.write(b"abc")  # an offset that leaves every float unaligned
        f.write(X.tobytes())
    fortran = tmp_path / "XF.bin"
    fortran.write_bytes(np.asfortranarray(X).tobytes(order="F"))
    npy_c, npy_f = tmp_path / "X.npy", tmp_path / "XF.npy"
    np.save(npy_c, X)
    np.save(npy_f, np.asfortranarray(X))

    arrays = [
        gd.from_memmap(raw, shape=(n, d), dtype=np.float64, offset=3, chunks=50),
        gd.from_memmap(fortran, shape=(n, d), dtype="float64", order="F", chunks=(100, 100, 133)),
        gd.from_memmap(npy_c, chunks=64),
        gd.from_memmap(str(npy_f)),
    ]
    assert arrays[0].chunks == ((50,) * 6 + (33,), (d,))
    assert arrays[1].chunks == ((100, 100, 133), (d,))
    for Xd in arrays:
        assert Xd.shape == (n, d) and Xd.dtype == np.float64
        np.testing.assert_array_equal(Xd.compute(), X)
        assert_close(gd.quadform(Xd, Q).compute(), want, np.float64)

    ragged = gd.from_memmap(npy_c, chunks=64)[::2] * 2  # an ordinary dask array too
    np.testing.assert_array_equal(ragged.compute(), X[::2] * 2)

    # Weights from a file, split like X.
    w = rng.random(n)
    np.save(tmp_path / "w.npy", w)
    wd = gd.from_memmap(tmp_path / "w.npy", chunks=arrays[0].chunks[0])
    assert_close(gd.weighted_gram(arrays[0], wd).compute(), gk.weighted_gram(X, w), np.float64)


def test_from_memmap_bad_input(tmp_path):
    raw = tmp_path / "X.bin"
    raw.write_bytes(np.zeros((10, 3)).tobytes())
    with pytest.raises(ValueError, match="not a .npy file"):
        gd.from_memmap(raw)
    with pytest.raises(ValueError, match="dtype is required"):
        gd.from_memmap(raw, shape=(10, 3))
    with pytest.raises(ValueError, match="holds 240 bytes"):
        gd.from_memmap(raw, shape=(10, 3), dtype=np.float64, offset=8)
    with pytest.raises(ValueError, match="order"):
        gd.from_memmap(raw, shape=(10, 3), dtype=np.float64, order="K")
    with pytest.raises(TypeError, match=r"from_memmap\(m.filename"):
        gd.from_memmap(np.memmap(raw, dtype=np.float64, mode="r", shape=(10, 3)))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """A .npy file of 256 MiB: [524288, 64] float64, written 16 MiB at a time."""
    n, d, step = 524_288, 64, 32_768
    path = tmp_path_factory.mktemp("big") / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
    rng = np.random.default_rng(7)
    for start in range(0, n, step):
        X[start:start + step] = rng.random((step, d)) * 2 - 1
    X.flush()
    del X
    yield path
    os.remove(path)


def test_graph_carries_no_data(big_file):
    X = gd.from_memmap(big_file, chunks=16_384)  # 32 blocks of 8 MiB
    k, d = 8, X.shape[1]
    rng = np.random.default_rng(0)
    lazy = gd.mixture_pass(X, np.zeros(k), rng.standard_normal((k, d)), spd(rng, d, k),
                           compute=False, return_resp=True)
    for collections in ([X], [gd.weighted_gram(X)], [c for c in lazy if c is not None]):
        graph = {}
        for c in collections:
            graph.update(c.__dask_graph__())
        size = len(cloudpickle.dumps(graph))
        # The small operands (here 8 precision matrices of 32 KiB) and per-block task
        # descriptions; X's 256 MiB must not be there.
        assert size < 2 * MiB, size
        assert size < X.nbytes / 100

    # A tied mixture's broadcast precisions travel as their one matrix, not K copies.
    def pickled_pass(precisions):
        stats = gd.mixture_pass(X, np.zeros(k), np.zeros((k, d)), precisions, scatter="tied",
                                compute=False)
        graph = {}
        for c in stats:
            graph.update(c.__dask_graph__())
        return len(cloudpickle.dumps(graph))

    P = spd(rng, d)
    tied, copies = pickled_pass(np.broadcast_to(P, (k, d, d))), pickled_pass(np.stack([P] * k))
    assert copies - tied > (k - 1.5) * P.nbytes, (tied, copies)


def test_tasks_over_a_file_map_their_own_rows(client, rng, tmp_path):
    # Over a from_memmap array, each kernel task reads its rows itself: no loading tasks in
    # the optimized graph (a loaded block would pin its kernel to the worker that loaded it),
    # and the results equal the in-memory kernels'. A sliced array keeps its loading tasks.
    n, d, k = 700, 5, 3
    X = rng.standard_normal((n, d)) + 50
    w, R = rng.random(n), rng.random((n, k))
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xd = gd.from_memmap(path, chunks=128)
    means, precisions = rng.standard_normal((k, d)) + 50, spd(rng, d, k)

    def loading_tasks(*collections):
        optimized = dask.optimize(*collections)
        graph = {}
        for c in optimized:
            graph.update(dict(c.__dask_graph__()))
        return [key for key in graph if str(key).count("from_memmap")]

    Q, B = spd(rng, d), rng.standard_normal((d, 4))
    lazy = [gd.weighted_gram(Xd, w, center=X.mean(axis=0)), gd.weighted_gram_many(Xd, R),
            gd.weighted_sum(Xd, R), gd.quadform(Xd, Q, center=X.mean(axis=0)),
            gd.quadform_many(Xd, precisions), gd.matmul(Xd, B)]
    want = [gk.weighted_gram(X, w, center=X.mean(axis=0)), gk.weighted_gram_many(X, R),
            gk.weighted_sum(X, R), gk.quadform(X, Q, center=X.mean(axis=0)),
            gk.quadform_many(X, precisions), gk.matmul(X, B)]
    stats = gd.mixture_pass(Xd, np.zeros(k), means, precisions, sample_weight=w, compute=False)
    assert loading_tasks(*lazy) == [] and loading_tasks(*[s for s in stats if s is not None]) == []
    assert loading_tasks(gd.weighted_gram(Xd[:300])) != []

    for got, expected in zip(dask.compute(*lazy), want):
        assert_close(got, expected, np.float64)
    assert_close(gd.weighted_gram(Xd[:300]).compute(), gk.weighted_gram(X[:300]), np.float64)
    got = gd.mixture_pass(Xd, np.zeros(k), means, precisions, sample_weight=w)
    want = mixture_pass(X, np.zeros(k), means, precisions, sample_weight=w)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    for g, e in zip(got[1:], want[1:]):
        assert_close(g, e, np.float64)

    # A persisted array is read from the workers' memory, not from the file again.
    Xp = Xd.persist()
    distributed.wait(Xp)
    os.remove(path)
    assert_close(gd.weighted_gram(Xp, w).compute(), gk.weighted_gram(X, w), np.float64)
    assert_close(gd.quadform(Xp, Q).compute(), gk.quadform(X, Q), np.float64)


class _PeakRss:
    """Samples this process's RssAnon and RssFile (kB in /proc/self/status) every 1 ms."""

    def __init__(self):
        self.baseline = self._read()
        self.peak = {key: 0 for key in self.baseline}
        self.peak["total"] = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _read():
        values = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    key, kb = line.split()[:2]
                    values[key[:-1]] = int(kb) * 1024
        return values

    def _run(self):
        while not self._stop.is_set():
            now = self._read()
            growth = {key: now[key] - self.baseline[key] for key in now}
            for key, value in growth.items():
                self.peak[key] = max(self.peak[key], value)
            self.peak["total"] = max(self.peak["total"], sum(growth.values()))
            time.sleep(0.001)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def _start_meter(dask_worker):
    import ctypes
    import gc
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap pages must not hide new growth
    dask_worker._gmk_meter = _PeakRss()


def _stop_meter(dask_worker):
    return dask_worker._gmk_meter.stop()


def test_worker_memory_stays_about_one_block(client, big_file):
    chunk_rows = 16_384
    X = gd.from_memmap(big_file, chunks=chunk_rows)
    n, d = X.shape
    block = chunk_rows * d * 8  # 8 MiB
    k = 2
    rng = np.random.default_rng(1)
    means, precisions = rng.standard_normal((k, d)), spd(rng, d, k)
    log_norm = np.zeros(k)
    limit = 8 * MiB

    client.run(_start_meter)
    ll, counts, first, second = gd.mixture_pass(X, log_norm, means, precisions, memory_limit=limit)
    G, squares = dask.compute(gd.weighted_gram(X, memory_limit=limit), (X ** 2).sum())
    peaks = client.run(_stop_meter)

    # The results are right: the counts sum to n, G's trace is Σ|x|².
    assert counts.sum() == pytest.approx(n, rel=1e-12)
    assert np.trace(G) == pytest.approx(float(squares), rel=1e-12)
    # Each worker read about half of the 256 MiB file; at any time it held about one block
    # mapped (RssFile), the kernel's workspace and the partial statistics (RssAnon).
    for worker, peak in peaks.items():
        print("%s: peak growth RssAnon %.1f MiB, RssFile %.1f MiB, together %.1f MiB (block %d MiB, X %d MiB)"
              % (worker, peak["RssAnon"] / MiB, peak["RssFile"] / MiB, peak["total"] / MiB,
                 block // MiB, X.nbytes // MiB))
        assert peak["total"] < 3 * block + limit + 16 * MiB, peak
        assert peak["total"] < X.nbytes / 4, peak


# --- bad input --------------------------------------------------------------------------

def test_bad_input_names_the_fix(rng):
    X = rng.standard_normal((100, 6))
    Xd = rows_dask(X, 30)
    with pytest.raises(ValueError, match=r"X is chunked along columns.*X\.rechunk\(\{1: -1\}\)"):
        gd.weighted_gram(da.from_array(X, chunks=(30, 3)))
    with pytest.raises(ValueError, match=r"A is chunked along columns.*A\.rechunk\(\{1: -1\}\)"):
        gd.matmul(da.from_array(X, chunks=(30, 3)), np.eye(6))
    with pytest.raises(ValueError, match=r"w's row chunks .* use w\.rechunk\(\{0: X\.chunks\[0\]\}\)"):
        gd.weighted_gram(Xd, da.ones(100, chunks=25))
    with pytest.raises(ValueError, match=r"R\.rechunk\(\{0: X\.chunks\[0\], 1: -1\}\)"):
        gd.weighted_gram_many(Xd, da.ones((100, 2), chunks=(50, 2)))
    with pytest.raises(ValueError, match=r"sample_weight\.rechunk"):
        gd.mixture_pass(Xd, np.zeros(2), np.zeros((2, 6)), np.ones((2, 6)), scatter="diagonal",
                        sample_weight=da.ones(100, chunks=50))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        gd.quadform(Xd[Xd[:, 0] > 0], np.eye(6))
    with pytest.raises(TypeError, match="must be a dask array"):
        gd.quadform(X, np.eye(6))
    with pytest.raises(TypeError, match="float32 or float64"):
        gd.quadform(Xd.astype(np.int64), np.eye(6))
    with pytest.raises(ValueError, match=r"Q must have shape \(6, 6\)"):
        gd.quadform(Xd, np.eye(5))
    with pytest.raises(ValueError, match=r"w must have shape \(100,\)"):
        gd.weighted_gram(Xd, np.ones(99))
    with pytest.raises(ValueError, match="split_every"):
        gd.weighted_gram(Xd, split_every=1)
    with pytest.raises(ValueError, match="threads"):
        gd.weighted_sum(Xd, np.ones((100, 2)), threads=0)
    with pytest.raises(ValueError, match="scatter"):
        gd.mixture_pass(Xd, np.zeros(2), np.zeros((2, 6)), np.ones((2, 6)), scatter="spherical")
    with pytest.raises(ValueError, match="means"):
        gd.mixture_pass(Xd, np.zeros(2), np.zeros((3, 6)), np.ones((2, 6)), scatter="diagonal")


def test_import_gmmkernels_does_not_import_dask():
    import subprocess
    code = "import sys, gmmkernels; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), check=True)
    assert out.stdout.strip() == "False"
