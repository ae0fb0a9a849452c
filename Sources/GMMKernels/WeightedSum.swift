// weighted_sum: S = Rᵀ X, the K weighted sums Σ_i r_ik x_i (the M-step's first moments).
//
// Parallel row blocks; per block one GEMM (K × d += (m × K)ᵀ (m × d)) into the worker's
// Double accumulator (float32 blocks through a float32 product), summed at the end.

/// Writes `out = Rᵀ X` (K × d) for `x` (n × d) and `r` (n × K).
@_specialize(exported: true, where T == Float)
@_specialize(exported: true, where T == Double)
public func weightedSum<T: KernelScalar>(
  _ x: StridedMatrix<T>, _ r: StridedMatrix<T>, out: StridedMatrix<T>,
  options: KernelOptions = KernelOptions()
) throws(KernelError) {
  let n = x.rows
  let d = x.cols
  let k = r.cols
  guard r.rows == n else {
    throw .invalidArgument("R must have \(n) rows for X of shape (\(n), \(d)), got shape (\(r.rows), \(r.cols))")
  }
  guard out.rows == k && out.cols == d else {
    throw .invalidArgument("out must be (\(k), \(d)) for R with \(k) columns and X of shape (\(n), \(d)), got (\(out.rows), \(out.cols))")
  }
  try checkBLASDimensions(d, k)
  if d == 0 || k == 0 { return }

  let e = MemoryLayout<T>.stride
  let packX = x.blasOperand == nil
  let packR = r.blasOperand == nil
  let blockProduct = T.self == Double.self ? 0 : bytes(k, d, e)
  let needs = WorkspaceNeeds(
    perWorker: total(bytes(k, d, MemoryLayout<Double>.stride), blockProduct),
    perRow: total(packX ? bytes(d, e) : 0, packR ? bytes(k, e) : 0),
    preferredBlockRows: weightedSumBlockRows)
  let plan = try RowBlockPlan(rows: max(n, 1), needs: needs, options: options)

  var sums: [Accumulator] = []
  var products: [Workspace<T>] = []
  var xs: [Workspace<T>] = []
  var rs: [Workspace<T>] = []
  for _ in 0..<plan.workers {
    let acc = try Accumulator(count: k * d)
    acc.zero()
    sums.append(acc)
    if blockProduct > 0 { products.append(try Workspace<T>(count: k * d)) }
    if packX { xs.append(try Workspace<T>(count: plan.blockRows * d)) }
    if packR { rs.append(try Workspace<T>(count: plan.blockRows * k)) }
  }

  try plan.run(rows: n, options: options, reproducible: true) { w, rows in
    let m = rows.count
    let a = packX ? packed(x.rows(rows), into: xs[w]) : x.rows(rows).blasOperand!
    let rr = packR ? packed(r.rows(rows), into: rs[w]) : r.rows(rows).blasOperand!
    let g: UnsafeMutablePointer<T> =
      blockProduct > 0 ? products[w].pointer : UnsafeMutableRawPointer(sums[w].pointer).assumingMemoryBound(to: T.self)
    // G (K × d) = R_blkᵀ X_blk
    T._gemm(
      transA: rr.rowMajor, transB: !a.rowMajor, m: k, n: d, k: m,
      alpha: 1, a: rr.pointer, lda: rr.ld, b: a.pointer, ldb: a.ld,
      beta: blockProduct > 0 ? 0 : 1, c: g, ldc: d)
    if blockProduct > 0 {
      let acc = sums[w].pointer
      for i in 0..<(k * d) { acc[i] += Double(g[i]) }
    }
  }

  let total = sums[0].pointer
  for other in sums.dropFirst() {
    for i in 0..<(k * d) { total[i] += other.pointer[i] }
  }
  for i in 0..<k {
    for j in 0..<d { out[i, j] = T(total[i * d + j]) }
  }
}
