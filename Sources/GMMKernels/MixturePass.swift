internal import Glibc

// One EM iteration's pass over X for a Gaussian mixture, fused per row block:
//   1. the log-density of every component: log_norm_k − ½ (x − μ_k)ᵀ Λ_k (x − μ_k), by the
//      triangle product of `quadform` (full or shared precision matrices) or by a centred
//      sum of squares (diagonal precisions);
//   2. log-sum-exp over the components: the row's log-likelihood and its responsibilities;
//   3. the next M-step's sufficient statistics, centred at the current means μ_k (which
//      the new means are close to, so no E[xxᵀ] − μμᵀ cancellation):
//         N_k = Σ r_ik,  S1_k = Σ r_ik (x_i − μ_k),  S2_k = Σ r_ik (x_i − μ_k)(x_i − μ_k)ᵀ
//      (S2 in full, summed over k for a tied covariance, or its diagonal only).
// So one EM iteration reads X once, and nothing of size n × d is ever allocated.
//
// This file holds the pass's types, its checks, the dispatcher and what the passes share;
// the passes are `diagonalMixturePass` (DiagonalMixturePass.swift) for diagonal and spherical
// mixtures, `tiedMixturePass` (TiedMixturePass.swift) for tied ones whose Gram sums fit the
// memory limit, `liftedMixturePass` (LiftedMixturePass.swift) for full and tied mixtures of at
// most `liftedMaxFeatures` features, and `componentMixturePass` (ComponentMixturePass.swift)
// for the others.

/// The precisions of the components.
public enum MixturePrecisions<T: KernelScalar> {
  /// Λ_k as d × d matrices (one per component; a tied mixture passes the same view K times).
  case matrices([StridedMatrix<T>])
  /// diag(Λ_k) as the rows of a K × d matrix (a spherical mixture passes a zero column stride).
  case diagonal(StridedMatrix<T>)
}

/// Which second-moment statistic to accumulate.
public enum MixtureScatter {
  /// S2_k in full: K × d × d.
  case full
  /// Σ_k S2_k: one d × d (a tied covariance).
  case tied
  /// The diagonals of S2_k: K × d.
  case diagonal
  /// The log-likelihood and the counts only (scoring): first moments stay zero.
  case none
}

/// What a pass accumulates, in Double.
public struct MixtureStatistics {
  /// Σ_i w_i log Σ_k exp(logp_ik): the weighted log-likelihood of the rows.
  public var logLikelihood: Double = 0
  /// N_k (K).
  public var counts: [Double]
  /// S1_k, row-major K × d.
  public var firstMoments: [Double]
  /// S2 as asked for: K × d × d, d × d or K × d, row-major (triangles mirrored).
  public var scatter: [Double]
}

/// The number of Doubles of a pass's statistics laid out as [log-likelihood, N (K), S1 (K × d),
/// S2 (as `scatter` asks)], saturating at `Int.max`.
package func mixtureStatisticsCount(components k: Int, features d: Int, scatter: MixtureScatter) -> Int {
  let second: Int
  switch scatter {
  case .full: second = bytes(k, d, d)
  case .tied: second = bytes(d, d)
  case .diagonal: second = bytes(k, d)
  case .none: second = 0
  }
  return total(1, k, bytes(k, d), second)
}

/// Runs `pass` on a buffer of `mixtureStatisticsCount` Doubles and splits it up.
func collectStatistics(
  components k: Int, features d: Int, scatter: MixtureScatter,
  _ pass: (UnsafeMutablePointer<Double>) throws(KernelError) -> Void
) throws(KernelError) -> MixtureStatistics {
  let count = mixtureStatisticsCount(components: k, features: d, scatter: scatter)
  try probeAllocation(bytes(count, MemoryLayout<Double>.stride))
  let buffer = try Accumulator(count: count)
  try pass(buffer.pointer)
  let p = UnsafeBufferPointer(start: buffer.pointer, count: count)
  return MixtureStatistics(
    logLikelihood: p[0], counts: Array(p[1..<(1 + k)]), firstMoments: Array(p[(1 + k)..<(1 + k + k * d)]),
    scatter: Array(p[(1 + k + k * d)...]))
}

/// The fused E/M pass over `x` (n × d) for a K-component mixture.
///
/// - Parameters:
///   - x: n × d data, any strides.
///   - sampleWeights: n weights ≥ 0, or `nil` for ones; rows of weight 0 are skipped
///     unless per-row outputs are asked for.
///   - logNorm: K values log π_k + ½ log det Λ_k − ½ d log 2π.
///   - means: K × d, the μ_k (also the centres of the statistics).
///   - precisions: the Λ_k (only their symmetric parts matter).
///   - scatter: the second moment to accumulate.
///   - responsibilities: n × K output for r_ik (without sample weights), or `nil`.
///   - scores: n output for log Σ_k exp(logp_ik), or `nil`.
/// - Returns: the statistics (weighted by `sampleWeights`).
public func mixturePass<T: KernelScalar>(
  _ x: StridedMatrix<T>, sampleWeights: StridedVector<T>? = nil, logNorm: StridedVector<T>,
  means: StridedMatrix<T>, precisions: MixturePrecisions<T>, scatter: MixtureScatter,
  responsibilities: StridedMatrix<T>? = nil, scores: StridedVector<T>? = nil,
  options: KernelOptions = KernelOptions()
) throws(KernelError) -> MixtureStatistics {
  try checkMixtureArguments(
    x, sampleWeights: sampleWeights, logNorm: logNorm, means: means, precisions: precisions,
    responsibilities: responsibilities, scores: scores)
  return try collectStatistics(components: logNorm.count, features: x.cols, scatter: scatter) {
    (statistics) throws(KernelError) in
    try mixturePass(
      x, sampleWeights: sampleWeights, logNorm: logNorm, means: means, precisions: precisions,
      scatter: scatter, responsibilities: responsibilities, scores: scores, into: statistics,
      options: options)
  }
}

/// The fused E/M pass, writing its statistics into `statistics`: the
/// `mixtureStatisticsCount` Doubles [log-likelihood, N, S1, S2] (triangles mirrored). With
/// full or tied scatter at widths where each worker's own d × d sums do not fit the memory
/// limit, S2 is accumulated here directly, with threaded BLAS.
@_specialize(exported: true, where T == Float)
@_specialize(exported: true, where T == Double)
package func mixturePass<T: KernelScalar>(
  _ x: StridedMatrix<T>, sampleWeights: StridedVector<T>? = nil, logNorm: StridedVector<T>,
  means: StridedMatrix<T>, precisions: MixturePrecisions<T>, scatter: MixtureScatter,
  responsibilities: StridedMatrix<T>? = nil, scores: StridedVector<T>? = nil,
  into statistics: UnsafeMutablePointer<Double>, options: KernelOptions = KernelOptions()
) throws(KernelError) {
  try checkMixtureArguments(
    x, sampleWeights: sampleWeights, logNorm: logNorm, means: means, precisions: precisions,
    responsibilities: responsibilities, scores: scores)
  try checkBLASDimensions(x.cols)
  try probeAllocation(componentTableBytes(logNorm.count, perEntry: bytes(x.cols, MemoryLayout<T>.stride)))
  let d = x.cols
  if case .diagonal(let p) = precisions, scatter == .diagonal || scatter == .none {
    try diagonalMixturePass(
      x, sampleWeights: sampleWeights, logNorm: logNorm, means: means, precisions: p, scatter: scatter,
      responsibilities: responsibilities, scores: scores, into: statistics, options: options)
    return
  }
  // A tied mixture of few components costs less by the per-component quadratic forms (K·d²/2
  // multiply-adds per row) than by the tied pass's Z Λ and Gram products (1.5·d², in Double).
  if case .matrices(let qs) = precisions, scatter == .tied || scatter == .none, d > 0, qs.count >= tiedMinComponents,
    isOneMatrix(qs)
  {
    let done = try tiedMixturePass(
      x, sampleWeights: sampleWeights, logNorm: logNorm, means: means, precision: qs[0], scatter: scatter,
      responsibilities: responsibilities, scores: scores, into: statistics, options: options)
    if done { return }
  }
  if case .matrices(let qs) = precisions, d > 0, d <= liftedMaxFeatures, scatter != .diagonal {
    try liftedMixturePass(
      x, sampleWeights: sampleWeights, logNorm: logNorm, means: means, precisions: qs,
      scatter: scatter, responsibilities: responsibilities, scores: scores, into: statistics,
      options: options)
    return
  }
  try componentMixturePass(
    x, sampleWeights: sampleWeights, logNorm: logNorm, means: means, precisions: precisions,
    scatter: scatter, responsibilities: responsibilities, scores: scores, into: statistics,
    options: options)
}

/// Throws `KernelError.invalidArgument` unless the arguments of `mixturePass` fit together.
package func checkMixtureArguments<T: KernelScalar>(
  _ x: StridedMatrix<T>, sampleWeights: StridedVector<T>?, logNorm: StridedVector<T>,
  means: StridedMatrix<T>, precisions: MixturePrecisions<T>,
  responsibilities: StridedMatrix<T>?, scores: StridedVector<T>?
) throws(KernelError) {
  let n = x.rows
  let d = x.cols
  let k = logNorm.count
  guard k >= 1 else { throw .invalidArgument("a mixture needs at least one component, got log_norm of length 0") }
  guard means.rows == k && means.cols == d else {
    throw .invalidArgument("means must be (\(k), \(d)) for \(k) components and X of shape (\(n), \(d)), got (\(means.rows), \(means.cols))")
  }
  switch precisions {
  case .matrices(let qs):
    guard qs.count == k else { throw .invalidArgument("precisions must hold \(k) matrices, got \(qs.count)") }
    for (j, q) in qs.enumerated() where q.rows != d || q.cols != d {
      throw .invalidArgument("precisions[\(j)] must be (\(d), \(d)), got (\(q.rows), \(q.cols))")
    }
  case .diagonal(let p):
    guard p.rows == k && p.cols == d else {
      throw .invalidArgument("diagonal precisions must be (\(k), \(d)), got (\(p.rows), \(p.cols))")
    }
  }
  if let w = sampleWeights {
    guard w.count == n else {
      throw .invalidArgument("sample_weight must have \(n) elements for X of shape (\(n), \(d)), got \(w.count)")
    }
    for i in 0..<n where w[i] < 0 {
      throw .invalidArgument("sample_weight must be non-negative, got \(w[i]) at row \(i)")
    }
  }
  if let r = responsibilities, r.rows != n || r.cols != k {
    throw .invalidArgument("resp_out must be (\(n), \(k)), got (\(r.rows), \(r.cols))")
  }
  if let s = scores, s.count != n {
    throw .invalidArgument("score_out must have \(n) elements, got \(s.count)")
  }
}

// MARK: - Shared by both passes

/// Responsibilities (times sample weights) below this are left out of the moments: of S1
/// and S2 by the per-component pass, of S2 by the lifted pass's blocks that take AXPYs.
/// Over n < 10¹⁸ rows the weight left out is < 10⁻⁴², far under the last bit of the
/// smallest count an EM step divides by (scikit-learn adds 10·ε ≈ 2·10⁻¹⁵ to every N_k),
/// and a moment changes by that weight times (x − μ)(x − μ)ᵀ: nothing a covariance can hold
/// unless a row lies some 10¹³ standard deviations out. The log-likelihood and the counts
/// N_k still take every responsibility.
let negligibleWeight = 1e-60

/// The mean of the K means (a point near every component, to centre the rows at) and the
/// means' offsets from it (K × d), in Double: the diagonal and the tied pass work on
/// z = x − c and δ_k = μ_k − c.
func meansAboutTheirMean<T: KernelScalar>(_ means: StridedMatrix<T>) throws(KernelError) -> (center: Accumulator, offsets: Accumulator) {
  let k = means.rows
  let d = means.cols
  let center = try Accumulator(count: d)
  center.zero()
  for j in 0..<k { for c in 0..<d { center.pointer[c] += Double(means[j, c]) } }
  for c in 0..<d { center.pointer[c] /= Double(max(k, 1)) }
  let offsets = try Accumulator(count: k * d)
  for j in 0..<k { for c in 0..<d { offsets.pointer[j * d + c] = Double(means[j, c]) - center.pointer[c] } }
  return (center, offsets)
}

/// `row − center` in Double into `dst` (contiguous aligned rows read directly).
@inline(__always)
func packCentred<T: KernelScalar>(_ row: StridedVector<T>, into dst: UnsafeMutablePointer<Double>, center: UnsafePointer<Double>) {
  let d = row.count
  if row.stride == MemoryLayout<T>.stride && Int(bitPattern: row.base) % MemoryLayout<T>.alignment == 0 {
    let src = row.base.assumingMemoryBound(to: T.self)
    for c in 0..<d { dst[c] = Double(src[c]) - center[c] }
  } else {
    for c in 0..<d { dst[c] = Double(row[c]) - center[c] }
  }
}

/// One worker's buffers in a pass that works in Double: its statistics, a block's
/// log-densities (rows × K) and active row indices, and further buffers of the given sizes;
/// all start at zero.
final class MixtureWorker {
  let stats: Accumulator
  let logp: Accumulator
  let active: UnsafeMutablePointer<Int>
  let buffers: [Accumulator]

  init(statistics: Int, blockRows b: Int, components k: Int, buffers sizes: [Int]) throws(KernelError) {
    stats = try Accumulator(count: statistics)
    logp = try Accumulator(count: b * k)
    var made: [Accumulator] = []
    for size in sizes { made.append(try Accumulator(count: max(size, 1))) }
    buffers = made
    stats.zero()
    for a in made { a.zero() }
    active = UnsafeMutablePointer<Int>.allocate(capacity: max(b, 1))
  }

  deinit { active.deallocate() }

  /// The buffers of every worker of `plan`.
  static func all(
    _ plan: RowBlockPlan, statistics: Int, components k: Int, buffers sizes: [Int]
  ) throws(KernelError) -> [MixtureWorker] {
    var workers: [MixtureWorker] = []
    for _ in 0..<plan.workers {
      workers.append(try MixtureWorker(statistics: statistics, blockRows: plan.blockRows, components: k, buffers: sizes))
    }
    return workers
  }
}

/// Writes into `idx` the rows of `rows` that take part, all or those of non-zero sample
/// weight, and returns their number.
@inline(__always)
func activeRows<T: KernelScalar>(
  _ rows: Range<Int>, _ sampleWeights: StridedVector<T>?, all: Bool, into idx: UnsafeMutablePointer<Int>
) -> Int {
  var m = 0
  for i in rows where all || (sampleWeights?[i] ?? 1) != 0 {
    idx[m] = i
    m += 1
  }
  return m
}

/// Turns each row of log-densities `lp` (rows × components) into responsibilities by
/// log-sum-exp, writes the per-row outputs, adds w_i · score_i to st[0] and w_i r_ik to
/// the counts st[1 + k], and leaves w_i r_ik in `lp` for the statistics.
@inline(__always)
func normalizeRows<T: KernelScalar>(
  _ lp: UnsafeMutablePointer<Double>, rows m: Int, components k: Int, indices idx: UnsafePointer<Int>,
  sampleWeights: StridedVector<T>?, scores: StridedVector<T>?, responsibilities: StridedMatrix<T>?,
  into st: UnsafeMutablePointer<Double>
) {
  withUnsafeTemporaryAllocation(of: Double.self, capacity: max(k, 1)) { exps in
    for t in 0..<m {
      let row = lp + t * k
      var top = -Double.infinity
      for j in 0..<k where row[j] > top { top = row[j] }
      let i = idx[t]
      let wi = Double(sampleWeights?[i] ?? 1)
      if !top.isFinite {
        // Every component at −∞ (or a NaN): the row's likelihood is −∞ (or NaN), and so are
        // its responsibilities' logs.
        var sum = 0.0
        for j in 0..<k { sum += expOrZero(row[j] - top) }
        let lse = top + sum
        st[0] += wi * lse
        if let s = scores { s[i] = T(lse) }
        for j in 0..<k {
          let r = expOrZero(row[j] - lse)
          responsibilities?[i, j] = T(r)
          row[j] = wi * r
          st[1 + j] += wi * r
        }
        continue
      }
      // One exp per component, r_j = e^(l_j − top) / Σ e^(l − top); a responsibility below
      // the normal range takes e^(l_j − lse) instead, which rounds once.
      var sum = 0.0
      for j in 0..<k {
        let e = expOrZero(row[j] - top)
        exps[j] = e
        sum += e
      }
      let lse = top + log(sum)
      st[0] += wi * lse
      if let s = scores { s[i] = T(lse) }
      let scale = 1 / sum
      for j in 0..<k {
        var r = exps[j] * scale
        if r < 0x1p-1000 { r = expOrZero(row[j] - lse) }
        responsibilities?[i, j] = T(r)
        row[j] = wi * r
        st[1 + j] += wi * r
      }
    }
  }
}

/// e^x, with the arguments whose e^x rounds to 0 answered without calling `exp`: libm's
/// underflow path is slow, and separated components put most log-responsibilities there.
@inline(__always)
func expOrZero(_ x: Double) -> Double { x < -746 ? 0 : exp(x) }

/// Adds every worker's statistics into the first worker's and returns them: a pointer into
/// `stats[0]`, valid while the caller keeps that buffer alive (`withExtendedLifetime`).
func sumOfWorkers(_ stats: [Accumulator], count: Int) -> UnsafeMutablePointer<Double> {
  let total = stats[0].pointer
  for other in stats.dropFirst() {
    for i in 0..<count { total[i] += other.pointer[i] }
  }
  return total
}
