"""The C ABI of include/gmmkernels.h through ctypes, one bad argument at a time.

Every kernel is called with valid descriptors except one, which is broken in one of the
ways the header rules out: a NULL pointer, a NULL data pointer for a non-empty array, a
negative dimension, an unknown or mismatched dtype code, ndim out of range or not the
expected one, a shape x stride product or element count that overflows int64, a base
address whose view would wrap around the address space; plus options.reserved != 0 and
bad scatter codes for gmk_mixture_pass. Each must return the documented status
(GMK_ERR_VALUE = 1 for shapes, strides, pointers and sizes; GMK_ERR_TYPE = 2 for dtype
codes), leave a message naming the argument in gmk_last_error(), and write nothing.

Last, a seeded loop of random raw descriptors runs in a subprocess, which must not crash.
"""
import ctypes
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gmmkernels import _library
from support.processes import child_environment, run_forked

LIB = _library._lib
Array = _library._Array
Options = _library._Options

OK, VALUE, TYPE = 0, 1, 2
F32, F64 = 1, 2
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ADDRESS_TOP = 2**64


def descriptor(a):
    """A gmk_array for ndarray `a`; entries beyond ndim hold values the library must ignore."""
    d = Array()
    d.data = a.__array_interface__["data"][0]
    d.dtype = {np.dtype(np.float32): F32, np.dtype(np.float64): F64}[a.dtype]
    d.ndim = a.ndim
    for i in range(3):
        d.shape[i] = a.shape[i] if i < a.ndim else -7
        d.strides[i] = a.strides[i] if i < a.ndim else INT64_MIN
    return d


# Each kernel: its parameters in the header's order ("a" an array, "i" an int32), with the
# arrays of a valid call; optional arrays (NULL means a default) are marked.
def valid_arrays(name):
    rng = np.random.default_rng(0)
    n, d, k = 5, 3, 2
    X = rng.standard_normal((n, d))
    table = {
        "gmk_quadform": [("X", X), ("Q", np.eye(d)), ("center", np.zeros(d)), ("out", np.zeros(n))],
        "gmk_weighted_gram": [("X", X), ("w", np.ones(n)), ("center", np.zeros(d)), ("out", np.zeros((d, d)))],
        "gmk_quadform_many": [("X", X), ("Qs", np.stack([np.eye(d)] * k)), ("centers", np.zeros((k, d))),
                              ("out", np.zeros((n, k)))],
        "gmk_weighted_gram_many": [("X", X), ("R", np.ones((n, k))), ("centers", np.zeros((k, d))),
                                   ("out", np.zeros((k, d, d)))],
        "gmk_weighted_sum": [("X", X), ("R", np.ones((n, k))), ("out", np.zeros((k, d)))],
        "gmk_matmul": [("A", X), ("B", np.ones((d, k))), ("out", np.zeros((n, k)))],
        "gmk_outer": [("y", np.ones(n)), ("x", np.ones(d)), ("out", np.zeros((n, d)))],
        "gmk_mixture_pass": [("X", X), ("sample_weight", np.ones(n)), ("log_norm", np.zeros(k)),
                             ("means", np.zeros((k, d))), ("precisions", np.stack([np.eye(d)] * k)),
                             ("scatter", 1), ("resp_out", np.zeros((n, k))), ("score_out", np.zeros(n)),
                             ("stats_out", np.zeros(1 + k + k * d + k * d * d))],
    }
    return table[name]


OPTIONAL = {"center", "w", "centers", "sample_weight", "resp_out", "score_out"}
OUTPUTS = {"out", "resp_out", "score_out", "stats_out"}
KERNELS = list(_library._KERNELS)


def call(name, descriptors, options=None, scatter=None):
    """Calls kernel `name`; descriptors maps argument names to a gmk_array or None (NULL)."""
    fn = getattr(LIB, name)
    args = []
    for arg, value in valid_arrays(name):
        if arg == "scatter":
            args.append(value if scatter is None else scatter)
        else:
            dsc = descriptors[arg]
            args.append(None if dsc is None else ctypes.pointer(dsc))
    status = fn(*args, None if options is None else ctypes.byref(options))
    return status, LIB.gmk_last_error().decode(errors="replace")


def mutations(name):
    """(argument, label, change(arrays, descriptors) -> None, status, message needle) rows."""
    rows = []
    arrays = dict(valid_arrays(name))
    leading = next(iter(arrays))
    for arg, a in arrays.items():
        if arg == "scatter":
            continue
        nd = a.ndim

        def set_(field, value, arg=arg):
            return lambda dscs: setattr(dscs[arg], field, value)

        def set_item(field, i, value, arg=arg):
            return lambda dscs: getattr(dscs[arg], field).__setitem__(i, value)

        def several(*changes):
            return lambda dscs: [c(dscs) for c in changes]

        null = lambda dscs, arg=arg: dscs.__setitem__(arg, None)  # noqa: E731
        rows.append((arg, "NULL pointer", null, OK if arg in OPTIONAL else VALUE, arg))
        rows.append((arg, "NULL data", set_("data", None), VALUE, arg))
        for i in range(nd):
            rows.append((arg, "shape[%d] = -1" % i, set_item("shape", i, -1), VALUE, arg))
            rows.append((arg, "shape[%d] = INT64_MIN" % i, set_item("shape", i, INT64_MIN), VALUE, arg))
        for code in (0, 3, -1, 255, INT32_MAX):
            rows.append((arg, "dtype %d" % code, set_("dtype", code), TYPE, arg))
        if arg != leading:
            rows.append((arg, "dtype float32 (X is float64)", set_("dtype", F32), TYPE, arg))
        for bad in (-1, 4, INT32_MIN, INT32_MAX):
            rows.append((arg, "ndim %d" % bad, set_("ndim", bad), VALUE, arg))
        if arg != "precisions":  # precisions may be (K, d, d) or (K, d)
            for other in (nd - 1, nd + 1):
                if 0 <= other <= 3:
                    rows.append((arg, "ndim %d (not %d)" % (other, nd), set_("ndim", other), VALUE, arg))
        else:
            rows.append((arg, "ndim 1", set_("ndim", 1), VALUE, arg))
        # shape x stride overflows int64: 2**62 elements 8 bytes apart.
        rows.append((arg, "shape[0] * stride overflows", several(set_item("shape", 0, 2**62),
                                                                  set_item("strides", 0, 8)), VALUE, arg))
        rows.append((arg, "stride INT64_MIN", several(set_item("shape", 0, 3),
                                                       set_item("strides", 0, INT64_MIN)), VALUE, arg))
        if nd >= 2:
            # The element count overflows although every stride is 0.
            rows.append((arg, "element count overflows", several(
                set_item("shape", 0, 2**32), set_item("shape", 1, 2**32),
                set_item("strides", 0, 0), set_item("strides", 1, 0)), VALUE, arg))
        # Views that would wrap around the top or the bottom of the address space.
        rows.append((arg, "base near the top of the address space",
                     set_("data", ADDRESS_TOP - 16), VALUE, arg))
        rows.append((arg, "negative stride below address 64",
                     several(set_("data", 64), set_item("shape", 0, 100), set_item("strides", 0, -8)), VALUE, arg))
        # An axis of length >= 3 with stride 2**62: its last element's offset, at least
        # 2 * 2**62 = 2**63, is beyond INT64_MAX, although the extent fits an unsigned
        # 64-bit sum and ends below the top of the address space.
        long_axes = [i for i in range(nd) if a.shape[i] >= 3]
        if long_axes:
            rows.append((arg, "offset (shape - 1) x 2**62 overflows int64",
                         set_item("strides", long_axes[0], 2**62), VALUE, arg))
    if name == "gmk_mixture_pass":
        # The one size the header cannot say with a shape: stats_out's 1 + K + K*d + S.
        for size in (26, 28, 0):
            rows.append(("stats_out", "stats_out of %d elements, not 27" % size,
                         lambda dscs, size=size: dscs["stats_out"].shape.__setitem__(0, size), VALUE, "stats_out"))
    return rows


def table():
    rows = []
    for name in KERNELS:
        for arg, label, change, status, needle in mutations(name):
            rows.append(pytest.param(name, arg, change, status, needle, id="%s-%s-%s" % (name[4:], arg, label)))
    return rows


TABLE = table()


def run_row(name, change):
    """(status, message, outputs written) of the call with `change` applied."""
    arrays = [(arg, a) for arg, a in valid_arrays(name) if arg != "scatter"]
    dscs = {arg: descriptor(a) for arg, a in arrays}
    outputs = {arg: a for arg, a in arrays if arg in OUTPUTS}
    for a in outputs.values():
        a.fill(-7.0)
    change(dscs)
    status, message = call(name, dscs)
    written = [arg for arg, a in outputs.items() if not np.all(a == -7.0)]
    return status, message, written


@pytest.mark.parametrize("name, arg, change, status, needle", TABLE)
def test_bad_descriptor(name, arg, change, status, needle):
    # In a forked child: a row that crashes fails alone.
    (got, message, written), _ = run_forked(lambda: run_row(name, change), timeout=60)
    assert got == status, "status %d, expected %d; message %r" % (got, status, message)
    if status == OK:
        assert message == "", "gmk_last_error() after success: %r" % message
        return
    assert message.strip(), "gmk_last_error() is empty"
    assert re.search(r"(?<![A-Za-z_])%s(?![A-Za-z_])" % re.escape(needle), message), (
        "the message does not name %s: %r" % (needle, message))
    assert not written, "%s written although the call failed" % written


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("reserved", [1, -1, INT32_MAX])
def test_options_reserved_must_be_zero(name, reserved):
    arrays = [(arg, a) for arg, a in valid_arrays(name) if arg != "scatter"]
    dscs = {arg: descriptor(a) for arg, a in arrays}
    status, message = call(name, dscs, options=Options(threads=0, reserved=reserved, memory_limit=0))
    assert status == VALUE, (status, message)
    assert "reserved" in message, message


@pytest.mark.parametrize("scatter", [-1, 4, 5, 100, INT32_MIN, INT32_MAX])
def test_mixture_pass_bad_scatter(scatter):
    arrays = [(arg, a) for arg, a in valid_arrays("gmk_mixture_pass") if arg != "scatter"]
    dscs = {arg: descriptor(a) for arg, a in arrays}
    stats = dict(arrays)["stats_out"]
    stats.fill(-7.0)
    status, message = call("gmk_mixture_pass", dscs, scatter=scatter)
    assert status == VALUE, (status, message)
    assert "scatter" in message and str(scatter) in message, message
    assert np.all(stats == -7.0)


@pytest.mark.parametrize("name", KERNELS)
def test_valid_call_and_ignored_entries(name):
    # The baseline of the table succeeds, with garbage in the shape and stride entries
    # beyond ndim (which the header says are ignored) and with NULL options.
    arrays = [(arg, a) for arg, a in valid_arrays(name) if arg != "scatter"]
    dscs = {arg: descriptor(a) for arg, a in arrays}
    status, message = call(name, dscs)
    assert status == OK, message
    assert message == ""
    status, message = call(name, dscs, options=Options(threads=-5, reserved=0, memory_limit=-1))
    assert status == OK, message


@pytest.mark.parametrize("name", KERNELS)
def test_empty_arrays_may_have_null_data(name):
    # With a zero in its shape an array has no element to address: NULL data is fine.
    arrays = [(arg, a) for arg, a in valid_arrays(name) if arg != "scatter"]
    dscs = {arg: descriptor(a) for arg, a in arrays}
    lead = arrays[0][0]
    # n = 0 rows: every array with a row axis gets shape 0 there and NULL data.
    rows_axis = {"X": 0, "A": 0, "y": 0, "w": 0, "R": 0, "sample_weight": 0, "resp_out": 0, "score_out": 0}
    if name != "gmk_weighted_sum" and name != "gmk_weighted_gram" and name != "gmk_weighted_gram_many":
        rows_axis["out"] = 0
    for arg, axis in rows_axis.items():
        if arg in dscs:
            dscs[arg].shape[axis] = 0
            dscs[arg].data = None
    status, message = call(name, dscs)
    assert status == OK, "%s with n = 0 and NULL data: status %d, %r (lead %s)" % (name, status, message, lead)


def test_error_message_is_per_thread():
    # A failure on one thread does not show on another.
    import threading

    arrays = [(arg, a) for arg, a in valid_arrays("gmk_quadform")]
    dscs = {arg: descriptor(a) for arg, a in arrays}
    dscs["Q"].dtype = 9
    status, message = call("gmk_quadform", dscs)
    assert status == TYPE and "Q" in message
    seen = []
    t = threading.Thread(target=lambda: seen.append(LIB.gmk_last_error().decode()))
    t.start()
    t.join()
    assert seen == [""]
    assert LIB.gmk_last_error().decode() == message


# --- random raw descriptors, in a subprocess -------------------------------------------------

FUZZ_CALLS = 4000
FUZZ_SEED = 20240601
MAX_CRASHES = 10

FUZZ_SCRIPT = r'''
import ctypes, random, sys
import numpy as np
from gmmkernels import _library
from test_c_abi_table import valid_arrays, descriptor, OPTIONAL

LIB, Array, Options = _library._lib, _library._Array, _library._Options
seed, start, calls = (int(v) for v in sys.argv[1:4])
# One arena of memory every in-bounds view lives in; views start in its middle so that
# negative strides stay inside too.
ARENA = np.zeros(1 << 20, dtype=np.uint8)
BASE = ARENA.__array_interface__["data"][0]
MID = BASE + (1 << 19)
UNMAPPED = 4096  # the first pages are never mapped: touching them would crash

SHAPES = [0, 1, 2, 3, 5, 17, 64, 2**31, 2**32, 2**62, 2**63 - 1, -1, -2**63]
STRIDES = [0, 4, 8, -4, -8, 1, 3, 24, -24, 800, 2**31, 2**40, -2**40, 2**62, 2**63 - 1, -2**63]


def bounds(d):
    """(valid per the header, low byte offset, high byte offset) of descriptor d."""
    if d.dtype not in (1, 2) or not 0 <= d.ndim <= 3:
        return False, 0, 0
    shape, strides = list(d.shape)[:d.ndim], list(d.strides)[:d.ndim]
    if any(s < 0 for s in shape):
        return False, 0, 0
    if 0 in shape:
        return True, 0, 0
    size = 4 if d.dtype == 1 else 8
    count = 1
    lo = 0
    hi = size
    for s, st in zip(shape, strides):
        count *= s
        span = abs(st) * (s - 1)
        if st < 0:
            lo -= span
        else:
            hi += span
    # Every element's byte offset must be an int64 (the header's strides are int64).
    if count >= 2**63 or hi - size > 2**63 - 1 or -lo > 2**63:
        return False, 0, 0
    if not d.data:
        return False, 0, 0
    if d.data + lo < 0 or d.data + hi > 2**64:
        return False, 0, 0
    return True, lo, hi


def mutate(d):
    field = rng.choice(["shape", "strides", "dtype", "ndim", "data", "none"])
    if field == "shape":
        d.shape[rng.randrange(3)] = rng.choice(SHAPES)
    elif field == "strides":
        d.strides[rng.randrange(3)] = rng.choice(STRIDES)
    elif field == "dtype":
        d.dtype = rng.choice([0, 1, 2, 3, -1, 2**31 - 1])
    elif field == "ndim":
        d.ndim = rng.choice([-1, 0, 1, 2, 3, 4, -2**31])
    elif field == "data":
        d.data = rng.choice([None, 64, 2**64 - 16, UNMAPPED, MID])
    return d


counts = {}
for i in range(start, calls):
    rng = random.Random(seed * 1000003 + i)  # call i is the same whichever call a run starts at
    name = rng.choice(list(_library._KERNELS))
    params = valid_arrays(name)
    dscs, keep, invalid, out_of_bounds, heavy = [], [], False, False, False
    for arg, a in params:
        if arg == "scatter":
            dscs.append(rng.choice([0, 1, 2, 3, 1, 1, -1, 4]))
            invalid |= not 0 <= dscs[-1] <= 3
            continue
        if arg in OPTIONAL and rng.random() < 0.2:
            dscs.append(None)
            continue
        if rng.random() < 0.05:
            dscs.append(None)
            invalid |= arg not in OPTIONAL
            continue
        a = np.array(a)
        keep.append(a)
        d = descriptor(a)
        for _ in range(rng.choice([0, 0, 0, 0, 1, 1, 2, 3])):
            mutate(d)
        ok, lo, hi = bounds(d)
        if ok and d.ndim and np.prod([float(s) for s in list(d.shape)[:d.ndim]]) > 1e6:
            heavy = True  # valid, but a call could run for hours over a zero-stride view
        if not ok:
            invalid = True
        elif lo != hi:
            # In bounds of the array itself, or moved into the arena, or not at all.
            own = a.__array_interface__["data"][0]
            if not (d.data == own and lo >= 0 and hi <= a.nbytes):
                if -lo <= (1 << 19) and hi <= (1 << 19):
                    d.data = MID
                else:
                    out_of_bounds = True
        dscs.append(ctypes.pointer(d))
    if (out_of_bounds or heavy) and not invalid:
        continue  # a view of memory the caller does not own is undefined, as in C
    options = Options(threads=rng.choice([0, 1, 2]), reserved=rng.choice([0] * 19 + [1]),
                      memory_limit=rng.choice([0, 0, 1, 4096, 1 << 20, -5]))
    invalid |= options.reserved != 0
    # The call about to be made, so that a crash can be traced to it.
    print("call %d: %s(%s) reserved=%d invalid=%s" % (i, name, ", ".join(
        "NULL" if p is None else str(p) if isinstance(p, int) else "{data=%s dtype=%d ndim=%d shape=%s strides=%s}" % (
            p.contents.data, p.contents.dtype, p.contents.ndim, list(p.contents.shape), list(p.contents.strides))
        for p in dscs), options.reserved, invalid), flush=True)
    status = getattr(LIB, name)(*dscs, ctypes.byref(options))
    message = LIB.gmk_last_error().decode(errors="replace")
    if invalid and status not in (1, 2):
        print("call %d: %s returned %d for an invalid argument (%r)" % (i, name, status, message))
        sys.exit(3)
    if status not in (0, 1, 2, 3):
        print("call %d: %s returned %d: %r" % (i, name, status, message))
        sys.exit(4)
    if status != 0 and not message:
        print("call %d: %s returned %d without a message" % (i, name, status))
        sys.exit(5)
    key = ("invalid " if invalid else "") + str(status)
    counts[key] = counts.get(key, 0) + 1
print("statuses:", sorted(counts.items()))
'''


def test_random_raw_descriptors_do_not_crash(tmp_path):
    # The loop runs in a subprocess; after a crash it is restarted at the next call, so
    # that one run lists every crashing call (up to MAX_CRASHES).
    script = tmp_path / "raw_fuzz.py"
    script.write_text(FUZZ_SCRIPT)
    env = child_environment()
    crashes, start, summary = [], 0, []
    while start < FUZZ_CALLS and len(crashes) < MAX_CRASHES:
        proc = subprocess.run([sys.executable, str(script), str(FUZZ_SEED), str(start), str(FUZZ_CALLS)],
                              capture_output=True, text=True, timeout=300, env=env)
        lines = proc.stdout.splitlines()
        if proc.returncode == 0:
            summary.append(lines[-1])
            break
        last = [line for line in lines if line.startswith("call ")]
        if proc.returncode > 0 or not last:
            raise AssertionError("exit status %d\nstdout: %s\nstderr: %s" % (
                proc.returncode, proc.stdout[-1500:], proc.stderr[-1500:]))
        signame = signal.Signals(-proc.returncode).name
        crashes.append("%s in %s" % (signame, last[-1]))
        start = int(last[-1].split()[1].rstrip(":")) + 1
    print("\n".join(summary))
    assert not crashes, "%d crashing call(s) of %d:\n%s" % (len(crashes), FUZZ_CALLS, "\n".join(crashes))
