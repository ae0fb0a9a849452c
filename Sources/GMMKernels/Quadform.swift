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
// - Column strips, when the triangles do not fit half the memory limit (any width): for
//   each panel J of columns, Y[:, J] = X[:, J] U_JJ (TRMM on a copy, the panel × panel
//   triangle formed from Q) + X[:, :j0] · 2·S[:j0, J] (one GEMM of inner dimension j0,
//   reading an exactly symmetric Q in place; for any other Q the strip 2·S = Q + Qᵀ is
//   formed a chunk of rows at a time). Y[:, J] is reduced into q at once, so a worker holds
//   one panel of Y, and nothing d² is ever copied: the GEMMs of the tall strips run at the
//   machine's GEMM rate whatever d is.

/// Writes `out[i] = (x_i − c)ᵀ Q (x_i − c)` for the n rows `x_i` of `x` (n × d).
///
/// - Parameters:
///   - x: n × d data, any strides.
///   - q: d × d; only its symmetric part matters. Read where it lies (see the top of this
///     file); d² of workspace only when the triangle fits half the memory limit.
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
/// by column strips read from the Q_k where they lie.
struct QuadraticForms<T: KernelScalar> {
  /// How the forms are applied, decided before any workspace is taken.
  struct Layout {
    let d: Int
    let count: Int
    /// Whether the K triangles are formed once (TRMM); else strips.
    let triangles: Bool
    /// Strips: Q_k as BLAS reads it when it is exactly symmetric, else nil (its strips of
    /// 2·S_k are then formed from Q_k and Q_kᵀ block by block).
    let inPlace: [BLASOperand<T>?]
    /// Columns of the block product Y per row: d for TRMM, one panel for strips.
    let width: Int
    /// Rows of a strip formed at a time (0 when every Q_k is used in place).
    let stripRows: Int

    init(_ qs: [StridedMatrix<T>], d: Int, memoryLimit: Int) {
      let e = MemoryLayout<T>.stride
      self.d = d
      count = qs.count
      triangles = bytes(qs.count, d, d, e) <= memoryLimit / 2
      if triangles {
        inPlace = []
        width = d
        stripRows = 0
        return
      }
      inPlace = qs.map { q in q.blasOperand.flatMap { isSymmetric(q) ? $0 : nil } }
      var p = max(1, min(quadformPanelWidth, d))
      guard inPlace.contains(where: { $0 == nil }) else {
        width = d <= quadformWholeStripMaxWidth ? d : p
        stripRows = 0
        return
      }
      // A worker's strip takes at most an eighth of the limit: narrower panels and shorter
      // strips when it is small, so that a call fails only when one row cannot fit.
      while p > 8 && bytes(p, p, e) > memoryLimit / 8 { p /= 2 }
      width = p
      stripRows = max(p, min(quadformStripRows, d, memoryLimit / 8 / max(1, bytes(p, e))))
    }

    /// Workspace allocated once per call.
    var shared: Int { triangles ? bytes(count, d, d, MemoryLayout<T>.stride) : 0 }
    /// Workspace per worker: a strip (which also holds a diagonal block).
    var perWorker: Int { bytes(stripRows, width, MemoryLayout<T>.stride) }
    /// Workspace per row of a worker's block: its row of Y.
    var perRow: Int { bytes(width, MemoryLayout<T>.stride) }
  }

  let layout: Layout
  private let qs: [StridedMatrix<T>]
  /// L_k = U_kᵀ, k · d · d row-major, or nil for the strip method.
  private let triangles: Workspace<T>?
  var d: Int { layout.d }

  init(_ qs: [StridedMatrix<T>], layout: Layout) throws(KernelError) {
    self.layout = layout
    self.qs = qs
    guard layout.triangles else {
      triangles = nil
      return
    }
    let d = layout.d
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
  }

  /// A worker's workspace for blocks of up to `rows` rows.
  final class Scratch {
    /// The block product Y, rows × width.
    let y: Workspace<T>
    /// Strips: a chunk of a strip of 2·S, or a diagonal block L_JJ.
    let strip: Workspace<T>?

    init(_ layout: Layout, rows: Int) throws(KernelError) {
      y = try Workspace<T>(count: rows * layout.width)
      strip = layout.stripRows > 0 ? try Workspace<T>(count: layout.stripRows * layout.width) : nil
    }
  }

  func scratch(rows: Int) throws(KernelError) -> Scratch { try Scratch(layout, rows: rows) }

  /// acc[i] = a_iᵀ Q_k a_i for the `rows` rows of `a` (rows × d).
  @inline(__always)
  func evaluate(_ k: Int, _ a: BLASOperand<T>, rows m: Int, scratch: Scratch, into acc: UnsafeMutablePointer<Double>) {
    let y = scratch.y.pointer
    let d = layout.d
    guard let triangles else {
      acc.update(repeating: 0, count: m)
      var j0 = 0
      while j0 < d {
        let j1 = min(j0 + layout.width, d)
        stripProduct(k, a, rows: m, columns: j0..<j1, scratch: scratch)
        accumulateRowDots(y, ldy: layout.width, a, rows: m, cols: j0..<j1, into: acc)
        j0 = j1
      }
      return
    }
    copyOperand(a, rows: m, cols: 0..<d, into: y, ldy: d)
    T._trmmRight(lower: true, trans: true, m: m, n: d, alpha: 1, a: triangles.pointer + k * d * d, lda: d, b: y, ldb: d)
    acc.update(repeating: 0, count: m)
    accumulateRowDots(y, ldy: d, a, rows: m, cols: 0..<d, into: acc)
  }

  /// Y[:, J] = A U_k[:, J] for the panel J = `columns` (into scratch.y, leading dimension
  /// `width`): the diagonal block by TRMM on a copy of A[:, J], the rows above it by GEMMs
  /// with 2·S_k[0..<j0, J], read in place or formed chunk by chunk.
  @inline(__always)
  private func stripProduct(
    _ k: Int, _ a: BLASOperand<T>, rows m: Int, columns: Range<Int>, scratch: Scratch
  ) {
    let q = qs[k]
    let j0 = columns.lowerBound
    let w = columns.count
    let p = layout.width
    let y = scratch.y.pointer
    copyOperand(a, rows: m, cols: columns, into: y, ldy: p)
    if let s = layout.inPlace[k] {
      // U_JJ = 2·triu(S_JJ) − diag(S_JJ): TRMM with alpha = 2 on S's own upper triangle
      // (a view of the symmetric S in either storage order is S), then the diagonal once.
      T._trmmRight(
        lower: false, trans: false, m: m, n: w, alpha: 2, a: s.offset(row: j0, col: j0), lda: s.ld, b: y, ldb: p)
      let diagonal = s.pointer + j0 * (s.ld + 1)
      let colStep = a.rowMajor ? 1 : a.ld
      for i in 0..<m {
        let yi = y + i * p
        let ai = a.offset(row: i, col: j0)
        for c in 0..<w { yi[c] -= ai[c * colStep] * diagonal[c * (s.ld + 1)] }
      }
      if j0 > 0 {
        T._gemm(
          transA: !a.rowMajor, transB: !s.rowMajor, m: m, n: w, k: j0, alpha: 2,
          a: a.pointer, lda: a.ld, b: s.offset(row: 0, col: j0), ldb: s.ld, beta: 1, c: y, ldc: p)
      }
      return
    }
    let strip = scratch.strip!.pointer
    // Row b of L_JJ is column b of U_JJ (TRMM reads the lower triangle only).
    for b in 0..<w {
      let row = strip + b * w
      for c in 0..<b { row[c] = q[j0 + c, j0 + b] + q[j0 + b, j0 + c] }
      row[b] = q[j0 + b, j0 + b]
    }
    T._trmmRight(lower: true, trans: true, m: m, n: w, alpha: 1, a: strip, lda: w, b: y, ldb: p)
    var r0 = 0
    while r0 < j0 {
      let r1 = min(r0 + layout.stripRows, j0)
      // strip[r - r0, c] = 2·S[r, j0 + c]
      for r in r0..<r1 {
        let row = strip + (r - r0) * p
        for c in 0..<w { row[c] = q[r, j0 + c] + q[j0 + c, r] }
      }
      T._gemm(
        transA: !a.rowMajor, transB: false, m: m, n: w, k: r1 - r0, alpha: 1,
        a: a.offset(row: 0, col: r0), lda: a.ld, b: strip, ldb: p, beta: 1, c: y, ldc: p)
      r0 = r1
    }
  }
}

/// Copies columns `cols` of the rows × d operand `a` into `y` (row-major, leading
/// dimension `ldy`).
@inline(__always)
func copyOperand<T: KernelScalar>(
  _ a: BLASOperand<T>, rows m: Int, cols: Range<Int>, into y: UnsafeMutablePointer<T>, ldy: Int
) {
  let w = cols.count
  if a.rowMajor {
    for i in 0..<m { (y + i * ldy).update(from: a.pointer + (i * a.ld + cols.lowerBound), count: w) }
  } else {
    for j in 0..<w {
      let column = a.pointer + (cols.lowerBound + j) * a.ld
      for i in 0..<m { y[i * ldy + j] = column[i] }
    }
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
