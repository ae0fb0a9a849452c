// weighted_gram: G = Σ_i w_i (x_i − c)(x_i − c)ᵀ.
//
// A symmetric rank-k update: per row block, SYRK on the packed rows √w_i (x_i − c) gives
// the lower triangle for n·d² flops (GEMM would spend 2·n·d²). Rows with w_i < 0 are
// packed apart as √|w_i| (x_i − c) and added with alpha = −1; rows with w_i = 0 are never
// copied nor multiplied. With no weights and no center, BLAS reads X in place.
//
// Two thread policies (`RowBlocks.swift`):
// - parallel row blocks: each worker keeps its own d × d accumulator in Double and they are
//   summed at the end; float32 blocks are summed by SSYRK into a Float product that is
//   added into the Double accumulator every `floatBlocksPerFlush` blocks (so Float sums
//   run over ~1000 rows at most);
// - when those accumulators do not fit the memory limit (d = 2500 and beyond at the
//   default 64 MiB), sequential blocks with threaded BLAS, accumulated in `out` itself by
//   a `GramSink`.

/// Writes `out = Σ_i w_i (x_i − c)(x_i − c)ᵀ` (both triangles) for `x` (n × d).
///
/// - Parameters:
///   - x: n × d data, any strides.
///   - weights: n weights of any sign; `nil` means all ones. NaN weights propagate.
///   - center: d values subtracted from every row; `nil` for zero.
///   - out: d × d; must not overlap the inputs.
/// - Throws: `KernelError.invalidArgument`, `.outOfMemory`, `.cancelled`.
@_specialize(exported: true, where T == Float)
@_specialize(exported: true, where T == Double)
public func weightedGram<T: KernelScalar>(
  _ x: StridedMatrix<T>, weights: StridedVector<T>? = nil, center: StridedVector<T>? = nil,
  out: StridedMatrix<T>, options: KernelOptions = KernelOptions()
) throws(KernelError) {
  let n = x.rows
  let d = x.cols
  if let w = weights, w.count != n {
    throw .invalidArgument("w must have \(n) elements for X of shape (\(n), \(d)), got \(w.count)")
  }
  if let c = center, c.count != d {
    throw .invalidArgument("center must have \(d) elements for X of shape (\(n), \(d)), got \(c.count)")
  }
  guard out.rows == d && out.cols == d else {
    throw .invalidArgument("out must be (\(d), \(d)) for X of shape (\(n), \(d)), got (\(out.rows), \(out.cols))")
  }
  try checkBLASDimensions(d)
  if d == 0 { return }

  let e = MemoryLayout<T>.stride
  let inPlace = weights == nil && center == nil && x.blasOperand != nil
  // Float blocks need a Float product beside the Double accumulator.
  let blockProduct = T.self == Double.self ? 0 : bytes(d, d, e)
  let needs = WorkspaceNeeds(
    shared: center != nil ? bytes(d, e) : 0,
    perWorker: total(bytes(d, d, MemoryLayout<Double>.stride), blockProduct),
    perRow: inPlace ? 0 : bytes(d, e),
    preferredBlockRows: weightedGramBlockRows)
  guard let plan = RowBlockPlan.allWorkers(rows: max(n, 1), needs: needs, options: options) else {
    try weightedGramIntoOutput(x, weights: weights, center: center, out: out, inPlace: inPlace, options: options)
    return
  }

  let c = try packVector(center)
  let b = plan.blockRows
  var sums: [Accumulator] = []
  var products: [Workspace<T>] = []
  var packed: [Workspace<T>] = []
  // Blocks summed in each worker's Float product since it was last added to its accumulator.
  let pending = UnsafeMutablePointer<Int>.allocate(capacity: plan.workers)
  pending.initialize(repeating: 0, count: plan.workers)
  defer { pending.deallocate() }
  for _ in 0..<plan.workers {
    let acc = try Accumulator(count: d * d)
    acc.zero()
    sums.append(acc)
    if blockProduct > 0 { products.append(try Workspace<T>(count: d * d)) }
    if !inPlace { packed.append(try Workspace<T>(count: b * d)) }
  }

  try plan.run(rows: n, options: options, reproducible: true) { w, rows in
    // For Double the accumulator is the SYRK output itself (beta = 1).
    let g: UnsafeMutablePointer<T> =
      blockProduct > 0
      ? products[w].pointer
      : UnsafeMutableRawPointer(sums[w].pointer).assumingMemoryBound(to: T.self)
    let beta: T = blockProduct > 0 && pending[w] == 0 ? 0 : 1
    var written = false
    if inPlace {
      let a = x.rows(rows).blasOperand!
      T._syrkLower(
        trans: a.rowMajor, n: d, k: rows.count, alpha: 1, a: a.pointer, lda: a.ld,
        beta: beta, c: g, ldc: d)
      written = true
    } else {
      written = addGramBlock(
        x.rows(rows), weight: { weights?[rows.lowerBound + $0] ?? 1 },
        center: c.map { UnsafePointer($0.pointer) }, packed: packed[w].pointer,
        into: g, ldg: d, beta: beta)
    }
    guard blockProduct > 0 && written else { return }
    pending[w] += 1
    if pending[w] == floatBlocksPerFlush {
      addLower(g, into: sums[w].pointer, d)
      pending[w] = 0
    }
  }

  for w in 0..<plan.workers where pending[w] > 0 { addLower(products[w].pointer, into: sums[w].pointer, d) }
  for other in sums.dropFirst() { addLower(other.pointer, into: sums[0].pointer, d) }
  storeSymmetric(sums[0].pointer, d, into: out)
}

/// The sequential policy: blocks one after another, threaded BLAS, the sum in `out`.
private func weightedGramIntoOutput<T: KernelScalar>(
  _ x: StridedMatrix<T>, weights: StridedVector<T>?, center: StridedVector<T>?,
  out: StridedMatrix<T>, inPlace: Bool, options: KernelOptions
) throws(KernelError) {
  let d = x.cols
  let e = MemoryLayout<T>.stride
  let destination = [GramDestination.output(out)]
  let needs = WorkspaceNeeds(
    shared: total(center != nil ? bytes(d, e) : 0, GramSink.workspaceBytes(destination, d: d)),
    perRow: inPlace ? 0 : bytes(d, e),
    preferredBlockRows: GramSink.blockRows(destination))
  let plan = try RowBlockPlan(rows: max(x.rows, 1), needs: needs, options: options, maxWorkers: 1)
  let c = try packVector(center)
  let packed = inPlace ? nil : try Workspace<T>(count: plan.blockRows * d)
  let sink = try GramSink(destination, d: d, threads: options.resolvedThreads)
  try plan.run(rows: x.rows, options: options) { _, rows in
    if let packed {
      addGramBlock(
        x.rows(rows), weight: { weights?[rows.lowerBound + $0] ?? 1 },
        center: c.map { UnsafePointer($0.pointer) }, packed: packed.pointer, into: sink, 0)
    } else {
      sink.add(0, x.rows(rows).blasOperand!, rows: rows.count, alpha: 1)
    }
  }
  sink.finish()
}

/// Packs the rows of `x` with non-zero weights into `packed` (rows × d): positive (and NaN)
/// weights from the top as √w_i (x_i − c), negative ones from the bottom as
/// √|w_i| (x_i − c). Returns the number of positive rows and where the negative ones start.
@inline(__always)
func packGramBlock<T: KernelScalar>(
  _ x: StridedMatrix<T>, weight: (Int) -> T, center: UnsafePointer<T>?, packed z: UnsafeMutablePointer<T>
) -> (top: Int, bottom: Int) {
  let d = x.cols
  var top = 0
  var bottom = x.rows
  for i in 0..<x.rows {
    let wi = weight(i)
    if wi == 0 { continue }
    if wi < 0 {
      bottom -= 1
      packRow(x.row(i), into: z + bottom * d, center: center, scale: (-wi).squareRoot())
    } else {
      packRow(x.row(i), into: z + top * d, center: center, scale: wi.squareRoot())
      top += 1
    }
  }
  return (top, bottom)
}

/// g (+)= Σ_i w_i (x_i − c)(x_i − c)ᵀ over the rows of `x`, lower triangle (d × d,
/// leading dimension `ldg`), by SYRK on the rows `packGramBlock` packs: the negative
/// weights' with alpha = −1. `beta` applies to the first SYRK. Returns false when every
/// weight was zero and g was not touched.
@inline(__always)
func addGramBlock<T: KernelScalar>(
  _ x: StridedMatrix<T>, weight: (Int) -> T, center: UnsafePointer<T>?,
  packed z: UnsafeMutablePointer<T>, into g: UnsafeMutablePointer<T>, ldg: Int, beta: T
) -> Bool {
  let d = x.cols
  let m = x.rows
  let (top, bottom) = packGramBlock(x, weight: weight, center: center, packed: z)
  var written = false
  if top > 0 {
    T._syrkLower(trans: true, n: d, k: top, alpha: 1, a: z, lda: d, beta: beta, c: g, ldc: ldg)
    written = true
  }
  if bottom < m {
    T._syrkLower(
      trans: true, n: d, k: m - bottom, alpha: -1, a: z + bottom * d, lda: d,
      beta: written ? 1 : beta, c: g, ldc: ldg)
    written = true
  }
  return written
}

/// The same into destination `j` of a `GramSink`.
@inline(__always)
func addGramBlock<T: KernelScalar>(
  _ x: StridedMatrix<T>, weight: (Int) -> T, center: UnsafePointer<T>?,
  packed z: UnsafeMutablePointer<T>, into sink: GramSink<T>, _ j: Int
) {
  let d = x.cols
  let (top, bottom) = packGramBlock(x, weight: weight, center: center, packed: z)
  sink.add(j, BLASOperand(pointer: UnsafePointer(z), rowMajor: true, ld: d), rows: top, alpha: 1)
  sink.add(
    j, BLASOperand(pointer: UnsafePointer(z + bottom * d), rowMajor: true, ld: d), rows: x.rows - bottom,
    alpha: -1)
}
