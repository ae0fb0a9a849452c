@testable import GMMKernels
import XCTest
import _GMKTestSupport

/// The inputs of one matmul call, as Doubles, and where to put them.
struct MatmulCase {
  var n: Int
  var k: Int
  var m: Int
  var a: [Double]
  var b: [Double]
  var aLayout: MatrixLayout = .cOrder
  var bLayout: MatrixLayout = .cOrder
  var outLayout: MatrixLayout = .cOrder

  var description: String { "A (\(n), \(k)) \(aLayout), B (\(k), \(m)) \(bLayout), out \(outLayout)" }
}

/// Runs matmul on `c` in `T`; checks that A and B came back unchanged and nothing outside
/// `out` was written; returns A B (n × m, row-major) and the reference.
func runMatmul<T: KernelScalar>(
  _: T.Type, _ c: MatmulCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) -> (got: [Double], want: Reference)? {
  let a = TestMatrix<T>(rows: c.n, cols: c.k, layout: c.aLayout, values: c.a)
  let b = TestMatrix<T>(rows: c.k, cols: c.m, layout: c.bLayout, values: c.b)
  let out = TestMatrix<T>(rows: c.n, cols: c.m, layout: c.outLayout)
  defer { withExtendedLifetime((a, b, out)) {} }
  let returned = guardedCall(
    "\(T.self) \(c.description)", inputs: [("A", a), ("B", b)], outputs: [("out", out)], file: file, line: line
  ) { try matmul(a.view, b.view, out: out.view, options: options) }
  guard returned else { return nil }
  return (out.values, referenceMatmul(a: a.values, rows: c.n, inner: c.k, b: b.values, cols: c.m))
}

func checkMatmul<T: KernelScalar>(
  _: T.Type, _ c: MatmulCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runMatmul(T.self, c, options: options, file: file, line: line) else { return }
  XCTAssertNil(
    firstMismatch(run.got, run.want, bound: roundingBound(T.self, terms: c.k)), "\(T.self) \(c.description)",
    file: file, line: line)
}

func checkMatmulExact<T: KernelScalar>(
  _: T.Type, _ c: MatmulCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runMatmul(T.self, c, options: options, file: file, line: line) else { return }
  XCTAssertNil(firstDifference(run.got, run.want.values), "\(T.self) \(c.description)", file: file, line: line)
}

/// A memory limit with room for a packed copy of B and about 40 packed rows of A and of
/// the product; a packed block of m rows of A takes m·k·e bytes, so no such block holds
/// more than `limit / (k·e)` rows.
func smallMatmulLimit(k: Int, m: Int, elementSize e: Int) -> Int { k * m * e + 40 * (k + m) * e }

final class MatmulTests: XCTestCase {
  func testRandomDataAgainstReference() {
    random(Float.self)
    random(Double.self)
  }

  private func random<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 401)
    for (n, k, m) in [(1, 1, 1), (1, 30, 1), (7, 2, 9), (100, 5, 3), (60, 33, 40), (1100, 3, 2)] {
      checkMatmul(T.self, MatmulCase(n: n, k: k, m: m, a: rng.uniform(count: n * k, -1, 1), b: rng.uniform(count: k * m, -1, 1)))
    }
  }

  /// Sizes that do not divide the block, a memory limit that forces many small blocks, and
  /// 1, 2 and 3 threads; integer data, so every block boundary must give exact results.
  func testBlocksAndThreads() {
    blocks(Float.self)
    blocks(Double.self)
  }

  private func blocks<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 402)
    let (k, m) = (6, 5)
    let e = MemoryLayout<T>.stride
    let limit = smallMatmulLimit(k: k, m: m, elementSize: e)
    let maxRowsPerBlock = limit / (k * e)
    for n in [1, 7, matmulBlockRows + 1, 2 * matmulBlockRows + 5] {
      for threads in [1, 2, 3] {
        // A packed and out through workspace (BLAS cannot take negative strides): the limit
        // bounds the block height.
        var c = MatmulCase(n: n, k: k, m: m, a: exactValues(&rng, count: n * k), b: exactValues(&rng, count: k * m))
        c.aLayout = .reversedRows
        c.outLayout = .reversedRows
        let rows = AtomicCounter()
        let calls = AtomicCounter()
        checkMatmulExact(T.self, c, options: progressOptions(threads: threads, memoryLimit: limit, rows: rows, calls: calls))
        let context = "\(T.self) \(c.description) threads=\(threads)"
        XCTAssertEqual(rows.value, n, "\(context): rows reported")
        XCTAssertGreaterThanOrEqual(
          calls.value, (n + maxRowsPerBlock - 1) / maxRowsPerBlock, "\(context): too few blocks for memory_limit=\(limit)")
        // Everything in place: BLAS reads A's blocks and writes out's blocks directly.
        c.aLayout = .cOrder
        c.outLayout = .cOrder
        checkMatmulExact(T.self, c, options: KernelOptions(threads: threads, memoryLimit: limit))
        c.outLayout = .fortranOrder
        checkMatmulExact(T.self, c, options: KernelOptions(threads: threads, memoryLimit: limit))
      }
    }
    // Every worker takes blocks (as many as the CPUs run at once, given enough blocks of the
    // preferred height).
    for threads in [2, 3] {
      let n = 2 * matmulBlockRows + 5
      var c = MatmulCase(n: n, k: k, m: m, a: exactValues(&rng, count: n * k), b: exactValues(&rng, count: k * m))
      c.aLayout = .reversedRows
      let workers = WorkerThreads()
      checkMatmulExact(T.self, c, options: spreadingOptions(threads: threads, workers: workers))
      XCTAssertGreaterThanOrEqual(workers.count, min(threads, KernelOptions.availableCPUs), "\(T.self) threads=\(threads): threads that took blocks")
    }
  }

  /// Every storage layout of A and out, crossed (column-major out blocks are written as
  /// the transposed product), with B in every layout in turn.
  func testEveryLayout() {
    layouts(Float.self)
    layouts(Double.self)
  }

  private func layouts<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 403)
    let all = MatrixLayout.all
    var i = 0
    for aLayout in all {
      for outLayout in all {
        let (n, k, m) = (21, 4, 6)
        var c = MatmulCase(n: n, k: k, m: m, a: exactValues(&rng, count: n * k), b: exactValues(&rng, count: k * m))
        c.aLayout = aLayout
        c.outLayout = outLayout
        c.bLayout = all[i % all.count]
        checkMatmulExact(T.self, c)
        checkMatmulExact(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallMatmulLimit(k: k, m: m, elementSize: MemoryLayout<T>.stride)))
        i += 1
      }
    }
  }

  func testEmptyAndDegenerateShapes() {
    empty(Float.self)
    empty(Double.self)
  }

  private func empty<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 404)
    // n = 0 or m = 0: nothing to write.
    XCTAssertEqual(runMatmul(T.self, MatmulCase(n: 0, k: 3, m: 4, a: [], b: rng.uniform(count: 12, -1, 1)))?.got, [])
    XCTAssertEqual(runMatmul(T.self, MatmulCase(n: 5, k: 3, m: 0, a: rng.uniform(count: 15, -1, 1), b: []))?.got, [])
    // k = 0: every element is an empty sum, exactly 0 (out starts as NaN).
    for layout in [MatrixLayout.cOrder, .fortranOrder, .reversedBoth] {
      var c = MatmulCase(n: 700, k: 0, m: 3, a: [], b: [])
      c.outLayout = layout
      XCTAssertEqual(runMatmul(T.self, c)?.got, [Double](repeating: 0, count: 700 * 3), "\(T.self) \(c.description)")
    }
    // Vectors: (n, 1) × (1, m), (1, k) × (k, 1), (n, k) × (k, 1), in column-major too.
    for (n, k, m) in [(9, 1, 7), (1, 12, 1), (600, 5, 1), (1, 5, 600)] {
      for layout in [MatrixLayout.cOrder, .fortranOrder] {
        let c = MatmulCase(
          n: n, k: k, m: m, a: exactValues(&rng, count: n * k), b: exactValues(&rng, count: k * m),
          aLayout: layout, bLayout: layout, outLayout: layout)
        checkMatmulExact(T.self, c)
        checkMatmulExact(T.self, c, options: KernelOptions(threads: 3, memoryLimit: smallMatmulLimit(k: k, m: m, elementSize: MemoryLayout<T>.stride)))
      }
    }
  }

  func testShapeMismatchesThrow() {
    shapeMismatches(Float.self)
    shapeMismatches(Double.self)
  }

  private func shapeMismatches<T: KernelScalar>(_: T.Type) {
    let (n, k, m) = (10, 4, 3)
    let a = TestMatrix<T>(rows: n, cols: k, values: [Double](repeating: 1, count: n * k))
    let b = TestMatrix<T>(rows: k, cols: m, values: [Double](repeating: 1, count: k * m))
    let tallB = TestMatrix<T>(rows: k + 1, cols: m, values: [Double](repeating: 1, count: (k + 1) * m))
    defer { withExtendedLifetime((a, b, tallB)) {} }
    // The inner dimensions, with both shapes in the message.
    let o = TestMatrix<T>(rows: n, cols: m)
    defer { withExtendedLifetime(o) {} }
    let inner = thrownError { () throws(KernelError) in try matmul(a.view, tallB.view, out: o.view) }
    assertInvalidArgument(inner, mentions: "inner dimensions", "\(T.self) matmul (10, 4) × (5, 3)")
    assertInvalidArgument(inner, mentions: "(10, 4)", "\(T.self) matmul (10, 4) × (5, 3)")
    assertInvalidArgument(inner, mentions: "(5, 3)", "\(T.self) matmul (10, 4) × (5, 3)")
    XCTAssertTrue(o.untouched(), "\(T.self): out written before the inner dimension check")
    for (rows, cols) in [(n, m + 1), (n - 1, m), (m, n)] {
      let wrong = TestMatrix<T>(rows: rows, cols: cols)
      defer { withExtendedLifetime(wrong) {} }
      let error = thrownError { () throws(KernelError) in try matmul(a.view, b.view, out: wrong.view) }
      assertInvalidArgument(error, mentions: "out", "\(T.self) matmul with out (\(rows), \(cols))")
      XCTAssertTrue(wrong.untouched(), "\(T.self): out written before the out check")
    }
  }

  func testMemoryLimitTooSmallThrows() {
    tooSmall(Float.self)
    tooSmall(Double.self)
  }

  private func tooSmall<T: KernelScalar>(_: T.Type) {
    let (n, k, m) = (100, 16, 8)
    // A packed: one row takes k·e bytes of workspace.
    let a = TestMatrix<T>(rows: n, cols: k, layout: .everyOtherColumn, values: [Double](repeating: 1, count: n * k))
    let b = TestMatrix<T>(rows: k, cols: m, values: [Double](repeating: 1, count: k * m))
    defer { withExtendedLifetime((a, b)) {} }
    for limit in [1, 8, k * MemoryLayout<T>.stride - 1] {
      for threads in [1, 3] {
        let out = TestMatrix<T>(rows: n, cols: m)
        defer { withExtendedLifetime(out) {} }
        let error = thrownError { () throws(KernelError) in
          try matmul(a.view, b.view, out: out.view, options: KernelOptions(threads: threads, memoryLimit: limit))
        }
        assertInvalidArgument(error, mentions: "memory_limit", "\(T.self) memoryLimit=\(limit) threads=\(threads)")
        XCTAssertTrue(out.untouched(), "\(T.self) memoryLimit=\(limit): out was written")
      }
    }
  }

  /// An `out` of at least 8 MiB in anonymous memory is faulted in by a sweep before the
  /// products: results are right for every writable layout, nothing outside the view is
  /// written, and after a cancel the rows not reported still hold their old bytes.
  func testSweptOutput() {
    sweptOutput(Float.self)
    sweptOutput(Double.self)
  }

  private func sweptOutput<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 406)
    let e = MemoryLayout<T>.stride
    let (k, m) = (3, 2000)
    let n = (8 << 20) / (m * e) + 100
    let values = rng.uniform(count: n * k, -1, 1)
    let bValues = rng.uniform(count: k * m, -1, 1)
    // A read backwards is packed, so the memory limit sets the block height: 100 rows.
    let limit = 100 * k * e
    for layout in [MatrixLayout.cOrder, .fortranOrder, .paddedRows] {
      let c = MatmulCase(n: n, k: k, m: m, a: values, b: bValues, aLayout: .reversedRows, outLayout: layout)
      checkMatmul(T.self, c, options: KernelOptions(threads: 2, memoryLimit: limit))

      let a = TestMatrix<T>(rows: n, cols: k, layout: .reversedRows, values: values)
      let b = TestMatrix<T>(rows: k, cols: m, values: bValues)
      let out = TestMatrix<T>(rows: n, cols: m, layout: layout)
      defer { withExtendedLifetime((a, b, out)) {} }
      let rows = AtomicCounter()
      let options = KernelOptions(
        threads: 2, memoryLimit: limit, isCancelled: { rows.value > 0 }, progress: { rows.add($0) })
      let stopped = thrownError { () throws(KernelError) in try matmul(a.view, b.view, out: out.view, options: options) }
      XCTAssertEqual(stopped, .cancelled, "\(T.self) out \(layout)")
      XCTAssertGreaterThan(rows.value, 0, "\(T.self) out \(layout)")
      XCTAssertLessThan(rows.value, n, "\(T.self) out \(layout)")
      // Rows all of whose elements were written, and rows none of whose bytes changed.
      var (written, kept) = (0, 0)
      for i in 0..<n {
        let fills = (0..<m).count { j in withUnsafeBytes(of: out[i, j]) { $0.allSatisfy { $0 == fillByte } } }
        if fills == 0 { written += 1 }
        if fills == m { kept += 1 }
      }
      XCTAssertEqual(written, rows.value, "\(T.self) out \(layout): rows written vs rows reported")
      XCTAssertEqual(kept, n - rows.value, "\(T.self) out \(layout): a row not reported was changed")
      XCTAssertTrue(out.onlyViewChanged(), "\(T.self) out \(layout)")
    }
  }
}
