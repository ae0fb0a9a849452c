internal import Glibc

// The per-component pass, for diagonal precisions and for full and tied mixtures wider than
// `liftedMaxFeatures`: per row block and component, the centred rows, their quadratic form
// (the triangle product of `quadform`, or a sum of squares), then the log-sum-exp and the
// statistics.
func componentMixturePass<T: KernelScalar>(
  _ x: StridedMatrix<T>, sampleWeights: StridedVector<T>?, logNorm: StridedVector<T>,
  means: StridedMatrix<T>, precisions: MixturePrecisions<T>, scatter: MixtureScatter,
  responsibilities: StridedMatrix<T>?, scores: StridedVector<T>?,
  into statistics: UnsafeMutablePointer<Double>, options: KernelOptions
) throws(KernelError) {
  let n = x.rows
  let d = x.cols
  let k = logNorm.count
  let e = MemoryLayout<T>.stride
  let dbl = MemoryLayout<Double>.stride
  let statsCount = mixtureStatisticsCount(components: k, features: d, scatter: scatter)
  let syrkScatter = scatter == .full || scatter == .tied
  let gramCount = syrkScatter ? statsCount - (1 + k + k * d) : 0
  // Float SYRK blocks go through a Float product before the Double accumulator.
  let blockProduct = syrkScatter && T.self != Double.self ? bytes(d, d, e) : 0
  var layout: QuadraticForms<T>.Layout? = nil
  if case .matrices(let qs) = precisions { layout = QuadraticForms.Layout(qs, d: d, memoryLimit: options.memoryLimit) }
  let formShared = layout?.shared ?? 0
  let formPerWorker = layout?.perWorker ?? 0
  let diagonalPrecisions = layout == nil ? bytes(d, e) : 0
  // centred rows, the triangle product, log-densities, one row's sums, active row indices
  let perRow = total(bytes(d, e), layout?.perRow ?? 0, bytes(k, dbl), dbl, MemoryLayout<Int>.stride)
  let parallel = WorkspaceNeeds(
    shared: total(formShared, bytes(k, d, e)),
    perWorker: total(bytes(statsCount, dbl), blockProduct, formPerWorker, diagonalPrecisions),
    perRow: perRow, preferredBlockRows: mixtureBlockRows)
  // The sequential policy: each worker sums all but S2, which goes straight into `statistics`.
  var sink: GramSink<T>? = nil
  let plan: RowBlockPlan
  if let p = RowBlockPlan.allWorkers(rows: max(n, 1), needs: parallel, options: options) {
    plan = p
  } else {
    let second = statistics + (1 + k + k * d)
    let destinations = (0..<(scatter == .full ? k : 1)).map { GramDestination<T>.double(second + $0 * d * d, ld: d) }
    let needs = WorkspaceNeeds(
      shared: total(formShared, bytes(k, d, e), GramSink.workspaceBytes(destinations, d: d)),
      perWorker: total(bytes(statsCount - gramCount, dbl), formPerWorker, diagonalPrecisions),
      perRow: perRow, preferredBlockRows: mixtureBlockRows)
    plan = try RowBlockPlan(rows: max(n, 1), needs: needs, options: options, maxWorkers: 1)
    if syrkScatter { sink = try GramSink(destinations, d: d, threads: options.resolvedThreads) }
  }
  // What each worker sums itself: everything, or all but S2 when a sink takes it.
  let ownCount = sink == nil ? statsCount : statsCount - gramCount

  var forms: QuadraticForms<T>? = nil
  if case .matrices(let qs) = precisions { forms = try QuadraticForms(qs, layout: layout!) }
  let meanRows = try (0..<k).map { (j: Int) throws(KernelError) in try packVector(means.row(j))! }
  let perRowOutputs = responsibilities != nil || scores != nil
  let b = plan.blockRows
  var stats: [Accumulator] = []
  // sumOfWorkers returns a pointer into these buffers: keep them to the end.
  defer { withExtendedLifetime(stats) {} }
  var centred: [Workspace<T>] = []
  var scratch: [QuadraticForms<T>.Scratch] = []
  var lambdas: [Workspace<T>] = []
  var logp: [Accumulator] = []
  var sums: [Accumulator] = []
  var active: [UnsafeMutablePointer<Int>] = []
  var gramProducts: [Workspace<T>] = []
  defer { for a in active { a.deallocate() } }
  for _ in 0..<plan.workers {
    let s = try Accumulator(count: ownCount)
    s.zero()
    stats.append(s)
    centred.append(try Workspace<T>(count: b * d))
    if let forms { scratch.append(try forms.scratch(rows: b)) } else { lambdas.append(try Workspace<T>(count: d)) }
    logp.append(try Accumulator(count: b * k))
    sums.append(try Accumulator(count: b))
    active.append(UnsafeMutablePointer<Int>.allocate(capacity: b))
    if blockProduct > 0 && sink == nil { gramProducts.append(try Workspace<T>(count: d * d)) }
  }

  try plan.run(rows: n, options: options, reproducible: true) { w, rows in
    let idx = active[w]
    let m = activeRows(rows, sampleWeights, all: perRowOutputs, into: idx)
    if m == 0 { return }
    let z = centred[w].pointer
    let lp = logp[w].pointer  // m × k
    let acc = sums[w].pointer

    // 1. Log-densities.
    for j in 0..<k {
      let mu = UnsafePointer(meanRows[j].pointer)
      for t in 0..<m { packRow(x.row(idx[t]), into: z + t * d, center: mu, scale: 1) }
      switch precisions {
      case .matrices:
        forms!.evaluate(
          j, BLASOperand(pointer: UnsafePointer(z), rowMajor: true, ld: d), rows: m, scratch: scratch[w],
          into: acc)
      case .diagonal(let p):
        let lam = lambdas[w].pointer
        for c in 0..<d { lam[c] = p[j, c] }
        for t in 0..<m {
          let zt = z + t * d
          var s = 0.0
          for c in 0..<d {
            let v = Double(zt[c])
            s += Double(lam[c]) * v * v
          }
          acc[t] = s
        }
      }
      let ln = Double(logNorm[j])
      for t in 0..<m { lp[t * k + j] = ln - 0.5 * acc[t] }
    }

    // 2. Log-sum-exp; lp becomes the responsibilities, times the sample weights.
    let st = stats[w].pointer
    normalizeRows(
      lp, rows: m, components: k, indices: idx, sampleWeights: sampleWeights, scores: scores,
      responsibilities: responsibilities, into: st)
    if scatter == .none { return }

    // 3. Statistics.
    let first = st + 1 + k
    let second = st + 1 + k + k * d
    for j in 0..<k {
      let mu = UnsafePointer(meanRows[j].pointer)
      var top = 0
      for t in 0..<m {
        let rw = lp[t * k + j]
        if rw < negligibleWeight { continue }
        let xi = x.row(idx[t])
        let f = first + j * d
        if syrkScatter {
          let zt = z + top * d
          packRow(xi, into: zt, center: mu, scale: T(rw.squareRoot()))
          // S1 from the packed √r (x − μ): multiply back by √r in Double.
          let root = rw.squareRoot()
          for c in 0..<d { f[c] += root * Double(zt[c]) }
          top += 1
        } else {
          for c in 0..<d {
            let v = Double(xi[c]) - Double(mu[c])
            f[c] += rw * v
            if scatter == .diagonal { second[j * d + c] += rw * v * v }
          }
        }
      }
      guard syrkScatter && top > 0 else { continue }
      if let sink {
        sink.add(scatter == .full ? j : 0, BLASOperand(pointer: UnsafePointer(z), rowMajor: true, ld: d), rows: top, alpha: 1)
        continue
      }
      let target = scatter == .full ? second + j * d * d : second
      if blockProduct > 0 {
        let g = gramProducts[w].pointer
        T._syrkLower(trans: true, n: d, k: top, alpha: 1, a: z, lda: d, beta: 0, c: g, ldc: d)
        addLower(g, into: target, d)
      } else {
        let g = UnsafeMutableRawPointer(target).assumingMemoryBound(to: T.self)
        T._syrkLower(trans: true, n: d, k: top, alpha: 1, a: z, lda: d, beta: 1, c: g, ldc: d)
      }
    }
  }

  // Sum the workers' statistics and mirror the lower triangles.
  let summed = sumOfWorkers(stats, count: ownCount)
  statistics.update(from: summed, count: ownCount)
  if let sink {
    sink.finish()
  } else if syrkScatter {
    let second = statistics + (1 + k + k * d)
    for j in 0..<(scatter == .full ? k : 1) { mirrorLower(second + j * d * d, ld: d, d) }
  }
}
