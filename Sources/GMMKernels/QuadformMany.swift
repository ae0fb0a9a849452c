// quadform_many: q_ik = (x_i − c_k)ᵀ Q_k (x_i − c_k) for K matrices over one X.
//
// Parallel row blocks as in `quadform`; each worker runs all K triangle products on its
// block while the block is hot, so X is read from memory (or disk) once for all K.

/// Writes `out[i, k] = (x_i − c_k)ᵀ Q_k (x_i − c_k)` for the rows of `x` (n × d).
///
/// - Parameters:
///   - x: n × d data, any strides.
///   - qs: K matrices of d × d; only their symmetric parts matter. Read where they lie
///     (see `quadform`).
///   - centers: K × d (row k is c_k), or `nil` for zero.
///   - out: n × K; must not overlap the inputs.
/// - Throws: `KernelError.invalidArgument`, `.outOfMemory`, `.cancelled`.
@_specialize(exported: true, where T == Float)
@_specialize(exported: true, where T == Double)
public func quadformMany<T: KernelScalar>(
  _ x: StridedMatrix<T>, _ qs: [StridedMatrix<T>], centers: StridedMatrix<T>? = nil,
  out: StridedMatrix<T>, options: KernelOptions = KernelOptions()
) throws(KernelError) {
  let n = x.rows
  let d = x.cols
  let k = qs.count
  for (i, q) in qs.enumerated() where q.rows != d || q.cols != d {
    throw .invalidArgument("Qs[\(i)] must be (\(d), \(d)) for X of shape (\(n), \(d)), got (\(q.rows), \(q.cols))")
  }
  if let c = centers, c.rows != k || c.cols != d {
    throw .invalidArgument("centers must be (\(k), \(d)) for \(k) matrices and X of shape (\(n), \(d)), got (\(c.rows), \(c.cols))")
  }
  guard out.rows == n && out.cols == k else {
    throw .invalidArgument("out must be (\(n), \(k)) for X of shape (\(n), \(d)) and \(k) matrices, got (\(out.rows), \(out.cols))")
  }
  try checkBLASDimensions(d)
  if n == 0 || k == 0 { return }
  if d == 0 {
    for i in 0..<n { for j in 0..<k { out[i, j] = 0 } }
    return
  }

  let e = MemoryLayout<T>.stride
  let pack = centers != nil || x.blasOperand == nil
  let form = QuadraticForms.Layout(qs, d: d, memoryLimit: options.memoryLimit)
  let needs = WorkspaceNeeds(
    shared: total(form.shared, centers != nil ? bytes(k, d, e) : 0),
    perWorker: form.perWorker,
    perRow: total(pack ? bytes(d, e) : 0, form.perRow, MemoryLayout<Double>.stride),
    preferredBlockRows: quadformBlockRows)
  let plan = try RowBlockPlan(rows: n, needs: needs, options: options)
  try probeAllocation(componentTableBytes(k, perEntry: bytes(d, e)))

  let forms = try QuadraticForms(qs, layout: form)
  var centerRows: [Workspace<T>] = []
  if let centers {
    for j in 0..<k { centerRows.append(try packVector(centers.row(j))!) }
  }
  let b = plan.blockRows
  var packed: [Workspace<T>] = []
  var scratch: [QuadraticForms<T>.Scratch] = []
  var sums: [Accumulator] = []
  for _ in 0..<plan.workers {
    if pack { packed.append(try Workspace<T>(count: b * d)) }
    scratch.append(try forms.scratch(rows: b))
    sums.append(try Accumulator(count: b))
  }

  try plan.run(rows: n, options: options) { w, rows in
    let m = rows.count
    for j in 0..<k {
      let a: BLASOperand<T>
      if pack {
        let c = centerRows.isEmpty ? nil : UnsafePointer(centerRows[j].pointer)
        // Without centers one packing serves all K products.
        if j == 0 || c != nil { packRows(x.rows(rows), into: packed[w].pointer, center: c) }
        a = BLASOperand(pointer: UnsafePointer(packed[w].pointer), rowMajor: true, ld: d)
      } else {
        a = x.rows(rows).blasOperand!
      }
      let acc = sums[w].pointer
      forms.evaluate(j, a, rows: m, scratch: scratch[w], into: acc)
      for i in 0..<m { out[rows.lowerBound + i, j] = T(acc[i]) }
    }
  }
}
