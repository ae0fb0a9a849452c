"""Property-based fuzzing of every public function: whatever it is given, a call either
matches a float64 numpy reference or raises ValueError/TypeError. It never raises anything
else, never crashes the interpreter, never changes an input and never writes a byte
outside ``out``.

Generated per function: shapes with 0 rows, 0 or 1 columns, K = 0 or 1 and sizes that
cross block boundaries; every operand in float32, float64, float16, ints, bool, complex,
object or non-native byte order; C, Fortran, negative, every-other and unaligned layouts,
np.memmap at odd byte offsets, nested lists; NaN and ±Inf; inputs that share memory;
``out`` inside a larger buffer of random guard bytes (in memory or a file mapping), with
gaps, negative strides or an odd address, or read-only, of the wrong shape or dtype, not
an array, or overlapping an input; threads and memory_limit good and bad. Each example
makes at most one argument wrong and expects the exception that argument calls for.

Zero-stride (broadcast) views, huge shapes and huge strides run in a forked child (with
its address space capped), so that a crash fails one example instead of the whole run.

Examples per test come from a settings profile chosen with GMMKERNELS_FUZZ_PROFILE:
``ci`` (the default) draws a fixed, derandomized set, the same on every run; ``dev``
draws new examples each run; ``long`` draws 20 times as many. The counts are in EXAMPLES.

Tolerances: a result r is compared with the float64 reference R computed from the
operands as the API converts them (rounded to X's dtype) as |r - R| <= rtol * S, where S
is the scale of the terms summed ((|x_i| + |c|)^2 ||Q||_F for a quadratic form,
sum |w_i| (|x_i| + |c|)^2 for a Gram matrix, |A| |B| for a product), so that cancellation
cannot fail a correct kernel; rtol is 1e-10 for float64 and 1e-4 for float32 results.
Where R is NaN or ±Inf, r must be NaN or ±Inf too. outer is exact.
"""
import itertools
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided

import gmmkernels as gk
from gmmkernels._kernels import mixture_pass
from support.processes import run_forked

# Examples per function and test in the ci profile (scaled by SCALE for the others).
EXAMPLES = {
    "in_process": 200,   # test_fuzz_in_process, per function
    "isolated": 40,      # test_fuzz_isolated (zero-stride views, large n), per function
    "huge_shapes": 50,   # test_fuzz_huge_shapes, all functions together
    "huge_strides": 30,  # test_fuzz_huge_strides_on_length_one_axes, all functions together
}
PROFILE = os.environ.get("GMMKERNELS_FUZZ_PROFILE", "ci")
SCALE = {"ci": 1, "dev": 1, "long": 20}
if PROFILE not in SCALE:
    raise ValueError("GMMKERNELS_FUZZ_PROFILE must be one of %s, got %r" % (sorted(SCALE), PROFILE))

_COMMON = dict(
    deadline=None,
    print_blob=True,
    # Examples are numpy arrays built from a drawn seed: slow-ish draws are expected.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("gmmkernels-ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("gmmkernels-dev", **_COMMON)
settings.register_profile("gmmkernels-long", **_COMMON)


def fuzz_settings(kind):
    return settings(settings.get_profile("gmmkernels-" + PROFILE), max_examples=EXAMPLES[kind] * SCALE[PROFILE])


FUNCTIONS = ["quadform", "quadform_many", "weighted_gram", "weighted_gram_many", "weighted_sum",
             "matmul", "outer", "mixture_pass"]

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
FLOATS = (np.dtype(np.float64), np.dtype(np.float32))

# Operand dtypes the API converts to X's dtype ("same" is X's, "swapped" X's in the other
# byte order) and ones it must reject with TypeError.
OPERAND_OK = ["same", "same", "same", "float64", "float32", "float16", "int64", "int32", "uint8", "bool",
              "swapped"]
OPERAND_BAD = ["complex128", "complex64", "object"]
X_BAD = ["float16", "int64", "int32", "uint8", "bool", "complex128", "complex64", "object", "swapped"]
OUT_BAD = ["float16", "int64", "bool", "complex128", "object", "swapped", "other_float"]


def resolve_dtype(name, x_dtype):
    x_dtype = np.dtype(x_dtype)
    if name == "same":
        return x_dtype
    if name == "swapped":
        return x_dtype.newbyteorder()
    if name == "other_float":
        return np.dtype(np.float32 if x_dtype == np.float64 else np.float64)
    return np.dtype(name)


def typed(vals, dtype):
    """float64 values `vals` as an array of `dtype` (ints rounded and clipped, bool = v > 0)."""
    dtype = np.dtype(dtype)
    with np.errstate(all="ignore"):
        if dtype.kind == "b":
            return vals > 0
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return np.clip(np.nan_to_num(np.round(vals)), info.min, info.max).astype(dtype)
        if dtype.kind == "O":
            return vals.astype(object)
        if dtype.kind == "c":
            return (vals + 0j).astype(dtype)
        if dtype.itemsize == 2:
            return np.where(np.isfinite(vals), np.clip(vals, -6e4, 6e4), vals).astype(dtype)
        return vals.astype(dtype)


def as64(a, dtype):
    """An operand as the kernel sees it: converted to `dtype`, then widened to float64."""
    if a is None:
        return None
    with np.errstate(all="ignore"):
        return np.asarray(a).astype(dtype).astype(np.float64)


# --- the context of one example ------------------------------------------------------------

@dataclass
class Guard:
    """`out` placed in a larger byte buffer: after the call, only its own bytes may differ."""
    raw: np.ndarray
    snapshot: np.ndarray
    mask: np.ndarray
    name: str = "out"


class Ctx:
    """Per-example state: the data generator, the temporary folder, what has been built."""

    def __init__(self, draw, tmp, seed, isolated):
        self.draw = draw
        self.tmp = tmp
        self.rng = np.random.default_rng(seed)
        self.isolated = isolated
        self.guards = []
        self.notes = []
        self.out_decides_dtype = False
        self.files = itertools.count()

    def path(self):
        return os.path.join(self.tmp, "f%d-%d.bin" % (os.getpid(), next(self.files)))


def describe(name, a):
    if a is None:
        return "%s=None" % name
    if not isinstance(a, np.ndarray):
        return "%s=%s %r" % (name, type(a).__name__, np.shape(a))
    kind = "memmap" if isinstance(a, np.memmap) or isinstance(a.base, np.memmap) else "ndarray"
    address = a.__array_interface__["data"][0]
    return "%s=%s %s %s strides=%s addr%%8=%d writeable=%s" % (
        name, kind, a.dtype.str, a.shape, a.strides, address % 8, a.flags.writeable)


def raw_layout(draw, shape, itemsize):
    """A general strided layout of `shape`: (bytes of the buffer, byte offset of element 0,
    strides). Axes in any order, gaps of 0-2 elements, any signs, 0-9 guard bytes before
    and after (so the address may be odd)."""
    ndim = len(shape)
    order = draw(st.permutations(range(ndim))) if ndim else []
    gaps = [draw(st.sampled_from([1, 1, 1, 2, 3])) for _ in range(ndim)]
    signs = [draw(st.sampled_from([1, 1, -1])) for _ in range(ndim)]
    lead = draw(st.sampled_from([0, 8, 16, 1, 3, 4, 7]))
    trail = draw(st.integers(0, 9))
    mag = [0] * ndim
    step = itemsize
    for ax in reversed(order):
        mag[ax] = step * gaps[ax]
        step = mag[ax] * max(shape[ax], 1)
    strides = tuple(m * s for m, s in zip(mag, signs))
    if 0 in shape:
        span = neg = 0
    else:
        span = sum(m * (s - 1) for m, s in zip(mag, shape)) + itemsize
        neg = sum(m * (s - 1) for m, s, g in zip(mag, shape, signs) if g < 0)
    return max(lead + span + trail, 1), lead + neg, strides


def element_mask(nbytes, offset, shape, strides, itemsize):
    """Which bytes of a buffer belong to the elements of a strided view of it."""
    mask = np.zeros(nbytes, dtype=bool)
    if 0 in shape:
        return mask
    idx = np.array(offset, dtype=np.int64)
    for s, stride in zip(shape, strides):
        idx = idx[..., None] + np.arange(s, dtype=np.int64) * stride
    mask[(idx.reshape(-1, 1) + np.arange(itemsize)).ravel()] = True
    return mask


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def place(ctx, a, name, *, allow_list=True, allow_broadcast=True):
    """A view holding exactly the values of `a` in a drawn layout; memory outside the view
    holds NaN (bytes 0xFF), so a kernel reading outside it gives NaN instead of a number."""
    draw = ctx.draw
    kinds = ["C", "C", "F", "reversed", "strided", "strided", "memmap", "np.memmap", "read_only"]
    if allow_list and a.dtype != object and a.size:
        kinds.append("list")  # (an empty nested list loses its shape)
    if a.dtype == object:
        kinds = ["C", "F", "reversed"]
    if a.size == 0 or a.ndim == 0:
        kinds = [k for k in kinds if "memmap" not in k]  # a file of zero bytes cannot be mapped
    if a.ndim == 0:
        kinds = [k for k in kinds if k != "reversed"]
    if ctx.isolated and allow_broadcast and a.ndim and a.size and a.dtype != object:
        kinds += ["broadcast"] * 4
    kind = draw(st.sampled_from(kinds), label=name + " layout")
    if kind == "broadcast":
        # Zero strides: values constant along the drawn axes, read from one slice.
        axes = [ax for ax in range(a.ndim) if draw(st.booleans())] or [0]
        part = a[tuple(slice(0, 1) if ax in axes else slice(None) for ax in range(a.ndim))]
        part = place(ctx, np.ascontiguousarray(part), name + "[slice]", allow_list=False, allow_broadcast=False)
        view = np.broadcast_to(part, a.shape)
    elif kind == "C":
        view = np.array(a, order="C")
    elif kind == "F":
        view = np.array(a, order="F")
    elif kind == "read_only":
        view = np.array(a)
        view.flags.writeable = False
    elif kind == "reversed":
        axes = tuple(ax for ax in range(a.ndim) if draw(st.booleans())) or tuple(range(a.ndim))
        view = np.flip(np.ascontiguousarray(np.flip(a, axes)), axes)
    elif kind == "list":
        return a.tolist()
    elif kind == "np.memmap":
        offset = draw(st.sampled_from([1, 3, 4, 5, 7, 8, 12]))
        order = draw(st.sampled_from("CF"))
        path = ctx.path()
        write_file(path, b"\xff" * offset + a.tobytes(order=order))
        view = np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape, offset=offset, order=order)
        os.unlink(path)
    else:
        nbytes, offset, strides = raw_layout(draw, a.shape, a.dtype.itemsize)
        raw = np.full(nbytes, 0xFF, dtype=np.uint8)
        view = np.ndarray(a.shape, a.dtype, buffer=raw, offset=offset, strides=strides)
        view[...] = a
        # No byte of an input's buffer may change, in the view or between its elements.
        ctx.guards.append(Guard(raw, np.array(raw), np.zeros(nbytes, dtype=bool), name))
        if kind == "memmap":
            path = ctx.path()
            write_file(path, raw.tobytes())
            mapped = np.memmap(path, dtype=np.uint8, mode="r", shape=(nbytes,))
            os.unlink(path)
            view = np.ndarray(a.shape, a.dtype, buffer=mapped, offset=offset, strides=strides)
    assert view.shape == a.shape and view.dtype == a.dtype
    ctx.notes.append(describe(name, view) + " (%s)" % kind)
    return view


def guarded_out(ctx, shape, dtype, name="out"):
    """A writable view of `shape` inside a buffer of random guard bytes, in memory or in a
    file mapping, in a drawn layout; its Guard is recorded for the checks after the call."""
    draw = ctx.draw
    dtype = np.dtype(dtype)
    if dtype == object:
        return np.full(shape, 0.0, dtype=object)
    nbytes, offset, strides = raw_layout(draw, shape, dtype.itemsize)
    data = ctx.rng.integers(0, 256, nbytes, dtype=np.uint8)
    if draw(st.sampled_from([False, False, True]), label=name + " in a file mapping"):
        path = ctx.path()
        write_file(path, data.tobytes())
        raw = np.memmap(path, dtype=np.uint8, mode="r+", shape=(nbytes,))
        os.unlink(path)
    else:
        raw = data
    out = np.ndarray(shape, dtype, buffer=raw, offset=offset, strides=strides)
    ctx.guards.append(Guard(raw, np.array(raw), element_mask(nbytes, offset, shape, strides, dtype.itemsize), name))
    ctx.notes.append(describe(name, out))
    return out


def wrong_shape(draw, shape, free=(), valid=()):
    """A shape the API must reject where it wants `shape`: one more or one fewer axis, or
    one size off on an axis that is not `free` (a size the argument itself decides, like
    K of Qs); never one of the `valid` alternatives."""
    shape = tuple(shape)
    options = [shape + (1,), shape[:-1]]
    for ax in range(len(shape)):
        if ax not in free:
            options.append(shape[:ax] + (shape[ax] + 1,) + shape[ax + 1:])
            if shape[ax] > 0:
                options.append(shape[:ax] + (shape[ax] - 1,) + shape[ax + 1:])
    options = [s for s in options if s != shape and s not in valid]
    return draw(st.sampled_from(options), label="wrong shape")


def make_output(ctx, shape, dtype, defect, name="out", alias=None):
    """`out` for a call: None, a guarded view, or (with a defect) one the API must reject.
    Returns (out, expected exception or None)."""
    draw = ctx.draw
    if defect == name + "_shape":
        return guarded_out(ctx, wrong_shape(draw, shape), dtype, name), ValueError
    if defect == name + "_dtype":
        # (outer computes in the dtype of a float32/float64 out: for it only others are wrong)
        choices = [b for b in OUT_BAD if b != "other_float"] if ctx.out_decides_dtype else OUT_BAD
        bad = resolve_dtype(draw(st.sampled_from(choices)), dtype)
        return guarded_out(ctx, shape, bad, name), TypeError
    if defect == name + "_read_only":
        out = guarded_out(ctx, shape, dtype, name)
        out.flags.writeable = False
        return out, ValueError
    if defect == name + "_not_array":
        return np.zeros(shape).tolist(), TypeError
    if defect == name + "_alias":
        return alias, ValueError
    if name == "out" and draw(st.booleans(), label="default out"):
        return None, None
    return guarded_out(ctx, shape, dtype, name), None


def draw_values(ctx, shape, *, specials=True, nonneg=False, label=""):
    """float64 values of `shape`: normal, of a drawn magnitude, some exact zeros, maybe
    rounded to integers, maybe with NaN/±Inf at drawn places."""
    draw = ctx.draw
    mag = draw(st.sampled_from([1.0, 1.0, 1e-3, 1e3]), label=label + " magnitude")
    v = np.array(ctx.rng.standard_normal(shape) * mag, dtype=np.float64)
    if nonneg:
        v = np.array(np.abs(v))  # (np.abs of a 0-d array is a scalar)
    if draw(st.booleans(), label=label + " zeros"):
        v[ctx.rng.random(shape) < 0.3] = 0.0
    if draw(st.sampled_from([False, False, False, True]), label=label + " integers"):
        v = np.array(np.round(v))
    if specials and v.size and draw(st.sampled_from([False, False, False, True]), label=label + " NaN/Inf"):
        flat = v.reshape(-1)
        for value in draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=3)):
            flat[draw(st.integers(0, v.size - 1))] = value
    return v


def draw_operand(ctx, name, shape, x_dtype, defect, *, specials=True, nonneg=False, free=(), valid=()):
    """A small operand of `shape` (converted by the API), or a defective one."""
    draw = ctx.draw
    expect = None
    if defect == name + "_shape":
        shape = wrong_shape(draw, shape, free, valid)
        expect = ValueError
    if defect == name + "_none":
        ctx.notes.append("%s=None" % name)
        return None, (TypeError, ValueError)
    dtype_name = draw(st.sampled_from(OPERAND_BAD if defect == name + "_dtype" else OPERAND_OK), label=name + " dtype")
    if defect == name + "_dtype":
        expect = TypeError
    dtype = resolve_dtype(dtype_name, x_dtype)
    vals = draw_values(ctx, shape, specials=specials and dtype.kind in "fc", nonneg=nonneg, label=name)
    return place(ctx, typed(vals, dtype), name), expect


def draw_x(ctx, name, n, d, defect):
    """X (or A): float32/float64 of any layout, or a defective one."""
    draw = ctx.draw
    expect = None
    if defect == name + "_dtype":
        dtype = resolve_dtype(draw(st.sampled_from(X_BAD), label=name + " dtype"), np.float64)
        expect = TypeError
    else:
        dtype = np.dtype(draw(st.sampled_from([np.float64, np.float32]), label=name + " dtype"))
    shape = (n, d)
    if defect == name + "_ndim":
        shape = draw(st.sampled_from([(n,), (n, d, 2), (), (1, n, d)]))
        expect = ValueError
    vals = typed(draw_values(ctx, shape, specials=dtype.kind == "f", label=name), dtype)
    allow_list = expect is None and dtype == np.float64
    return place(ctx, vals, name, allow_list=allow_list), dtype, expect


def draw_options(ctx, defect):
    """(threads, memory_limit, expected exception, whether a too-small limit may be reported)."""
    draw = ctx.draw
    threads = draw(st.sampled_from([None, None, 1, 2, 3, 8]), label="threads")
    memory_limit = draw(st.sampled_from([None, None, 1 << 20, 1 << 16, 4096, 1 << 40, (1 << 64) + 7]),
                        label="memory_limit")
    expect = None
    if defect == "threads":
        threads = draw(st.sampled_from([0, -1, 1 << 31, True, 1.5, "2"]), label="bad threads")
        expect = (ValueError, TypeError)
    if defect == "memory_limit":
        memory_limit = draw(st.sampled_from([0, -1, -(1 << 70), True, 1.5, "64M"]), label="bad memory_limit")
        expect = (ValueError, TypeError)
    small = memory_limit is not None and not isinstance(memory_limit, (bool, str, float)) and 0 < memory_limit <= 1 << 20
    ctx.notes.append("threads=%r memory_limit=%r" % (threads, memory_limit))
    return threads, memory_limit, expect, small


def sizes(ctx):
    draw = ctx.draw
    big = [255, 256, 257, 600] + ([3000, 20000] if ctx.isolated else [])
    n = draw(st.one_of(st.integers(0, 12), st.integers(0, 70), st.sampled_from(big)), label="n")
    d = draw(st.one_of(st.integers(0, 3), st.integers(0, 9)), label="d")
    k = draw(st.integers(0, 4), label="K")
    return n, d, k


@dataclass
class Case:
    name: str
    call: Callable[[], Any]
    expect: Any                      # None or an exception class / tuple of them
    check: Optional[Callable[[Any], None]]
    inputs: dict
    ctx: Any
    arg_names: tuple = ()            # argument names an error message should mention
    small_memory: bool = False       # a ValueError about memory_limit is acceptable

    def text(self):
        return "%s: expect %s\n  %s" % (
            self.name, "success" if self.expect is None else self.expect, "\n  ".join(self.ctx.notes))


def first_expected(*pairs):
    """The expectation of the one defective argument (at most one is defective)."""
    found = [e for e in pairs if e is not None]
    assert len(found) <= 1, found
    return found[0] if found else None


# --- comparisons ---------------------------------------------------------------------------

def check_close(got, ref, scale, dtype, what="result"):
    """|got - ref| <= rtol(dtype) * scale where ref is finite; non-finite where ref is."""
    dtype = np.dtype(dtype)
    assert isinstance(got, np.ndarray), "%s is a %s" % (what, type(got).__name__)
    assert got.dtype == dtype, "%s has dtype %s, expected %s" % (what, got.dtype, dtype)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, "%s has shape %s, expected %s" % (what, got.shape, ref.shape)
    with np.errstate(all="ignore"):
        g = got.astype(np.float64)
        scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), ref.shape)
        finite = np.isfinite(ref)
        err = np.abs(g - ref)
        bound = RTOL[dtype] * scale
        wrong = finite & np.isfinite(scale) & ~(err <= bound)
        lost = ~finite & np.isfinite(g)
    if wrong.any():
        i = tuple(np.argwhere(wrong)[0])
        raise AssertionError("%s%s = %r, reference %r, error %.3g > %.3g (rtol %g x scale %.3g); %d wrong" % (
            what, list(i), g[i], ref[i], err[i], bound[i], RTOL[dtype], scale[i], wrong.sum()))
    if lost.any():
        i = tuple(np.argwhere(lost)[0])
        raise AssertionError("%s%s = %r is finite, but the reference is %r" % (what, list(i), g[i], ref[i]))


def norms(a, axis=-1):
    with np.errstate(all="ignore"):
        return np.sqrt(np.sum(a * a, axis=axis))


def fro(q):
    with np.errstate(all="ignore"):
        return np.sqrt(np.sum(q * q, axis=(-2, -1)))


def quadform_ref(X64, Q64, c64):
    """q_i = sum_jk (x_i - c)_j Q_jk (x_i - c)_k term by term (IEEE NaN/Inf rules), and its scale."""
    with np.errstate(all="ignore"):
        Xc = X64 if c64 is None else X64 - c64
        ref = (Xc[:, :, None] * Q64[None] * Xc[:, None, :]).sum(axis=(1, 2))
        cn = 0.0 if c64 is None else norms(c64[None])[0]
        scale = (norms(X64) + cn) ** 2 * fro(Q64)
    return ref, scale


def gram_ref(X64, w64, c64):
    """sum over rows with w_i != 0 (the kernels skip the others) and its scale."""
    with np.errstate(all="ignore"):
        keep = np.ones(X64.shape[0], bool) if w64 is None else w64 != 0
        w = np.ones(X64.shape[0]) if w64 is None else w64
        Xc = (X64 if c64 is None else X64 - c64)[keep]
        ref = (w[keep][:, None, None] * Xc[:, :, None] * Xc[:, None, :]).sum(axis=0)
        cn = 0.0 if c64 is None else norms(c64[None])[0]
        scale = np.sum(np.abs(w[keep]) * (norms(X64[keep]) + cn) ** 2)
    return ref, scale


# --- builders, one per function ------------------------------------------------------------

def defect_args(defect):
    """The argument a defect is about, which the error message must name."""
    if defect is None or defect in ("K0",):
        return ()
    if defect in OPTION_DEFECTS:
        return (defect,)
    for suffix in ("_dtype", "_ndim", "_shape", "_none", "_read_only", "_not_array", "_alias"):
        if defect.endswith(suffix):
            return (defect[: -len(suffix)],)
    return (defect,)


def pick_defect(ctx, defects):
    return ctx.draw(st.one_of(st.none(), st.sampled_from(defects)), label="defect")


OUT_DEFECTS = ["out_shape", "out_dtype", "out_read_only", "out_not_array", "out_alias"]
OPTION_DEFECTS = ["threads", "memory_limit"]


def alias_of(ctx, X, shape):
    """A writable array with X's values and an `out` of `shape` overlapping it, or None if
    they cannot overlap (an empty one)."""
    size = int(np.prod(shape))
    if not isinstance(X, np.ndarray) or X.size == 0 or size == 0 or X.dtype not in FLOATS:
        return X, None
    buf = np.empty(X.size + size, dtype=X.dtype)
    start = ctx.draw(st.integers(0, X.size - 1), label="alias start")
    Xw = buf[:X.size].reshape(X.shape)
    Xw[...] = X
    ctx.notes.append("out overlaps X from its element %d" % start)
    return Xw, buf[start:start + size].reshape(shape)


def output_on(ctx, X, shape, dtype, defect):
    """`out` of `shape` for a call on X (see make_output); with the "out_alias" defect, X
    is replaced by a copy that `out` overlaps, and the defect is dropped when they cannot
    overlap. Returns (X, out, expected exception or None, defect)."""
    alias = None
    if defect == "out_alias":
        X, alias = alias_of(ctx, X, shape)
        if alias is None:
            defect = None
    out, eo = make_output(ctx, shape, dtype, defect, alias=alias)
    return X, out, eo, defect


def build_quadform(ctx):
    draw = ctx.draw
    n, d, _ = sizes(ctx)
    defect = pick_defect(ctx, ["X_dtype", "X_ndim", "Q_shape", "Q_dtype", "Q_none", "center_shape",
                               "center_dtype"] + OUT_DEFECTS + OPTION_DEFECTS)
    X, dt, ex = draw_x(ctx, "X", n, d, defect)
    Q, eq = draw_operand(ctx, "Q", (d, d), dt, defect)
    share = n > 0 and defect is None and draw(st.booleans(), label="center is a row of X")
    if share and isinstance(X, np.ndarray):
        c, ec = X[draw(st.integers(0, n - 1))], None
        ctx.notes.append("center is a row of X")
    elif defect in ("center_shape", "center_dtype") or draw(st.booleans(), label="center"):
        c, ec = draw_operand(ctx, "center", (d,), dt, defect)
    else:
        c, ec = None, None
    X, out, eo, defect = output_on(ctx, X, (n,), dt, defect)
    threads, ml, et, small = draw_options(ctx, defect)

    def check(result):
        ref, scale = quadform_ref(as64(X, np.float64), as64(Q, dt), as64(c, dt))
        check_close(result, ref, scale, dt)
        if out is not None:
            assert result is out, "the result is not out"

    return Case("quadform", lambda: gk.quadform(X, Q, center=c, out=out, threads=threads, memory_limit=ml),
                first_expected(ex, eq, ec, eo, et), check, {"X": X, "Q": Q, "center": c}, ctx,
                small_memory=small, arg_names=defect_args(defect))


def build_weighted_gram(ctx):
    draw = ctx.draw
    n, d, _ = sizes(ctx)
    defect = pick_defect(ctx, ["X_dtype", "X_ndim", "w_shape", "w_dtype", "center_shape", "center_dtype"]
                         + OUT_DEFECTS + OPTION_DEFECTS)
    X, dt, ex = draw_x(ctx, "X", n, d, defect)
    ew = ec = None
    if d > 0 and defect is None and isinstance(X, np.ndarray) and draw(st.booleans(), label="w is a column of X"):
        w = X[:, draw(st.integers(0, d - 1))]
        ctx.notes.append("w is a column of X")
    elif defect in ("w_shape", "w_dtype") or draw(st.booleans(), label="w"):
        w, ew = draw_operand(ctx, "w", (n,), dt, defect)
    else:
        w = None
    if defect in ("center_shape", "center_dtype") or draw(st.booleans(), label="center"):
        c, ec = draw_operand(ctx, "center", (d,), dt, defect)
    else:
        c = None
    X, out, eo, defect = output_on(ctx, X, (d, d), dt, defect)
    threads, ml, et, small = draw_options(ctx, defect)

    def check(result):
        ref, scale = gram_ref(as64(X, np.float64), as64(w, dt), as64(c, dt))
        check_close(result, ref, scale, dt)

    return Case("weighted_gram", lambda: gk.weighted_gram(X, w, center=c, out=out, threads=threads, memory_limit=ml),
                first_expected(ex, ew, ec, eo, et), check, {"X": X, "w": w, "center": c}, ctx,
                small_memory=small, arg_names=defect_args(defect))


def build_quadform_many(ctx):
    draw = ctx.draw
    n, d, k = sizes(ctx)
    defect = pick_defect(ctx, ["X_dtype", "X_ndim", "Qs_shape", "Qs_dtype", "centers_shape", "centers_dtype"]
                         + OUT_DEFECTS + OPTION_DEFECTS)
    X, dt, ex = draw_x(ctx, "X", n, d, defect)
    Qs, eq = draw_operand(ctx, "Qs", (k, d, d), dt, defect, free=(0,))
    kk = np.shape(Qs)[0] if np.ndim(Qs) == 3 else k
    ec = None
    if defect is None and n >= kk and isinstance(X, np.ndarray) and draw(st.booleans(), label="centers are rows of X"):
        centers = X[:kk]
        ctx.notes.append("centers are rows of X")
    elif defect in ("centers_shape", "centers_dtype") or draw(st.booleans(), label="centers"):
        centers, ec = draw_operand(ctx, "centers", (kk, d), dt, defect)
    else:
        centers = None
    X, out, eo, defect = output_on(ctx, X, (n, kk), dt, defect)
    threads, ml, et, small = draw_options(ctx, defect)

    def check(result):
        X64, Q64 = as64(X, np.float64), as64(Qs, dt)
        C64 = as64(centers, dt)
        refs = [quadform_ref(X64, Q64[j], None if C64 is None else C64[j]) for j in range(kk)]
        ref = np.stack([r for r, _ in refs], axis=1) if kk else np.zeros((n, 0))
        scale = np.stack([s for _, s in refs], axis=1) if kk else np.zeros((n, 0))
        check_close(result, ref, scale, dt)

    return Case("quadform_many",
                lambda: gk.quadform_many(X, Qs, centers=centers, out=out, threads=threads, memory_limit=ml),
                first_expected(ex, eq, ec, eo, et), check, {"X": X, "Qs": Qs, "centers": centers}, ctx,
                small_memory=small, arg_names=defect_args(defect))


def build_weighted_gram_many(ctx):
    draw = ctx.draw
    n, d, k = sizes(ctx)
    defect = pick_defect(ctx, ["X_dtype", "X_ndim", "R_shape", "R_dtype", "centers_shape", "centers_dtype"]
                         + OUT_DEFECTS + OPTION_DEFECTS)
    share = defect is None and draw(st.booleans(), label="R is X")
    if share:
        k = d
    X, dt, ex = draw_x(ctx, "X", n, d, defect)
    if share and isinstance(X, np.ndarray):
        R, er = X, None
        ctx.notes.append("R is X")
    else:
        R, er = draw_operand(ctx, "R", (n, k), dt, defect, free=(1,))
    kk = np.shape(R)[1] if np.ndim(R) == 2 and np.shape(R)[0] == n else k
    ec = None
    if defect in ("centers_shape", "centers_dtype") or draw(st.booleans(), label="centers"):
        centers, ec = draw_operand(ctx, "centers", (kk, d), dt, defect)
    else:
        centers = None
    X, out, eo, defect = output_on(ctx, X, (kk, d, d), dt, defect)
    threads, ml, et, small = draw_options(ctx, defect)

    def check(result):
        X64, R64, C64 = as64(X, np.float64), as64(R, dt), as64(centers, dt)
        refs = [gram_ref(X64, R64[:, j], None if C64 is None else C64[j]) for j in range(kk)]
        ref = np.stack([r for r, _ in refs]) if kk else np.zeros((0, d, d))
        scale = np.array([s for _, s in refs]).reshape(kk, 1, 1)
        check_close(result, ref, scale, dt)

    return Case("weighted_gram_many",
                lambda: gk.weighted_gram_many(X, R, centers=centers, out=out, threads=threads, memory_limit=ml),
                first_expected(ex, er, ec, eo, et), check, {"X": X, "R": R, "centers": centers}, ctx,
                small_memory=small, arg_names=defect_args(defect))


def build_weighted_sum(ctx):
    draw = ctx.draw
    n, d, k = sizes(ctx)
    defect = pick_defect(ctx, ["X_dtype", "X_ndim", "R_shape", "R_dtype", "R_none"] + OUT_DEFECTS + OPTION_DEFECTS)
    share = defect is None and draw(st.booleans(), label="R is X")
    if share:
        k = d
    X, dt, ex = draw_x(ctx, "X", n, d, defect)
    if share and isinstance(X, np.ndarray):
        R, er = X, None
        ctx.notes.append("R is X")
    else:
        R, er = draw_operand(ctx, "R", (n, k), dt, defect, free=(1,))
    kk = np.shape(R)[1] if np.ndim(R) == 2 else k
    X, out, eo, defect = output_on(ctx, X, (kk, d), dt, defect)
    threads, ml, et, small = draw_options(ctx, defect)

    def check(result):
        X64, R64 = as64(X, np.float64), as64(R, dt)
        with np.errstate(all="ignore"):
            ref = (R64[:, :, None] * X64[:, None, :]).sum(axis=0)
            scale = (np.abs(R64)[:, :, None] * np.abs(X64)[:, None, :]).sum(axis=0)
        check_close(result, ref, scale, dt)

    return Case("weighted_sum",
                lambda: gk.weighted_sum(X, R, out=out, threads=threads, memory_limit=ml),
                first_expected(ex, er, eo, et), check, {"X": X, "R": R}, ctx,
                small_memory=small, arg_names=defect_args(defect))


def build_matmul(ctx):
    draw = ctx.draw
    n, kdim, m = sizes(ctx)
    m = draw(st.sampled_from([m, m, 1, 7]), label="m")
    defect = pick_defect(ctx, ["A_dtype", "A_ndim", "B_shape", "B_dtype", "B_none"] + OUT_DEFECTS + OPTION_DEFECTS)
    A, dt, ea = draw_x(ctx, "A", n, kdim, defect)
    # (B = A.T makes out n x n: only for small n)
    share = defect is None and isinstance(A, np.ndarray) and n <= 700 and draw(st.booleans(), label="B is A.T")
    if share:
        B, eb = A.T, None
        ctx.notes.append("B is A.T")
    else:
        B, eb = draw_operand(ctx, "B", (kdim, m), dt, defect, free=(1,))
    mm = np.shape(B)[1] if np.ndim(B) == 2 else m
    A, out, eo, defect = output_on(ctx, A, (n, mm), dt, defect)
    threads, ml, et, small = draw_options(ctx, defect)

    def check(result):
        A64, B64 = as64(A, np.float64), as64(B, dt)
        with np.errstate(all="ignore"):
            ref = (A64[:, :, None] * B64[None]).sum(axis=1)
            scale = (np.abs(A64)[:, :, None] * np.abs(B64)[None]).sum(axis=1)
        check_close(result, ref, scale, dt)

    return Case("matmul", lambda: gk.matmul(A, B, out=out, threads=threads, memory_limit=ml),
                first_expected(ea, eb, eo, et), check, {"A": A, "B": B}, ctx,
                small_memory=small, arg_names=defect_args(defect))


def build_outer(ctx):
    draw = ctx.draw
    n, m, _ = sizes(ctx)
    n = draw(st.sampled_from([n, n * 7]), label="n")
    ctx.out_decides_dtype = True
    defect = pick_defect(ctx, ["y_dtype", "y_ndim", "x_dtype", "x_ndim", "out_shape", "out_dtype", "out_read_only",
                               "out_not_array", "out_alias"] + OPTION_DEFECTS)
    vecs = {}
    expects = []
    for name, length in (("y", n), ("x", m)):
        dtype_name = draw(st.sampled_from(OPERAND_BAD if defect == name + "_dtype" else
                                          ["float64", "float32", "float32", "float16", "int64", "uint8", "bool",
                                           ">f8", ">f4"]), label=name + " dtype")
        expects.append(TypeError if defect == name + "_dtype" else None)
        shape = (length,)
        if defect == name + "_ndim":
            shape = draw(st.sampled_from([(length, 1), (1, length), ()]))
            expects.append(ValueError)
        dtype = np.dtype(dtype_name)
        vecs[name] = place(ctx, typed(draw_values(ctx, shape, specials=dtype.kind == "f", label=name), dtype), name)
    y, x = vecs["y"], vecs["x"]
    both32 = np.asarray(y).dtype == np.float32 and np.asarray(x).dtype == np.float32
    default = np.dtype(np.float32 if both32 else np.float64)
    out_dtype = default
    if defect is None and draw(st.booleans(), label="out decides the dtype"):
        out_dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
    alias = None
    if defect == "out_alias":
        yv = np.asarray(y)
        if yv.size and m and yv.ndim == 1:
            buf = np.empty(n + n * m, dtype=out_dtype)
            buf[:n] = yv
            y = buf[:n]
            start = draw(st.integers(0, n - 1))
            alias = buf[start:start + n * m].reshape(n, m)
            ctx.notes.append("out overlaps y from its element %d" % start)
        else:
            defect = None
    out, eo = make_output(ctx, (n, m), out_dtype, defect, alias=alias)
    if defect is None and out is None:
        out_dtype = default
    threads, ml, et, small = draw_options(ctx, defect)

    def check(result):
        with np.errstate(all="ignore"):
            ref = (as64(y, out_dtype)[:, None] * as64(x, out_dtype)[None, :]).astype(out_dtype)
        assert isinstance(result, np.ndarray) and result.dtype == out_dtype and result.shape == ref.shape, (
            "result %s %s, expected %s %s" % (getattr(result, "dtype", None), np.shape(result), out_dtype, ref.shape))
        assert np.array_equal(result, ref, equal_nan=True), "outer differs from y[:, None] * x[None, :]"

    return Case("outer", lambda: gk.outer(y, x, out=out, threads=threads, memory_limit=ml),
                first_expected(*expects, eo, et), check, {"y": y, "x": x}, ctx,
                small_memory=small, arg_names=defect_args(defect))


SCATTER_SHAPES = {"full": lambda k, d: (k, d, d), "tied": lambda k, d: (d, d), "diagonal": lambda k, d: (k, d),
                  "none": None}


def mixture_reference(X64, w64, log_norm, means, prec, scatter):
    """(log-likelihood, counts, first, second, resp, score) in float64, and the bound E_i
    on the error of row i's log-densities the tolerance allows."""
    n, d = X64.shape
    k = log_norm.shape[0]
    diff = X64[:, None, :] - means[None]                                   # (n, K, d)
    if prec.ndim == 3:
        quad = np.einsum("nkd,kde,nke->nk", diff, prec, diff)
        pscale = fro(prec)
    else:
        quad = np.einsum("nkd,kd,nkd->nk", diff, prec, diff)
        pscale = norms(prec)
    logp = log_norm[None] - 0.5 * quad
    top = logp.max(axis=1, keepdims=True) if k else np.zeros((n, 1))
    score = (top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))) if n else np.zeros(0)
    resp = np.exp(logp - score[:, None])
    w = np.ones(n) if w64 is None else w64
    wr = w[:, None] * resp
    counts = wr.sum(axis=0)
    first = np.einsum("nk,nkd->kd", wr, diff)
    full = np.einsum("nk,nkd,nke->kde", wr, diff, diff)
    second = {"full": full, "tied": full.sum(axis=0), "diagonal": np.einsum("kdd->kd", full), "none": None}[scatter]
    if scatter == "none":
        first = np.zeros((k, d))
    spread = (norms(X64)[:, None] + norms(means)[None]) ** 2                # (n, K)
    E = (0.5 * spread * pscale[None] + np.abs(log_norm)[None]).max(axis=1) if k else np.zeros(n)
    return float(np.sum(w * score)), counts, first, second, resp, score, E, spread


def build_mixture_pass(ctx):
    draw = ctx.draw
    n, d, k = sizes(ctx)
    defect = pick_defect(ctx, ["X_dtype", "X_ndim", "log_norm_shape", "means_shape", "means_dtype",
                               "precisions_shape", "precisions_dtype", "sample_weight_shape", "scatter", "K0",
                               "resp_out_shape", "resp_out_dtype", "resp_out_read_only", "resp_out_not_array",
                               "score_out_shape", "score_out_dtype", "score_out_not_array"] + OPTION_DEFECTS)
    k = 0 if defect == "K0" else max(k, 1)
    if defect in ("X_dtype", "X_ndim"):
        X, dt, ex = draw_x(ctx, "X", n, d, defect)
    else:
        # Finite, moderate data: the pass exponentiates log-densities.
        dt = np.dtype(draw(st.sampled_from([np.float64, np.float32]), label="X dtype"))
        X, ex = place(ctx, ctx.rng.uniform(-3, 3, (n, d)).astype(dt), "X", allow_list=dt == np.float64), None
    log_norm, el = draw_operand(ctx, "log_norm", (k,), dt, defect, specials=False, free=(0,))
    kk = k if defect == "log_norm_shape" else np.shape(log_norm)[0]
    if defect in ("means_shape", "means_dtype"):
        means, em = draw_operand(ctx, "means", (kk, d), dt, defect, specials=False)
    else:
        mdt = dt if draw(st.booleans(), label="means in X's dtype") else np.dtype(np.float64)
        means, em = place(ctx, ctx.rng.standard_normal((kk, d)).astype(mdt), "means"), None
    kind = draw(st.sampled_from(["matrices", "diagonal"]), label="precisions")
    pshape = (kk, d, d) if kind == "matrices" else (kk, d)
    if defect in ("precisions_shape", "precisions_dtype"):
        precisions, ep = draw_operand(ctx, "precisions", pshape, dt, defect, specials=False,
                                      valid=((kk, d, d), (kk, d)))
    else:
        if kind == "matrices":
            a = ctx.rng.standard_normal((kk, d, d))
            pv = a @ a.transpose(0, 2, 1) / max(d, 1) + np.eye(d)
        else:
            pv = 0.5 + ctx.rng.random((kk, d))
        pdt = dt if draw(st.booleans(), label="precisions in X's dtype") else np.dtype(np.float64)
        precisions, ep = place(ctx, pv.astype(pdt), "precisions"), None
    scatter = draw(st.sampled_from(["full", "tied", "diagonal", "none"]), label="scatter")
    es = None
    if defect == "scatter":
        scatter = draw(st.sampled_from(["spherical", "FULL", "", None, 1]), label="bad scatter")
        es = ValueError
    if defect == "sample_weight_shape" or draw(st.booleans(), label="sample_weight"):
        sw, ew = draw_operand(ctx, "sample_weight", (n,), dt, defect, specials=False, nonneg=True)
    else:
        sw, ew = None, None
    if (defect or "").startswith("resp_out") or draw(st.booleans(), label="resp_out"):
        resp_out, er = make_output(ctx, (n, kk), dt, defect, name="resp_out")
    else:
        resp_out, er = None, None
    if (defect or "").startswith("score_out") or draw(st.booleans(), label="score_out"):
        score_out, eso = make_output(ctx, (n,), dt, defect, name="score_out")
    else:
        score_out, eso = None, None
    threads, ml, et, small = draw_options(ctx, defect)
    ek = ValueError if defect == "K0" else None
    ctx.notes.append("scatter=%r" % (scatter,))

    def check(result):
        ll, counts, first, second = result
        w64 = as64(sw, dt)
        rll, rcounts, rfirst, rsecond, rresp, rscore, E, spread = mixture_reference(
            as64(X, np.float64), w64, as64(log_norm, dt), as64(means, dt), as64(precisions, dt), scatter)
        r = RTOL[dt]
        w = np.ones(n) if w64 is None else w64
        # Row i's log-densities may be off by r * E_i; responsibilities then by about
        # 2 r E_i, and every statistic by its weighted sum of those.
        tol_row = 4 * E + 1
        _check_stat(ll, rll, np.sum(w * (E + np.abs(rscore))), r, "log_likelihood")
        _check_stat(counts, rcounts, np.full(kk, np.sum(w * tol_row)), r, "counts")
        _check_stat(first, rfirst, np.einsum("n,nk->k", w * tol_row, np.sqrt(spread))[:, None] * np.ones((1, d)),
                    r, "first")
        if scatter == "none":
            assert second is None, "second is not None for scatter='none'"
        else:
            s2 = np.einsum("n,nk->k", w * tol_row, spread)
            scale = {"full": s2[:, None, None], "tied": s2.sum(), "diagonal": s2[:, None]}[scatter]
            _check_stat(second, rsecond, np.broadcast_to(scale, rsecond.shape), r, "second")
        if resp_out is not None:
            check_close(resp_out, rresp, tol_row[:, None], dt, "resp_out")
        if score_out is not None:
            check_close(score_out, rscore, tol_row, dt, "score_out")

    return Case("mixture_pass",
                lambda: mixture_pass(X, log_norm, means, precisions, scatter=scatter, sample_weight=sw,
                                     resp_out=resp_out, score_out=score_out, threads=threads, memory_limit=ml),
                first_expected(ex, el, em, ep, es, ew, er, eso, et, ek), check,
                {"X": X, "log_norm": log_norm, "means": means, "precisions": precisions, "sample_weight": sw}, ctx,
                small_memory=small, arg_names=defect_args(defect))


def _check_stat(got, want, scale, rtol, what):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == np.shape(want), "%s has shape %s, expected %s" % (what, got.shape, np.shape(want))
    err = np.abs(got - want)
    bad = ~(err <= rtol * np.asarray(scale) + 1e-300)
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError("%s%s = %r, reference %r, allowed error %.3g" % (
            what, list(i), got[i], want[i], rtol * np.asarray(scale)[i]))


BUILDERS = {
    "quadform": build_quadform,
    "quadform_many": build_quadform_many,
    "weighted_gram": build_weighted_gram,
    "weighted_gram_many": build_weighted_gram_many,
    "weighted_sum": build_weighted_sum,
    "matmul": build_matmul,
    "outer": build_outer,
    "mixture_pass": build_mixture_pass,
}


# --- running one case ----------------------------------------------------------------------

def snapshot(inputs):
    kept = []
    for name, a in inputs.items():
        if isinstance(a, np.ndarray):
            kept.append((name, a, np.array(a, copy=True)))
    return kept


def execute(case):
    """Runs the call and checks every property; raises AssertionError on a violation."""
    before = snapshot(case.inputs)
    outcome = None
    try:
        result = case.call()
    except (ValueError, TypeError) as e:
        outcome = e
    # Inputs are never written.
    for name, a, copy in before:
        same = np.array_equal(a, copy, equal_nan=a.dtype.kind in "fc") if a.dtype != object else (a == copy).all()
        assert same, "input %s changed" % name
    # Bytes around and between the elements of out are never written; on failure nothing is.
    for g in case.ctx.guards:
        changed = np.asarray(g.raw) != g.snapshot
        if outcome is not None:
            assert not changed.any(), "%s's buffer changed although the call failed (%s)" % (g.name, outcome)
        outside = changed & ~g.mask
        assert not outside.any(), "%d guard byte(s) around %s changed, first at byte %d" % (
            outside.sum(), g.name, np.argmax(outside))
    if outcome is None:
        assert case.expect is None, "expected %s, but the call succeeded" % (case.expect,)
        case.check(result)
        return "ok"
    message = str(outcome)
    if case.expect is None:
        if isinstance(outcome, ValueError) and case.small_memory and "memory_limit" in message:
            return "memory_limit"
        raise AssertionError("valid call raised %s: %s" % (type(outcome).__name__, message))
    assert isinstance(outcome, case.expect), "expected %s, got %s: %s" % (case.expect, type(outcome).__name__, message)
    assert message.strip(), "empty error message"
    for name in case.arg_names:
        assert name in message, "the message does not name %s: %r" % (name, message)
    return type(outcome).__name__


# --- the tests -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz"))


def draw_case(data, name, tmp, isolated):
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    ctx = Ctx(data.draw, tmp, seed, isolated)
    case = BUILDERS[name](ctx)
    note(case.text())
    return case


@pytest.mark.parametrize("name", FUNCTIONS)
@fuzz_settings("in_process")
@given(data=st.data())
def test_fuzz_in_process(name, data, fuzz_dir):
    event(execute(draw_case(data, name, fuzz_dir, isolated=False)))


@pytest.mark.parametrize("name", FUNCTIONS)
@fuzz_settings("isolated")
@given(data=st.data())
def test_fuzz_isolated(name, data, fuzz_dir):
    # Adds zero-stride (broadcast) views of every operand and larger n; run in a child.
    case = draw_case(data, name, fuzz_dir, isolated=True)
    event(run_forked(lambda: execute(case))[0])


# --- huge shapes and strides -------------------------------------------------------------------

HUGE = [2**31 + 1, 2**33, 2**40, 2**58]
# Kernels whose work grows with n although their default out does not: a huge n there is
# legitimately slow, not an error; their huge cases are in the other dimensions.
REDUCTIONS = {"weighted_gram", "weighted_gram_many", "weighted_sum", "mixture_pass"}


@st.composite
def huge_shape_case(draw):
    """A call with one huge dimension, made of zero-stride views: it must fail fast with
    ValueError (shapes, memory_limit), TypeError or MemoryError (the default out cannot be
    allocated, or the child's capped address space refuses the workspace), or succeed
    quickly; never crash or hang."""
    name = draw(st.sampled_from(FUNCTIONS), label="function")
    dt = np.dtype(draw(st.sampled_from([np.float64, np.float32]), label="dtype"))
    where = draw(st.sampled_from(["d", "K", "K_mid"] + ([] if name in REDUCTIONS else ["n"])), label="huge")
    size = draw(st.sampled_from([2**20, 2**22, 2**24] if where == "K_mid" else HUGE), label="size")
    n = size if where == "n" else 3
    d = size if where == "d" else 2
    k = size if where in ("K", "K_mid") else 2

    def v(shape, value=1.0):
        try:
            return np.broadcast_to(np.asarray(value, dt), shape)
        except ValueError:  # a view numpy cannot describe: size * itemsize >= 2**63
            assume(False)

    X = v((n, d))
    args = {
        "quadform": lambda: (X, v((d, d), 0.0)),
        "quadform_many": lambda: (X, v((k, d, d), 0.0)),
        "weighted_gram": lambda: (X, v((n,))),
        "weighted_gram_many": lambda: (X, v((n, k))),
        "weighted_sum": lambda: (X, v((n, k))),
        "matmul": lambda: (X, v((d, k))),
        "outer": lambda: (v((n,)), v((d if where == "d" else k,))),
        "mixture_pass": lambda: (X, v((k,), 0.0), v((k, d), 0.0), v((k, d))),
    }[name]()
    kwargs = {}
    if name == "mixture_pass":
        kwargs["scatter"] = draw(st.sampled_from(["full", "diagonal", "none"]), label="scatter")
    fn = gk.__dict__.get(name, mixture_pass)
    note("%s(%s, %s)" % (name, ", ".join("%s %s strides=%s" % (a.dtype, a.shape, a.strides) for a in args), kwargs))
    return name, lambda: fn(*args, **kwargs)


@fuzz_settings("huge_shapes")
@given(case=huge_shape_case())
def test_fuzz_huge_shapes(case):
    name, fn = case

    def body():
        try:
            fn()
        except (ValueError, TypeError, MemoryError) as e:
            assert str(e).strip(), "empty message"
            return type(e).__name__
        return "ok"

    event(run_forked(body, timeout=60)[0])


@st.composite
def huge_stride_case(draw):
    """Arguments where an axis of length 1 has a huge stride (any stride is valid there,
    since it never moves the address): a kernel must work exactly as with a small one."""
    name = draw(st.sampled_from(["quadform", "quadform_many", "weighted_gram", "weighted_gram_many",
                                 "weighted_sum", "matmul", "outer"]))
    dt = np.dtype(draw(st.sampled_from([np.float64, np.float32])))
    stride = draw(st.sampled_from([2**31 * 8, 2**34, 2**40, 2**62, -(2**40), -(2**34)])) * dt.itemsize // 8
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.sampled_from([1, 3]))
    d = draw(st.sampled_from([1, 3]))
    k = draw(st.sampled_from([1, 2]))

    def arr(shape):
        return rng.standard_normal(shape).astype(dt)

    def widen(a):
        """`a` with every length-1 axis given the huge stride."""
        strides = tuple(stride if s == 1 else st_ for s, st_ in zip(a.shape, a.strides))
        return as_strided(a, a.shape, strides)

    target = draw(st.sampled_from(["first", "second", "out"]))
    if name == "quadform":
        X, Q = arr((n, d)), arr((d, d))
        args, out_shape = [X, Q], (n,)
        ref = lambda a: np.einsum("ij,jk,ik->i", a[0].astype(float), a[1].astype(float), a[0].astype(float))  # noqa: E731
    elif name == "quadform_many":
        X, Q = arr((n, d)), arr((k, d, d))
        args, out_shape = [X, Q], (n, k)
        ref = lambda a: np.einsum("ij,mjk,ik->im", a[0].astype(float), a[1].astype(float), a[0].astype(float))  # noqa: E731
    elif name == "weighted_gram":
        X, w = arr((n, d)), arr((n,))
        args, out_shape = [X, w], (d, d)
        ref = lambda a: np.einsum("i,ij,ik->jk", a[1].astype(float), a[0].astype(float), a[0].astype(float))  # noqa: E731
    elif name == "weighted_gram_many":
        X, R = arr((n, d)), arr((n, k))
        args, out_shape = [X, R], (k, d, d)
        ref = lambda a: np.einsum("im,ij,ik->mjk", a[1].astype(float), a[0].astype(float), a[0].astype(float))  # noqa: E731
    elif name == "weighted_sum":
        X, R = arr((n, d)), arr((n, k))
        args, out_shape = [X, R], (k, d)
        ref = lambda a: a[1].astype(float).T @ a[0].astype(float)  # noqa: E731
    elif name == "matmul":
        A, B = arr((n, d)), arr((d, k))
        args, out_shape = [A, B], (n, k)
        ref = lambda a: a[0].astype(float) @ a[1].astype(float)  # noqa: E731
    else:
        y, x = arr((n,)), arr((d,))
        args, out_shape = [y, x], (n, d)
        ref = lambda a: np.outer(a[0].astype(float), a[1].astype(float))  # noqa: E731
    out = np.zeros(out_shape, dt)
    if target == "first":
        args[0] = widen(args[0])
    elif target == "second":
        args[1] = widen(args[1])
    else:
        out = widen(out)
    note("%s(%s, out=%s)" % (name, ", ".join("%s strides=%s" % (a.shape, a.strides) for a in args),
                             "%s strides=%s" % (out.shape, out.strides)))
    return name, args, out, ref, dt


@fuzz_settings("huge_strides")
@given(case=huge_stride_case())
def test_fuzz_huge_strides_on_length_one_axes(case):
    name, args, out, ref, dt = case
    fn = getattr(gk, name)

    def body():
        result = fn(*args, out=out)
        want = ref(args)
        scale = np.abs(want).max(initial=0) + 1
        assert np.allclose(result, want, rtol=RTOL[dt], atol=RTOL[dt] * scale), "%s differs from numpy" % name
        return "ok"

    run_forked(body, timeout=60)


def test_one_row_view_with_a_huge_row_stride():
    # The smallest input of the kind the fuzz above generates: one row of X whose row stride
    # is 2**34 bytes (2**31 float64 elements). numpy treats it as any one-row array (the
    # stride of a length-1 axis never moves the address); the kernels must too, and not pass
    # the stride to BLAS, whose 32-bit leading dimension cannot hold it (Swift's conversion
    # traps: the process dies of SIGILL).
    failures = []
    for name in ["quadform", "quadform_many", "weighted_gram", "weighted_gram_many", "weighted_sum", "matmul"]:
        def body(name=name):
            X = as_strided(np.array([[1.0, 2.0, 3.0]]), (1, 3), (2**34, 8))
            other = {"quadform": (np.eye(3),), "quadform_many": (np.eye(3)[None],), "weighted_gram": (),
                     "weighted_gram_many": (np.ones((1, 2)),), "weighted_sum": (np.ones((1, 2)),),
                     "matmul": (np.ones((3, 2)),)}[name]
            Xc = np.ascontiguousarray(X)
            got, want = getattr(gk, name)(X, *other), getattr(gk, name)(Xc, *other)
            assert np.allclose(got, want), name
        try:
            run_forked(body, timeout=60)
        except AssertionError as e:
            failures.append("%s: %s" % (name, str(e).splitlines()[0]))
    assert not failures, "\n".join(failures)


def test_column_slice_of_a_wide_memmap(tmp_path):
    # The same on a realistic input: the first columns of a float32 file of 3 rows of
    # 2**31 + 8 values (a sparse file: only the first values are written). The view's row
    # stride, 2**31 + 8 elements, does not fit BLAS's 32-bit leading dimension.
    path = tmp_path / "wide.f32"
    cols = 2**31 + 8
    with open(path, "wb") as f:
        f.truncate(3 * cols * 4)
    mm = np.memmap(path, dtype=np.float32, mode="r+", shape=(3, cols))
    mm[:, :4] = np.arange(12, dtype=np.float32).reshape(3, 4)
    mm.flush()
    del mm
    failures = []
    for name, args in (("quadform", (np.eye(4),)), ("weighted_gram", ()), ("weighted_sum", (np.ones((3, 2)),)),
                       ("matmul", (np.ones((4, 2)),))):
        def body(name=name, args=args):
            X = np.memmap(path, dtype=np.float32, mode="r", shape=(3, cols))[:, :4]
            got, want = getattr(gk, name)(X, *args), getattr(gk, name)(np.ascontiguousarray(X), *args)
            assert np.allclose(got, want), name
        try:
            run_forked(body, timeout=120, address_space=None)
        except AssertionError as e:
            failures.append("%s: %s" % (name, str(e).splitlines()[0]))
    assert not failures, "\n".join(failures)


def test_mixture_pass_output_errors_name_the_argument():
    # Errors about mixture_pass's two outputs name the one that is wrong, not just "out".
    X = np.zeros((4, 2))
    unnamed = []
    for name, shape in (("resp_out", (4, 1)), ("score_out", (4,))):
        for defect in ("read_only", "shape", "dtype"):
            out = np.zeros(shape if defect != "shape" else shape[:-1] + (shape[-1] + 1,),
                           dtype=np.float32 if defect == "dtype" else np.float64)
            out.flags.writeable = defect != "read_only"
            with pytest.raises((ValueError, TypeError)) as info:
                mixture_pass(X, np.zeros(1), np.zeros((1, 2)), np.ones((1, 2)), **{name: out})
            if name not in str(info.value):
                unnamed.append("%s %s: %r" % (name, defect, str(info.value)))
    assert not unnamed, "messages that do not name the argument:\n" + "\n".join(unnamed)
