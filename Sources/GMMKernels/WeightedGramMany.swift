// weighted_gram_many: G_k = Σ_i r_ik (x_i − c_k)(x_i − c_k)ᵀ for K weight columns over one X.
//
// Parallel row blocks as in `weighted_gram`; each worker runs all K components on its block
// while the block is hot, so X is read once for all K. Each worker keeps K accumulators of
// d × d, except that for float64 the first worker accumulates straight into `out` when BLAS
// can write it. When the accumulators of every worker do not fit the memory limit, the
// blocks run one after another with threaded BLAS into the K outputs (`GramSink`).

/// Writes `out[k] = Σ_i r[i, k] (x_i − c_k)(x_i − c_k)ᵀ` (both triangles) for `x` (n × d).
///
/// - Parameters:
///   - x: n × d data, any strides.
///   - r: n × K weights of any sign (responsibilities); rows with r_ik = 0 cost nothing
///     for component k.
///   - centers: K × d (row k is c_k), or `nil` for zero.
///   - out: K matrices of d × d; must not overlap the inputs.
/// - Throws: `KernelError.invalidArgument`, `.outOfMemory`, `.cancelled`.
@_specialize(exported: true, where T == Float)
@_specialize(exported: true, where T == Double)
public func weightedGramMany<T: KernelScalar>(
  _ x: StridedMatrix<T>, _ r: StridedMatrix<T>, centers: StridedMatrix<T>? = nil,
  out: [StridedMatrix<T>], options: KernelOptions = KernelOptions()
) throws(KernelError) {
  let n = x.rows
  let d = x.cols
  let k = r.cols
  guard r.rows == n else {
    throw .invalidArgument("R must have \(n) rows for X of shape (\(n), \(d)), got shape (\(r.rows), \(r.cols))")
  }
  if let c = centers, c.rows != k || c.cols != d {
    throw .invalidArgument("centers must be (\(k), \(d)) for R with \(k) columns and X of shape (\(n), \(d)), got (\(c.rows), \(c.cols))")
  }
  guard out.count == k else {
    throw .invalidArgument("out must hold \(k) matrices for R with \(k) columns, got \(out.count)")
  }
  for (j, o) in out.enumerated() where o.rows != d || o.cols != d {
    throw .invalidArgument("out[\(j)] must be (\(d), \(d)) for X of shape (\(n), \(d)), got (\(o.rows), \(o.cols))")
  }
  try checkBLASDimensions(d)
  if d == 0 || k == 0 { return }

  let e = MemoryLayout<T>.stride
  let dbl = MemoryLayout<Double>.stride
  // float64 accumulates straight into `out` (in worker 0) when BLAS can write each out[k]
  // row-major.
  let direct = T.self == Double.self && out.allSatisfy { $0.blasOperand?.rowMajor == true }
  let accumulatorBytes = bytes(k, d, d, dbl)
  let blockProduct = T.self == Double.self ? 0 : bytes(d, d, e)
  let needs = WorkspaceNeeds(
    shared: centers != nil ? bytes(k, d, e) : 0,
    perWorker: total(direct ? 0 : accumulatorBytes, blockProduct),
    perAdditionalWorker: direct ? accumulatorBytes : 0,
    perRow: bytes(d, e),
    preferredBlockRows: weightedGramBlockRows)
  try probeAllocation(componentTableBytes(k, perEntry: total(bytes(KernelOptions.availableCPUs, 16), bytes(d, e))))
  guard let plan = RowBlockPlan.allWorkers(rows: max(n, 1), needs: needs, options: options) else {
    try weightedGramManyIntoOutputs(x, r, centers: centers, out: out, options: options)
    return
  }

  // accumulators[w][j]: worker w's sum for component j (pointer, leading dimension).
  var sums: [[(pointer: UnsafeMutablePointer<Double>, ld: Int)]] = []
  var owned: [Accumulator] = []
  defer { withExtendedLifetime(owned) {} }  // `sums` point into them
  for w in 0..<plan.workers {
    var mine: [(pointer: UnsafeMutablePointer<Double>, ld: Int)] = []
    if direct && w == 0 {
      for o in out {
        let op = o.blasOperand!
        mine.append((UnsafeMutableRawPointer(mutating: op.pointer).assumingMemoryBound(to: Double.self), op.ld))
      }
    } else {
      let acc = try Accumulator(count: k * d * d)
      acc.zero()
      owned.append(acc)
      for j in 0..<k { mine.append((acc.pointer + j * d * d, d)) }
    }
    sums.append(mine)
  }
  var centerRows: [Workspace<T>] = []
  if let centers {
    for j in 0..<k { centerRows.append(try packVector(centers.row(j))!) }
  }
  var packed: [Workspace<T>] = []
  var products: [Workspace<T>] = []
  for _ in 0..<plan.workers {
    packed.append(try Workspace<T>(count: plan.blockRows * d))
    if blockProduct > 0 { products.append(try Workspace<T>(count: d * d)) }
  }

  // Worker 0 clears `out` before its first block (only it writes there, until the final
  // sum), so that a call cancelled before any block leaves `out` as it was.
  var outCleared = !direct
  func clearOut() {
    for (p, ld) in sums[0] { for i in 0..<d { (p + i * ld).update(repeating: 0, count: d) } }
    outCleared = true
  }
  try plan.run(rows: n, options: options, reproducible: true) { w, rows in
    if w == 0 && !outCleared { clearOut() }
    for j in 0..<k {
      let acc = sums[w][j]
      let g: UnsafeMutablePointer<T> =
        blockProduct > 0 ? products[w].pointer : UnsafeMutableRawPointer(acc.pointer).assumingMemoryBound(to: T.self)
      let written = addGramBlock(
        x.rows(rows), weight: { r[rows.lowerBound + $0, j] },
        center: centerRows.isEmpty ? nil : UnsafePointer(centerRows[j].pointer),
        packed: packed[w].pointer, into: g, ldg: blockProduct > 0 ? d : acc.ld,
        beta: blockProduct > 0 ? 0 : 1)
      if blockProduct > 0 && written { addLower(g, into: acc.pointer, ld: acc.ld, d) }
    }
  }

  if !outCleared { clearOut() }  // no block ran
  // Sum the workers into the first and write out both triangles.
  for j in 0..<k {
    let first = sums[0][j]
    for other in sums.dropFirst() {
      addLower(other[j].pointer, ldg: other[j].ld, into: first.pointer, ld: first.ld, d)
    }
    if direct {
      mirrorLower(first.pointer, ld: first.ld, d)
    } else {
      storeSymmetric(first.pointer, d, into: out[j])
    }
  }
}

/// The sequential policy: blocks one after another, threaded BLAS, the sums in `out`.
private func weightedGramManyIntoOutputs<T: KernelScalar>(
  _ x: StridedMatrix<T>, _ r: StridedMatrix<T>, centers: StridedMatrix<T>?,
  out: [StridedMatrix<T>], options: KernelOptions
) throws(KernelError) {
  let d = x.cols
  let k = r.cols
  let e = MemoryLayout<T>.stride
  let destinations = out.map { GramDestination.output($0) }
  let needs = WorkspaceNeeds(
    shared: total(centers != nil ? bytes(k, d, e) : 0, GramSink.workspaceBytes(destinations, d: d)),
    perRow: bytes(d, e),
    preferredBlockRows: GramSink.blockRows(destinations))
  let plan = try RowBlockPlan(rows: max(x.rows, 1), needs: needs, options: options, maxWorkers: 1)
  var centerRows: [Workspace<T>] = []
  if let centers {
    for j in 0..<k { centerRows.append(try packVector(centers.row(j))!) }
  }
  let packed = try Workspace<T>(count: plan.blockRows * d)
  let sink = try GramSink(destinations, d: d, threads: options.resolvedThreads)
  try plan.run(rows: x.rows, options: options) { _, rows in
    for j in 0..<k {
      addGramBlock(
        x.rows(rows), weight: { r[rows.lowerBound + $0, j] },
        center: centerRows.isEmpty ? nil : UnsafePointer(centerRows[j].pointer),
        packed: packed.pointer, into: sink, j)
    }
  }
  sink.finish()
}
