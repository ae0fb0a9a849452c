"""Progress display for long kernel calls: a tqdm bar when asked for."""
import contextlib


@contextlib.contextmanager
def progress_callback(progress, total, desc):
    """Yields None (no progress), the user's callable, or an updater of a tqdm bar."""
    if not progress:
        yield None
        return
    if callable(progress):
        yield progress
        return
    try:
        from tqdm.auto import tqdm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("progress=True needs tqdm: pip install tqdm") from e
    bar = tqdm(total=total, desc=desc, unit="rows", unit_scale=True)

    def report(done):
        bar.update(done - bar.n)

    try:
        yield report
    finally:
        bar.close()
