"""Resumable fits: the EM state written after every iteration, atomically (a temporary file,
fsync, rename, fsync of the folder), and read back by a fit of the same parameters on the
same data.

A checkpoint is an ``.npz`` file read with ``allow_pickle=False``: the state's arrays, and its
structure (tuples, numbers, strings, None) as JSON. Beside the state it holds the key of the
fit that wrote it: a digest of every parameter that changes the result, and of the data
(shape, dtype, 64 rows spread over X, the sample weights of those rows and their sum).
"""
import hashlib
import json
import numbers
import os

import numpy as np

FORMAT = 2

# Parameters that leave the result unchanged: a checkpoint written under other values applies.
# threads and memory_limit may change the order of summation (so the last bits), not the fit;
# learning_decay and total_samples are partial_fit's.
_NEUTRAL_PARAMETERS = frozenset(("checkpoint", "verbose", "verbose_interval", "threads", "memory_limit",
                                 "learning_decay", "total_samples"))

_FINGERPRINT_ROWS = 64


def _encode(value, arrays):
    """A JSON structure for ``value``; its arrays (and numbers, kept exactly) go to ``arrays``."""
    if value is None:
        return {"t": "none"}
    if isinstance(value, (bool, np.bool_)):
        return {"t": "bool", "v": bool(value)}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, (numbers.Number, np.ndarray, np.generic)):
        key = "a%d" % len(arrays)
        arrays[key] = np.asarray(value)
        return {"t": "array" if isinstance(value, np.ndarray) else "number", "k": key}
    if isinstance(value, (tuple, list)):
        return {"t": type(value).__name__, "v": [_encode(v, arrays) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "v": {str(k): _encode(v, arrays) for k, v in value.items()}}
    if isinstance(value, np.random.RandomState):
        return {"t": "RandomState", "v": _encode(value.get_state(), arrays)}
    return {"t": "repr", "v": repr(value)}


def _decode(structure, arrays):
    kind = structure["t"]
    if kind == "none":
        return None
    if kind in ("bool", "str", "repr"):
        return structure["v"]
    if kind == "array":
        return arrays[structure["k"]]
    if kind == "number":
        return arrays[structure["k"]][()].item()
    if kind in ("tuple", "list"):
        items = [_decode(v, arrays) for v in structure["v"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {k: _decode(v, arrays) for k, v in structure["v"].items()}
    raise ValueError("unknown entry %r" % kind)


def _digest(value):
    arrays = {}
    structure = _encode(value, arrays)
    h = hashlib.sha256(json.dumps(structure, sort_keys=True).encode())
    for key in sorted(arrays, key=lambda k: int(k[1:])):
        a = np.ascontiguousarray(arrays[key])
        h.update(("%s%s" % (a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


def fit_key(estimator, passes, X, sample_weight, start=None):
    """What a checkpoint must match: {"data": {...}, "parameters": {...}} of digests.
    ``start``: the parameters a warm start begins from (None: initialisations)."""
    n, d = X.shape
    rows = np.unique(np.linspace(0, n - 1, min(n, _FINGERPRINT_ROWS)).astype(np.int64))
    data = {"shape": repr((n, d)), "dtype": np.dtype(X.dtype).str, "rows": _digest(passes.rows(X, rows))}
    if sample_weight is None:
        data["sample_weight"] = "none"
    else:
        total = float(np.sum(passes.rows(sample_weight, slice(None))))
        data["sample_weight"] = _digest((passes.rows(sample_weight, rows), total))
    parameters = {"estimator": type(estimator).__name__, "start": _digest(start)}
    for name, value in estimator.get_params(deep=False).items():
        if name not in _NEUTRAL_PARAMETERS:
            parameters[name] = _digest(value)
    return {"data": data, "parameters": parameters}


class Checkpoint:
    """The checkpoint file of one fit: ``load()`` its state (None if there is no file),
    ``save(state)`` atomically, ``remove()`` when the fit is done."""

    def __init__(self, path, key):
        self.path = os.path.abspath(os.fspath(path))
        self.key = key

    def load(self):
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return None
        try:
            with f, np.load(f, allow_pickle=False) as saved:
                arrays = {k: saved[k] for k in saved.files}
            meta = json.loads(str(arrays.pop("__checkpoint__")[()]))
            if meta.get("format") != FORMAT:
                raise ValueError("format %r" % meta.get("format"))
            key, state = meta["key"], _decode(meta["state"], arrays)
        except Exception as e:
            raise ValueError(
                "checkpoint=%r is not a checkpoint this version of gmmkernels can read (%s); remove it or "
                "pass another path" % (self.path, e)) from None
        differ = []
        for part, label in (("data", "data"), ("parameters", "parameter")):
            ours, theirs = self.key[part], key.get(part, {})
            for name in sorted(set(ours) | set(theirs)):
                if ours.get(name) != theirs.get(name):
                    differ.append("%s %s" % (label, name))
        if differ:
            raise ValueError(
                "checkpoint=%r was written by another fit: its %s differ from this one's. Remove the "
                "file to start afresh, or pass another checkpoint path" % (self.path, ", ".join(differ)))
        return state

    def save(self, state):
        arrays = {}
        meta = {"format": FORMAT, "key": self.key, "state": _encode(state, arrays)}
        arrays["__checkpoint__"] = np.array(json.dumps(meta))
        folder = os.path.dirname(self.path)
        temporary = os.path.join(folder, ".%s.%d.tmp" % (os.path.basename(self.path), os.getpid()))
        try:
            with open(temporary, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.remove(temporary)
            except OSError:
                pass
            raise
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def remove(self):
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
