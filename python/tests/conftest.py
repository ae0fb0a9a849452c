import os
import sys
import zlib

import numpy as np
import pytest

# The test-support package (support/: references, layouts, processes) lives beside the tests.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: each test's data is fixed and independent of the others."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="module")
def client():
    """One LocalCluster per test module: 2 worker processes × 1 thread, on loopback.

    The workers are spawned with this process's sys.path and environment; GMMKERNELS_LIBRARY
    makes them load the very library file this process loaded.
    """
    distributed = pytest.importorskip("distributed", reason="these tests run on dask.distributed")
    import gmmkernels

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, env={"GMMKERNELS_LIBRARY": str(gmmkernels.library_path)},
        # The scheduler's HTTP server (health routes) starts even without a dashboard, by
        # default on port 8787: take any free loopback port instead.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
