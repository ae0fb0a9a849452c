@testable import GMMKernels
import XCTest
import _GMKTestSupport

/// The inputs of one quadformMany call, as Doubles, and where to put them. The K matrices
/// are stored as one (K·d) × d array in `qsLayout`, as a (K, d, d) numpy array is.
struct QuadformManyCase {
  var n: Int
  var d: Int
  var x: [Double]
  var qs: [[Double]]
  var centers: [Double]?
  var xLayout: MatrixLayout = .cOrder
  var qsLayout: MatrixLayout = .cOrder
  var centersLayout: MatrixLayout = .cOrder
  var outLayout: MatrixLayout = .cOrder
  /// Pass the first matrix's view K times instead of K views (a tied model).
  var shareFirstMatrix = false

  var k: Int { qs.count }

  var description: String {
    "n=\(n) d=\(d) K=\(k) X \(xLayout), Qs \(qsLayout)\(shareFirstMatrix ? " (one view K times)" : ""), "
      + (centers == nil ? "no centers" : "centers \(centersLayout)") + ", out \(outLayout)"
  }
}

/// Runs quadformMany on `c` in `T`; checks that the inputs came back unchanged and nothing
/// outside `out` was written; returns the results (n × K, row-major) and the reference on
/// the rounded inputs.
func runQuadformMany<T: KernelScalar>(
  _: T.Type, _ c: QuadformManyCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) -> (got: [Double], want: Reference)? {
  let (n, d, k) = (c.n, c.d, c.k)
  let x = TestMatrix<T>(rows: n, cols: d, layout: c.xLayout, values: c.x)
  let qs = TestMatrix<T>(rows: k * d, cols: d, layout: c.qsLayout, values: c.qs.flatMap { $0 })
  let centers = c.centers.map { TestMatrix<T>(rows: k, cols: d, layout: c.centersLayout, values: $0) }
  let out = TestMatrix<T>(rows: n, cols: k, layout: c.outLayout)
  defer { withExtendedLifetime((x, qs, centers, out)) {} }
  var views = qs.rowBlocks(k)
  if c.shareFirstMatrix { views = views.map { _ in views[0] } }
  let inputs: [(String, any GuardedStorage)] = [("X", x), ("Qs", qs)] + named("centers", centers)
  let returned = guardedCall(
    "\(T.self) \(c.description)", inputs: inputs, outputs: [("out", out)], file: file, line: line
  ) { try quadformMany(x.view, views, centers: centers?.view, out: out.view, options: options) }
  guard returned else { return nil }
  let qValues = qs.values
  var matrices = (0..<k).map { Array(qValues[($0 * d * d)..<(($0 + 1) * d * d)]) }
  if c.shareFirstMatrix { matrices = matrices.map { _ in matrices[0] } }
  let want = referenceQuadformMany(x: x.values, rows: n, cols: d, qs: matrices, centers: centers?.values)
  return (out.values, want)
}

/// Runs `c` and requires results within the rounding bound of a quadratic form in `T`.
func checkQuadformMany<T: KernelScalar>(
  _: T.Type, _ c: QuadformManyCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runQuadformMany(T.self, c, options: options, file: file, line: line) else { return }
  let bound = roundingBound(T.self, terms: 2 * c.d)
  XCTAssertNil(firstMismatch(run.got, run.want, bound: bound), "\(T.self) \(c.description)", file: file, line: line)
}

/// Runs `c` (integer data, exact throughout) and requires exact results.
func checkQuadformManyExact<T: KernelScalar>(
  _: T.Type, _ c: QuadformManyCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runQuadformMany(T.self, c, options: options, file: file, line: line) else { return }
  XCTAssertNil(firstDifference(run.got, run.want.values), "\(T.self) \(c.description)", file: file, line: line)
}

/// A memory limit with room for K copies of the matrices, the K centers and about 40
/// packed rows; any block of m rows needs at least m·d·e bytes, so no block holds more
/// than `limit / (d·e)` rows.
func smallQuadformManyLimit(k: Int, d: Int, elementSize e: Int) -> Int { k * d * d * e + k * d * e + 40 * d * e }

/// `count` matrices of d × d, exactly symmetric or not.
func randomMatrices(_ rng: inout SplitMix64, count: Int, d: Int, symmetric: Bool, exact: Bool = false) -> [[Double]] {
  (0..<count).map { _ in
    var q = exact ? exactValues(&rng, count: d * d) : rng.uniform(count: d * d, -1, 1)
    if symmetric {
      for j in 0..<d { for i in 0..<j { q[j * d + i] = q[i * d + j] } }
    }
    return q
  }
}

final class QuadformManyTests: XCTestCase {
  func testRandomDataAgainstReference() {
    random(Float.self)
    random(Double.self)
  }

  private func random<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 101)
    for (n, d) in [(1, 1), (1, 40), (7, 2), (100, 5), (100, 33), (513, 3)] {
      for k in [1, 4] {
        for withCenters in [false, true] {
          // Symmetric matrices are read in place; the others are symmetrised first.
          for symmetric in [false, true] {
            let c = QuadformManyCase(
              n: n, d: d, x: rng.uniform(count: n * d, -1, 1),
              qs: randomMatrices(&rng, count: k, d: d, symmetric: symmetric),
              centers: withCenters ? rng.uniform(count: k * d, -1, 1) : nil)
            checkQuadformMany(T.self, c)
          }
        }
      }
    }
  }

  /// Sizes that do not divide the block, a memory limit that forces many small blocks,
  /// 1, 2 and 3 threads; integer data, so every block boundary must give exact results.
  func testBlocksAndThreads() {
    blocks(Float.self)
    blocks(Double.self)
  }

  private func blocks<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 102)
    let (d, k) = (6, 3)
    let e = MemoryLayout<T>.stride
    let limit = smallQuadformManyLimit(k: k, d: d, elementSize: e)
    let maxRowsPerBlock = limit / (d * e)
    for n in [1, 7, 513, 2049 + 3] {
      for threads in [1, 2, 3] {
        for withCenters in [false, true] {
          let c = QuadformManyCase(
            n: n, d: d, x: exactValues(&rng, count: n * d),
            qs: randomMatrices(&rng, count: k, d: d, symmetric: withCenters, exact: true),
            centers: withCenters ? exactValues(&rng, count: k * d) : nil)
          let rows = AtomicCounter()
          let calls = AtomicCounter()
          checkQuadformManyExact(
            T.self, c, options: progressOptions(threads: threads, memoryLimit: limit, rows: rows, calls: calls))
          let context = "\(T.self) \(c.description) threads=\(threads)"
          XCTAssertEqual(rows.value, n, "\(context): rows reported")
          XCTAssertGreaterThanOrEqual(
            calls.value, (n + maxRowsPerBlock - 1) / maxRowsPerBlock, "\(context): too few blocks for memory_limit=\(limit)")
        }
      }
    }
    // Every worker takes blocks (as many as the CPUs run at once, given enough blocks of the
    // preferred height).
    for threads in [2, 3] {
      let n = 2 * quadformBlockRows + 5
      let c = QuadformManyCase(
        n: n, d: d, x: exactValues(&rng, count: n * d), qs: randomMatrices(&rng, count: k, d: d, symmetric: false, exact: true),
        centers: exactValues(&rng, count: k * d))
      let workers = WorkerThreads()
      checkQuadformManyExact(T.self, c, options: spreadingOptions(threads: threads, workers: workers))
      XCTAssertGreaterThanOrEqual(workers.count, min(threads, KernelOptions.availableCPUs), "\(T.self) threads=\(threads): threads that took blocks")
    }
    // Well above the preferred block height, with every thread count and the default limit.
    for threads in [nil, 1, 2, 3] as [Int?] {
      let n = 2 * quadformBlockRows + 5
      let c = QuadformManyCase(
        n: n, d: d, x: exactValues(&rng, count: n * d), qs: randomMatrices(&rng, count: k, d: d, symmetric: true, exact: true),
        centers: exactValues(&rng, count: k * d))
      checkQuadformManyExact(T.self, c, options: KernelOptions(threads: threads))
    }
  }

  /// Every storage layout of X and out, crossed; Qs and centers in every layout in turn.
  func testEveryLayout() {
    layouts(Float.self)
    layouts(Double.self)
  }

  private func layouts<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 103)
    let all = MatrixLayout.all
    var i = 0
    for xLayout in all {
      for outLayout in all {
        let (n, d, k) = (17, 5, 2)
        var c = QuadformManyCase(
          n: n, d: d, x: exactValues(&rng, count: n * d),
          qs: randomMatrices(&rng, count: k, d: d, symmetric: i % 3 == 0, exact: true),
          centers: i % 2 == 0 ? exactValues(&rng, count: k * d) : nil)
        c.xLayout = xLayout
        c.outLayout = outLayout
        c.qsLayout = all[i % all.count]
        c.centersLayout = all[(i / 2) % all.count]
        checkQuadformManyExact(T.self, c)
        checkQuadformManyExact(
          T.self, c,
          options: KernelOptions(threads: 2, memoryLimit: smallQuadformManyLimit(k: k, d: d, elementSize: MemoryLayout<T>.stride)))
        i += 1
      }
    }
  }

  /// A tied model: one matrix passed K times as the same view.
  func testOneMatrixSharedByEveryComponent() {
    shared(Float.self)
    shared(Double.self)
  }

  private func shared<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 104)
    let (n, d, k) = (300, 7, 5)
    for symmetric in [false, true] {
      for layout in [MatrixLayout.cOrder, .reversedBoth] {
        var c = QuadformManyCase(
          n: n, d: d, x: exactValues(&rng, count: n * d), qs: randomMatrices(&rng, count: k, d: d, symmetric: symmetric, exact: true),
          centers: exactValues(&rng, count: k * d))
        c.shareFirstMatrix = true
        c.qsLayout = layout
        checkQuadformManyExact(T.self, c)
        checkQuadformManyExact(T.self, c, options: KernelOptions(threads: 3, memoryLimit: smallQuadformManyLimit(k: k, d: d, elementSize: MemoryLayout<T>.stride)))
      }
    }
  }

  func testEmptyAndDegenerateShapes() {
    empty(Float.self)
    empty(Double.self)
  }

  private func empty<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 105)
    // n = 0: nothing to write.
    for (d, k) in [(0, 2), (3, 1), (4, 3)] {
      for withCenters in [false, true] {
        let run = runQuadformMany(
          T.self,
          QuadformManyCase(
            n: 0, d: d, x: [], qs: randomMatrices(&rng, count: k, d: d, symmetric: false),
            centers: withCenters ? rng.uniform(count: k * d, -1, 1) : nil))
        XCTAssertEqual(run?.got, [], "\(T.self) n=0 d=\(d) K=\(k)")
      }
    }
    // K = 0: an n × 0 result; nothing is written.
    let none = runQuadformMany(T.self, QuadformManyCase(n: 9, d: 3, x: rng.uniform(count: 27, -1, 1), qs: [], centers: []))
    XCTAssertEqual(none?.got, [], "\(T.self) K=0")
    // d = 0: every form is an empty sum, exactly 0 (out starts as NaN).
    for n in [1, 600] {
      let run = runQuadformMany(T.self, QuadformManyCase(n: n, d: 0, x: [], qs: [[], [], []], centers: nil))
      XCTAssertEqual(run?.got, [Double](repeating: 0, count: 3 * n), "\(T.self) d=0 n=\(n)")
    }
    // d = 1 and K = 1.
    for n in [1, 7, 1000] {
      checkQuadformMany(T.self, QuadformManyCase(n: n, d: 1, x: rng.uniform(count: n, -2, 2), qs: [[-1.5], [0.5]], centers: [0.25, -1]))
      checkQuadformManyExact(
        T.self, QuadformManyCase(n: n, d: 1, x: exactValues(&rng, count: n), qs: [[3]], centers: [-2]),
        options: KernelOptions(threads: 2, memoryLimit: smallQuadformManyLimit(k: 1, d: 1, elementSize: MemoryLayout<T>.stride)))
    }
  }

  /// Data 1e3 from the origin, each matrix centred near the data: the forms are of order d
  /// while |x|² is of order 1e6·d; expanding (x − c)ᵀQ(x − c) would cancel every digit.
  func testMeanOffset() {
    meanOffset(Float.self)
    meanOffset(Double.self)
  }

  private func meanOffset<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 106)
    let (n, d, k) = (300, 8, 3)
    let x = rng.uniform(count: n * d, -1, 1).map { Double(T(1e3 + $0)) }
    let centers = rng.uniform(count: k * d, -0.5, 0.5).map { Double(T(1e3 + $0)) }
    let c = QuadformManyCase(n: n, d: d, x: x, qs: randomMatrices(&rng, count: k, d: d, symmetric: false), centers: centers)
    checkQuadformMany(T.self, c)
    checkQuadformMany(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallQuadformManyLimit(k: k, d: d, elementSize: MemoryLayout<T>.stride)))
  }

  func testShapeMismatchesThrow() {
    shapeMismatches(Float.self)
    shapeMismatches(Double.self)
  }

  private func shapeMismatches<T: KernelScalar>(_: T.Type) {
    let (n, d, k) = (10, 4, 3)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let qs = TestMatrix<T>(rows: k * d, cols: d, values: [Double](repeating: 1, count: k * d * d))
    let wide = TestMatrix<T>(rows: d, cols: d + 1, values: [Double](repeating: 1, count: d * (d + 1)))
    let centers = TestMatrix<T>(rows: k, cols: d, values: [Double](repeating: 0, count: k * d))
    let fewCenters = TestMatrix<T>(rows: k - 1, cols: d, values: [Double](repeating: 0, count: (k - 1) * d))
    let shortCenters = TestMatrix<T>(rows: k, cols: d - 1, values: [Double](repeating: 0, count: k * (d - 1)))
    defer { withExtendedLifetime((x, qs, wide, centers, fewCenters, shortCenters)) {} }
    func attempt(_ name: String, qs q: [StridedMatrix<T>], centers c: StridedMatrix<T>?, out: (Int, Int)) {
      let o = TestMatrix<T>(rows: out.0, cols: out.1)
      defer { withExtendedLifetime(o) {} }
      let error = thrownError { () throws(KernelError) in
        try quadformMany(x.view, q, centers: c, out: o.view)
      }
      assertInvalidArgument(error, mentions: name, "\(T.self) quadformMany with a wrong \(name)")
      XCTAssertTrue(o.untouched(), "\(T.self): out written before the \(name) check")
    }
    var views = qs.rowBlocks(k)
    views[1] = wide.view
    attempt("Qs[1]", qs: views, centers: nil, out: (n, k))
    attempt("centers", qs: qs.rowBlocks(k), centers: fewCenters.view, out: (n, k))
    attempt("centers", qs: qs.rowBlocks(k), centers: shortCenters.view, out: (n, k))
    attempt("out", qs: qs.rowBlocks(k), centers: centers.view, out: (n, k - 1))
    attempt("out", qs: qs.rowBlocks(k), centers: nil, out: (n + 1, k))
    attempt("out", qs: qs.rowBlocks(k), centers: nil, out: (k, n))
  }

  func testMemoryLimitTooSmallThrows() {
    tooSmall(Float.self)
    tooSmall(Double.self)
  }

  private func tooSmall<T: KernelScalar>(_: T.Type) {
    let (n, d, k) = (100, 16, 2)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let qs = TestMatrix<T>(rows: k * d, cols: d, values: [Double](repeating: 1, count: k * d * d))
    defer { withExtendedLifetime((x, qs)) {} }
    for limit in [0, 1, 8, d * MemoryLayout<T>.stride] {
      for threads in [1, 3] {
        let out = TestMatrix<T>(rows: n, cols: k)
        defer { withExtendedLifetime(out) {} }
        let error = thrownError { () throws(KernelError) in
          try quadformMany(x.view, qs.rowBlocks(k), out: out.view, options: KernelOptions(threads: threads, memoryLimit: limit))
        }
        assertInvalidArgument(error, mentions: "memory_limit", "\(T.self) memoryLimit=\(limit) threads=\(threads)")
        XCTAssertTrue(out.untouched(), "\(T.self) memoryLimit=\(limit): out was written")
      }
    }
  }
}
