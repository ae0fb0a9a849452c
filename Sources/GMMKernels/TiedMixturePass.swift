// The pass for a tied mixture (one precision matrix Λ shared by every component), by a few
// products per row block instead of one quadratic form per component.
//
// With the rows centred at one reference point c (the mean of the means), z = x − c and
// δ_k = μ_k − c:
//   (z − δ_k)ᵀ Λ (z − δ_k) = zᵀΛz − 2 zᵀ(Λδ_k) + δ_kᵀΛδ_k,
// so a block's K log-densities take one product Z Λ (m × d × d), its rows' dot products with
// Z, and one product Z [Λδ_1 … Λδ_K] (m × d × K). Since every row's responsibilities sum to
// one, the tied scatter is the block's Gram matrix with the sample weights, corrected by the
// components' first moments:
//   Σ_k Σ_i w_i r_ik (z_i − δ_k)(z_i − δ_k)ᵀ = Σ_i w_i z_i z_iᵀ − Σ_k (S_k δ_kᵀ + δ_k S_kᵀ) + Σ_k N_k δ_k δ_kᵀ
// with S_k = Σ_i w_i r_ik z_i (one product Rᵀ Z): one SYRK per block instead of K. Blocks
// are formed and multiplied in Double whatever X's dtype.

/// Whether every matrix of `qs` is the same view (a tied model passes one matrix K times).
func isOneMatrix<T>(_ qs: [StridedMatrix<T>]) -> Bool {
  guard let first = qs.first else { return false }
  return qs.allSatisfy {
    $0.base == first.base && $0.rowStride == first.rowStride && $0.colStride == first.colStride
  }
}

/// The tied pass, if its workspace fits `options.memoryLimit` (each worker sums its own d × d
/// Gram matrix); returns false, having written nothing, when it does not.
func tiedMixturePass<T: KernelScalar>(
  _ x: StridedMatrix<T>, sampleWeights: StridedVector<T>?, logNorm: StridedVector<T>,
  means: StridedMatrix<T>, precision q: StridedMatrix<T>, scatter: MixtureScatter,
  responsibilities: StridedMatrix<T>?, scores: StridedVector<T>?,
  into statistics: UnsafeMutablePointer<Double>, options: KernelOptions
) throws(KernelError) -> Bool {
  let n = x.rows
  let d = x.cols
  let k = logNorm.count
  let dbl = MemoryLayout<Double>.stride
  let statsCount = mixtureStatisticsCount(components: k, features: d, scatter: scatter)
  let moments = scatter == .none ? 0 : bytes(k, d)
  let needs = WorkspaceNeeds(
    shared: bytes(total(bytes(d, d), bytes(d, k), k, d, bytes(k, d)), dbl),
    perWorker: bytes(total(statsCount, moments), dbl),
    perRow: total(bytes(2, d, dbl), bytes(k, dbl), dbl, MemoryLayout<Int>.stride),
    preferredBlockRows: mixtureBlockRows)
  guard let plan = RowBlockPlan.allWorkers(rows: max(n, 1), needs: needs, options: options) else { return false }

  // Λ's symmetric part in Double, the reference point, the offsets δ_k, Λδ_k (d × K) and
  // the constants.
  let lambda = try Accumulator(count: d * d)
  for r in 0..<d { for c in 0..<d { lambda.pointer[r * d + c] = 0.5 * (Double(q[r, c]) + Double(q[c, r])) } }
  let (center, delta) = try meansAboutTheirMean(means)
  let pulled = try Accumulator(count: max(d * k, 1))  // (Λ δ_k) as the columns of d × K
  Double._gemm(
    transA: false, transB: true, m: d, n: k, k: d, alpha: 1, a: lambda.pointer, lda: d, b: delta.pointer, ldb: d,
    beta: 0, c: pulled.pointer, ldc: k)
  let constant = try Accumulator(count: k)
  for j in 0..<k {
    var s = 0.0
    for c in 0..<d { s += delta.pointer[j * d + c] * pulled.pointer[c * k + j] }
    constant.pointer[j] = Double(logNorm[j]) - 0.5 * s
  }

  let perRowOutputs = responsibilities != nil || scores != nil
  // Buffers: S_k (K × d), the block z (rows × d), z Λ (rows × d), zᵀΛz (rows).
  let b = plan.blockRows
  let workers = try MixtureWorker.all(plan, statistics: statsCount, components: k, buffers: [k * d, b * d, b * d, b])
  // Raw pointers outlive these buffers' last uses (sumOfWorkers's sums, `c0`): keep them to the end.
  defer { withExtendedLifetime((workers, center)) {} }
  let c0 = UnsafePointer(center.pointer)

  try plan.run(rows: n, options: options, reproducible: true) { w, rows in
    let worker = workers[w]
    let idx = worker.active
    let m = activeRows(rows, sampleWeights, all: perRowOutputs, into: idx)
    if m == 0 { return }
    let z = worker.buffers[1].pointer  // m × d: x − c
    let y = worker.buffers[2].pointer  // m × d: (x − c) Λ
    let lp = worker.logp.pointer  // m × k
    let q0 = worker.buffers[3].pointer
    for t in 0..<m { packCentred(x.row(idx[t]), into: z + t * d, center: c0) }
    Double._gemm(
      transA: false, transB: false, m: m, n: d, k: d, alpha: 1, a: z, lda: d, b: lambda.pointer, ldb: d,
      beta: 0, c: y, ldc: d)
    for t in 0..<m {
      var s = 0.0
      for c in 0..<d { s += y[t * d + c] * z[t * d + c] }
      q0[t] = s
    }
    Double._gemm(
      transA: false, transB: false, m: m, n: k, k: d, alpha: 1, a: z, lda: d, b: pulled.pointer, ldb: k,
      beta: 0, c: lp, ldc: k)
    for t in 0..<m {
      for j in 0..<k { lp[t * k + j] += constant.pointer[j] - 0.5 * q0[t] }
    }
    let st = worker.stats.pointer
    normalizeRows(
      lp, rows: m, components: k, indices: idx, sampleWeights: sampleWeights, scores: scores,
      responsibilities: responsibilities, into: st)
    if scatter == .none { return }
    // S_k = Σ_i w_i r_ik z_i: (K × m) · (m × d).
    Double._gemm(
      transA: true, transB: false, m: k, n: d, k: m, alpha: 1, a: lp, lda: k, b: z, ldb: d,
      beta: 1, c: worker.buffers[0].pointer, ldc: d)
    // Σ_i w_i z_i z_iᵀ, lower triangle: the rows scaled by √w_i.
    if let sampleWeights {
      for t in 0..<m {
        let root = Double(sampleWeights[idx[t]]).squareRoot()
        for c in 0..<d { z[t * d + c] *= root }
      }
    }
    Double._syrkLower(
      trans: true, n: d, k: m, alpha: 1, a: z, lda: d, beta: 1, c: st + 1 + k + k * d, ldc: d)
  }

  let st = sumOfWorkers(workers.map(\.stats), count: statsCount)
  statistics.update(from: st, count: statsCount)
  if scatter == .none { return true }
  let firstMoments = sumOfWorkers(workers.map { $0.buffers[0] }, count: k * d)
  let first = statistics + 1 + k
  let second = first + k * d
  for j in 0..<k {
    let nk = statistics[1 + j]
    let dj = delta.pointer + j * d
    let sj = firstMoments + j * d
    for c in 0..<d { first[j * d + c] = sj[c] - nk * dj[c] }
    // Lower triangle: − (S_k δ_kᵀ + δ_k S_kᵀ) + N_k δ_k δ_kᵀ.
    for r in 0..<d {
      for c in 0...r {
        second[r * d + c] += -sj[r] * dj[c] - dj[r] * sj[c] + nk * dj[r] * dj[c]
      }
    }
  }
  mirrorLower(second, ld: d, d)
  return true
}
