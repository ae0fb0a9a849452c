// The pass for diagonal (and spherical) precisions, by two matrix products per row block.
//
// With the rows centred at one reference point c (the mean of the means), z = x − c and
// δ_k = μ_k − c, each log-density is linear in [z, z∘z]:
//   log_norm_k − ½ Σ_c λ_kc (z_c − δ_kc)²
//     = (log_norm_k − ½ Σ_c λ_kc δ_kc²) + Σ_c λ_kc δ_kc z_c − ½ Σ_c λ_kc z_c²,
// so the K log-densities of a block are one GEMM of the block's [z, z∘z] (m × 2d) with a
// 2d × K matrix; and the statistics Σ r z and Σ r z∘z of every component are one GEMM of the
// responsibilities' transpose with the same block, moved to the means at the end:
//   S1_k = Σ r z − N_k δ_k,   S2_k = Σ r z∘z − 2 δ_k ∘ Σ r z + N_k δ_k∘δ_k.
// n·d·K multiply-adds per product instead of a scalar loop per component. Centring at c
// keeps the terms near the spread of the means, not the data's offset from zero; the
// blocks are formed and multiplied in Double whatever X's dtype.
func diagonalMixturePass<T: KernelScalar>(
  _ x: StridedMatrix<T>, sampleWeights: StridedVector<T>?, logNorm: StridedVector<T>,
  means: StridedMatrix<T>, precisions p: StridedMatrix<T>, scatter: MixtureScatter,
  responsibilities: StridedMatrix<T>?, scores: StridedVector<T>?,
  into statistics: UnsafeMutablePointer<Double>, options: KernelOptions
) throws(KernelError) {
  let n = x.rows
  let d = x.cols
  let k = logNorm.count
  let d2 = 2 * d
  let dbl = MemoryLayout<Double>.stride
  let statsCount = mixtureStatisticsCount(components: k, features: d, scatter: scatter)
  let moments = scatter == .none ? 0 : bytes(k, d2)
  let needs = WorkspaceNeeds(
    shared: bytes(total(bytes(d2, k), k, d, bytes(k, d)), dbl),
    perWorker: bytes(total(statsCount, moments), dbl),
    perRow: total(bytes(d2, dbl), bytes(k, dbl), MemoryLayout<Int>.stride),
    preferredBlockRows: mixtureBlockRows)
  let plan: RowBlockPlan
  if let all = RowBlockPlan.allWorkers(rows: max(n, 1), needs: needs, options: options) {
    plan = all
  } else {
    plan = try RowBlockPlan(rows: max(n, 1), needs: needs, options: options, maxWorkers: 1)
  }

  // The reference point, the means' offsets from it, the 2d × K matrix and the constants.
  let (center, delta) = try meansAboutTheirMean(means)
  let weights = try Accumulator(count: d2 * k)
  let constant = try Accumulator(count: k)
  for j in 0..<k {
    var offset = 0.0
    for c in 0..<d {
      let dj = delta.pointer[j * d + c]
      let lam = Double(p[j, c])
      weights.pointer[c * k + j] = lam * dj
      weights.pointer[(d + c) * k + j] = -0.5 * lam
      offset += lam * dj * dj
    }
    constant.pointer[j] = Double(logNorm[j]) - 0.5 * offset
  }

  let perRowOutputs = responsibilities != nil || scores != nil
  // Buffers: Σ r [z, z²] (K × 2d), the block [z, z²] (rows × 2d).
  let workers = try MixtureWorker.all(plan, statistics: statsCount, components: k, buffers: [k * d2, plan.blockRows * d2])
  // Raw pointers outlive these buffers' last uses (sumOfWorkers's sums, `c0`, `w2`): keep them to the end.
  defer { withExtendedLifetime((workers, center, weights)) {} }
  let c0 = UnsafePointer(center.pointer)
  let w2 = UnsafePointer(weights.pointer)

  try plan.run(rows: n, options: options, reproducible: true) { w, rows in
    let worker = workers[w]
    let idx = worker.active
    let m = activeRows(rows, sampleWeights, all: perRowOutputs, into: idx)
    if m == 0 { return }
    let z = worker.buffers[1].pointer  // m × 2d: [x − c, (x − c)²]
    let lp = worker.logp.pointer  // m × k
    for t in 0..<m {
      let zt = z + t * d2
      packCentred(x.row(idx[t]), into: zt, center: c0)
      for c in 0..<d { zt[d + c] = zt[c] * zt[c] }
    }
    Double._gemm(
      transA: false, transB: false, m: m, n: k, k: d2, alpha: 1, a: z, lda: d2, b: w2, ldb: k,
      beta: 0, c: lp, ldc: k)
    for t in 0..<m {
      for j in 0..<k { lp[t * k + j] += constant.pointer[j] }
    }
    let st = worker.stats.pointer
    normalizeRows(
      lp, rows: m, components: k, indices: idx, sampleWeights: sampleWeights, scores: scores,
      responsibilities: responsibilities, into: st)
    if scatter == .none { return }
    // Σ_i w_i r_ik [z_i, z_i²] for every k: (K × m) · (m × 2d).
    Double._gemm(
      transA: true, transB: false, m: k, n: d2, k: m, alpha: 1, a: lp, lda: k, b: z, ldb: d2,
      beta: 1, c: worker.buffers[0].pointer, ldc: d2)
  }

  let st = sumOfWorkers(workers.map(\.stats), count: statsCount)
  statistics.update(from: st, count: statsCount)
  if scatter == .none { return }
  let moment = sumOfWorkers(workers.map { $0.buffers[0] }, count: k * d2)
  let first = statistics + 1 + k
  let second = first + k * d
  for j in 0..<k {
    let nk = statistics[1 + j]
    for c in 0..<d {
      let dj = delta.pointer[j * d + c]
      let s1 = moment[j * d2 + c]
      let s2 = moment[j * d2 + d + c]
      first[j * d + c] = s1 - nk * dj
      second[j * d + c] = s2 - 2 * dj * s1 + nk * dj * dj
    }
  }
}
