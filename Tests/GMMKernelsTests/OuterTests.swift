@testable import GMMKernels
import XCTest
import _GMKTestSupport

/// The inputs of one outer call, as Doubles, and where to put them.
struct OuterCase {
  var y: [Double]
  var x: [Double]
  var yLayout: VectorLayout = .contiguous
  var xLayout: VectorLayout = .contiguous
  var outLayout: MatrixLayout = .cOrder

  var n: Int { y.count }
  var m: Int { x.count }
  var description: String { "y (\(n),) \(yLayout), x (\(m),) \(xLayout), out \(outLayout)" }
}

/// Runs outer on `c` in `T`; checks that y and x came back unchanged, nothing outside
/// `out` was written and every element is y_i · x_j rounded once, as `T` rounds it, to
/// the bit (the sign of a zero included).
func checkOuter<T: KernelScalar>(
  _: T.Type, _ c: OuterCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  let y = TestVector<T>(layout: c.yLayout, values: c.y)
  let x = TestVector<T>(layout: c.xLayout, values: c.x)
  let out = TestMatrix<T>(rows: c.n, cols: c.m, layout: c.outLayout)
  defer { withExtendedLifetime((y, x, out)) {} }
  let context = "\(T.self) \(c.description)"
  let returned = guardedCall(
    context, inputs: [("y", y), ("x", x)], outputs: [("out", out)], file: file, line: line
  ) { try outer(y.view, x.view, out: out.view, options: options) }
  guard returned else { return }
  XCTAssertNil(firstBitwiseDifference(out.values, referenceOuter(T.self, y: y.values, x: x.values)), context, file: file, line: line)
}

final class OuterTests: XCTestCase {
  func testRandomDataAgainstReference() {
    random(Float.self)
    random(Double.self)
  }

  private func random<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 501)
    for (n, m) in [(1, 1), (1, 50), (50, 1), (7, 3), (300, 17)] {
      checkOuter(T.self, OuterCase(y: rng.uniform(count: n, -3, 3), x: rng.uniform(count: m, -3, 3)))
    }
  }

  /// Blocks of at most `outerBlockBytes` (1 MiB) of out: rows just over half of that make
  /// one row a block, so 3 rows take 3 blocks; 1, 2 and 3 threads.
  func testBlocksAndThreads() {
    blocks(Float.self)
    blocks(Double.self)
  }

  private func blocks<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 502)
    let m = outerBlockBytes / 2 / MemoryLayout<T>.stride + 1
    let n = 3
    let x = rng.uniform(count: m, -2, 2)
    for threads in [1, 2, 3] {
      let rows = AtomicCounter()
      let calls = AtomicCounter()
      checkOuter(
        T.self, OuterCase(y: rng.uniform(count: n, -2, 2), x: x), options: progressOptions(threads: threads, rows: rows, calls: calls))
      XCTAssertEqual(rows.value, n, "\(T.self) threads=\(threads): rows reported")
      XCTAssertEqual(calls.value, n, "\(T.self) threads=\(threads): rows of over half a block each")
    }
  }

  /// Every layout of out (the contiguous and the strided writers), y and x in every layout.
  func testEveryLayout() {
    layouts(Float.self)
    layouts(Double.self)
  }

  private func layouts<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 503)
    for outLayout in MatrixLayout.all {
      for yLayout in VectorLayout.all {
        for xLayout in VectorLayout.all {
          let c = OuterCase(
            y: rng.uniform(count: 13, -2, 2), x: rng.uniform(count: 6, -2, 2), yLayout: yLayout, xLayout: xLayout, outLayout: outLayout)
          checkOuter(T.self, c, options: KernelOptions(threads: 2))
        }
      }
    }
    for offset in 1...7 {
      let c = OuterCase(
        y: rng.uniform(count: 11, -2, 2), x: rng.uniform(count: 5, -2, 2), yLayout: .unaligned(byteOffset: offset),
        xLayout: .unaligned(byteOffset: 8 - offset),
        outLayout: offset % 2 == 0 ? .unalignedFortran(byteOffset: offset) : .unaligned(byteOffset: offset))
      checkOuter(T.self, c)
    }
  }

  /// n = 0 or m = 0 writes nothing; NaN and infinities propagate as the products do.
  func testEmptyShapesAndSpecialValues() {
    special(Float.self)
    special(Double.self)
  }

  private func special<T: KernelScalar>(_: T.Type) {
    checkOuter(T.self, OuterCase(y: [], x: [1, 2, 3]))
    checkOuter(T.self, OuterCase(y: [1, 2, 3], x: []))
    checkOuter(T.self, OuterCase(y: [], x: []))
    // referenceOuter multiplies in Double, so these are checked against IEEE products.
    checkOuter(T.self, OuterCase(y: [0, -0.0, .infinity, 2, .nan], x: [.infinity, -1, 0, 3]))
  }

  func testShapeMismatchesThrow() {
    shapeMismatches(Float.self)
    shapeMismatches(Double.self)
  }

  private func shapeMismatches<T: KernelScalar>(_: T.Type) {
    let y = TestVector<T>(values: [1, 2, 3, 4])
    let x = TestVector<T>(values: [1, 2])
    defer { withExtendedLifetime((y, x)) {} }
    for (rows, cols) in [(4, 3), (3, 2), (2, 4), (0, 0)] {
      let out = TestMatrix<T>(rows: rows, cols: cols)
      defer { withExtendedLifetime(out) {} }
      let error = thrownError { () throws(KernelError) in try outer(y.view, x.view, out: out.view) }
      assertInvalidArgument(error, mentions: "out", "\(T.self) outer with out (\(rows), \(cols))")
      assertInvalidArgument(error, mentions: "(4, 2)", "\(T.self) outer with out (\(rows), \(cols))")
      XCTAssertTrue(out.untouched(), "\(T.self): out written before the out check")
    }
  }

  /// The only workspace is a copy of x: a limit below m·e cannot hold it.
  func testMemoryLimitTooSmallThrows() {
    tooSmall(Float.self)
    tooSmall(Double.self)
  }

  private func tooSmall<T: KernelScalar>(_: T.Type) {
    let y = TestVector<T>(values: [Double](repeating: 1, count: 10))
    let x = TestVector<T>(values: [Double](repeating: 2, count: 8))
    defer { withExtendedLifetime((y, x)) {} }
    for limit in [0, 1, 8 * MemoryLayout<T>.stride - 1] {
      let out = TestMatrix<T>(rows: 10, cols: 8)
      defer { withExtendedLifetime(out) {} }
      let error = thrownError { () throws(KernelError) in
        try outer(y.view, x.view, out: out.view, options: KernelOptions(threads: 2, memoryLimit: limit))
      }
      assertInvalidArgument(error, mentions: "memory_limit", "\(T.self) memoryLimit=\(limit)")
      XCTAssertTrue(out.untouched(), "\(T.self) memoryLimit=\(limit): out was written")
    }
    checkOuter(T.self, OuterCase(y: y.values, x: x.values), options: KernelOptions(threads: 2, memoryLimit: 8 * MemoryLayout<T>.stride))
  }
}
