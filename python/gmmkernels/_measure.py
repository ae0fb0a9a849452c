"""Measuring what a call costs: peak extra anonymous memory and wall time.

Peak memory is sampled from /proc/self/status (RssAnon: heap and anonymous mappings,
which is where numpy temporaries and the kernels' workspace live; pages of a memmap'd
file are RssFile and do not count). tracemalloc would not see the Swift library's
allocations, so it is not used.
"""
import threading
import time


def rss_anon():
    """Resident anonymous memory of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakMemory:
    """Context manager: `.peak` is the largest RssAnon growth seen during the block, in bytes.

    Sampled in a helper thread (the kernels and numpy release the GIL while they work),
    plus once at the end: every `interval` seconds at first, then every 1% of the time
    elapsed, up to `max_interval` (each sample costs the measured call ~20 µs of a core; at
    1 ms intervals that slowed a 1 s BLAS-bound call by 3-5%).
    """

    def __init__(self, interval=0.001, max_interval=0.02):
        self.interval = interval
        self.max_interval = max_interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.baseline = rss_anon()
        self.peak = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        start = time.perf_counter()
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon() - self.baseline)
            elapsed = time.perf_counter() - start
            self._stop.wait(min(self.max_interval, max(self.interval, 0.01 * elapsed)))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon() - self.baseline)
        return False


def timed(fn, *args, repeat=3, **kwargs):
    """(median seconds, peak extra memory in bytes, last result) over `repeat` calls."""
    times, peaks, result = [], [], None
    for _ in range(repeat):
        result = None
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            result = fn(*args, **kwargs)
            times.append(time.perf_counter() - t0)
        peaks.append(mem.peak)
    times.sort()
    return times[len(times) // 2], max(peaks), result
