"""Resumable fits: a fit killed (SIGKILL) or interrupted (SIGINT) part way and started again
with the same checkpoint ends with exactly the uninterrupted result; a checkpoint of other
data or parameters is an error that names what differs."""
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from gmmkernels import BayesianGaussianMixture, GaussianMixture
from gmmkernels.mixture import _base, _checkpoint

ESTIMATORS = {"GaussianMixture": GaussianMixture, "BayesianGaussianMixture": BayesianGaussianMixture}
# random_state=1: the second initialisation wins, for both estimators.
PARAMS = dict(n_components=3, n_init=2, max_iter=12, tol=1e-9, random_state=1, init_params="random_from_data")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Run in a child process: the fit, with the process killed by `signal` right after the
# checkpoint's `after`-th save, `group` initialisations sharing each pass.
CHILD = textwrap.dedent("""
    import os, signal, sys, warnings
    import numpy as np
    from gmmkernels import GaussianMixture, BayesianGaussianMixture
    from gmmkernels.mixture import _base, _checkpoint
    estimator, data, path, after, sig = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    group = int(sys.argv[6])
    _base.BaseMixture._runs_per_pass = lambda self, n_features: group
    save = _checkpoint.Checkpoint.save
    saves = [0]
    def save_then_die(self, state):
        save(self, state)
        saves[0] += 1
        if saves[0] == after:
            os.kill(os.getpid(), getattr(signal, sig))
    _checkpoint.Checkpoint.save = save_then_die
    X = np.load(data, mmap_mode="r")
    warnings.simplefilter("ignore")
    {estimator}(checkpoint=path, **{params}).fit(X)
""")


def data_file(tmp_path, n=3000, seed=0):
    """Six clusters for three components: each initialisation ends in its own local optimum."""
    rng = np.random.RandomState(seed)
    centers = rng.normal(scale=5.0, size=(6, 4)) + 100.0
    X = centers[rng.randint(6, size=n)] + rng.normal(size=(n, 4))
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path


def run_child(estimator, data, checkpoint, after, sig, group):
    script = CHILD.replace("{estimator}", estimator).replace("{params}", repr(PARAMS))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT]))
    return subprocess.run([sys.executable, "-c", script, estimator, str(data), str(checkpoint), str(after), sig,
                           str(group)], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(params=[1, 2], ids=["one-after-another", "side-by-side"])
def group(request, monkeypatch):
    """Initialisations per pass (both share passes unless told otherwise at this size)."""
    monkeypatch.setattr(_base.BaseMixture, "_runs_per_pass", lambda self, n_features: request.param)
    return request.param


def fit(estimator, X, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ESTIMATORS[estimator](**dict(PARAMS, **extra)).fit(X)


def assert_identical(a, b):
    assert a.n_iter_ == b.n_iter_
    assert a.converged_ == b.converged_
    assert a.lower_bound_ == b.lower_bound_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def _read(path):
    """The state a checkpoint holds."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("__checkpoint__")[()]))
    return _checkpoint._decode(meta["state"], arrays)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize("after", [3, 16])  # in the first round of runs; in the second (one after another)
def test_sigkill_then_the_same_call_resumes_to_the_uninterrupted_result(tmp_path, estimator, after, group):
    data = data_file(tmp_path)
    X = np.load(data, mmap_mode="r")
    checkpoint = tmp_path / "fit.ckpt"
    expected = fit(estimator, X)
    first_iterations = fit(estimator, X, n_init=1).n_iter_
    if group == 2 and after > first_iterations:
        after = first_iterations - 2  # side by side, both runs end in the first round
    child = run_child(estimator, data, checkpoint, after, "SIGKILL", group)
    assert child.returncode == -signal.SIGKILL, child.stderr
    runs = _read(checkpoint)["runs"]
    if group == 2:
        assert [(r["init"], r["n_iter"]) for r in runs] == [(0, after), (1, after)]
    elif after <= first_iterations:
        assert [(r["init"], r["n_iter"]) for r in runs] == [(0, after)]
    else:
        assert [(r["init"], r["n_iter"]) for r in runs] == [(1, after - first_iterations)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        resumed = fit(estimator, X, checkpoint=checkpoint, verbose=1)
    assert "Resumed from iteration %s of initialization %s" % (
        "/".join(str(r["n_iter"]) for r in runs), "/".join(str(r["init"]) for r in runs)) in out.getvalue()
    assert_identical(resumed, expected)
    assert not checkpoint.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_ctrl_c_leaves_the_last_complete_iteration(tmp_path, group):
    data = data_file(tmp_path)
    X = np.load(data, mmap_mode="r")
    checkpoint = tmp_path / "fit.ckpt"
    child = run_child("GaussianMixture", data, checkpoint, 4, "SIGINT", group)
    assert child.returncode != 0 and "KeyboardInterrupt" in child.stderr, child.stderr
    runs = _read(checkpoint)["runs"]
    assert [(r["init"], r["n_iter"], len(r["lower_bounds"])) for r in runs] == [(i, 4, 4) for i in range(group)]
    assert_identical(fit("GaussianMixture", X, checkpoint=checkpoint), fit("GaussianMixture", X))


class Interrupt(Exception):
    pass


def interrupted_fit(monkeypatch, X, checkpoint, after, estimator="GaussianMixture", **extra):
    """A fit stopped by an exception right after the checkpoint's `after`-th save."""
    save = _checkpoint.Checkpoint.save
    saves = []

    def save_then_stop(self, state):
        save(self, state)
        saves.append(1)
        if len(saves) == after:
            raise Interrupt

    monkeypatch.setattr(_checkpoint.Checkpoint, "save", save_then_stop)
    with pytest.raises(Interrupt):
        fit(estimator, X, checkpoint=checkpoint, **extra)
    monkeypatch.setattr(_checkpoint.Checkpoint, "save", save)


def test_dask_array_resumes(tmp_path, monkeypatch):
    dask_array = pytest.importorskip("dask.array")
    X = np.load(data_file(tmp_path))
    dX = dask_array.from_array(X, chunks=(700, 4))
    checkpoint = tmp_path / "fit.ckpt"
    # threads given: with threads=None a task's share of the threads depends on how many
    # run at once, and the kernels' order of summation on their thread count.
    interrupted_fit(monkeypatch, dX, checkpoint, 5, threads=2)
    assert [r["n_iter"] for r in _read(checkpoint)["runs"]] == [5, 5]
    assert_identical(fit("GaussianMixture", dX, checkpoint=checkpoint, threads=2),
                     fit("GaussianMixture", dX, threads=2))


def test_a_checkpoint_of_other_data_or_parameters_is_an_error(tmp_path, monkeypatch):
    X = np.load(data_file(tmp_path))
    checkpoint = tmp_path / "fit.ckpt"
    interrupted_fit(monkeypatch, X, checkpoint, 2)
    other_row = X.copy()
    other_row[0, 0] += 1e-9
    cases = [
        (dict(n_components=4), "parameter n_components"),
        (dict(covariance_type="diag"), "parameter covariance_type"),
        (dict(random_state=2), "parameter random_state"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            fit("GaussianMixture", X, checkpoint=checkpoint, **extra)
    for data, message in [(other_row, "data rows"), (X[:-1], "data shape"), (X.astype(np.float32), "data dtype")]:
        with pytest.raises(ValueError, match=message):
            fit("GaussianMixture", data, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="data sample_weight"):
        GaussianMixture(checkpoint=checkpoint, **PARAMS).fit(X, sample_weight=np.ones(len(X)))
    with pytest.raises(ValueError, match="estimator"):
        fit("BayesianGaussianMixture", X, checkpoint=checkpoint)
    # A warm start begins from the model's parameters: another start than the checkpoint's.
    warm = GaussianMixture(**PARAMS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm.fit(X)
    warm.set_params(checkpoint=checkpoint, warm_start=True)
    with pytest.raises(ValueError, match="parameter start"):
        warm.fit(X)
    assert checkpoint.exists()
    # Parameters that leave the result unchanged but for rounding (threads and memory_limit
    # change the order of summation) do not stop a resumption.
    resumed = fit("GaussianMixture", X, checkpoint=checkpoint, verbose=0, threads=1, memory_limit=2**22)
    expected = fit("GaussianMixture", X)
    assert resumed.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(resumed.lower_bound_, expected.lower_bound_, rtol=1e-12)
    # Both initialisations reach the same optimum, so rounding may pick the other labelling.
    a, b = np.argsort(resumed.means_[:, 0]), np.argsort(expected.means_[:, 0])
    np.testing.assert_allclose(resumed.covariances_[a], expected.covariances_[b], rtol=1e-9)
    assert not checkpoint.exists()


def test_unreadable_checkpoint_and_bad_parameter(tmp_path):
    X = np.load(data_file(tmp_path, n=300))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint"):
        fit("GaussianMixture", X, checkpoint=bad)
    with pytest.raises(ValueError, match="checkpoint"):
        fit("GaussianMixture", X, checkpoint=5)
    model = fit("GaussianMixture", X, checkpoint=tmp_path / "ok.ckpt")
    assert not (tmp_path / "ok.ckpt").exists()
    assert_identical(model, fit("GaussianMixture", X))
