// outer: out[i, j] = y_i · x_j, written block-parallel straight into `out` (which may be a
// memmap larger than RAM). Pure write bandwidth: no BLAS, no workspace beyond a copy of x.

/// Writes `out[i, j] = y[i] * x[j]` for `y` (n), `x` (m), `out` (n × m).
@_specialize(exported: true, where T == Float)
@_specialize(exported: true, where T == Double)
public func outer<T: KernelScalar>(
  _ y: StridedVector<T>, _ x: StridedVector<T>, out: StridedMatrix<T>,
  options: KernelOptions = KernelOptions()
) throws(KernelError) {
  let n = y.count
  let m = x.count
  guard out.rows == n && out.cols == m else {
    throw .invalidArgument("out must be (\(n), \(m)) for y of shape (\(n),) and x of shape (\(m),), got (\(out.rows), \(out.cols))")
  }
  if n == 0 || m == 0 { return }
  let e = MemoryLayout<T>.stride
  let needs = WorkspaceNeeds(shared: bytes(m, e), preferredBlockRows: max(1, outerBlockBytes / bytes(m, e)))
  let plan = try RowBlockPlan(rows: n, needs: needs, options: options)
  let xs = try packVector(x)!
  defer { withExtendedLifetime(xs) {} }  // `xp` points into it
  let xp = UnsafePointer(xs.pointer)
  let contiguous = out.colStride == e && Int(bitPattern: out.base) % MemoryLayout<T>.alignment == 0
    && out.rowStride % e == 0

  try plan.run(rows: n, options: options) { _, rows in
    for i in rows {
      let yi = y[i]
      if contiguous {
        let row = (out.base + i * out.rowStride).assumingMemoryBound(to: T.self)
        for j in 0..<m { row[j] = yi * xp[j] }
      } else {
        for j in 0..<m { out[i, j] = yi * xp[j] }
      }
    }
  }
}
