@testable import GMMKernels
import XCTest
import _GMKTestSupport

/// The inputs of one weightedSum call, as Doubles, and where to put them.
struct WeightedSumCase {
  var n: Int
  var d: Int
  var k: Int
  var x: [Double]
  /// n × K, row-major.
  var r: [Double]
  var xLayout: MatrixLayout = .cOrder
  var rLayout: MatrixLayout = .cOrder
  var outLayout: MatrixLayout = .cOrder

  var description: String { "n=\(n) d=\(d) K=\(k) X \(xLayout), R \(rLayout), out \(outLayout)" }
}

/// Runs weightedSum on `c` in `T`; checks that the inputs came back unchanged and nothing
/// outside `out` was written; returns Rᵀ X (K × d, row-major) and the reference.
func runWeightedSum<T: KernelScalar>(
  _: T.Type, _ c: WeightedSumCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) -> (got: [Double], want: Reference)? {
  let x = TestMatrix<T>(rows: c.n, cols: c.d, layout: c.xLayout, values: c.x)
  let r = TestMatrix<T>(rows: c.n, cols: c.k, layout: c.rLayout, values: c.r)
  let out = TestMatrix<T>(rows: c.k, cols: c.d, layout: c.outLayout)
  defer { withExtendedLifetime((x, r, out)) {} }
  let returned = guardedCall(
    "\(T.self) \(c.description)", inputs: [("X", x), ("R", r)], outputs: [("out", out)], file: file, line: line
  ) { try weightedSum(x.view, r.view, out: out.view, options: options) }
  guard returned else { return nil }
  return (out.values, referenceWeightedSum(x: x.values, rows: c.n, cols: c.d, r: r.values, components: c.k))
}

func checkWeightedSum<T: KernelScalar>(
  _: T.Type, _ c: WeightedSumCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runWeightedSum(T.self, c, options: options, file: file, line: line) else { return }
  XCTAssertNil(
    firstMismatch(run.got, run.want, bound: roundingBound(T.self, terms: c.n)), "\(T.self) \(c.description)",
    file: file, line: line)
}

func checkWeightedSumExact<T: KernelScalar>(
  _: T.Type, _ c: WeightedSumCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runWeightedSum(T.self, c, options: options, file: file, line: line) else { return }
  XCTAssertNil(firstDifference(run.got, run.want.values), "\(T.self) \(c.description)", file: file, line: line)
}

/// A memory limit with room for three workers' K × d accumulators (Double and T) and
/// about 40 packed rows of X; a packed block of m rows takes m·d·e bytes, so no such block
/// holds more than `limit / (d·e)` rows.
func smallWeightedSumLimit(k: Int, d: Int, elementSize e: Int) -> Int { 3 * k * d * (8 + e) + 40 * (d + k) * e }

final class WeightedSumTests: XCTestCase {
  func testRandomDataAgainstReference() {
    random(Float.self)
    random(Double.self)
  }

  private func random<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 301)
    for (n, d) in [(1, 1), (1, 40), (7, 2), (100, 5), (100, 33), (1500, 3)] {
      for k in [1, 4] {
        checkWeightedSum(T.self, WeightedSumCase(n: n, d: d, k: k, x: rng.uniform(count: n * d, -1, 1), r: rng.uniform(count: n * k, -1, 1)))
      }
    }
  }

  /// Sizes that do not divide the block, a memory limit that forces many small blocks, and
  /// 1, 2 and 3 threads, with X and R packed (strided) or read in place; integer data.
  func testBlocksAndThreads() {
    blocks(Float.self)
    blocks(Double.self)
  }

  private func blocks<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 302)
    let (d, k) = (6, 3)
    let e = MemoryLayout<T>.stride
    let limit = smallWeightedSumLimit(k: k, d: d, elementSize: e)
    let maxRowsPerBlock = limit / (d * e)
    for n in [1, 7, weightedSumBlockRows + 1, 2 * weightedSumBlockRows + 5] {
      for threads in [1, 2, 3] {
        // Packed X (BLAS cannot read a negative row stride): the limit bounds the block height.
        var c = WeightedSumCase(n: n, d: d, k: k, x: exactValues(&rng, count: n * d), r: exactValues(&rng, count: n * k))
        c.xLayout = .reversedRows
        let rows = AtomicCounter()
        let calls = AtomicCounter()
        checkWeightedSumExact(T.self, c, options: progressOptions(threads: threads, memoryLimit: limit, rows: rows, calls: calls))
        let context = "\(T.self) \(c.description) threads=\(threads)"
        XCTAssertEqual(rows.value, n, "\(context): rows reported")
        XCTAssertGreaterThanOrEqual(
          calls.value, (n + maxRowsPerBlock - 1) / maxRowsPerBlock, "\(context): too few blocks for memory_limit=\(limit)")
        // In place, with the default limit: above the preferred block height.
        c.xLayout = .cOrder
        checkWeightedSumExact(T.self, c, options: KernelOptions(threads: threads))
      }
    }
    // Every worker takes blocks (as many as the CPUs run at once, given enough blocks of the
    // preferred height): the workers' sums must be added up.
    for threads in [2, 3] {
      let n = 2 * weightedSumBlockRows + 5
      var c = WeightedSumCase(n: n, d: d, k: k, x: exactValues(&rng, count: n * d), r: exactValues(&rng, count: n * k))
      c.xLayout = .reversedRows
      let workers = WorkerThreads()
      checkWeightedSumExact(T.self, c, options: spreadingOptions(threads: threads, workers: workers))
      XCTAssertGreaterThanOrEqual(workers.count, min(threads, KernelOptions.availableCPUs), "\(T.self) threads=\(threads): threads that took blocks")
    }
  }

  /// Every storage layout of X and R, crossed, with out in every layout in turn.
  func testEveryLayout() {
    layouts(Float.self)
    layouts(Double.self)
  }

  private func layouts<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 303)
    let all = MatrixLayout.all
    var i = 0
    for xLayout in all {
      for rLayout in all {
        let (n, d, k) = (23, 5, 3)
        var c = WeightedSumCase(n: n, d: d, k: k, x: exactValues(&rng, count: n * d), r: exactValues(&rng, count: n * k))
        c.xLayout = xLayout
        c.rLayout = rLayout
        c.outLayout = all[i % all.count]
        checkWeightedSumExact(T.self, c)
        checkWeightedSumExact(
          T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallWeightedSumLimit(k: k, d: d, elementSize: MemoryLayout<T>.stride)))
        i += 1
      }
    }
  }

  func testEmptyAndDegenerateShapes() {
    empty(Float.self)
    empty(Double.self)
  }

  private func empty<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 304)
    // n = 0: K × d empty sums, exactly 0 (out starts as NaN).
    for (d, k) in [(1, 1), (4, 3)] {
      for layout in [MatrixLayout.cOrder, .reversedBoth] {
        var c = WeightedSumCase(n: 0, d: d, k: k, x: [], r: [])
        c.outLayout = layout
        XCTAssertEqual(runWeightedSum(T.self, c)?.got, [Double](repeating: 0, count: k * d), "\(T.self) \(c.description)")
      }
    }
    // K = 0 or d = 0: nothing to write.
    XCTAssertEqual(runWeightedSum(T.self, WeightedSumCase(n: 5, d: 3, k: 0, x: rng.uniform(count: 15, -1, 1), r: []))?.got, [])
    XCTAssertEqual(runWeightedSum(T.self, WeightedSumCase(n: 5, d: 0, k: 2, x: [], r: rng.uniform(count: 10, -1, 1)))?.got, [])
    // d = 1 and K = 1: a dot product.
    for n in [1, 7, 3000] {
      checkWeightedSum(T.self, WeightedSumCase(n: n, d: 1, k: 1, x: rng.uniform(count: n, -2, 2), r: rng.uniform(count: n, -1, 1)))
      checkWeightedSumExact(
        T.self, WeightedSumCase(n: n, d: 1, k: 2, x: exactValues(&rng, count: n), r: exactValues(&rng, count: 2 * n)),
        options: KernelOptions(threads: 3, memoryLimit: smallWeightedSumLimit(k: 2, d: 1, elementSize: MemoryLayout<T>.stride)))
    }
  }

  /// Sums are accumulated in Double across blocks. 3000 rows of 1 + 2⁻²⁰ in blocks of at
  /// most 11 rows (X is packed, d·e = 4 bytes a row, within a 44-byte limit): each block's
  /// float32 sum is exact (below 16, where the ulp is 2⁻²⁰), the total 3000 + 3000·2⁻²⁰ is
  /// exact in Double, while a float32 running sum across blocks (ulp 2⁻¹² near 3000)
  /// would drop the fraction.
  func testFloatSumsAccumulateInDouble() {
    let n = 3000
    let x = [Double](repeating: 1 + 0x1p-20, count: n)
    let r = [Double](repeating: 1, count: n)
    for threads in [1, 2] {
      var c = WeightedSumCase(n: n, d: 1, k: 1, x: x, r: r)
      c.xLayout = .reversedRows
      let run = runWeightedSum(Float.self, c, options: KernelOptions(threads: threads, memoryLimit: 11 * 4))
      XCTAssertEqual(run?.got, [Double(Float(Double(n) * (1 + 0x1p-20)))], "threads=\(threads)")
    }
  }

  func testShapeMismatchesThrow() {
    shapeMismatches(Float.self)
    shapeMismatches(Double.self)
  }

  private func shapeMismatches<T: KernelScalar>(_: T.Type) {
    let (n, d, k) = (10, 4, 3)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let r = TestMatrix<T>(rows: n, cols: k, values: [Double](repeating: 1, count: n * k))
    let longR = TestMatrix<T>(rows: n + 1, cols: k, values: [Double](repeating: 1, count: (n + 1) * k))
    defer { withExtendedLifetime((x, r, longR)) {} }
    func attempt(_ name: String, r rView: StridedMatrix<T>, out: (Int, Int)) {
      let o = TestMatrix<T>(rows: out.0, cols: out.1)
      defer { withExtendedLifetime(o) {} }
      let error = thrownError { () throws(KernelError) in try weightedSum(x.view, rView, out: o.view) }
      assertInvalidArgument(error, mentions: name, "\(T.self) weightedSum with a wrong \(name)")
      XCTAssertTrue(o.untouched(), "\(T.self): out written before the \(name) check")
    }
    attempt("R", r: longR.view, out: (k, d))
    attempt("out", r: r.view, out: (k - 1, d))
    attempt("out", r: r.view, out: (k, d + 1))
    attempt("out", r: r.view, out: (d, k))
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
    // Any plan keeps a K × d accumulator in Double.
    for limit in [0, 1, 64, k * d * 8 - 1] {
      for threads in [1, 3] {
        let out = TestMatrix<T>(rows: k, cols: d)
        defer { withExtendedLifetime(out) {} }
        let error = thrownError { () throws(KernelError) in
          try weightedSum(x.view, r.view, out: out.view, options: KernelOptions(threads: threads, memoryLimit: limit))
        }
        assertInvalidArgument(error, mentions: "memory_limit", "\(T.self) memoryLimit=\(limit) threads=\(threads)")
        XCTAssertTrue(out.untouched(), "\(T.self) memoryLimit=\(limit): out was written")
      }
    }
  }
}
