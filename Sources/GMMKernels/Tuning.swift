// Block sizes and thresholds of every kernel, in one place. Each was measured on the
// development machine (2 cores, OpenBLAS 0.3.21) with `python3 -m gmmkernels.bench` and
// single-threaded runs beside a reference DGEMM; the memory limit can only lower them.

// MARK: - quadform, quadform_many (and the mixture pass for d > liftedMaxFeatures)

/// Rows per block: taller blocks amortise OpenBLAS's packing of U (or S's panels) over more
/// rows; 256–1024 measured within noise of each other, 512 best.
let quadformBlockRows = 512
/// Columns per strip of the strip method (used when the triangles of the Q_k do not fit half
/// the memory limit): the n of its GEMMs. Single-threaded DGEMM of 409 × n × 5000 ran
/// 43.7 GFLOP/s at n = 256 and 48.3 at 512 (a 2000³ DGEMM: 51.8).
let quadformPanelWidth = 512
/// Up to this width, Q_k used in place (exactly symmetric) take one strip as wide as Q: one
/// TRMM per block instead of TRMM, GEMM and TRMM (K = 50, d = 900, n = 20000: 11.9–12.3 s
/// against 12.3–13.3 s with 512-wide panels; d = 2500 measured alike either way).
let quadformWholeStripMaxWidth = 1024
/// Rows of 2·S formed at a time for a Q that is not used in place: the k of those GEMMs.
let quadformStripRows = 2048

// MARK: - weighted_gram, weighted_gram_many

/// Rows per block: with two workers, blocks whose packed rows stay in L2 until SYRK reads
/// them beat taller ones that amortise the d × d accumulator's traffic (n=200000, d=900:
/// 1.28–1.30 s from 128 to 512 rows, 1.42 s at 2048).
let weightedGramBlockRows = 256
/// float32: blocks summed by SSYRK in Float before the sum is added to the Double
/// accumulator (n=200000, d=900, 30% zero weights, in RAM: 0.72–0.74 s when it was added
/// after every block, 0.63–0.66 s every 4 blocks, i.e. Float sums over 1024 rows at most).
let floatBlocksPerFlush = 4

/// Rows per block when Gram matrices accumulate in the outputs with threaded BLAS
/// (`GramSink`): threaded DSYRK of d = 2500 and 10000 into a d × d output ran 94–102% of
/// a 4000² DGEMM at k = 512, 90–100% at k = 256.
let gramSinkBlockRows = 512
/// Columns of the lower triangle per tile product when a sink cannot SYRK into its
/// destination directly.
let gramTileWidth = 256
/// Rows per block for such a sink (float32 data): float32 partial sums over at most 2048
/// rows, and the tiles' d²/2 additions per block a few percent of the block's SYRK.
let gramTiledBlockRows = 2048

// MARK: - weighted_sum

/// Rows per block of the K × d GEMM update.
let weightedSumBlockRows = 1024

// MARK: - matmul

/// Rows of A per block: tall enough that OpenBLAS's packing of B per call costs a few
/// percent at most (B is packed once per block).
let matmulBlockRows = 2048
/// `out` in anonymous memory is faulted in by a sweep before the products when it takes
/// at least `matmulSweepMinBytes` and at most 1/`matmulSweepRAMShare` of physical memory.
let matmulSweepMinBytes = 8 << 20
let matmulSweepRAMShare = 4

// MARK: - outer

/// Bytes of `out` per block: large enough to keep both cores streaming, small enough that
/// cancellation and progress stay responsive.
let outerBlockBytes = 1 << 20

// MARK: - mixture pass

/// Rows per block of the per-component pass.
let mixtureBlockRows = 512
/// Up to this many features, full and tied mixtures take the lifted pass: its d(d+1)/2
/// products per row stay cheap, and the K small GEMMs become a few large ones.
let liftedMaxFeatures = 128
/// Rows per block of the lifted pass: its rows × d(d+1)/2 block of products should stay in
/// cache between the GEMMs that write and read it (64–256 measured alike, 128 best).
let liftedBlockRows = 128
/// The lifted pass accumulates a block's second moments Σ r u(z) by one GEMM, or, when at
/// most one in `sparseStatisticsRatio` of the block's (row, component) responsibilities is
/// significant (separated components), by an AXPY of u(z) per significant pair.
let sparseStatisticsRatio = 4

/// The fewest components for which a tied mixture takes the tied pass (TiedMixturePass.swift):
/// from here its 1.5·d² multiply-adds per row in Double cost less than K quadratic forms.
let tiedMinComponents = 4
