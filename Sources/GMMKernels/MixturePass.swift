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
  /// Nothing beyond the log-likelihood (scoring only): counts and first moments stay zero.
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
  /// S2 as asked for: K × d × d, d × d or K × d, row-major (upper triangles mirrored).
  public var scatter: [Double]
}

/// Rows per block of the fused pass.
let mixtureBlockRows = 512

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
@_specialize(exported: true, where T == Float)
@_specialize(exported: true, where T == Double)
public func mixturePass<T: KernelScalar>(
  _ x: StridedMatrix<T>, sampleWeights: StridedVector<T>? = nil, logNorm: StridedVector<T>,
  means: StridedMatrix<T>, precisions: MixturePrecisions<T>, scatter: MixtureScatter,
  responsibilities: StridedMatrix<T>? = nil, scores: StridedVector<T>? = nil,
  options: KernelOptions = KernelOptions()
) throws(KernelError) -> MixtureStatistics {
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
  if let w = sampleWeights, w.count != n {
    throw .invalidArgument("sample_weight must have \(n) elements for X of shape (\(n), \(d)), got \(w.count)")
  }
  if let r = responsibilities, r.rows != n || r.cols != k {
    throw .invalidArgument("resp_out must be (\(n), \(k)), got (\(r.rows), \(r.cols))")
  }
  if let s = scores, s.count != n {
    throw .invalidArgument("score_out must have \(n) elements, got \(s.count)")
  }

  let e = MemoryLayout<T>.stride
  let dbl = MemoryLayout<Double>.stride
  let scatterCount: Int
  switch scatter {
  case .full: scatterCount = bytes(k, d, d)
  case .tied: scatterCount = bytes(d, d)
  case .diagonal: scatterCount = bytes(k, d)
  case .none: scatterCount = 0
  }
  let syrkScatter = scatter == .full || scatter == .tied
  // Float SYRK blocks go through a Float product before the Double accumulator.
  let blockProduct = syrkScatter && T.self != Double.self ? bytes(d, d, e) : 0
  var symmetricCopies: [Workspace<T>] = []
  var operands: [BLASOperand<T>] = []
  var copies = 0
  if case .matrices(let qs) = precisions {
    let inPlace = qs.map { $0.blasOperand != nil && isSymmetric($0) }
    copies = inPlace.filter { !$0 }.count
    (operands, symmetricCopies) = try symmetricOperands(qs, inPlace: inPlace)
  }
  defer { withExtendedLifetime(symmetricCopies) {} }  // `operands` point into them
  let needs = WorkspaceNeeds(
    shared: total(bytes(copies, d, d, e), bytes(k, d, e)),
    perWorker: total(bytes(total(1, k, bytes(k, d), scatterCount), dbl), blockProduct),
    // centred rows, the triangle product, log-densities, one row's sums, active row indices
    perRow: total(bytes(2, d, e), bytes(k, dbl), dbl, MemoryLayout<Int>.stride),
    preferredBlockRows: mixtureBlockRows)
  let plan = try RowBlockPlan(rows: max(n, 1), needs: needs, options: options)

  let meanRows = try (0..<k).map { (j: Int) throws(KernelError) in try packVector(means.row(j))! }
  let perRowOutputs = responsibilities != nil || scores != nil
  let b = plan.blockRows
  var stats: [Accumulator] = []
  var centred: [Workspace<T>] = []
  var products: [Workspace<T>] = []
  var logp: [Accumulator] = []
  var sums: [Accumulator] = []
  var active: [UnsafeMutablePointer<Int>] = []
  var gramProducts: [Workspace<T>] = []
  defer { for a in active { a.deallocate() } }
  let statsCount = 1 + k + k * d + scatterCount
  for _ in 0..<plan.workers {
    let s = try Accumulator(count: statsCount)
    s.zero()
    stats.append(s)
    centred.append(try Workspace<T>(count: b * d))
    products.append(try Workspace<T>(count: b * d))
    logp.append(try Accumulator(count: b * k))
    sums.append(try Accumulator(count: b))
    active.append(UnsafeMutablePointer<Int>.allocate(capacity: b))
    if blockProduct > 0 { gramProducts.append(try Workspace<T>(count: d * d)) }
  }

  try plan.run(rows: n, options: options) { w, rows in
    // Rows taking part: all, or those of non-zero weight when only statistics are wanted.
    let idx = active[w]
    var m = 0
    for i in rows where perRowOutputs || (sampleWeights?[i] ?? 1) != 0 {
      idx[m] = i
      m += 1
    }
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
        quadformBlock(
          BLASOperand(pointer: UnsafePointer(z), rowMajor: true, ld: d), operands[j], rows: m, cols: d,
          y: products[w].pointer, into: acc)
      case .diagonal(let p):
        let lam = products[w].pointer
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

    // 2. Log-sum-exp; lp becomes the responsibilities.
    let st = stats[w].pointer
    for t in 0..<m {
      let row = lp + t * k
      var top = -Double.infinity
      for j in 0..<k where row[j] > top { top = row[j] }
      var total = 0.0
      for j in 0..<k { total += exp(row[j] - top) }
      // With every component at −∞ (or a NaN), the row's likelihood is −∞ (or NaN).
      let lse = top.isFinite ? top + log(total) : top + total
      for j in 0..<k { row[j] = exp(row[j] - lse) }
      let i = idx[t]
      if let s = scores { s[i] = T(lse) }
      if let r = responsibilities { for j in 0..<k { r[i, j] = T(row[j]) } }
      st[0] += Double(sampleWeights?[i] ?? 1) * lse
    }
    if scatter == .none { return }

    // 3. Statistics, with the sample weights folded into the responsibilities.
    let counts = st + 1
    let first = st + 1 + k
    let second = st + 1 + k + k * d
    for j in 0..<k {
      let mu = UnsafePointer(meanRows[j].pointer)
      var top = 0
      for t in 0..<m {
        let rw = lp[t * k + j] * Double(sampleWeights?[idx[t]] ?? 1)
        if rw == 0 { continue }
        counts[j] += rw
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
      if syrkScatter && top > 0 {
        let target = scatter == .full ? second + j * d * d : second
        if blockProduct > 0 {
          let g = gramProducts[w].pointer
          T._syrkUpper(trans: true, n: d, k: top, alpha: 1, a: z, lda: d, beta: 0, c: g, ldc: d)
          addUpper(g, into: target, d)
        } else {
          let g = UnsafeMutableRawPointer(target).assumingMemoryBound(to: T.self)
          T._syrkUpper(trans: true, n: d, k: top, alpha: 1, a: z, lda: d, beta: 1, c: g, ldc: d)
        }
      }
    }
  }

  // Sum the workers' statistics and mirror the upper triangles.
  let total = stats[0].pointer
  for other in stats.dropFirst() {
    for i in 0..<statsCount { total[i] += other.pointer[i] }
  }
  var result = MixtureStatistics(
    logLikelihood: total[0], counts: Array(UnsafeBufferPointer(start: total + 1, count: k)),
    firstMoments: Array(UnsafeBufferPointer(start: total + 1 + k, count: k * d)),
    scatter: Array(UnsafeBufferPointer(start: total + 1 + k + k * d, count: scatterCount)))
  if syrkScatter {
    let matrices = scatter == .full ? k : 1
    for j in 0..<matrices {
      let base = j * d * d
      for r in 0..<d {
        for c in 0..<r { result.scatter[base + r * d + c] = result.scatter[base + c * d + r] }
      }
    }
  }
  return result
}
