internal import _GMKSupport

// matmul: C = A B with A (n × k) read by row blocks (a memmap larger than RAM) and C
// written by row blocks (a memmap too): nothing n-sized is allocated.

/// Writes `out = a · b` for `a` (n × k), `b` (k × m), `out` (n × m).
///
/// BLAS reads A's blocks in place and writes straight into `out` when their strides
/// allow; otherwise blocks go through workspace. B is packed once if BLAS cannot read it.
@_specialize(exported: true, where T == Float)
@_specialize(exported: true, where T == Double)
public func matmul<T: KernelScalar>(
  _ a: StridedMatrix<T>, _ b: StridedMatrix<T>, out: StridedMatrix<T>,
  options: KernelOptions = KernelOptions()
) throws(KernelError) {
  let n = a.rows
  let k = a.cols
  let m = b.cols
  guard b.rows == k else {
    throw .invalidArgument("matmul: A is (\(n), \(k)) and B is (\(b.rows), \(m)); the inner dimensions \(k) and \(b.rows) differ")
  }
  guard out.rows == n && out.cols == m else {
    throw .invalidArgument("out must be (\(n), \(m)) for A of shape (\(n), \(k)) and B of shape (\(k), \(m)), got (\(out.rows), \(out.cols))")
  }
  try checkBLASDimensions(k, m)
  if n == 0 || m == 0 { return }
  if k == 0 {
    for i in 0..<n { for j in 0..<m { out[i, j] = 0 } }
    return
  }

  let e = MemoryLayout<T>.stride
  let packA = a.blasOperand == nil
  let packB = b.blasOperand == nil
  let direct = out.blasOperand != nil
  let needs = WorkspaceNeeds(
    shared: packB ? bytes(k, m, e) : 0,
    perRow: total(packA ? bytes(k, e) : 0, direct ? 0 : bytes(m, e)),
    preferredBlockRows: matmulBlockRows)
  let plan = try RowBlockPlan(rows: n, needs: needs, options: options)

  let bCopy: Workspace<T>? = packB ? try Workspace<T>(count: k * m) : nil
  defer { withExtendedLifetime(bCopy) {} }  // `bOp` points into it
  let bOp = bCopy.map { packed(b, into: $0) } ?? b.blasOperand!
  var aBlocks: [Workspace<T>] = []
  var cBlocks: [Workspace<T>] = []
  for _ in 0..<plan.workers {
    if packA { aBlocks.append(try Workspace<T>(count: plan.blockRows * k)) }
    if !direct { cBlocks.append(try Workspace<T>(count: plan.blockRows * m)) }
  }

  let outBytes = bytes(n, m, e)
  if direct && outBytes >= matmulSweepMinBytes
    && outBytes <= Int(gmk_support_physical_memory()) / matmulSweepRAMShare
    && gmk_support_is_anonymous(out.blasOperand!.pointer) != 0
  {
    // Fault `out` in by a parallel sweep first (contents unchanged): fresh np.empty memory
    // faulted inside the products cost up to 0.4 s of system time per 305 MiB here (1.5 s
    // products), faulted by the sweep 0.03 s. Only anonymous memory that fits in RAM: a
    // memmap's pages would be dirtied twice (and maybe written back in between).
    var sweep = options
    sweep.progress = nil
    try plan.run(rows: n, options: sweep) { _, rows in
      let c = out.rows(rows).blasOperand!
      let (lines, length) = c.rowMajor ? (rows.count, m) : (m, rows.count)
      gmk_support_touch_pages(
        UnsafeMutableRawPointer(mutating: c.pointer), Int64(lines), Int64(length * e), Int64(c.ld * e))
    }
  }

  try plan.run(rows: n, options: options) { w, rows in
    let rowsN = rows.count
    let aOp = packA ? packed(a.rows(rows), into: aBlocks[w]) : a.rows(rows).blasOperand!
    if let c = out.rows(rows).blasOperand, direct {
      let cp = UnsafeMutablePointer(mutating: c.pointer)
      if c.rowMajor {
        T._gemm(
          transA: !aOp.rowMajor, transB: !bOp.rowMajor, m: rowsN, n: m, k: k,
          alpha: 1, a: aOp.pointer, lda: aOp.ld, b: bOp.pointer, ldb: bOp.ld,
          beta: 0, c: cp, ldc: c.ld)
      } else {
        // A column-major block of C is the row-major Cᵀ = Bᵀ Aᵀ.
        T._gemm(
          transA: bOp.rowMajor, transB: aOp.rowMajor, m: m, n: rowsN, k: k,
          alpha: 1, a: bOp.pointer, lda: bOp.ld, b: aOp.pointer, ldb: aOp.ld,
          beta: 0, c: cp, ldc: c.ld)
      }
    } else {
      let cp = cBlocks[w].pointer
      T._gemm(
        transA: !aOp.rowMajor, transB: !bOp.rowMajor, m: rowsN, n: m, k: k,
        alpha: 1, a: aOp.pointer, lda: aOp.ld, b: bOp.pointer, ldb: bOp.ld,
        beta: 0, c: cp, ldc: m)
      for i in 0..<rowsN {
        for j in 0..<m { out[rows.lowerBound + i, j] = cp[i * m + j] }
      }
    }
  }
}
