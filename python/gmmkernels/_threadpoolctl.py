"""gmmkernels as a thread pool of threadpoolctl (≥ 3.5), when threadpoolctl is installed:
``threadpool_info()`` lists it with its thread count, and ``threadpool_limits(n)`` caps the
threads of the calls made with ``threads=None`` inside it (through :func:`set_thread_limit`).
"""
from ._library import default_threads, library_version
from ._validation import get_thread_limit, set_thread_limit


def register():
    """Registers the controller; does nothing without threadpoolctl ≥ 3.5."""
    try:
        import threadpoolctl
    except ImportError:
        return False
    major, minor = (int(p) for p in threadpoolctl.__version__.split(".")[:2])
    if (major, minor) < (3, 5):
        return False

    class GMMKernelsController(threadpoolctl.LibController):
        user_api = "gmmkernels"
        internal_api = "gmmkernels"
        filename_prefixes = ("libgmmkernels",)
        check_symbols = ("gmk_abi_version",)

        def get_num_threads(self):
            return get_thread_limit()

        def set_num_threads(self, num_threads):
            # threadpoolctl restores by setting the count it read: the default count means
            # "no limit", so that a later change of the CPU affinity is followed again.
            set_thread_limit(None if num_threads == default_threads() else num_threads)

        def get_version(self):
            return library_version

        def set_additional_attributes(self):
            pass

    threadpoolctl.register(GMMKernelsController)
    return True
