// Gram matrices accumulated in the outputs themselves.
//
// The per-worker policy (parallel row blocks, each worker with its own d × d accumulators
// in Double, summed at the end) needs workers × K × d² of workspace: 1.6 GB for two workers
// at d = 10000. When that does not fit the memory limit, a kernel runs its row blocks one
// after another with threaded BLAS instead and adds each block into a `GramSink`, whose
// accumulator is the output array itself:
//
// - float64 into a destination BLAS can write (an `out` array, the statistics buffer):
//   SYRK with beta = 1 straight into its lower triangle. Threaded DSYRK of d = 2500 or
//   10000 and k = 256 to 2048 runs at 90–100% of a 4000² DGEMM.
// - otherwise (float32, or an `out` with strides BLAS cannot write) a block's product is
//   formed one column panel of the lower triangle at a time, in `gramTileWidth` × d of
//   workspace, and added into the destination by all the call's threads; those blocks are
//   taller (`gramTiledBlockRows`), as each costs d²/2 additions whatever its height. A
//   Double destination takes a plain sum. An `out` array takes a compensated sum (TwoSum):
//   its lower triangle holds the running sum, its strictly upper triangle the rounding
//   error of each addition, and the diagonal's errors a d-vector of Doubles; `finish` folds
//   them and writes both triangles. So float32 sums keep about twice float32's digits
//   across blocks, with no d² workspace of Doubles.

/// Where a `GramSink` accumulates.
enum GramDestination<T: KernelScalar> {
  /// Lower triangle of a row-major d × d Double matrix (leading dimension `ld`).
  case double(UnsafeMutablePointer<Double>, ld: Int)
  /// An output matrix of `T`, written in full by `finish`.
  case output(StridedMatrix<T>)
}

/// K symmetric d × d accumulators over row blocks (see the top of this file).
final class GramSink<T: KernelScalar> {
  let d: Int
  private let destinations: [GramDestination<T>]
  /// Per destination: where SYRK writes it directly (row-major view, leading dimension), or nil.
  private let direct: [(pointer: UnsafeMutablePointer<T>, ld: Int)?]
  /// Tile products, d × gramTileWidth of T, shared by the destinations that need them.
  private let tile: Workspace<T>?
  /// Per `.output` destination taking tiles: the rounding errors of the diagonal's sums (d each).
  private let diagonalErrors: Accumulator?
  /// Whether the destinations were cleared.
  private var started = false
  /// Threads that add a tile into its destination (BLAS has them while it forms the tile).
  private let threads: Int

  /// Workspace a sink for `destinations` allocates.
  static func workspaceBytes(_ destinations: [GramDestination<T>], d: Int) -> Int {
    guard tiles(destinations) else { return 0 }
    return total(
      bytes(d, min(gramTileWidth, d), MemoryLayout<T>.stride),
      bytes(compensatedCount(destinations), d, MemoryLayout<Double>.stride))
  }

  /// Whether destination `dest` is an `out` array taking tiles (and so a compensated sum).
  private static func isCompensated(_ dest: GramDestination<T>) -> Bool {
    if directTarget(dest) == nil, case .output = dest { return true }
    return false
  }

  /// The destinations that take a compensated sum.
  private static func compensatedCount(_ destinations: [GramDestination<T>]) -> Int {
    destinations.filter(isCompensated).count
  }

  private static func directTarget(_ destination: GramDestination<T>) -> (pointer: UnsafeMutablePointer<T>, ld: Int)? {
    guard T.self == Double.self else { return nil }
    switch destination {
    case .double(let p, let ld):
      return (UnsafeMutableRawPointer(p).assumingMemoryBound(to: T.self), ld)
    case .output(let out):
      // A column-major view is the row-major view of the transpose: the same symmetric matrix.
      guard let op = out.blasOperand else { return nil }
      return (UnsafeMutableRawPointer(mutating: op.pointer).assumingMemoryBound(to: T.self), op.ld)
    }
  }

  /// Whether some destination takes tile products (so blocks should be tall: each block's
  /// tiles cost d²/2 additions, whatever its height).
  static func tiles(_ destinations: [GramDestination<T>]) -> Bool {
    destinations.contains { directTarget($0) == nil }
  }

  /// Rows per block for a plan feeding this sink.
  static func blockRows(_ destinations: [GramDestination<T>]) -> Int {
    tiles(destinations) ? gramTiledBlockRows : gramSinkBlockRows
  }

  /// Sinks that start from zero (the destinations are cleared before the first block adds).
  init(_ destinations: [GramDestination<T>], d: Int, threads: Int = 1) throws(KernelError) {
    self.d = d
    self.threads = max(1, threads)
    self.destinations = destinations
    direct = destinations.map(GramSink.directTarget)
    let outputs = GramSink.compensatedCount(destinations)
    tile = GramSink.tiles(destinations) ? try Workspace<T>(count: d * min(gramTileWidth, d)) : nil
    if outputs > 0 {
      let e = try Accumulator(count: outputs * d)
      e.zero()
      diagonalErrors = e
    } else {
      diagonalErrors = nil
    }
  }

  /// Clears the destinations, on the first block's `add` (so that a call cancelled before
  /// its first block leaves them as they were) or in `finish`.
  private func startIfNeeded() {
    if started { return }
    started = true
    for (dest, direct) in zip(destinations, direct) {
      if let direct {
        for i in 0..<d { (direct.pointer + i * direct.ld).update(repeating: 0, count: i + 1) }
      } else if case .double(let p, let ld) = dest {
        for i in 0..<d { (p + i * ld).update(repeating: 0, count: i + 1) }
      } else if case .output(let out) = dest {
        for i in 0..<d { for j in 0..<d { out[i, j] = 0 } }
      }
    }
  }

  /// The index into `diagonalErrors` of destination `j`'s errors.
  private func errorOffset(_ j: Int) -> Int {
    GramSink.compensatedCount(Array(destinations[..<j])) * d
  }

  /// G_j += alpha · Zᵀ Z for the k × d block `z`.
  func add(_ j: Int, _ z: BLASOperand<T>, rows k: Int, alpha: T) {
    startIfNeeded()
    guard k > 0 else { return }
    if let target = direct[j] {
      T._syrkLower(
        trans: z.rowMajor, n: d, k: k, alpha: alpha, a: z.pointer, lda: z.ld, beta: 1,
        c: target.pointer, ldc: target.ld)
      return
    }
    let t = tile!.pointer
    var j0 = 0
    while j0 < d {
      let j1 = min(j0 + gramTileWidth, d)
      let w = j1 - j0
      // Rows j0..<d of columns J, row-major with leading dimension w: the diagonal block
      // by SYRK, the rows below it by GEMM.
      T._syrkLower(
        trans: z.rowMajor, n: w, k: k, alpha: alpha, a: z.offset(row: 0, col: j0), lda: z.ld,
        beta: 0, c: t, ldc: w)
      if j1 < d {
        T._gemm(
          transA: z.rowMajor, transB: !z.rowMajor, m: d - j1, n: w, k: k, alpha: alpha,
          a: z.offset(row: 0, col: j1), lda: z.ld, b: z.offset(row: 0, col: j0), ldb: z.ld,
          beta: 0, c: t + w * w, ldc: w)
      }
      addTile(j, t, columns: j0..<j1)
      j0 = j1
    }
  }

  /// Adds the tile (rows columns.lowerBound..<d, leading dimension columns.count) into
  /// destination j's lower triangle.
  private func addTile(_ j: Int, _ t: UnsafePointer<T>, columns: Range<Int>) {
    // Rows split evenly among the threads (rows below the diagonal block are full width).
    let rows = d - columns.lowerBound
    let parts = min(threads, max(1, rows / 64))
    let step = (rows + parts - 1) / parts
    _ = parallelFor(parts, workers: parts, options: KernelOptions()) { _, part in
      let start = columns.lowerBound + part * step
      addTile(j, t, columns: columns, rows: start..<min(start + step, d))
    }
  }

  private func addTile(_ j: Int, _ t: UnsafePointer<T>, columns: Range<Int>, rows: Range<Int>) {
    let j0 = columns.lowerBound
    let w = columns.count
    switch destinations[j] {
    case .double(let p, let ld):
      for i in rows {
        let src = t + (i - j0) * w
        let dst = p + i * ld + j0
        for c in 0..<min(w, i - j0 + 1) { dst[c] += Double(src[c]) }
      }
    case .output(let out):
      let diagonal = diagonalErrors!.pointer + errorOffset(j)
      for i in rows {
        let src = t + (i - j0) * w
        for c in 0..<min(w, i - j0 + 1) {
          let col = j0 + c
          // TwoSum: s + error == running + value exactly.
          let a = out[i, col]
          let b = src[c]
          let s = a + b
          let bb = s - a
          let error = (a - (s - bb)) + (b - bb)
          out[i, col] = s
          if i == col {
            diagonal[i] += Double(error)
          } else {
            out[col, i] += error
          }
        }
      }
    }
  }

  /// Writes the accumulated matrices: an `.output` in full, a `.double`'s upper triangle
  /// mirrored from its lower one.
  func finish() {
    startIfNeeded()
    for j in 0..<destinations.count {
      if let target = direct[j] {
        // Only Double is written directly.
        mirrorLower(UnsafeMutableRawPointer(target.pointer).assumingMemoryBound(to: Double.self), ld: target.ld, d)
        continue
      }
      switch destinations[j] {
      case .double(let p, let ld):
        mirrorLower(p, ld: ld, d)
      case .output(let out):
        let diagonal = diagonalErrors!.pointer + errorOffset(j)
        for i in 0..<d {
          out[i, i] = T(Double(out[i, i]) + diagonal[i])
          for c in 0..<i {
            let v = T(Double(out[i, c]) + Double(out[c, i]))
            out[i, c] = v
            out[c, i] = v
          }
        }
      }
    }
  }
}
