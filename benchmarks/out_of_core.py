"""The out-of-core suite: X larger than RAM, each call reading it from the disk."""
import os
import tempfile
import time

import numpy as np

import gmmkernels

from . import datafiles
from .common import (
    CORE_MEMORY_TARGET, PairedGemm, _verdict, check_disk_space, format_bytes, format_seconds, max_rel_diff, total_ram,
)
from .measure import PeakMemory


OUT_OF_CORE_SIZE = (2_500_000, 1600)

OUT_OF_CORE_TARGET = 0.85

def sequential_read(path, d, itemsize, check_vector, chunk_bytes=datafiles.CHUNK_BYTES):
    """Reads the file from start to end in large reads: (bytes per second in the reads, X·v).

    X·v (for the Gram check) is computed between the reads and not counted in the rate.
    """
    row_bytes = d * itemsize
    buf = np.empty(max(1, chunk_bytes // row_bytes) * row_bytes, dtype=np.uint8)
    dtype = np.float64 if itemsize == 8 else np.float32
    products, total, reading = [], 0, 0.0
    with open(path, "rb", buffering=0) as f:
        while True:
            t0 = time.perf_counter()
            got = f.readinto(buf)
            reading += time.perf_counter() - t0
            if not got:
                break
            total += got
            products.append(buf[:got].view(dtype).reshape(-1, d) @ check_vector)
    return total / reading, np.concatenate(products)

def run_out_of_core(args):
    """quadform and weighted_gram on a file larger than RAM, each call starting from the disk."""
    n, d = OUT_OF_CORE_SIZE
    n = args.n if args.n_given else n
    d = args.d if args.d_given else d
    dtype = np.dtype("float64" if args.dtype == "both" else args.dtype)
    directory = args.dir or tempfile.gettempdir()
    size = datafiles.nbytes((n, d), dtype)
    ram = total_ram()
    path = os.path.join(directory, "gmmkernels-out-of-core-%dx%d-%s.dat" % (n, d, dtype.name))
    print("out-of-core suite: X (%s, %d) %s = %s in %s; RAM %s%s"
          % (f"{n:,}", d, dtype.name, format_bytes(size), directory, format_bytes(ram),
             "" if size > ram else " (X is not larger than RAM: the page cache may hold part of it)"))
    if os.path.isfile(path) and os.path.getsize(path) == size:
        print("reusing %s" % path)
    else:
        check_disk_space(directory, size, "--n", spare=1 << 30)
        t0 = time.perf_counter()
        datafiles.make_data_file(path, (n, d), dtype, seed=21, mean=2.0)
        seconds = time.perf_counter() - t0
        print("wrote X in %.0f s (%.2f GB/s)" % (seconds, size / seconds / 1e9))
    records = []
    try:
        rng = np.random.default_rng(22)
        v = rng.standard_normal(d).astype(dtype)
        datafiles.evict(path)
        read_rate, xv = sequential_read(path, d, dtype.itemsize, v)
        print("sequential read of the whole file (%d MiB reads, page cache dropped first): %.2f GB/s, %.0f s"
              % (datafiles.CHUNK_BYTES >> 20, read_rate / 1e9, size / read_rate))
        B = rng.standard_normal((d, d)) * (0.1 / np.sqrt(d))
        Q = (B + B.T + np.eye(d)).astype(dtype)
        c = np.full(d, 2.0, dtype=dtype)
        w = rng.uniform(0.1, 2.0, n).astype(dtype)
        q_out = np.full(n, 0, dtype=dtype)
        g_out = np.full((d, d), 0, dtype=dtype)
        paired = PairedGemm(dtype, args.gemm_size)
        flops = float(n) * d * d
        cases = [("quadform", lambda X: gmmkernels.quadform(X, Q, center=c, out=q_out)),
                 ("weighted_gram", lambda X: gmmkernels.weighted_gram(X, w, out=g_out))]
        print("%-16s %9s %8s %8s %10s %10s %9s %10s" % ("kernel", "seconds", "GB/s", "GFLOP/s", "compute s",
                                                     "read s", "% limit", "peak extra"))
        for name, call in cases:
            datafiles.evict(path)
            X = np.memmap(path, dtype=dtype, mode="r", shape=(n, d))
            rate = paired.rate()
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                call(X)
                seconds = time.perf_counter() - t0
            del X
            compute = flops / (rate * 1e9)
            reading = size / read_rate
            share = max(compute, reading) / seconds
            records.append({"kernel": "out-of-core " + name, "dtype": dtype.name, "n": n, "d": d,
                            "seconds": seconds, "gb_per_s": size / seconds / 1e9,
                            "gflops": flops / seconds / 1e9, "paired_gemm_gflops": rate,
                            "sequential_read_gb_per_s": read_rate / 1e9, "compute_seconds": compute,
                            "read_seconds": reading, "percent_of_limit": 100 * share, "peak_bytes": mem.peak})
            print("%-16s %9s %8.2f %8.1f %10.1f %10.1f %9.1f %10s %s"
                  % (name, format_seconds(seconds), size / seconds / 1e9, flops / seconds / 1e9, compute, reading,
                     100 * share, format_bytes(mem.peak),
                     _verdict(share >= OUT_OF_CORE_TARGET and mem.peak <= CORE_MEMORY_TARGET)), flush=True)
        # Results: quadform on sampled rows against numpy; the Gram through v'Gv = sum_i w_i (x_i.v)^2.
        X = np.memmap(path, dtype=dtype, mode="r", shape=(n, d))
        rows = np.sort(rng.choice(n, size=min(n, 2000), replace=False))
        Xs = np.asarray(X[rows], dtype=np.float64) - 2.0
        q_ref = np.einsum("ij,ij->i", Xs @ Q.astype(np.float64), Xs)
        del X
        q_diff = max_rel_diff(q_out[rows], q_ref)
        vgv = float(v.astype(np.float64) @ g_out.astype(np.float64) @ v.astype(np.float64))
        vgv_ref = float(np.dot(w.astype(np.float64), xv.astype(np.float64) ** 2))
        g_diff = abs(vgv - vgv_ref) / abs(vgv_ref)
        tol = 1e-3 if dtype == np.float32 else 1e-9
        print("results: quadform on %d sampled rows max rel diff %.1e, weighted_gram v'Gv rel diff %.1e (tolerance "
              "%.0e) %s" % (len(rows), q_diff, g_diff, tol, "ok" if max(q_diff, g_diff) <= tol else "MISMATCH"))
        for r in records:
            r["max_rel_diff"] = q_diff if r["kernel"].endswith("quadform") else g_diff
    finally:
        if args.keep:
            print("kept %s" % path)
        else:
            os.unlink(path)
    return records
