"""Run by scripts/wheel-test.sh inside the virtual environment where the wheel is installed,
with the system's OpenBLAS and the Swift toolchain hidden: the installed package must load
its bundled OpenBLAS and compute what numpy computes."""
import os
import shutil
import sys

import numpy as np

import gmmkernels
from gmmkernels import GaussianMixture

here = os.path.realpath(gmmkernels.library_path)
assert here.startswith(os.path.realpath(sys.prefix)), "library not from the venv: %s" % here
assert shutil.which("swift") is None, "the Swift toolchain is visible"

loaded = {line.split()[-1] for line in open("/proc/self/maps") if line.rstrip().endswith(".so") or ".so." in line}
blas = sorted(p for p in loaded if "openblas" in os.path.basename(p).lower())
ours = [p for p in blas if os.sep + "gmmkernels.libs" + os.sep in p]
assert ours, "the bundled OpenBLAS is not loaded: %s" % blas
system = [p for p in loaded if p.startswith(("/usr/lib", "/lib")) and ("openblas" in p or "gfortran" in p)]
assert not system, "system libraries loaded: %s" % system

rng = np.random.default_rng(0)
X = rng.standard_normal((5003, 37)) + 50.0
A = rng.standard_normal((37, 37))
Q = A @ A.T
w = rng.random(5003)
np.testing.assert_allclose(gmmkernels.quadform(X, Q), np.einsum("ij,jk,ik->i", X, Q, X), rtol=1e-10)
np.testing.assert_allclose(gmmkernels.weighted_gram(X, w), (X.T * w) @ X, rtol=1e-10)
np.testing.assert_allclose(gmmkernels.weighted_gram(X.astype(np.float32)), X.T @ X, rtol=1e-4)
gm = GaussianMixture(3, random_state=0).fit(X)
assert np.isfinite(gm.lower_bound_) and gm.converged_, (gm.lower_bound_, gm.converged_)
print("wheel: gmmkernels %s from %s with %s: results match numpy"
      % (gmmkernels.__version__, os.path.dirname(here), os.path.basename(ours[0])))
