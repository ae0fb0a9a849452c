"""Benchmarks: gmmkernels against the numpy and dask code it replaces, judged against GEMM.

    python -m benchmarks [--n 200000] [--d 900] [--dtype both] [--repeat 3]
                         [--kernels quadform weighted_gram] [--zero-fraction 0.3]
                         [--scaling] [--json bench-results/bench.json] [--plot FILE.png]
    python -m benchmarks --kernels batch [--components 16] [--centers]
    python -m benchmarks --kernels matmul outer [--outer-memmap]
    python -m benchmarks --kernels gmm [--components 16]
    python -m benchmarks --kernels wide [--d 2500] [--n 64000]
    python -m benchmarks --kernels precisions [--components 200] [--n 100000]
    python -m benchmarks --kernels out-of-core [--n 2500000] [--d 1600] [--dir DIR] [--keep]
    python -m benchmarks --kernels all

``--kernels`` takes kernel names and the groups ``core`` (quadform, weighted_gram: the
default), ``batch`` (quadform_many, weighted_gram_many) and ``all``. ``--n``/``--d`` set the
size of every suite run; without them each suite has its own default (see SUITE_SIZES).

What is measured, in one run:

- the GEMM rate of the BLAS in this process (numpy's own OpenBLAS: ``np.dot`` of two
  4000 × 4000 matrices, 2·m³ flops), in float64 (dgemm) and float32 (sgemm). That is the
  ceiling; gmmkernels links the system OpenBLAS, which is not reachable from Python
  without a second binding, so the two BLAS builds may differ somewhat;
- for each kernel and method: the median wall time of ``--repeat`` calls, the effective
  rate, the share of the limit (each call is preceded by a timed GEMM of the same precision,
  and the share is the median over the calls of the limit at that GEMM's rate over the
  call's time: the machine's speed drifts within a run when it is shared), the speedup over
  the hand-blocked numpy code, the peak extra anonymous memory (heap and anonymous mappings,
  including the result; pages of the memmap'd file do not count), and the largest
  difference from gmmkernels' result.

Necessary flops, which the effective rate counts: x_iᵀ Q x_i needs one triangle of the
symmetric part of Q (d²/2 multiply-adds per row), so quadform needs n·d² flops; Σ w_i x_i x_iᵀ
is a symmetric rank-k update (SYRK: d²/2 multiply-adds per row) over the rows of nonzero
weight, so weighted_gram needs nnz(w)·d². Plain GEMM does twice that, so a GEMM-based
method can reach at most 50% of the limit by this count. The "limit" is the time of the
necessary flops at the GEMM rate; after each kernel a verdict line compares the gmmkernels
call with the targets.

X is a memmap of a file on disk (in ``--dir``), read once before the timed calls so that
it sits in the page cache: compute is measured, not the disk.

The other suites (each opt-in, float64 unless ``--dtype`` is given):

- batch (``quadform_many``, ``weighted_gram_many``), K = ``--components`` matrices or
  columns of responsibilities on X of n × d (default 200000 × 300, 480 MB of float64): the
  one-pass batch call against K calls of the single kernel and against K blocked numpy
  passes (``benchmarks.baselines.blocked_*_many``). X is a memmap whose pages are dropped from the page
  cache before every timed call (``datafiles.evict``), so each call starts from the disk;
  when X fits in RAM, K single calls read the disk in their first call only, so the K
  calls are also timed as when X is larger than RAM ("K calls from disk": the pages are
  dropped before each of them). Necessary flops: K·n·d². One timed call per method unless
  ``--repeat`` says otherwise.
- matmul: ``gmmkernels.matmul(A, B)`` against numpy's ``A @ B`` in RAM for A (n, d) @ B (d, d)
  (default 20000 × 2000 @ 2000 × 2000) and a tall-skinny A (50·n, 64) @ B (64, 64), flops
  2·n·k·m; then a memmap A written into a memmap out, where ``A @ B`` needs the whole
  result in RAM and gmmkernels needs only its workspace.
- outer: ``gmmkernels.outer(y, x, out=out)`` against ``np.multiply(y[:, None], x[None, :],
  out=out)`` for y (n,), x (d,) (default out 20000 × 20000, 3.2 GB of float64, in RAM;
  ``--outer-memmap`` adds a memmap out on disk), in GB written per second, with the write
  bandwidth of this machine measured on the same out (``out.fill``, by one thread and by
  as many threads as gmmkernels uses).
- gmm: ``gmmkernels.GaussianMixture`` against ``sklearn.mixture.GaussianMixture`` on X (n, d)
  in RAM (default 200000 × 64), K = ``--components`` full covariances from the same fixed
  initial parameters (a seeded draw), ``max_iter=5``, ``tol=0``: seconds per EM iteration
  (the gaps between iteration ends, so validation and initialisation are not counted), the
  fit's seconds and its peak extra memory; then the same fit of gmmkernels on a memmap of
  X saved as ``.npy`` and through dask.distributed (a LocalCluster of 2 worker processes ×
  1 thread, X from ``gmmkernels.dask.from_memmap`` of that file), these two alternating
  (at least 3 pairs; their ratio is the median of the pairs'). Targets: ≥ 8× faster per
  iteration than scikit-learn with ≤ 1/10 of its peak extra memory; the dask fit ≤ 1.3×
  the in-process time per iteration. Necessary flops per iteration: 2·n·K·d².
"""
