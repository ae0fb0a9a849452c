import os
import sys
import zlib

import numpy as np
import pytest

# The reference helpers live beside the tests (references.py).
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: each test's data is fixed and independent of the others."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
