"""Running calls under the memory meter, on several threads, and in a forked child."""
import ctypes
import ctypes.util
import gc
import os
import pickle
import resource
import select
import signal
import threading
import time
import traceback

from benchmarks.measure import PeakMemory

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_environment():
    """os.environ for a Python child that imports what the tests do: the package (python/),
    the tests' own modules and the repository's benchmarks (for the memory meter)."""
    paths = [os.path.dirname(_TESTS), _TESTS, os.path.dirname(os.path.dirname(_TESTS))]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def measured(call):
    """(result, peak RssAnon growth in bytes) of call().

    Free heap memory is returned to the system first (malloc_trim), so that the call cannot
    reuse pages freed earlier in this process without them showing as growth.
    """
    gc.collect()
    if hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)
    with PeakMemory(interval=0.0005, max_interval=0.0005) as mem:
        result = call()
    return result, mem.peak


def run_in_threads(work, count, timeout=120):
    """Runs work(i) for i < count, each on its own thread, and requires them all to finish
    within `timeout` seconds and raise nothing (the first error is re-raised here)."""
    errors = []

    def guarded(i):
        try:
            work(i)
        except BaseException as e:  # reported in the test's thread
            errors.append((i, e))

    workers = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in workers), "concurrent calls did not finish (deadlock?)"
    assert not errors, errors


# --- a call in a forked child ---------------------------------------------------------------

# Limits of a forked child's address space: nothing a child does may take the machine's memory.
CHILD_ADDRESS_SPACE = 6 << 30
CHILD_TIMEOUT = 120.0


def run_forked(fn, *, timeout=CHILD_TIMEOUT, address_space=CHILD_ADDRESS_SPACE):
    """Runs fn() in a forked child; returns (outcome, stderr of the child). The outcome is
    fn's return value, or raises AssertionError for a failed check, a crash or a timeout."""
    r, w = os.pipe()
    er, ew = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(r)
            os.close(er)
            os.dup2(ew, 2)
            if address_space:
                resource.setrlimit(resource.RLIMIT_AS, (address_space, resource.RLIM_INFINITY))
            try:
                payload = ("ok", fn())
            except AssertionError as e:
                payload = ("fail", str(e))
            except BaseException as e:  # noqa: B902 - reported to the parent
                payload = ("error", "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
            os.write(w, pickle.dumps(payload))
        finally:
            os._exit(0)
    os.close(w)
    os.close(ew)
    chunks = {r: [], er: []}
    open_fds = [r, er]
    deadline = time.monotonic() + timeout
    timed_out = False
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(open_fds, [], [], left)
        for fd in ready:
            data = os.read(fd, 1 << 16)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.remove(fd)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(r)
    os.close(er)
    stderr = b"".join(chunks[er]).decode(errors="replace")[-3000:]
    if timed_out:
        raise AssertionError("the call did not finish within %.0f s\nstderr: %s" % (timeout, stderr))
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        raise AssertionError("the process died of %s\nstderr: %s" % (signal.Signals(sig).name, stderr))
    if os.WEXITSTATUS(status) != 0 or not chunks[r]:
        raise AssertionError("the child exited with status %d\nstderr: %s" % (os.WEXITSTATUS(status), stderr))
    kind, value = pickle.loads(b"".join(chunks[r]))
    if kind != "ok":
        raise AssertionError("%s\nstderr: %s" % (value, stderr))
    return value, stderr
