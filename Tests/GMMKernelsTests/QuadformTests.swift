import GMMKernels
import XCTest
import _GMKTestSupport

/// The inputs of one quadform call, as Doubles, and where to put them.
struct QuadformCase {
  var n: Int
  var d: Int
  var x: [Double]
  var q: [Double]
  var center: [Double]?
  var xLayout: MatrixLayout = .cOrder
  var qLayout: MatrixLayout = .cOrder
  var centerLayout: VectorLayout = .contiguous
  var outLayout: VectorLayout = .contiguous

  var description: String {
    "n=\(n) d=\(d) X \(xLayout), Q \(qLayout), "
      + (center == nil ? "no center" : "center \(centerLayout)") + ", out \(outLayout)"
  }
}

/// What a quadform call gave: the results and the reference on the same (rounded) inputs.
struct QuadformRun {
  var got: [Double]
  var want: Reference
}

/// Runs quadform on `c` in `T`, checks that the inputs came back unchanged and nothing
/// outside `out` was written, and returns the results with the reference.
func runQuadform<T: KernelScalar>(
  _: T.Type, _ c: QuadformCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) -> QuadformRun? {
  let x = TestMatrix<T>(rows: c.n, cols: c.d, layout: c.xLayout, values: c.x)
  let q = TestMatrix<T>(rows: c.d, cols: c.d, layout: c.qLayout, values: c.q)
  let center = c.center.map { TestVector<T>(layout: c.centerLayout, values: $0) }
  let out = TestVector<T>(count: c.n, layout: c.outLayout)
  defer { withExtendedLifetime((x, q, center, out)) {} }
  let inputs: [(String, any GuardedStorage)] = [("X", x), ("Q", q)] + named("center", center)
  let returned = guardedCall(
    "\(T.self) \(c.description)", inputs: inputs, outputs: [("out", out)], file: file, line: line
  ) { try quadform(x.view, q.view, center: center?.view, out: out.view, options: options) }
  guard returned else { return nil }
  let want = referenceQuadform(x: x.values, rows: c.n, cols: c.d, q: q.values, center: center?.values)
  return QuadformRun(got: out.values, want: want)
}

/// Runs `c` and requires results within the rounding bound of a quadratic form in `T`.
func checkQuadform<T: KernelScalar>(
  _: T.Type, _ c: QuadformCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runQuadform(T.self, c, options: options, file: file, line: line) else { return }
  // q = Σ_j y_j (Σ_k S_jk y_k): two nested sums of d terms.
  let bound = roundingBound(T.self, terms: 2 * c.d)
  XCTAssertNil(firstMismatch(run.got, run.want, bound: bound), "\(T.self) \(c.description)", file: file, line: line)
}

/// Runs `c` (integer data, exactly representable throughout) and requires exact results.
func checkQuadformExact<T: KernelScalar>(
  _: T.Type, _ c: QuadformCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runQuadform(T.self, c, options: options, file: file, line: line) else { return }
  XCTAssertNil(firstDifference(run.got, run.want.values), "\(T.self) \(c.description)", file: file, line: line)
}

/// A memory limit with room for two copies of Q and about 40 packed rows: any block of m
/// rows needs at least m·d·e bytes (packed rows or a row's share of the block product), so
/// no block holds more than `limit / (d·e)` rows and n rows take at least n / that blocks.
func smallQuadformLimit(d: Int, elementSize e: Int) -> Int { 2 * d * d * e + 40 * d * e }

final class QuadformTests: XCTestCase {
  func testRandomDataAgainstReference() {
    random(Float.self)
    random(Double.self)
  }

  private func random<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 1)
    for (n, d) in [(1, 1), (1, 70), (7, 2), (7, 31), (100, 5), (100, 70), (513, 1), (513, 17)] {
      for withCenter in [false, true] {
        // A symmetric Q is read in place; any other is symmetrised first.
        for symmetric in [false, true] {
          var q = rng.uniform(count: d * d, -1, 1)
          if symmetric {
            for j in 0..<d { for k in 0..<j { q[j * d + k] = q[k * d + j] } }
          }
          let c = QuadformCase(
            n: n, d: d, x: rng.uniform(count: n * d, -1, 1), q: q,
            center: withCenter ? rng.uniform(count: d, -1, 1) : nil)
          checkQuadform(T.self, c)
        }
      }
    }
  }

  /// Sizes that do not divide the block, a memory limit that forces many small blocks, and
  /// 1, 2 and 3 threads; integer data, so every block boundary must give exact results.
  func testBlocksAndThreads() {
    blocks(Float.self)
    blocks(Double.self)
  }

  private func blocks<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 2)
    let d = 9
    let e = MemoryLayout<T>.stride
    let limit = smallQuadformLimit(d: d, elementSize: e)
    for n in [1, 7, 513, 1000, 2049 + 3] {
      for threads in [1, 2, 3] {
        for withCenter in [false, true] {
          let c = QuadformCase(
            n: n, d: d, x: exactValues(&rng, count: n * d), q: exactValues(&rng, count: d * d),
            center: withCenter ? exactValues(&rng, count: d) : nil)
          let rows = AtomicCounter()
          let calls = AtomicCounter()
          let options = progressOptions(threads: threads, memoryLimit: limit, rows: rows, calls: calls)
          checkQuadformExact(T.self, c, options: options)
          let context = "\(T.self) \(c.description) threads=\(threads)"
          XCTAssertEqual(rows.value, n, "\(context): rows reported")
          let maxRowsPerBlock = limit / (d * e)
          XCTAssertGreaterThanOrEqual(
            calls.value, (n + maxRowsPerBlock - 1) / maxRowsPerBlock, "\(context): too few blocks for memory_limit=\(limit)")
        }
      }
    }
  }

  /// Several column panels of the triangle (d above the panel width).
  func testWideMatrices() {
    wide(Float.self)
    wide(Double.self)
  }

  private func wide<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 3)
    for d in [129, 257] {
      let n = 13
      let exact = QuadformCase(n: n, d: d, x: exactValues(&rng, count: n * d), q: exactValues(&rng, count: d * d), center: nil)
      checkQuadformExact(T.self, exact)
      checkQuadformExact(T.self, exact, options: KernelOptions(threads: 2, memoryLimit: smallQuadformLimit(d: d, elementSize: MemoryLayout<T>.stride)))
      let random = QuadformCase(
        n: n, d: d, x: rng.uniform(count: n * d, -1, 1), q: rng.uniform(count: d * d, -1, 1),
        center: rng.uniform(count: d, -1, 1))
      checkQuadform(T.self, random)
    }
  }

  /// The strip method (the triangles do not fit half the memory limit): several panels,
  /// strips formed in several chunks for a Q that is not used in place, symmetric Q read
  /// in place in either order, Q that BLAS cannot read, and 1 and 2 workers; integer data,
  /// so every panel and chunk boundary must give exact results.
  func testStripMethod() {
    strips(Float.self)
    strips(Double.self)
  }

  private func strips<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 9)
    let e = MemoryLayout<T>.stride
    // d = 600 at just under 2·d² bytes: panels of 256 and strips of 351 rows (a symmetric Q
    // in place: one strip as wide as Q); d = 1100 likewise: panels of 512, 512 and 76 in
    // place too; d = 200 at 256 KiB: panels of 50 and strips of 81 rows.
    let layouts = [MatrixLayout.cOrder, .fortranOrder, .everyOtherColumn]
    for (d, limit, qLayouts, symmetries) in [
      (600, 2 * 600 * 600 * e - 1, layouts, [true, false]), (1100, 2 * 1100 * 1100 * e - 1, [.cOrder], [true]),
      (200, 256 << 10, layouts, [true, false]),
    ] {
      for qLayout in qLayouts {
        for symmetric in symmetries {
          var q = exactValues(&rng, count: d * d)
          if symmetric {
            for j in 0..<d { for i in 0..<j { q[j * d + i] = q[i * d + j] } }
          }
          let n = 9
          var c = QuadformCase(
            n: n, d: d, x: exactValues(&rng, count: n * d), q: q,
            center: symmetric ? exactValues(&rng, count: d) : nil)
          c.qLayout = qLayout
          c.xLayout = symmetric ? .fortranOrder : .cOrder
          for threads in [1, 2] {
            checkQuadformExact(T.self, c, options: KernelOptions(threads: threads, memoryLimit: limit))
          }
        }
      }
    }
  }

  /// Every storage layout of X and Q, crossed, with out and center in every layout in turn.
  func testEveryLayout() {
    layouts(Float.self)
    layouts(Double.self)
  }

  private func layouts<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 4)
    let vectorLayouts = VectorLayout.all
    var k = 0
    for xLayout in MatrixLayout.all {
      for qLayout in MatrixLayout.all {
        let (n, d) = (23, 6)
        var q = exactValues(&rng, count: d * d)
        if k % 3 == 0 {
          // Exactly symmetric: read in place in its own layout when BLAS can.
          for j in 0..<d { for i in 0..<j { q[j * d + i] = q[i * d + j] } }
        }
        var c = QuadformCase(
          n: n, d: d, x: exactValues(&rng, count: n * d), q: q,
          center: k % 2 == 0 ? exactValues(&rng, count: d) : nil)
        c.xLayout = xLayout
        c.qLayout = qLayout
        c.centerLayout = vectorLayouts[(k / 2) % vectorLayouts.count]
        c.outLayout = vectorLayouts[k % vectorLayouts.count]
        checkQuadformExact(T.self, c)
        // The same with several blocks and workers, each reading its rows of the view.
        checkQuadformExact(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallQuadformLimit(d: d, elementSize: MemoryLayout<T>.stride)))
        k += 1
      }
    }
    // Every unaligned offset, for X and out.
    for offset in 1...7 {
      let (n, d) = (19, 5)
      var c = QuadformCase(
        n: n, d: d, x: exactValues(&rng, count: n * d), q: exactValues(&rng, count: d * d),
        center: exactValues(&rng, count: d))
      c.xLayout = offset % 2 == 0 ? .unalignedFortran(byteOffset: offset) : .unaligned(byteOffset: offset)
      c.qLayout = .unaligned(byteOffset: 8 - offset)
      c.centerLayout = .unaligned(byteOffset: offset)
      c.outLayout = .unaligned(byteOffset: offset)
      checkQuadformExact(T.self, c)
    }
  }

  func testEmptyAndDegenerateShapes() {
    empty(Float.self)
    empty(Double.self)
  }

  private func empty<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 5)
    // n = 0: nothing to compute or write.
    for d in [0, 1, 4] {
      for c in [nil, rng.uniform(count: d, -1, 1)] as [[Double]?] {
        checkQuadform(T.self, QuadformCase(n: 0, d: d, x: [], q: rng.uniform(count: d * d, -1, 1), center: c))
      }
    }
    // d = 0: every q_i is an empty sum, exactly 0 (out starts as NaN).
    for n in [1, 5, 600] {
      let run = runQuadform(T.self, QuadformCase(n: n, d: 0, x: [], q: [], center: []))
      XCTAssertEqual(run?.got, [Double](repeating: 0, count: n), "\(T.self) d=0 n=\(n)")
      let noCenter = runQuadform(T.self, QuadformCase(n: n, d: 0, x: [], q: [], center: nil))
      XCTAssertEqual(noCenter?.got, [Double](repeating: 0, count: n), "\(T.self) d=0 n=\(n)")
    }
    // d = 1: q_i = Q₀₀ (x_i − c)².
    for n in [1, 7, 1000] {
      let x = rng.uniform(count: n, -2, 2)
      checkQuadform(T.self, QuadformCase(n: n, d: 1, x: x, q: [-1.5], center: [0.25]))
      checkQuadformExact(T.self, QuadformCase(n: n, d: 1, x: exactValues(&rng, count: n), q: [3], center: [-2]))
    }
  }

  /// Data far from the origin, centred at its own mean: x·x − c·c would lose every digit
  /// the offset takes; the result must match the reference on centred data.
  func testMeanOffset() {
    meanOffset(Float.self)
    meanOffset(Double.self)
  }

  private func meanOffset<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 6)
    let (n, d) = (300, 12)
    var x = rng.uniform(count: n * d, -1, 1).map { 1e4 + $0 }
    // Store and read back in T, so the mean is that of the data the kernel sees.
    x = x.map { Double(T($0)) }
    var mean = [Double](repeating: 0, count: d)
    for i in 0..<n { for j in 0..<d { mean[j] += x[i * d + j] / Double(n) } }
    let c = QuadformCase(n: n, d: d, x: x, q: rng.uniform(count: d * d, -1, 1), center: mean)
    checkQuadform(T.self, c)
    checkQuadform(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallQuadformLimit(d: d, elementSize: MemoryLayout<T>.stride)))
    // Without a center the values are ~1e8·d²; the relative check still holds.
    checkQuadform(T.self, QuadformCase(n: n, d: d, x: x, q: c.q, center: nil))
  }

  /// Only the symmetric part of Q matters: Q and (Q + Qᵀ)/2 agree, and an antisymmetric Q
  /// gives exactly 0.
  func testNonSymmetricQ() {
    nonSymmetric(Float.self)
    nonSymmetric(Double.self)
  }

  private func nonSymmetric<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 7)
    let (n, d) = (50, 8)
    let x = exactValues(&rng, count: n * d)
    let q = exactValues(&rng, count: d * d)
    var s = q
    var antisymmetric = q
    for j in 0..<d {
      for k in 0..<d {
        s[j * d + k] = (q[j * d + k] + q[k * d + j]) / 2
        antisymmetric[j * d + k] = q[j * d + k] - q[k * d + j]
      }
    }
    let center = exactValues(&rng, count: d)
    guard let a = runQuadform(T.self, QuadformCase(n: n, d: d, x: x, q: q, center: center)),
      let b = runQuadform(T.self, QuadformCase(n: n, d: d, x: x, q: s, center: center)),
      let zero = runQuadform(T.self, QuadformCase(n: n, d: d, x: x, q: antisymmetric, center: center))
    else { return }
    XCTAssertNil(firstDifference(a.got, b.got), "\(T.self): Q and its symmetric part differ")
    XCTAssertNil(firstDifference(a.got, a.want.values), "\(T.self): non-symmetric Q")
    XCTAssertNil(firstDifference(zero.got, [Double](repeating: 0, count: n)), "\(T.self): antisymmetric Q")
  }

  func testNaNPropagates() {
    nanPropagates(Float.self)
    nanPropagates(Double.self)
  }

  private func nanPropagates<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 8)
    let (n, d) = (40, 5)
    let x = rng.uniform(count: n * d, -1, 1)
    let q = rng.uniform(count: d * d, -1, 1)
    let center = rng.uniform(count: d, -1, 1)
    // NaN in row 17 of X: q_17 is NaN, the other rows are unaffected.
    var xNaN = x
    xNaN[17 * d + 3] = .nan
    if let run = runQuadform(T.self, QuadformCase(n: n, d: d, x: xNaN, q: q, center: center)) {
      XCTAssertTrue(run.got[17].isNaN, "\(T.self): NaN in X row 17 gave \(run.got[17])")
      XCTAssertNil(firstMismatch(run.got, run.want, bound: roundingBound(T.self, terms: 2 * d)), "\(T.self) NaN in X")
    }
    // NaN in Q or in the center reaches every row.
    var qNaN = q
    qNaN[2 * d + 1] = .nan
    var centerNaN = center
    centerNaN[4] = .nan
    for (name, c) in [
      ("Q", QuadformCase(n: n, d: d, x: x, q: qNaN, center: center)),
      ("Q, symmetric NaN", QuadformCase(n: n, d: d, x: x, q: q.enumerated().map { $0.offset == 2 * d + 2 ? .nan : $0.element }, center: nil)),
      ("center", QuadformCase(n: n, d: d, x: x, q: q, center: centerNaN)),
    ] {
      guard let run = runQuadform(T.self, c) else { continue }
      XCTAssertTrue(run.got.allSatisfy { $0.isNaN }, "\(T.self): NaN in \(name) gave \(run.got.filter { !$0.isNaN }.count) non-NaN results")
    }
  }

  func testShapeMismatchesThrow() {
    shapeMismatches(Float.self)
    shapeMismatches(Double.self)
  }

  private func shapeMismatches<T: KernelScalar>(_: T.Type) {
    let (n, d) = (10, 4)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let q = TestMatrix<T>(rows: d, cols: d, values: [Double](repeating: 1, count: d * d))
    let center = TestVector<T>(values: [Double](repeating: 0, count: d))
    defer { withExtendedLifetime((x, q, center)) {} }
    func attempt(_ name: String, q qView: StridedMatrix<T>, center c: StridedVector<T>?, outCount: Int) {
      let out = TestVector<T>(count: outCount)
      defer { withExtendedLifetime(out) {} }
      let error = thrownError { () throws(KernelError) in
        try quadform(x.view, qView, center: c, out: out.view)
      }
      assertInvalidArgument(error, mentions: name, "\(T.self) quadform with a wrong \(name)")
      XCTAssertTrue(out.untouched(), "\(T.self): out written before the \(name) check")
    }
    let qWide = TestMatrix<T>(rows: d, cols: d + 1, values: [Double](repeating: 1, count: d * (d + 1)))
    let qBig = TestMatrix<T>(rows: d + 1, cols: d + 1, values: [Double](repeating: 1, count: (d + 1) * (d + 1)))
    let qSmall = TestMatrix<T>(rows: d - 1, cols: d, values: [Double](repeating: 1, count: (d - 1) * d))
    let shortCenter = TestVector<T>(values: [Double](repeating: 0, count: d - 1))
    defer { withExtendedLifetime((qWide, qBig, qSmall, shortCenter)) {} }
    attempt("Q", q: qWide.view, center: nil, outCount: n)
    attempt("Q", q: qBig.view, center: nil, outCount: n)
    attempt("Q", q: qSmall.view, center: center.view, outCount: n)
    attempt("center", q: q.view, center: shortCenter.view, outCount: n)
    attempt("out", q: q.view, center: nil, outCount: n + 1)
    attempt("out", q: q.view, center: center.view, outCount: n - 1)
    // With n = 0 the shapes are still checked.
    let empty = TestMatrix<T>(rows: 0, cols: d)
    let out = TestVector<T>(count: 0)
    defer { withExtendedLifetime((empty, out)) {} }
    assertInvalidArgument(
      thrownError { () throws(KernelError) in try quadform(empty.view, qBig.view, out: out.view) },
      mentions: "Q", "\(T.self) n=0 with a wrong Q")
  }

  func testMemoryLimitTooSmallThrows() {
    tooSmall(Float.self)
    tooSmall(Double.self)
  }

  private func tooSmall<T: KernelScalar>(_: T.Type) {
    let (n, d) = (100, 16)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let q = TestMatrix<T>(rows: d, cols: d, values: [Double](repeating: 1, count: d * d))
    defer { withExtendedLifetime((x, q)) {} }
    for limit in [0, 1, 8, d * MemoryLayout<T>.stride] {
      for threads in [1, 3] {
        let out = TestVector<T>(count: n)
        defer { withExtendedLifetime(out) {} }
        let error = thrownError { () throws(KernelError) in
          try quadform(x.view, q.view, out: out.view, options: KernelOptions(threads: threads, memoryLimit: limit))
        }
        assertInvalidArgument(error, mentions: "memory_limit", "\(T.self) memoryLimit=\(limit) threads=\(threads)")
        XCTAssertTrue(out.untouched(), "\(T.self) memoryLimit=\(limit): out was written")
      }
    }
  }

  /// A larger problem checked in O(n·d): Q = u₁v₁ᵀ + u₂v₂ᵀ (not symmetric), so
  /// q_i = Σ_r (y_i·u_r)(y_i·v_r).
  func testLargeProblemAgainstLowRankIdentity() {
    lowRank(Float.self)
    lowRank(Double.self)
  }

  private func lowRank<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 11)
    let (n, d) = (4099, 64)
    let u = [rng.uniform(count: d, -1, 1), rng.uniform(count: d, -1, 1)]
    let v = [rng.uniform(count: d, -1, 1), rng.uniform(count: d, -1, 1)]
    let q = lowRankMatrix(u: u, v: v, size: d)
    let xValues = rng.uniform(count: n * d, -1, 1)
    let centerValues = rng.uniform(count: d, -0.5, 0.5)
    let limit = smallQuadformLimit(d: d, elementSize: MemoryLayout<T>.stride)
    for (layout, options) in [
      (MatrixLayout.cOrder, KernelOptions()),
      (.fortranOrder, KernelOptions(threads: 2, memoryLimit: limit)),
      (.unaligned(byteOffset: 5), KernelOptions(threads: 3, memoryLimit: 4 * limit)),
    ] {
      let x = TestMatrix<T>(rows: n, cols: d, layout: layout, values: xValues)
      let qm = TestMatrix<T>(rows: d, cols: d, values: q)
      let center = TestVector<T>(values: centerValues)
      let out = TestVector<T>(count: n)
      defer { withExtendedLifetime((x, qm, center, out)) {} }
      do {
        try quadform(x.view, qm.view, center: center.view, out: out.view, options: options)
      } catch {
        XCTFail("\(T.self) \(layout): threw \(error)")
        continue
      }
      let want = referenceLowRankQuadform(x: x.values, rows: n, cols: d, u: u, v: v, center: center.values)
      XCTAssertNil(firstMismatch(out.values, want, bound: roundingBound(T.self, terms: 2 * d)), "\(T.self) n=\(n) d=\(d) X \(layout)")
    }
  }
}
