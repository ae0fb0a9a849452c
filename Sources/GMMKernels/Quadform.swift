// quadform: q_i = (x_i − c)ᵀ Q (x_i − c) for every row of X.
//
// Only the symmetric part S = (Q + Qᵀ)/2 matters, and xᵀSx needs only one triangle:
// xᵀSx = xᵀUx for the upper-triangular U = triu(S) + triu(S, 1) (off-diagonal entries
// doubled), so with Y = X U, q_i = Σ_j y_ij x_ij: n·d² flops, where GEMM's X·S would take
// 2·n·d². Two ways to form Y for a row block, chosen by `QuadraticForms`:
//
// - TRMM: U formed once (d² of workspace per matrix), stored as its transpose L = Uᵀ;
//   Y = copy of the block, then Y ← Y·Lᵀ in place. OpenBLAS's TRMM runs at about its
//   GEMM rate on the triangle, and 1.5% faster from this layout than from U itself
//   (quadform in float64, n=200000, d=900, 22 calls alternated with the other; the same in
//   float32).
// - Recursive panels, when U does not fit the memory limit: S is used in place (when it is
//   exactly symmetric). Split the columns into panels I of width p; panel I adds
//   2·X[:, I] S[I, I+1:] to Y[:, I+1:] in one GEMM (alpha = 2, inner dimension p) and its
//   diagonal block S_II by the same split, recursively, down to leaves of width `leaf` done
//   as full GEMMs: n·d²·(1 + leaf/d) flops in all. Once panel I is done, Y[:, I] is final
//   and still in cache, so it is reduced into q right away.

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
  // One matrix is the batch of one: out as an n × 1 matrix, the center as a 1 × d one.
  try quadformMany(
    x, [q],
    centers: center.map { StridedMatrix(base: $0.base, rows: 1, cols: d, rowStride: 0, colStride: $0.stride) },
    out: StridedMatrix(base: out.base, rows: n, cols: 1, rowStride: out.stride, colStride: 0),
    options: options)
}

/// The K quadratic forms x ↦ xᵀ Q_k x, prepared for row blocks (see the top of this file):
/// by TRMM when the K triangles (stored as L_k = U_kᵀ) fit in half the memory limit, else
/// by recursive panels on the symmetric parts in place (or copied, for the Q_k that are not
/// exactly symmetric or that BLAS cannot read).
struct QuadraticForms<T: KernelScalar> {
  let d: Int
  /// L_k = U_kᵀ, k · d · d row-major, or nil for the panel method.
  private let triangles: Workspace<T>?
  private let operands: [BLASOperand<T>]
  private let copies: [Workspace<T>]

  /// Bytes of workspace `init` allocates for `qs` under `memoryLimit`.
  static func workspaceBytes(_ qs: [StridedMatrix<T>], d: Int, memoryLimit: Int) -> Int {
    let e = MemoryLayout<T>.stride
    let triangles = bytes(qs.count, d, d, e)
    if triangles <= memoryLimit / 2 { return triangles }
    return bytes(qs.filter { $0.blasOperand == nil || !isSymmetric($0) }.count, d, d, e)
  }

  init(_ qs: [StridedMatrix<T>], d: Int, memoryLimit: Int) throws(KernelError) {
    self.d = d
    let e = MemoryLayout<T>.stride
    if bytes(qs.count, d, d, e) <= memoryLimit / 2 {
      let l = try Workspace<T>(count: qs.count * d * d)
      for (k, q) in qs.enumerated() {
        // Row j of L_k is column j of U_k.
        let lk = l.pointer + k * d * d
        for j in 0..<d {
          let row = lk + j * d
          for i in 0..<j { row[i] = q[i, j] + q[j, i] }
          row[j] = q[j, j]
          for i in (j + 1)..<max(d, j + 1) { row[i] = 0 }
        }
      }
      triangles = l
      operands = []
      copies = []
    } else {
      triangles = nil
      (operands, copies) = try symmetricOperands(qs, inPlace: qs.map { $0.blasOperand != nil && isSymmetric($0) })
    }
  }

  /// acc[i] = a_iᵀ Q_k a_i for the `rows` rows of `a` (rows × d), with `y` (rows × d) as
  /// workspace for the block product.
  @inline(__always)
  func evaluate(
    _ k: Int, _ a: BLASOperand<T>, rows m: Int, y: UnsafeMutablePointer<T>, into acc: UnsafeMutablePointer<Double>
  ) {
    guard let triangles else {
      quadformBlock(a, operands[k], rows: m, cols: d, y: y, into: acc)
      return
    }
    copyOperand(a, rows: m, cols: d, into: y)
    T._trmmRightByTransposeOfLower(m: m, n: d, l: triangles.pointer + k * d * d, ldl: d, b: y, ldb: d)
    acc.update(repeating: 0, count: m)
    accumulateRowDots(y, ldy: d, a, rows: m, cols: 0..<d, into: acc)
  }
}

/// Copies the rows × cols operand `a` into `y`, row-major with leading dimension cols.
@inline(__always)
func copyOperand<T: KernelScalar>(_ a: BLASOperand<T>, rows m: Int, cols d: Int, into y: UnsafeMutablePointer<T>) {
  if a.rowMajor {
    for i in 0..<m { (y + i * d).update(from: a.pointer + i * a.ld, count: d) }
  } else {
    for j in 0..<d {
      let column = a.pointer + j * a.ld
      for i in 0..<m { y[i * d + j] = column[i] }
    }
  }
}

/// acc[i] = a_iᵀ S a_i for the `rows` rows of `a` (rows × cols), with `y` (rows × cols)
/// as workspace for the block product.
@inline(__always)
func quadformBlock<T: KernelScalar>(
  _ a: BLASOperand<T>, _ s: BLASOperand<T>, rows m: Int, cols d: Int,
  y: UnsafeMutablePointer<T>, into acc: UnsafeMutablePointer<Double>
) {
  let product = TriangleProduct(a: a, s: s, y: y, rows: m, cols: d)
  acc.update(repeating: 0, count: m)
  var i0 = 0
  while i0 < d {
    let i1 = min(i0 + quadformPanelWidth, d)
    product.addRight(of: i0..<i1, fresh: i0 == 0)
    product.addDiagonal(i0..<i1, fresh: i0 == 0)
    accumulateRowDots(y + i0, ldy: d, a, rows: m, cols: i0..<i1, into: acc)
    i0 = i1
  }
}

/// Y = A·U for one row block, built panel by panel (see the top of this file).
struct TriangleProduct<T: KernelScalar> {
  var a: BLASOperand<T>
  var s: BLASOperand<T>
  var y: UnsafeMutablePointer<T>
  var rows: Int
  var cols: Int

  /// Y[:, J] (+)= 2 A[:, J'] S[J', J] for the columns J right of `panel` (J' = panel).
  /// `fresh`: Y[:, J] holds nothing yet (beta = 0).
  func addRight(of panel: Range<Int>, upTo end: Int? = nil, fresh: Bool) {
    let j1 = end ?? cols
    guard panel.upperBound < j1 else { return }
    T._gemm(
      transA: !a.rowMajor, transB: !s.rowMajor, m: rows, n: j1 - panel.upperBound, k: panel.count,
      alpha: 2, a: a.offset(row: 0, col: panel.lowerBound), lda: a.ld,
      b: s.offset(row: panel.lowerBound, col: panel.upperBound), ldb: s.ld,
      beta: fresh ? 0 : 1, c: y + panel.upperBound, ldc: cols)
  }

  /// Y[:, I] (+)= A[:, I] U_II for the diagonal block I, split in halves down to leaves.
  func addDiagonal(_ block: Range<Int>, fresh: Bool) {
    if block.count <= quadformLeafWidth {
      T._gemm(
        transA: !a.rowMajor, transB: !s.rowMajor, m: rows, n: block.count, k: block.count,
        alpha: 1, a: a.offset(row: 0, col: block.lowerBound), lda: a.ld,
        b: s.offset(row: block.lowerBound, col: block.lowerBound), ldb: s.ld,
        beta: fresh ? 0 : 1, c: y + block.lowerBound, ldc: cols)
      return
    }
    let mid = block.lowerBound + block.count / 2
    addDiagonal(block.lowerBound..<mid, fresh: fresh)
    addRight(of: block.lowerBound..<mid, upTo: block.upperBound, fresh: fresh)
    addDiagonal(mid..<block.upperBound, fresh: false)
  }
}

/// acc[i] += Σ_{j ∈ cols} y[i, j] · a[i, j] in Double; `y` points at column
/// `cols.lowerBound` of a row-major matrix with leading dimension `ldy`.
@inline(__always)
func accumulateRowDots<T: KernelScalar>(
  _ y: UnsafeMutablePointer<T>, ldy: Int, _ a: BLASOperand<T>, rows m: Int, cols: Range<Int>,
  into acc: UnsafeMutablePointer<Double>
) {
  let width = cols.count
  if a.rowMajor {
    for i in 0..<m {
      let yi = y + i * ldy
      let ai = a.pointer + (i * a.ld + cols.lowerBound)
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
      let aj = a.pointer + ((cols.lowerBound + j) * a.ld)
      for i in 0..<m { acc[i] += Double(y[i * ldy + j]) * Double(aj[i]) }
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
