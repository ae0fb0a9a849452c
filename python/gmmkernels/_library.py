"""The one module that touches ctypes: finds and loads libgmmkernels, checks its ABI
version, declares every function of include/gmmkernels.h, and runs calls with
cancellation (Ctrl-C) and progress reporting.

Lookup order: the GMMKERNELS_LIBRARY environment variable, this package's folder (an
installed wheel), then the repository's .build/release/ (a checkout).
"""
import ctypes
import os
import threading
from pathlib import Path

import numpy as np

ABI_VERSION = 1
LIBRARY_NAME = "libgmmkernels.so"

_FLOAT32, _FLOAT64 = 1, 2
_DTYPE_CODES = {np.dtype(np.float32): _FLOAT32, np.dtype(np.float64): _FLOAT64}

_OK, _ERR_VALUE, _ERR_TYPE, _ERR_MEMORY, _ERR_CANCELLED = 0, 1, 2, 3, 4
_EXCEPTIONS = {_ERR_VALUE: ValueError, _ERR_TYPE: TypeError, _ERR_MEMORY: MemoryError}


class _Array(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.c_int64 * 3),
        ("strides", ctypes.c_int64 * 3),
    ]


class _Options(ctypes.Structure):
    _fields_ = [
        ("threads", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
        ("memory_limit", ctypes.c_int64),
        ("cancel", ctypes.POINTER(ctypes.c_int32)),
        ("rows_done", ctypes.POINTER(ctypes.c_int64)),
    ]


_P = ctypes.POINTER
# Each kernel's parameters before its options: "a" a gmk_array pointer, "i" an int32.
_KERNELS = {
    "gmk_quadform": "aaaa",
    "gmk_weighted_gram": "aaaa",
    "gmk_quadform_many": "aaaa",
    "gmk_weighted_gram_many": "aaaa",
    "gmk_weighted_sum": "aaa",
    "gmk_matmul": "aaa",
    "gmk_outer": "aaa",
    "gmk_mixture_pass": "aaaaaiaaa",
}
_ARGTYPES = {"a": _P(_Array), "i": ctypes.c_int32}


def _candidates():
    env = os.environ.get("GMMKERNELS_LIBRARY")
    if env:
        yield Path(env)
        return
    here = Path(__file__).resolve().parent
    yield here / LIBRARY_NAME
    yield here.parent.parent / ".build" / "release" / LIBRARY_NAME


def _load():
    tried = []
    for path in _candidates():
        tried.append(str(path))
        if path.is_file():
            lib = ctypes.CDLL(str(path))
            break
    else:
        raise ImportError(
            "gmmkernels: cannot find %s (looked at: %s). Build it with "
            "`swift build -c release` in the repository, install the package with "
            "`pip install ./python`, or set GMMKERNELS_LIBRARY." % (LIBRARY_NAME, ", ".join(tried))
        )
    lib.gmk_abi_version.restype = ctypes.c_int32
    lib.gmk_abi_version.argtypes = []
    found = lib.gmk_abi_version()
    if found != ABI_VERSION:
        raise ImportError(
            "gmmkernels: %s has ABI version %d, this package needs %d; rebuild the library"
            % (path, found, ABI_VERSION)
        )
    lib.gmk_version.restype = ctypes.c_char_p
    lib.gmk_version.argtypes = []
    lib.gmk_last_error.restype = ctypes.c_char_p
    lib.gmk_last_error.argtypes = []
    lib.gmk_default_threads.restype = ctypes.c_int32
    lib.gmk_default_threads.argtypes = []
    for name, params in _KERNELS.items():
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int32
        fn.argtypes = [_ARGTYPES[p] for p in params] + [_P(_Options)]
    return lib, path


_lib, library_path = _load()
library_version = _lib.gmk_version().decode()


def default_threads():
    """The number of CPUs this process may use (its affinity mask)."""
    return int(_lib.gmk_default_threads())


def describe(a):
    """A gmk_array for an ndarray of float32/float64 (no copy), or None for None."""
    if a is None:
        return None
    d = _Array()
    d.data = a.__array_interface__["data"][0] if a.size else None
    d.dtype = _DTYPE_CODES[a.dtype]
    d.ndim = a.ndim
    for i, (s, st) in enumerate(zip(a.shape, a.strides)):
        d.shape[i] = s
        d.strides[i] = st
    return d


def call(name, arguments, *, threads, memory_limit, progress=None):
    """Calls kernel `name` with `arguments` in the header's order: ndarrays (or None) for
    array parameters, ints for int32 parameters.

    Work runs in a helper thread while this one waits, so that Ctrl-C (delivered to the
    main thread) sets the kernel's cancel flag; the kernel stops within one row block and
    KeyboardInterrupt is raised. `progress`, if given, is called with the rows done so far.
    """
    fn = getattr(_lib, name)
    descriptors = [
        a if kind == "i" else None if a is None else ctypes.pointer(describe(a))
        for kind, a in zip(_KERNELS[name], arguments)
    ]
    cancel = ctypes.c_int32(0)
    rows_done = ctypes.c_int64(0)
    options = _Options(
        threads=threads or 0,
        reserved=0,
        memory_limit=memory_limit or 0,
        cancel=ctypes.pointer(cancel),
        rows_done=ctypes.pointer(rows_done),
    )
    result = {}
    done = threading.Event()

    def run():
        try:
            status = fn(*descriptors, ctypes.byref(options))
            result["status"] = status
            if status != _OK:
                result["message"] = _lib.gmk_last_error().decode(errors="replace")
        finally:
            done.set()

    on_main = threading.current_thread() is threading.main_thread()
    if not on_main and progress is None:
        run()  # no signal can reach this thread: nothing to wait for
    else:
        # Wait on an Event, not Thread.join: a KeyboardInterrupt inside join() marks a
        # still-running thread as finished in CPython < 3.13 (bpo-45274's handling), so a
        # second join() would return while the kernel still writes `out`.
        threading.Thread(target=run, name="gmmkernels-" + name, daemon=True).start()
        try:
            while not done.wait(0.1):
                if progress is not None:
                    progress(rows_done.value)
            if progress is not None:
                progress(rows_done.value)
        except BaseException:
            cancel.value = 1
            while True:
                try:
                    done.wait()
                    break
                except KeyboardInterrupt:
                    continue  # another Ctrl-C: the kernel is already stopping
            raise
    status = result.get("status")
    if status == _OK:
        return
    message = result.get("message", "")
    if status == _ERR_CANCELLED:
        raise KeyboardInterrupt(message)
    raise _EXCEPTIONS.get(status, RuntimeError)("%s: %s" % (name[4:], message))
