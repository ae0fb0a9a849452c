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
public func mixtureStatisticsCount(components k: Int, features d: Int, scatter: MixtureScatter) -> Int {
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
public func mixturePass<T: KernelScalar>(
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
  let n = x.rows
  let d = x.cols
  let k = logNorm.count

  if case .matrices(let qs) = precisions, d > 0, d <= liftedMaxFeatures, scatter != .diagonal {
    try liftedMixturePass(
      x, sampleWeights: sampleWeights, logNorm: logNorm, means: means, precisions: qs,
      scatter: scatter, responsibilities: responsibilities, scores: scores, into: statistics,
      options: options)
    return
  }

  let e = MemoryLayout<T>.stride
  let dbl = MemoryLayout<Double>.stride
  let statsCount = mixtureStatisticsCount(components: k, features: d, scatter: scatter)
  let syrkScatter = scatter == .full || scatter == .tied
  let gramCount = syrkScatter ? statsCount - (1 + k + k * d) : 0
  // Float SYRK blocks go through a Float product before the Double accumulator.
  let blockProduct = syrkScatter && T.self != Double.self ? bytes(d, d, e) : 0
  var layout: QuadraticForms<T>.Layout? = nil
  if case .matrices(let qs) = precisions { layout = QuadraticForms.Layout(qs, d: d, memoryLimit: options.memoryLimit) }
  let formShared = layout?.shared ?? 0
  let formPerWorker = layout?.perWorker ?? 0
  let diagonalPrecisions = layout == nil ? bytes(d, e) : 0
  // centred rows, the triangle product, log-densities, one row's sums, active row indices
  let perRow = total(bytes(d, e), layout?.perRow ?? 0, bytes(k, dbl), dbl, MemoryLayout<Int>.stride)
  let parallel = WorkspaceNeeds(
    shared: total(formShared, bytes(k, d, e)),
    perWorker: total(bytes(statsCount, dbl), blockProduct, formPerWorker, diagonalPrecisions),
    perRow: perRow, preferredBlockRows: mixtureBlockRows)
  // The sequential policy: each worker sums all but S2, which goes straight into `statistics`.
  var sink: GramSink<T>? = nil
  let plan: RowBlockPlan
  if let p = RowBlockPlan.allWorkers(rows: max(n, 1), needs: parallel, options: options) {
    plan = p
  } else {
    let second = statistics + (1 + k + k * d)
    let destinations = (0..<(scatter == .full ? k : 1)).map { GramDestination<T>.double(second + $0 * d * d, ld: d) }
    let needs = WorkspaceNeeds(
      shared: total(formShared, bytes(k, d, e), GramSink.workspaceBytes(destinations, d: d)),
      perWorker: total(bytes(statsCount - gramCount, dbl), formPerWorker, diagonalPrecisions),
      perRow: perRow, preferredBlockRows: mixtureBlockRows)
    plan = try RowBlockPlan(rows: max(n, 1), needs: needs, options: options, maxWorkers: 1)
    if syrkScatter { sink = try GramSink(destinations, d: d, threads: options.resolvedThreads) }
  }
  // What each worker sums itself: everything, or all but S2 when a sink takes it.
  let ownCount = sink == nil ? statsCount : statsCount - gramCount

  var forms: QuadraticForms<T>? = nil
  if case .matrices(let qs) = precisions { forms = try QuadraticForms(qs, layout: layout!) }
  let meanRows = try (0..<k).map { (j: Int) throws(KernelError) in try packVector(means.row(j))! }
  let perRowOutputs = responsibilities != nil || scores != nil
  let b = plan.blockRows
  var stats: [Accumulator] = []
  var centred: [Workspace<T>] = []
  var scratch: [QuadraticForms<T>.Scratch] = []
  var lambdas: [Workspace<T>] = []
  var logp: [Accumulator] = []
  var sums: [Accumulator] = []
  var active: [UnsafeMutablePointer<Int>] = []
  var gramProducts: [Workspace<T>] = []
  defer { for a in active { a.deallocate() } }
  for _ in 0..<plan.workers {
    let s = try Accumulator(count: ownCount)
    s.zero()
    stats.append(s)
    centred.append(try Workspace<T>(count: b * d))
    if let forms { scratch.append(try forms.scratch(rows: b)) } else { lambdas.append(try Workspace<T>(count: d)) }
    logp.append(try Accumulator(count: b * k))
    sums.append(try Accumulator(count: b))
    active.append(UnsafeMutablePointer<Int>.allocate(capacity: b))
    if blockProduct > 0 && sink == nil { gramProducts.append(try Workspace<T>(count: d * d)) }
  }

  try plan.run(rows: n, options: options, reproducible: true) { w, rows in
    let idx = active[w]
    let m = activeRows(rows, sampleWeights, all: perRowOutputs, into: idx)
    if m == 0 { return }
    let z = centred[w].pointer
    let lp = logp[w].pointer  // m × k
    let acc = sums[w].pointer

    // 1. Log-densities.
    for j in 0..<k {
      let mu = UnsafePointer(meanRows[j].pointer)
      for t in 0..<m { packRow(x.row(idx[t]), into: z + t * d, center: mu, scale: 1) }
      switch precisions {
      case .matrices:
        forms!.evaluate(
          j, BLASOperand(pointer: UnsafePointer(z), rowMajor: true, ld: d), rows: m, scratch: scratch[w],
          into: acc)
      case .diagonal(let p):
        let lam = lambdas[w].pointer
        for c in 0..<d { lam[c] = p[j, c] }
        for t in 0..<m {
          let zt = z + t * d
          var s = 0.0
          for c in 0..<d {
            let v = Double(zt[c])
            s += Double(lam[c]) * v * v
          }
          acc[t] = s
        }
      }
      let ln = Double(logNorm[j])
      for t in 0..<m { lp[t * k + j] = ln - 0.5 * acc[t] }
    }

    // 2. Log-sum-exp; lp becomes the responsibilities, times the sample weights.
    let st = stats[w].pointer
    normalizeRows(
      lp, rows: m, components: k, indices: idx, sampleWeights: sampleWeights, scores: scores,
      responsibilities: responsibilities, into: st)
    if scatter == .none { return }

    // 3. Statistics.
    let first = st + 1 + k
    let second = st + 1 + k + k * d
    for j in 0..<k {
      let mu = UnsafePointer(meanRows[j].pointer)
      var top = 0
      for t in 0..<m {
        let rw = lp[t * k + j]
        if rw < negligibleWeight { continue }
        let xi = x.row(idx[t])
        let f = first + j * d
        if syrkScatter {
          let zt = z + top * d
          packRow(xi, into: zt, center: mu, scale: T(rw.squareRoot()))
          // S1 from the packed √r (x − μ): multiply back by √r in Double.
          let root = rw.squareRoot()
          for c in 0..<d { f[c] += root * Double(zt[c]) }
          top += 1
        } else {
          for c in 0..<d {
            let v = Double(xi[c]) - Double(mu[c])
            f[c] += rw * v
            if scatter == .diagonal { second[j * d + c] += rw * v * v }
          }
        }
      }
      guard syrkScatter && top > 0 else { continue }
      if let sink {
        sink.add(scatter == .full ? j : 0, BLASOperand(pointer: UnsafePointer(z), rowMajor: true, ld: d), rows: top, alpha: 1)
        continue
      }
      let target = scatter == .full ? second + j * d * d : second
      if blockProduct > 0 {
        let g = gramProducts[w].pointer
        T._syrkLower(trans: true, n: d, k: top, alpha: 1, a: z, lda: d, beta: 0, c: g, ldc: d)
        addLower(g, into: target, d)
      } else {
        let g = UnsafeMutableRawPointer(target).assumingMemoryBound(to: T.self)
        T._syrkLower(trans: true, n: d, k: top, alpha: 1, a: z, lda: d, beta: 1, c: g, ldc: d)
      }
    }
  }

  // Sum the workers' statistics and mirror the lower triangles.
  let summed = sumOfWorkers(stats, count: ownCount)
  statistics.update(from: summed, count: ownCount)
  if let sink {
    sink.finish()
  } else if syrkScatter {
    let second = statistics + (1 + k + k * d)
    for j in 0..<(scatter == .full ? k : 1) { mirrorLower(second + j * d * d, ld: d, d) }
  }
}

// The lifted pass, for full and tied mixtures of few features (d ≤ `liftedMaxFeatures`).
//
// Per-component products of d × d are small GEMMs that run far below the machine's rate.
// Instead, centre each row once at a reference point m (the mean of the component means),
// z = x − m, and lift it to the d(d+1)/2 products u(z) = (z_a z_b)_{a ≤ b}. Then, with
// δ_k = μ_k − m,
//     (x − μ_k)ᵀ Λ_k (x − μ_k) = u(z)·ℓ_k − 2 zᵀΛ_k δ_k + δ_kᵀ Λ_k δ_k,
// where ℓ_k is Λ_k's upper triangle with the off-diagonal entries doubled, so all K
// log-densities of a block are one GEMM (rows × d(d+1)/2 × K) plus a small one; and the
// statistics Σ_i r_ik u(z_i) and Σ_i r_ik z_i are two GEMMs with Rᵀ. They are re-centred at
// μ_k at the end:
//     S1_k = Σ r z − N_k δ_k,   S2_k = Σ r z zᵀ − δ_k (Σ r z)ᵀ − (Σ r z) δ_kᵀ + N_k δ_k δ_kᵀ.
// The reference point is inside the data, so the re-centring loses only a factor of
// (|δ_k| / σ_k)² on the round-off; everything here runs in Double, float32 data included.
func liftedMixturePass<T: KernelScalar>(
  _ x: StridedMatrix<T>, sampleWeights: StridedVector<T>?, logNorm: StridedVector<T>,
  means: StridedMatrix<T>, precisions: [StridedMatrix<T>], scatter: MixtureScatter,
  responsibilities: StridedMatrix<T>?, scores: StridedVector<T>?,
  into statistics: UnsafeMutablePointer<Double>, options: KernelOptions
) throws(KernelError) {
  let n = x.rows
  let d = x.cols
  let k = logNorm.count
  let lifted = d * (d + 1) / 2
  let dbl = MemoryLayout<Double>.stride
  let wantStats = scatter != .none
  let statsCount = 1 + k + k * d + (wantStats ? k * lifted : 0)
  let needs = WorkspaceNeeds(
    shared: bytes(total(bytes(lifted, k), bytes(d, k), bytes(k, d), bytes(2, k), d), dbl),
    perWorker: bytes(statsCount, dbl),
    // z, u(z), log-densities, active row indices
    perRow: total(bytes(total(d, lifted, k), dbl), MemoryLayout<Int>.stride),
    preferredBlockRows: liftedBlockRows)
  let plan = try RowBlockPlan(rows: max(n, 1), needs: needs, options: options)

  // Reference point m and the δ_k.
  let ref = try Accumulator(count: d)
  let delta = try Accumulator(count: k * d)
  for c in 0..<d {
    var s = 0.0
    for j in 0..<k { s += Double(means[j, c]) }
    ref.pointer[c] = s / Double(k)
  }
  for j in 0..<k {
    for c in 0..<d { delta.pointer[j * d + c] = Double(means[j, c]) - ref.pointer[c] }
  }
  // ℓ (lifted × K), B = −2 Λ_k δ_k (d × K), const_k = log_norm_k − ½ δ_kᵀ Λ_k δ_k.
  let ell = try Accumulator(count: lifted * k)
  let linear = try Accumulator(count: d * k)
  let constant = try Accumulator(count: k)
  for (j, q) in precisions.enumerated() {
    var p = 0
    for a in 0..<d {
      ell.pointer[p * k + j] = Double(q[a, a])
      p += 1
      for b in (a + 1)..<max(d, a + 1) {
        ell.pointer[p * k + j] = Double(q[a, b]) + Double(q[b, a])
        p += 1
      }
    }
    var quad = 0.0
    for a in 0..<d {
      // (Λ_s δ)_a with Λ_s the symmetric part.
      var v = 0.0
      for b in 0..<d { v += 0.5 * (Double(q[a, b]) + Double(q[b, a])) * delta.pointer[j * d + b] }
      linear.pointer[a * k + j] = -2 * v
      quad += delta.pointer[j * d + a] * v
    }
    constant.pointer[j] = Double(logNorm[j]) - 0.5 * quad
  }

  let perRowOutputs = responsibilities != nil || scores != nil
  let b = plan.blockRows
  var stats: [Accumulator] = []
  var zs: [Accumulator] = []
  var us: [Accumulator] = []
  var logp: [Accumulator] = []
  var active: [UnsafeMutablePointer<Int>] = []
  defer { for a in active { a.deallocate() } }
  for _ in 0..<plan.workers {
    let s = try Accumulator(count: statsCount)
    s.zero()
    stats.append(s)
    zs.append(try Accumulator(count: b * d))
    us.append(try Accumulator(count: b * lifted))
    logp.append(try Accumulator(count: b * k))
    active.append(UnsafeMutablePointer<Int>.allocate(capacity: b))
  }
  let refp = UnsafePointer(ref.pointer)

  try plan.run(rows: n, options: options, reproducible: true) { w, rows in
    let idx = active[w]
    let m = activeRows(rows, sampleWeights, all: perRowOutputs, into: idx)
    if m == 0 { return }
    let z = zs[w].pointer
    let u = us[w].pointer
    let lp = logp[w].pointer
    for t in 0..<m {
      let xi = x.row(idx[t])
      let zt = z + t * d
      for c in 0..<d { zt[c] = Double(xi[c]) - refp[c] }
      var ut = u + t * lifted
      for a in 0..<d {
        let za = zt[a]
        let src = zt + a
        let count = d - a
        for c in 0..<count { ut[c] = za * src[c] }
        ut += count
      }
    }
    // Quadratic forms of all K components: U ℓ + Z B.
    Double._gemm(
      transA: false, transB: false, m: m, n: k, k: lifted, alpha: 1, a: u, lda: lifted,
      b: ell.pointer, ldb: k, beta: 0, c: lp, ldc: k)
    Double._gemm(
      transA: false, transB: false, m: m, n: k, k: d, alpha: 1, a: z, lda: d,
      b: linear.pointer, ldb: k, beta: 1, c: lp, ldc: k)
    for t in 0..<m {
      let row = lp + t * k
      for j in 0..<k { row[j] = constant.pointer[j] - 0.5 * row[j] }
    }
    let st = stats[w].pointer
    normalizeRows(
      lp, rows: m, components: k, indices: idx, sampleWeights: sampleWeights, scores: scores,
      responsibilities: responsibilities, into: st)
    guard wantStats else { return }
    // Σ r z (K × d) and Σ r u(z) (K × lifted): the second by one GEMM, or, when few of the
    // responsibilities matter (separated components), by an AXPY per pair that does.
    Double._gemm(
      transA: true, transB: false, m: k, n: d, k: m, alpha: 1, a: lp, lda: k,
      b: z, ldb: d, beta: 1, c: st + 1 + k, ldc: d)
    let second = st + 1 + k + k * d
    var significant = 0
    for i in 0..<(m * k) where !(lp[i] < negligibleWeight) { significant += 1 }
    if significant * sparseStatisticsRatio <= m * k {
      for j in 0..<k {
        for t in 0..<m where !(lp[t * k + j] < negligibleWeight) {
          Double._axpy(n: lifted, alpha: lp[t * k + j], x: u + t * lifted, y: second + j * lifted)
        }
      }
    } else {
      Double._gemm(
        transA: true, transB: false, m: k, n: lifted, k: m, alpha: 1, a: lp, lda: k,
        b: u, ldb: lifted, beta: 1, c: second, ldc: lifted)
    }
  }

  let sum = sumOfWorkers(stats, count: statsCount)
  // [log-likelihood, N] as summed; S1 and S2 re-centred at the means.
  statistics.update(from: sum, count: 1 + k)
  let firstOut = statistics + 1 + k
  let secondOut = firstOut + k * d
  firstOut.update(repeating: 0, count: k * d)
  guard wantStats else { return }
  let matrices = scatter == .full ? k : 1
  secondOut.update(repeating: 0, count: matrices * d * d)
  for j in 0..<k {
    let nk = sum[1 + j]
    let s1 = sum + 1 + k + j * d
    let s2 = sum + 1 + k + k * d + j * lifted
    let dj = delta.pointer + j * d
    for c in 0..<d { firstOut[j * d + c] = s1[c] - nk * dj[c] }
    let base = secondOut + (scatter == .full ? j * d * d : 0)
    var p = 0
    for a in 0..<d {
      for c in a..<d {
        let v = s2[p] - dj[a] * s1[c] - s1[a] * dj[c] + nk * dj[a] * dj[c]
        base[a * d + c] += v
        if c != a { base[c * d + a] += v }
        p += 1
      }
    }
  }
}

/// Throws `KernelError.invalidArgument` unless the arguments of `mixturePass` fit together.
public func checkMixtureArguments<T: KernelScalar>(
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
  for t in 0..<m {
    let row = lp + t * k
    var top = -Double.infinity
    for j in 0..<k where row[j] > top { top = row[j] }
    var sum = 0.0
    for j in 0..<k { sum += expOrZero(row[j] - top) }
    // With every component at −∞ (or a NaN), the row's likelihood is −∞ (or NaN).
    let lse = top.isFinite ? top + log(sum) : top + sum
    let i = idx[t]
    let wi = Double(sampleWeights?[i] ?? 1)
    st[0] += wi * lse
    if let s = scores { s[i] = T(lse) }
    for j in 0..<k {
      let r = expOrZero(row[j] - lse)
      responsibilities?[i, j] = T(r)
      row[j] = wi * r
      st[1 + j] += wi * r
    }
  }
}

/// e^x, with the arguments whose e^x rounds to 0 answered without calling `exp`: libm's
/// underflow path is slow, and separated components put most log-responsibilities there.
@inline(__always)
func expOrZero(_ x: Double) -> Double { x < -746 ? 0 : exp(x) }

/// Adds every worker's statistics into the first worker's and returns them.
func sumOfWorkers(_ stats: [Accumulator], count: Int) -> UnsafeMutablePointer<Double> {
  let total = stats[0].pointer
  for other in stats.dropFirst() {
    for i in 0..<count { total[i] += other.pointer[i] }
  }
  return total
}
