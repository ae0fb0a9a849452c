// quadform: q_i = (x_i − c)ᵀ Q (x_i − c) for every row of X.
//
// Only the symmetric part S = (Q + Qᵀ)/2 matters, and xᵀSx needs only one triangle:
// split the columns into panels J; then
//     xᵀSx = Σ_J x_Jᵀ (S_JJ x_J + 2 Σ_{I<J} S_IJ x_I),
// so each row block takes, per panel, one GEMM with the panel's diagonal block and one
// with the blocks above it (alpha = 2): n·d²·(1 + p/d) flops instead of GEMM's 2·n·d².
// The panel products Y_J (rows × p) stay small and are reduced into q right away.

/// Column panel width for the triangle: narrower wastes fewer flops on the diagonal
/// blocks (d·p per row), wider keeps GEMM efficient.
let quadformPanelWidth = 128
/// Rows per block, measured on the development machine (see `python -m gmmkernels.bench`).
let quadformBlockRows = 512

/// Writes `out[i] = (x_i − c)ᵀ Q (x_i − c)` for the n rows `x_i` of `x` (n × d).
///
/// - Parameters:
///   - x: n × d data, any strides.
///   - q: d × d; only its symmetric part matters. Used in place when it is exactly
///     symmetric and BLAS can read it; otherwise a symmetrised copy takes d² of workspace.
///   - center: d values subtracted from every row before the product; `nil` for zero.
///   - out: n values; must not overlap the inputs.
/// - Throws: `KernelError.invalidArgument` for shapes that do not fit; `.outOfMemory`;
///   `.cancelled`.
///
/// Each row's sum is accumulated in `Double`; the BLAS products inside a panel are in `T`.
@_specialize(exported: true, where T == Float)
@_specialize(exported: true, where T == Double)
public func quadform<T: KernelScalar>(
  _ x: StridedMatrix<T>, _ q: StridedMatrix<T>, center: StridedVector<T>? = nil,
  out: StridedVector<T>, options: KernelOptions = KernelOptions()
) throws(KernelError) {
  let n = x.rows
  let d = x.cols
  guard q.rows == d && q.cols == d else {
    throw .invalidArgument("Q must be (\(d), \(d)) for X of shape (\(n), \(d)), got (\(q.rows), \(q.cols))")
  }
  if let c = center, c.count != d {
    throw .invalidArgument("center must have \(d) elements for X of shape (\(n), \(d)), got \(c.count)")
  }
  guard out.count == n else {
    throw .invalidArgument("out must have \(n) elements for X of shape (\(n), \(d)), got \(out.count)")
  }
  if n == 0 { return }
  if d == 0 {
    for i in 0..<n { out[i] = 0 }
    return
  }

  let e = MemoryLayout<T>.stride
  let symmetricInPlace = q.blasOperand != nil && isSymmetric(q)
  let pack = center != nil || x.blasOperand == nil
  let panels = (d + quadformPanelWidth - 1) / quadformPanelWidth
  let p = (d + panels - 1) / panels
  let needs = WorkspaceNeeds(
    shared: (symmetricInPlace ? 0 : d * d * e) + (center != nil ? d * e : 0),
    perRow: (pack ? d * e : 0) + p * e + MemoryLayout<Double>.stride,
    preferredBlockRows: quadformBlockRows)
  let plan = try RowBlockPlan(rows: n, needs: needs, options: options)

  let sCopy: Workspace<T>? = symmetricInPlace ? nil : try symmetrized(q)
  let s = sCopy.map { BLASOperand(pointer: UnsafePointer($0.pointer), rowMajor: true, ld: d) } ?? q.blasOperand!
  let c = try packVector(center)
  let b = plan.blockRows
  var packed: [Workspace<T>] = []
  var panel: [Workspace<T>] = []
  var sums: [Accumulator] = []
  for _ in 0..<plan.workers {
    if pack { packed.append(try Workspace<T>(count: b * d)) }
    panel.append(try Workspace<T>(count: b * p))
    sums.append(try Accumulator(count: b))
  }

  try plan.run(rows: n, options: options) { w, rows in
    let m = rows.count
    let a: BLASOperand<T>
    if pack {
      packRows(x.rows(rows), into: packed[w].pointer, center: c.map { UnsafePointer($0.pointer) })
      a = BLASOperand(pointer: UnsafePointer(packed[w].pointer), rowMajor: true, ld: d)
    } else {
      a = x.rows(rows).blasOperand!
    }
    let y = panel[w].pointer
    let acc = sums[w].pointer
    acc.update(repeating: 0, count: m)
    var j0 = 0
    while j0 < d {
      let width = min(p, d - j0)
      // Y = A[:, J] S[J, J]
      T._gemm(
        transA: !a.rowMajor, transB: !s.rowMajor, m: m, n: width, k: width,
        alpha: 1, a: a.offset(row: 0, col: j0), lda: a.ld,
        b: s.offset(row: j0, col: j0), ldb: s.ld, beta: 0, c: y, ldc: width)
      if j0 > 0 {
        // Y += 2 A[:, :J] S[:J, J]: the blocks above the diagonal stand for both triangles.
        T._gemm(
          transA: !a.rowMajor, transB: !s.rowMajor, m: m, n: width, k: j0,
          alpha: 2, a: a.offset(row: 0, col: 0), lda: a.ld,
          b: s.offset(row: 0, col: j0), ldb: s.ld, beta: 1, c: y, ldc: width)
      }
      accumulateRowDots(y, width: width, a, rows: m, col: j0, into: acc)
      j0 += width
    }
    for i in 0..<m { out[rows.lowerBound + i] = T(acc[i]) }
  }
}

/// acc[i] += Σ_j y[i, j] · a[i, col + j] in Double, for y row-major (m × width).
@inline(__always)
func accumulateRowDots<T: KernelScalar>(
  _ y: UnsafeMutablePointer<T>, width: Int, _ a: BLASOperand<T>, rows m: Int, col: Int,
  into acc: UnsafeMutablePointer<Double>
) {
  if a.rowMajor {
    for i in 0..<m {
      let yi = y + i * width
      let ai = a.pointer + (i * a.ld + col)
      var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
      var j = 0
      while j + 4 <= width {
        s0 += Double(yi[j]) * Double(ai[j])
        s1 += Double(yi[j + 1]) * Double(ai[j + 1])
        s2 += Double(yi[j + 2]) * Double(ai[j + 2])
        s3 += Double(yi[j + 3]) * Double(ai[j + 3])
        j += 4
      }
      while j < width {
        s0 += Double(yi[j]) * Double(ai[j])
        j += 1
      }
      acc[i] += (s0 + s1) + (s2 + s3)
    }
  } else {
    for j in 0..<width {
      let aj = a.pointer + ((col + j) * a.ld)
      for i in 0..<m { acc[i] += Double(y[i * width + j]) * Double(aj[i]) }
    }
  }
}

/// Whether q[i, j] == q[j, i] exactly for all i, j.
func isSymmetric<T: KernelScalar>(_ q: StridedMatrix<T>) -> Bool {
  for i in 0..<q.rows {
    for j in (i + 1)..<q.cols where q[i, j] != q[j, i] { return false }
  }
  return true
}

/// (Q + Qᵀ) / 2, contiguous row-major.
func symmetrized<T: KernelScalar>(_ q: StridedMatrix<T>) throws(KernelError) -> Workspace<T> {
  let d = q.rows
  let s = try Workspace<T>(count: d * d)
  for i in 0..<d {
    for j in 0..<d { s.pointer[i * d + j] = q[i, j] / 2 + q[j, i] / 2 }
  }
  return s
}
