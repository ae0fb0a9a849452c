internal import Glibc

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
  let (ref, delta) = try meansAboutTheirMean(means)
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
  // Buffers: the block z (rows × d) and u(z) (rows × lifted).
  let b = plan.blockRows
  let workers = try MixtureWorker.all(plan, statistics: statsCount, components: k, buffers: [b * d, b * lifted])
  // Raw pointers outlive these buffers' last uses (sumOfWorkers's sums, `refp`): keep them to the end.
  defer { withExtendedLifetime((workers, ref)) {} }
  let refp = UnsafePointer(ref.pointer)

  try plan.run(rows: n, options: options, reproducible: true) { w, rows in
    let worker = workers[w]
    let idx = worker.active
    let m = activeRows(rows, sampleWeights, all: perRowOutputs, into: idx)
    if m == 0 { return }
    let z = worker.buffers[0].pointer
    let u = worker.buffers[1].pointer
    let lp = worker.logp.pointer
    for t in 0..<m {
      let zt = z + t * d
      packCentred(x.row(idx[t]), into: zt, center: refp)
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
    let st = worker.stats.pointer
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

  let sum = sumOfWorkers(workers.map(\.stats), count: statsCount)
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
