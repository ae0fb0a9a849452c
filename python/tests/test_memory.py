"""Memory: the kernels read X in place and allocate no more than memory_limit beside out.

Measured with PeakMemory: the peak growth of the process's resident anonymous memory
(RssAnon), which counts heap, numpy temporaries and the library's workspace but not the
pages of a memmap'd file (RssFile). A copy of X, or any X-sized temporary, would show.
"""

import gc

import numpy as np
import pytest

import gmmkernels as gk
from benchmarks.measure import rss_anon
from support.layouts import check_layout_properties, in_layout
from support.processes import measured, run_forked
from support.references import DTYPES, spd

MiB = 1 << 20
DEFAULT_LIMIT = 64 * MiB
# Beside the workspace and the output: the stacks of the call's helper thread and of the
# worker threads, OpenBLAS's per-thread packing buffers and malloc's per-thread arenas.
# Each touches at most a few MiB; 16 MiB covers them with room, and is still far below any
# X-sized allocation in these tests (>= 70 MiB).
ALLOWANCE = 16 * MiB


def chunked_memmap(path, n, d, seed, chunk=5000):
    """Writes an (n, d) float64 file of random values a chunk at a time; returns a read-only memmap."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        for start in range(0, n, chunk):
            (rng.random((min(chunk, n - start), d)) * 2 - 1).tofile(f)
    return np.memmap(path, dtype=np.float64, mode="r", shape=(n, d))


# --- the meter sees what it must see -------------------------------------------------------

def test_meter_sees_numpy_temporaries(tmp_path):
    # The seed's E-step, np.sum(X.dot(Q) * X, axis=1), makes two X-sized temporaries that are
    # alive together. On a [20000, 900] float64 memmap (137 MiB) the meter must see both;
    # otherwise the bounds below could not fail. (On the [200000, 900] file below the same
    # line would need about 2 × 1.34 GiB; it is not run there.)
    X = chunked_memmap(tmp_path / "small.bin", 20_000, 900, seed=1)
    Q = spd(np.random.default_rng(2), 900)
    q, peak = measured(lambda: np.sum(X.dot(Q) * X, axis=1))
    assert peak >= 1.9 * X.nbytes, "peak %.1f MiB for X of %.1f MiB" % (peak / MiB, X.nbytes / MiB)
    assert peak > DEFAULT_LIMIT + ALLOWANCE + q.nbytes
    # The kernel on the same file stays within its bound.
    q2, peak2 = measured(lambda: gk.quadform(X, Q))
    assert peak2 <= DEFAULT_LIMIT + ALLOWANCE + q2.nbytes
    np.testing.assert_allclose(q2, q, rtol=1e-12)


def test_meter_sees_a_copy():
    before = rss_anon()
    assert before > 0, "RssAnon is not available: /proc/self/statm is needed"
    X = np.ones((10_000, 900))
    _, peak = measured(lambda: np.array(X, order="F"))
    assert peak >= 0.9 * X.nbytes


def status_rss_anon():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))


def test_meter_reads_rss_anon_also_after_fork(tmp_path):
    X = np.memmap(tmp_path / "x.bin", dtype=np.float64, mode="w+", shape=(10_000, 900))
    X[:] = 1.0  # resident file pages: RssFile, not RssAnon
    assert abs(rss_anon() - status_rss_anon()) <= 4 * MiB

    # A forked child must read its own counters, not those of the parent that opened the file.
    def child():
        Y = np.ones((8_000, 1000))  # 64 MB in the child only
        assert abs(rss_anon() - status_rss_anon()) <= 4 * MiB, "the child read another process's RssAnon"
        return float(Y[-1, -1])

    assert run_forked(child, timeout=60)[0] == 1.0


# --- the big file --------------------------------------------------------------------------

N_BIG, D_BIG = 200_000, 900


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """A [200000, 900] float64 memmap (1.44 GB), written in 36 MB chunks; deleted afterwards."""
    path = tmp_path_factory.mktemp("big") / "x.bin"
    X = chunked_memmap(path, N_BIG, D_BIG, seed=3)
    yield X
    del X
    gc.collect()
    path.unlink()


def test_big_quadform_memory(big_file):
    X = big_file
    rng = np.random.default_rng(4)
    Q = spd(rng, D_BIG)
    gk.quadform(X[:1000], Q)  # first use of the thread pools and BLAS buffers
    q, peak = measured(lambda: gk.quadform(X, Q))
    print("quadform on [%d, %d] memmap: peak extra anonymous memory %.1f MiB" % (N_BIG, D_BIG, peak / MiB))
    assert q.shape == (N_BIG,)
    assert peak <= DEFAULT_LIMIT + q.nbytes + ALLOWANCE, "peak %.1f MiB" % (peak / MiB)
    rows = np.sort(rng.choice(N_BIG, 2000, replace=False))
    Xr = np.asarray(X[rows])
    ref = np.sum(Xr @ Q * Xr, axis=1)
    assert np.max(np.abs(q[rows] - ref) / ref) <= 1e-12


def test_big_weighted_gram_memory(big_file):
    X = big_file
    rng = np.random.default_rng(5)
    w = rng.uniform(0.1, 2.0, N_BIG)
    w[rng.random(N_BIG) < 0.3] = 0.0
    gk.weighted_gram(X[:1000], w[:1000])
    G, peak = measured(lambda: gk.weighted_gram(X, w))
    print("weighted_gram on [%d, %d] memmap, 30%% zero weights: peak extra anonymous memory %.1f MiB"
          % (N_BIG, D_BIG, peak / MiB))
    assert G.shape == (D_BIG, D_BIG)
    assert peak <= DEFAULT_LIMIT + G.nbytes + ALLOWANCE, "peak %.1f MiB" % (peak / MiB)
    # Check all of G cheaply: G t against Xᵀ (w ∘ (X t)) for a random t, a chunk of rows at a
    # time; the error is measured against the same sums taken in absolute values.
    t = rng.standard_normal(D_BIG)
    ref = np.zeros(D_BIG)
    scale = np.zeros(D_BIG)
    for start in range(0, N_BIG, 10_000):
        Xc = np.asarray(X[start : start + 10_000])
        wc = w[start : start + 10_000]
        ref += Xc.T @ (wc * (Xc @ t))
        absX = np.abs(Xc)
        scale += absX.T @ (wc * (absX @ np.abs(t)))
    assert np.max(np.abs(G @ t - ref) / scale) <= 1e-12
    assert np.array_equal(G, G.T)


# --- X is read in place, whatever its layout --------------------------------------------

@pytest.mark.parametrize("layout", [
    "F", "both_reversed", "every_other_row", "every_third_column", "memmap", "memmap_offset3", "memmap_F",
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_copy_of_x(tmp_path, layout, dtype):
    # X of 80 MB and memory_limit = 4 MiB: any copy of X shows.
    d = 250
    n = 80_000_000 // (d * np.dtype(dtype).itemsize)
    rng = np.random.default_rng(6)
    X = in_layout(rng.standard_normal((n, d)).astype(dtype), layout, tmp_path)
    check_layout_properties(X, layout)
    x_bytes = n * d * X.dtype.itemsize
    limit = 4 * MiB
    Q = spd(rng, d, dtype)
    w = rng.uniform(-1, 1, n)
    c = rng.standard_normal(d)
    calls = {
        "quadform": lambda: gk.quadform(X, Q, memory_limit=limit),
        "quadform center": lambda: gk.quadform(X, Q, center=c, memory_limit=limit),
        "weighted_gram": lambda: gk.weighted_gram(X, memory_limit=limit),
        "weighted_gram w center": lambda: gk.weighted_gram(X, w, center=c, memory_limit=limit),
    }
    for name, call in calls.items():
        out, peak = measured(call)
        bound = limit + out.nbytes + ALLOWANCE
        assert peak <= bound, "%s: peak %.1f MiB > %.1f MiB" % (name, peak / MiB, bound / MiB)
        assert bound < x_bytes / 2
