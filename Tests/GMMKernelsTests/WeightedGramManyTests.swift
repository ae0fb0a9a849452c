@testable import GMMKernels
import XCTest
import _GMKTestSupport

/// The inputs of one weightedGramMany call, as Doubles, and where to put them. The K
/// outputs are one (K·d) × d array in `outLayout`, as a (K, d, d) numpy array is.
struct GramManyCase {
  var n: Int
  var d: Int
  var k: Int
  var x: [Double]
  /// n × K, row-major.
  var r: [Double]
  var centers: [Double]?
  var xLayout: MatrixLayout = .cOrder
  var rLayout: MatrixLayout = .cOrder
  var centersLayout: MatrixLayout = .cOrder
  var outLayout: MatrixLayout = .cOrder

  var description: String {
    "n=\(n) d=\(d) K=\(k) X \(xLayout), R \(rLayout), "
      + (centers == nil ? "no centers" : "centers \(centersLayout)") + ", out \(outLayout)"
  }
}

/// Runs weightedGramMany on `c` in `T`; checks that the inputs came back unchanged, nothing
/// outside `out` was written and every G_k is exactly symmetric; returns the results
/// (K × d × d, row-major) and the reference on the rounded inputs.
func runGramMany<T: KernelScalar>(
  _: T.Type, _ c: GramManyCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) -> (got: [Double], want: Reference)? {
  let (n, d, k) = (c.n, c.d, c.k)
  let x = TestMatrix<T>(rows: n, cols: d, layout: c.xLayout, values: c.x)
  let r = TestMatrix<T>(rows: n, cols: k, layout: c.rLayout, values: c.r)
  let centers = c.centers.map { TestMatrix<T>(rows: k, cols: d, layout: c.centersLayout, values: $0) }
  let out = TestMatrix<T>(rows: k * d, cols: d, layout: c.outLayout)
  defer { withExtendedLifetime((x, r, centers, out)) {} }
  let context = "\(T.self) \(c.description)"
  let inputs: [(String, any GuardedStorage)] = [("X", x), ("R", r)] + named("centers", centers)
  let returned = guardedCall(context, inputs: inputs, outputs: [("out", out)], file: file, line: line) {
    try weightedGramMany(x.view, r.view, centers: centers?.view, out: out.rowBlocks(k), options: options)
  }
  guard returned else { return nil }
  let got = out.values
  symmetry: for j in 0..<k {
    for a in 0..<d {
      for b in 0..<a where got[j * d * d + a * d + b].bitPattern != got[j * d * d + b * d + a].bitPattern {
        XCTFail("\(context): out[\(j)] is not symmetric at (\(a), \(b))", file: file, line: line)
        break symmetry
      }
    }
  }
  let want = referenceWeightedGramMany(x: x.values, rows: n, cols: d, r: r.values, components: k, centers: centers?.values)
  return (got, want)
}

func checkGramMany<T: KernelScalar>(
  _: T.Type, _ c: GramManyCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runGramMany(T.self, c, options: options, file: file, line: line) else { return }
  XCTAssertNil(
    firstMismatch(run.got, run.want, bound: roundingBound(T.self, terms: c.n)), "\(T.self) \(c.description)",
    file: file, line: line)
}

func checkGramManyExact<T: KernelScalar>(
  _: T.Type, _ c: GramManyCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runGramMany(T.self, c, options: options, file: file, line: line) else { return }
  XCTAssertNil(firstDifference(run.got, run.want.values), "\(T.self) \(c.description)", file: file, line: line)
}

/// A memory limit with room for K accumulators of d × d in Double, a block product per
/// worker and about 40 packed rows; a block of m rows is packed, m·d·e bytes, so no block
/// holds more than `limit / (d·e)` rows.
func smallGramManyLimit(k: Int, d: Int, elementSize e: Int) -> Int { k * d * d * 8 + 3 * d * d * e + k * d * e + 40 * d * e }

final class WeightedGramManyTests: XCTestCase {
  func testRandomDataAgainstReference() {
    random(Float.self)
    random(Double.self)
  }

  private func random<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 201)
    for (n, d) in [(1, 1), (1, 30), (7, 2), (100, 5), (100, 33), (513, 3)] {
      for k in [1, 3] {
        for withCenters in [false, true] {
          // Responsibilities in [0, 1), and weights of both signs with zeros.
          for signed in [false, true] {
            var r = signed ? rng.uniform(count: n * k, -1, 1) : rng.uniform(count: n * k, 0, 1)
            if signed { for i in stride(from: 0, to: n * k, by: 3) { r[i] = 0 } }
            let c = GramManyCase(
              n: n, d: d, k: k, x: rng.uniform(count: n * d, -1, 1), r: r,
              centers: withCenters ? rng.uniform(count: k * d, -1, 1) : nil)
            checkGramMany(T.self, c)
          }
        }
      }
    }
  }

  /// Sizes that do not divide the block, a memory limit that forces many small blocks, and
  /// 1, 2 and 3 threads; integer data and square weights, so results must be exact.
  func testBlocksAndThreads() {
    blocks(Float.self)
    blocks(Double.self)
  }

  private func blocks<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 202)
    let (d, k) = (6, 3)
    let e = MemoryLayout<T>.stride
    let limit = smallGramManyLimit(k: k, d: d, elementSize: e)
    let maxRowsPerBlock = limit / (d * e)
    for n in [1, 7, 513, 2049 + 3] {
      for threads in [1, 2, 3] {
        for withCenters in [false, true] {
          let c = GramManyCase(
            n: n, d: d, k: k, x: exactValues(&rng, count: n * d), r: rng.choose(count: n * k, from: exactWeights),
            centers: withCenters ? exactValues(&rng, count: k * d) : nil)
          let rows = AtomicCounter()
          let calls = AtomicCounter()
          checkGramManyExact(T.self, c, options: progressOptions(threads: threads, memoryLimit: limit, rows: rows, calls: calls))
          let context = "\(T.self) \(c.description) threads=\(threads)"
          XCTAssertEqual(rows.value, n, "\(context): rows reported")
          XCTAssertGreaterThanOrEqual(
            calls.value, (n + maxRowsPerBlock - 1) / maxRowsPerBlock, "\(context): too few blocks for memory_limit=\(limit)")
        }
      }
    }
    // Every worker takes blocks (as many as the CPUs run at once, given enough blocks of the
    // preferred height): the workers' accumulators must be added up, into an out that BLAS
    // can write (row-major) or not.
    for threads in [2, 3] {
      for layout in [MatrixLayout.cOrder, .fortranOrder] {
        let n = 2 * weightedGramBlockRows + 5
        var c = GramManyCase(
          n: n, d: d, k: k, x: exactValues(&rng, count: n * d), r: rng.choose(count: n * k, from: exactWeights),
          centers: exactValues(&rng, count: k * d))
        c.outLayout = layout
        let workers = WorkerThreads()
        checkGramManyExact(T.self, c, options: spreadingOptions(threads: threads, workers: workers))
        XCTAssertGreaterThanOrEqual(
          workers.count, min(threads, KernelOptions.availableCPUs), "\(T.self) threads=\(threads): threads that took blocks")
      }
    }
    // Above the preferred block height with the default limit.
    let n = weightedGramBlockRows + 7
    for threads in [nil, 2, 3] as [Int?] {
      let c = GramManyCase(
        n: n, d: d, k: k, x: exactValues(&rng, count: n * d), r: rng.choose(count: n * k, from: exactWeights),
        centers: exactValues(&rng, count: k * d))
      checkGramManyExact(T.self, c, options: KernelOptions(threads: threads))
    }
  }

  /// Every storage layout of X and out, crossed (a row-major out is accumulated in place
  /// for float64), with R and centers in every layout in turn.
  /// When the workers' K × d² accumulators do not fit, the sums go into the K outputs
  /// themselves (threaded BLAS, `GramSink`): float64 straight into a writable `out`, float32
  /// or an unwritable `out` through tiles and compensated sums.
  func testAccumulationInOutputs() {
    intoOutputs(Float.self)
    intoOutputs(Double.self)
  }

  private func intoOutputs<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 207)
    let (n, d, k) = (gramSinkBlockRows + 7, 261, 2)
    let limit = k * d * d * MemoryLayout<Double>.stride - 1
    for (i, outLayout) in [MatrixLayout.cOrder, .everyOtherColumn].enumerated() {
      var c = GramManyCase(
        n: n, d: d, k: k, x: exactValues(&rng, count: n * d), r: rng.choose(count: n * k, from: exactWeights),
        centers: i == 0 ? exactValues(&rng, count: k * d) : nil)
      c.outLayout = outLayout
      checkGramManyExact(T.self, c, options: KernelOptions(threads: 2, memoryLimit: limit))
    }
  }

  func testEveryLayout() {
    layouts(Float.self)
    layouts(Double.self)
  }

  private func layouts<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 203)
    let all = MatrixLayout.all
    var i = 0
    for xLayout in all {
      for outLayout in all {
        let (n, d, k) = (19, 5, 2)
        var c = GramManyCase(
          n: n, d: d, k: k, x: exactValues(&rng, count: n * d), r: rng.choose(count: n * k, from: exactWeights),
          centers: i % 2 == 0 ? exactValues(&rng, count: k * d) : nil)
        c.xLayout = xLayout
        c.outLayout = outLayout
        c.rLayout = all[i % all.count]
        c.centersLayout = all[(i / 2) % all.count]
        checkGramManyExact(T.self, c)
        checkGramManyExact(
          T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallGramManyLimit(k: k, d: d, elementSize: MemoryLayout<T>.stride)))
        i += 1
      }
    }
  }

  /// Rows with r_ik = 0 contribute nothing to G_k: a component whose column is all zeros
  /// is exactly 0, and zero weights never let the data in (NaN rows of weight 0 included).
  func testZeroWeights() {
    zeros(Float.self)
    zeros(Double.self)
  }

  private func zeros<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 204)
    let (n, d, k) = (200, 4, 3)
    var x = exactValues(&rng, count: n * d)
    var r = rng.choose(count: n * k, from: exactWeights)
    for i in 0..<n { r[i * k + 1] = 0 }
    // Rows 5 and 77 hold NaN and have weight 0 for every component.
    for i in [5, 77] {
      x[i * d + 2] = .nan
      for j in 0..<k { r[i * k + j] = 0 }
    }
    for threads in [1, 3] {
      for withCenters in [false, true] {
        let c = GramManyCase(
          n: n, d: d, k: k, x: x, r: r, centers: withCenters ? exactValues(&rng, count: k * d) : nil,
          outLayout: withCenters ? .cOrder : .fortranOrder)
        guard let run = runGramMany(T.self, c, options: KernelOptions(threads: threads, memoryLimit: smallGramManyLimit(k: k, d: d, elementSize: MemoryLayout<T>.stride))) else { continue }
        XCTAssertNil(firstDifference(Array(run.got[(d * d)..<(2 * d * d)]), [Double](repeating: 0, count: d * d)), "\(T.self) \(c.description): all-zero column")
        XCTAssertTrue(run.got.allSatisfy { !$0.isNaN }, "\(T.self) \(c.description): a NaN row of weight 0 reached the result")
        // The reference multiplies 0 · NaN; drop the rows of weight 0 before comparing.
        let kept = (0..<n).filter { i in (0..<k).contains { r[i * k + $0] != 0 } }
        let want = referenceWeightedGramMany(
          x: kept.flatMap { i in (0..<d).map { Double(T(x[i * d + $0])) } }, rows: kept.count, cols: d,
          r: kept.flatMap { i in (0..<k).map { r[i * k + $0] } }, components: k,
          centers: c.centers.map { $0.map { Double(T($0)) } })
        XCTAssertNil(firstDifference(run.got, want.values), "\(T.self) \(c.description)")
      }
    }
  }

  func testEmptyAndDegenerateShapes() {
    empty(Float.self)
    empty(Double.self)
  }

  private func empty<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 205)
    // n = 0: K empty sums, exactly 0 (out starts as NaN), in either out layout.
    for (d, k) in [(1, 1), (4, 3)] {
      for layout in [MatrixLayout.cOrder, .fortranOrder] {
        var c = GramManyCase(n: 0, d: d, k: k, x: [], r: [], centers: rng.uniform(count: k * d, -1, 1))
        c.outLayout = layout
        let run = runGramMany(T.self, c)
        XCTAssertEqual(run?.got, [Double](repeating: 0, count: k * d * d), "\(T.self) \(c.description)")
      }
    }
    // K = 0 or d = 0: nothing to write.
    XCTAssertEqual(runGramMany(T.self, GramManyCase(n: 5, d: 3, k: 0, x: rng.uniform(count: 15, -1, 1), r: [], centers: nil))?.got, [])
    XCTAssertEqual(runGramMany(T.self, GramManyCase(n: 5, d: 0, k: 2, x: [], r: rng.uniform(count: 10, -1, 1), centers: nil))?.got, [])
    // d = 1 and K = 1.
    for n in [1, 7, 1000] {
      checkGramMany(T.self, GramManyCase(n: n, d: 1, k: 2, x: rng.uniform(count: n, -2, 2), r: rng.uniform(count: 2 * n, -1, 1), centers: [0.25, -1]))
      checkGramManyExact(
        T.self, GramManyCase(n: n, d: 1, k: 1, x: exactValues(&rng, count: n), r: rng.choose(count: n, from: exactWeights), centers: [3]),
        options: KernelOptions(threads: 3, memoryLimit: smallGramManyLimit(k: 1, d: 1, elementSize: MemoryLayout<T>.stride)))
    }
  }

  /// Data 1e3 from the origin centred near its means: Σ r x xᵀ − N c cᵀ would lose every
  /// digit the offset takes.
  func testMeanOffset() {
    meanOffset(Float.self)
    meanOffset(Double.self)
  }

  private func meanOffset<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 206)
    let (n, d, k) = (400, 7, 3)
    let x = rng.uniform(count: n * d, -1, 1).map { Double(T(1e3 + $0)) }
    let centers = rng.uniform(count: k * d, -0.2, 0.2).map { Double(T(1e3 + $0)) }
    let c = GramManyCase(n: n, d: d, k: k, x: x, r: rng.uniform(count: n * k, 0, 1), centers: centers)
    checkGramMany(T.self, c)
    checkGramMany(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallGramManyLimit(k: k, d: d, elementSize: MemoryLayout<T>.stride)))
  }

  func testShapeMismatchesThrow() {
    shapeMismatches(Float.self)
    shapeMismatches(Double.self)
  }

  private func shapeMismatches<T: KernelScalar>(_: T.Type) {
    let (n, d, k) = (10, 4, 3)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let r = TestMatrix<T>(rows: n, cols: k, values: [Double](repeating: 1, count: n * k))
    let shortR = TestMatrix<T>(rows: n - 1, cols: k, values: [Double](repeating: 1, count: (n - 1) * k))
    let centers = TestMatrix<T>(rows: k, cols: d, values: [Double](repeating: 0, count: k * d))
    let fewCenters = TestMatrix<T>(rows: k - 1, cols: d, values: [Double](repeating: 0, count: (k - 1) * d))
    defer { withExtendedLifetime((x, r, shortR, centers, fewCenters)) {} }
    func attempt(_ name: String, r rView: StridedMatrix<T>, centers c: StridedMatrix<T>?, outs: Int, size: (Int, Int)) {
      let o = TestMatrix<T>(rows: outs * size.0, cols: size.1)
      defer { withExtendedLifetime(o) {} }
      let error = thrownError { () throws(KernelError) in
        try weightedGramMany(x.view, rView, centers: c, out: o.rowBlocks(outs))
      }
      assertInvalidArgument(error, mentions: name, "\(T.self) weightedGramMany with a wrong \(name)")
      XCTAssertTrue(o.untouched(), "\(T.self): out written before the \(name) check")
    }
    attempt("R", r: shortR.view, centers: nil, outs: k, size: (d, d))
    attempt("centers", r: r.view, centers: fewCenters.view, outs: k, size: (d, d))
    attempt("out", r: r.view, centers: centers.view, outs: k - 1, size: (d, d))
    attempt("out", r: r.view, centers: nil, outs: k + 1, size: (d, d))
    attempt("out[0]", r: r.view, centers: nil, outs: k, size: (d, d + 1))
    attempt("out[0]", r: r.view, centers: nil, outs: k, size: (d - 1, d - 1))
  }

  func testMemoryLimitTooSmallThrows() {
    tooSmall(Float.self)
    tooSmall(Double.self)
  }

  private func tooSmall<T: KernelScalar>(_: T.Type) {
    let (n, d, k) = (100, 16, 2)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let r = TestMatrix<T>(rows: n, cols: k, values: [Double](repeating: 1, count: n * k))
    defer { withExtendedLifetime((x, r)) {} }
    for limit in [0, 1, 64, d * MemoryLayout<T>.stride - 1] {
      for threads in [1, 3] {
        // Fortran order: never accumulated in place, so the K accumulators count too.
        let out = TestMatrix<T>(rows: k * d, cols: d, layout: .fortranOrder)
        defer { withExtendedLifetime(out) {} }
        let error = thrownError { () throws(KernelError) in
          try weightedGramMany(x.view, r.view, out: out.rowBlocks(k), options: KernelOptions(threads: threads, memoryLimit: limit))
        }
        assertInvalidArgument(error, mentions: "memory_limit", "\(T.self) memoryLimit=\(limit) threads=\(threads)")
        XCTAssertTrue(out.untouched(), "\(T.self) memoryLimit=\(limit): out was written")
      }
    }
  }
}
