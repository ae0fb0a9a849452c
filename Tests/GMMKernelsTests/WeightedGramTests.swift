import GMMKernels
import XCTest
import _GMKTestSupport

/// The inputs of one weightedGram call, as Doubles, and where to put them.
struct GramCase {
  var n: Int
  var d: Int
  var x: [Double]
  var weights: [Double]?
  var center: [Double]?
  var xLayout: MatrixLayout = .cOrder
  var weightsLayout: VectorLayout = .contiguous
  var centerLayout: VectorLayout = .contiguous
  var outLayout: MatrixLayout = .cOrder

  var description: String {
    "n=\(n) d=\(d) X \(xLayout), "
      + (weights == nil ? "no weights" : "weights \(weightsLayout)") + ", "
      + (center == nil ? "no center" : "center \(centerLayout)") + ", out \(outLayout)"
  }
}

struct GramRun {
  /// The result, row-major d × d.
  var got: [Double]
  /// The rounded inputs the kernel saw.
  var x: [Double]
  var weights: [Double]?
  var center: [Double]?
}

/// Runs weightedGram on `c` in `T`; checks that the inputs came back unchanged, nothing
/// outside `out` was written and the result is exactly symmetric.
func runGram<T: KernelScalar>(
  _: T.Type, _ c: GramCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) -> GramRun? {
  let x = TestMatrix<T>(rows: c.n, cols: c.d, layout: c.xLayout, values: c.x)
  let w = c.weights.map { TestVector<T>(layout: c.weightsLayout, values: $0) }
  let center = c.center.map { TestVector<T>(layout: c.centerLayout, values: $0) }
  let out = TestMatrix<T>(rows: c.d, cols: c.d, layout: c.outLayout)
  defer { withExtendedLifetime((x, w, center, out)) {} }
  let context = "\(T.self) \(c.description)"
  let inputs: [(String, any GuardedStorage)] = [("X", x)] + named("w", w) + named("center", center)
  let returned = guardedCall(context, inputs: inputs, outputs: [("out", out)], file: file, line: line) {
    try weightedGram(x.view, weights: w?.view, center: center?.view, out: out.view, options: options)
  }
  guard returned else { return nil }
  let got = out.values
  let d = c.d
  symmetry: for i in 0..<d {
    for j in 0..<i where got[i * d + j].bitPattern != got[j * d + i].bitPattern {
      XCTFail("\(context): out[\(i), \(j)] = \(got[i * d + j]) but out[\(j), \(i)] = \(got[j * d + i])", file: file, line: line)
      break symmetry
    }
  }
  return GramRun(got: got, x: x.values, weights: w?.values, center: center?.values)
}

/// Runs `c` and requires results within the rounding bound of a sum of n terms in `T`.
func checkGram<T: KernelScalar>(
  _: T.Type, _ c: GramCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runGram(T.self, c, options: options, file: file, line: line) else { return }
  let want = referenceWeightedGram(x: run.x, rows: c.n, cols: c.d, weights: run.weights, center: run.center)
  XCTAssertNil(
    firstMismatch(run.got, want, bound: roundingBound(T.self, terms: c.n)), "\(T.self) \(c.description)",
    file: file, line: line)
}

/// Runs `c` (integer data and square weights, exact throughout) and requires exact results.
func checkGramExact<T: KernelScalar>(
  _: T.Type, _ c: GramCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runGram(T.self, c, options: options, file: file, line: line) else { return }
  let want = referenceWeightedGram(x: run.x, rows: c.n, cols: c.d, weights: run.weights, center: run.center)
  XCTAssertNil(firstDifference(run.got, want.values), "\(T.self) \(c.description)", file: file, line: line)
}

/// A memory limit with room for three d × d accumulators (Double, plus a block product
/// in T) and about 40 packed rows. A weighted or centred block of m rows is packed,
/// m·d·e bytes, so no block holds more than `limit / (d·e)` rows.
func smallGramLimit(d: Int, elementSize e: Int) -> Int { 3 * d * d * (8 + e) + 40 * d * e }

final class WeightedGramTests: XCTestCase {
  func testRandomDataAgainstReference() {
    random(Float.self)
    random(Double.self)
  }

  private func random<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 21)
    for (n, d) in [(1, 1), (1, 70), (7, 2), (7, 31), (100, 5), (100, 70), (513, 1), (513, 17)] {
      for weightKind in 0..<3 {
        for withCenter in [false, true] {
          let weights: [Double]? =
            switch weightKind {
            case 0: nil
            case 1: rng.uniform(count: n, 0, 2)
            default: rng.uniform(count: n, -1, 1)
            }
          let c = GramCase(
            n: n, d: d, x: rng.uniform(count: n * d, -1, 1), weights: weights,
            center: withCenter ? rng.uniform(count: d, -1, 1) : nil)
          checkGram(T.self, c)
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
    var rng = SplitMix64(seed: 22)
    let d = 9
    let e = MemoryLayout<T>.stride
    let limit = smallGramLimit(d: d, elementSize: e)
    for n in [1, 7, 513, 1000, 2049 + 3] {
      for threads in [1, 2, 3] {
        for withCenter in [false, true] {
          let c = GramCase(
            n: n, d: d, x: exactValues(&rng, count: n * d), weights: rng.choose(count: n, from: exactWeights),
            center: withCenter ? exactValues(&rng, count: d) : nil)
          let rows = AtomicCounter()
          let calls = AtomicCounter()
          checkGramExact(T.self, c, options: progressOptions(threads: threads, memoryLimit: limit, rows: rows, calls: calls))
          let context = "\(T.self) \(c.description) threads=\(threads)"
          XCTAssertEqual(rows.value, n, "\(context): rows reported")
          let maxRowsPerBlock = limit / (d * e)
          XCTAssertGreaterThanOrEqual(
            calls.value, (n + maxRowsPerBlock - 1) / maxRowsPerBlock, "\(context): too few blocks for memory_limit=\(limit)")
        }
        // No weights and no center: BLAS reads X in place, in blocks of rows.
        let plain = GramCase(n: n, d: d, x: exactValues(&rng, count: n * d), weights: nil, center: nil)
        checkGramExact(T.self, plain, options: KernelOptions(threads: threads, memoryLimit: limit))
      }
    }
  }

  /// Every storage layout of X and out, crossed, with w and center in every layout in turn.
  func testEveryLayout() {
    layouts(Float.self)
    layouts(Double.self)
  }

  private func layouts<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 23)
    let vectorLayouts = VectorLayout.all
    var k = 0
    for xLayout in MatrixLayout.all {
      for outLayout in MatrixLayout.all {
        let (n, d) = (29, 6)
        var c = GramCase(
          n: n, d: d, x: exactValues(&rng, count: n * d),
          weights: k % 3 == 0 ? nil : rng.choose(count: n, from: exactWeights),
          center: k % 2 == 0 ? exactValues(&rng, count: d) : nil)
        c.xLayout = xLayout
        c.outLayout = outLayout
        c.weightsLayout = vectorLayouts[k % vectorLayouts.count]
        c.centerLayout = vectorLayouts[(k / 2) % vectorLayouts.count]
        checkGramExact(T.self, c)
        checkGramExact(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallGramLimit(d: d, elementSize: MemoryLayout<T>.stride)))
        // Unweighted and uncentred: the in-place path, for each layout of X.
        c.weights = nil
        c.center = nil
        checkGramExact(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallGramLimit(d: d, elementSize: MemoryLayout<T>.stride)))
        k += 1
      }
    }
    for offset in 1...7 {
      let (n, d) = (21, 5)
      var c = GramCase(
        n: n, d: d, x: exactValues(&rng, count: n * d), weights: rng.choose(count: n, from: exactWeights),
        center: exactValues(&rng, count: d))
      c.xLayout = offset % 2 == 0 ? .unalignedFortran(byteOffset: offset) : .unaligned(byteOffset: offset)
      c.weightsLayout = .unaligned(byteOffset: 8 - offset)
      c.centerLayout = .unaligned(byteOffset: offset)
      c.outLayout = .unaligned(byteOffset: offset)
      checkGramExact(T.self, c)
    }
  }

  func testEmptyAndDegenerateShapes() {
    empty(Float.self)
    empty(Double.self)
  }

  private func empty<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 24)
    // n = 0: the empty sum, exactly 0 in every element (out starts as NaN).
    for d in [1, 4, 33] {
      for (weights, center) in [(nil, nil), ([], nil), (nil, rng.uniform(count: d, -1, 1))] as [([Double]?, [Double]?)] {
        let run = runGram(T.self, GramCase(n: 0, d: d, x: [], weights: weights, center: center))
        XCTAssertEqual(run?.got, [Double](repeating: 0, count: d * d), "\(T.self) n=0 d=\(d)")
      }
    }
    // d = 0: a 0 × 0 result; nothing is written.
    for n in [0, 1, 600] {
      for weights in [nil, rng.uniform(count: n, -1, 1)] as [[Double]?] {
        let run = runGram(T.self, GramCase(n: n, d: 0, x: [], weights: weights, center: []))
        XCTAssertEqual(run?.got, [], "\(T.self) d=0 n=\(n)")
      }
    }
    // d = 1: Σ w_i (x_i − c)².
    for n in [1, 7, 1000] {
      checkGram(T.self, GramCase(n: n, d: 1, x: rng.uniform(count: n, -2, 2), weights: rng.uniform(count: n, -1, 1), center: [0.25]))
      checkGram(T.self, GramCase(n: n, d: 1, x: rng.uniform(count: n, -2, 2), weights: nil, center: nil))
      checkGramExact(
        T.self, GramCase(n: n, d: 1, x: exactValues(&rng, count: n), weights: rng.choose(count: n, from: exactWeights), center: [3]))
    }
  }

  /// Data far from the origin, centred at its own mean: Σ w x xᵀ − (Σ w) c cᵀ would lose
  /// every digit the offset takes; the result must match the reference on centred data.
  func testMeanOffset() {
    meanOffset(Float.self)
    meanOffset(Double.self)
  }

  private func meanOffset<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 25)
    let (n, d) = (400, 10)
    let x = rng.uniform(count: n * d, -1, 1).map { Double(T(1e4 + $0)) }
    var mean = [Double](repeating: 0, count: d)
    for i in 0..<n { for j in 0..<d { mean[j] += x[i * d + j] / Double(n) } }
    let weights = rng.uniform(count: n, 0, 1)
    let limit = smallGramLimit(d: d, elementSize: MemoryLayout<T>.stride)
    for w in [nil, weights] {
      let c = GramCase(n: n, d: d, x: x, weights: w, center: mean)
      checkGram(T.self, c)
      checkGram(T.self, c, options: KernelOptions(threads: 2, memoryLimit: limit))
    }
  }

  func testWeightsOfEverySign() {
    weightSigns(Float.self)
    weightSigns(Double.self)
  }

  private func weightSigns<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 26)
    let (n, d) = (300, 7)
    let x = rng.uniform(count: n * d, -1, 1)
    let center = rng.uniform(count: d, -1, 1)
    // Zeros among positive weights; only negative weights; mixed with zeros.
    var someZeros = rng.uniform(count: n, 0, 2)
    for i in stride(from: 0, to: n, by: 3) { someZeros[i] = 0 }
    let negative = rng.uniform(count: n, -2, -0.1)
    var mixed = rng.uniform(count: n, -1, 1)
    for i in stride(from: 1, to: n, by: 4) { mixed[i] = 0 }
    for w in [someZeros, negative, mixed] {
      checkGram(T.self, GramCase(n: n, d: d, x: x, weights: w, center: center))
      checkGram(T.self, GramCase(n: n, d: d, x: x, weights: w, center: nil))
    }
    // On integer data (exact in any summation order): rows with weight 0 contribute
    // nothing, so dropping them changes nothing; negating every weight negates G.
    let xInt = exactValues(&rng, count: n * d)
    let cInt = exactValues(&rng, count: d)
    let wInt = rng.choose(count: n, from: exactWeights)
    let kept = (0..<n).filter { wInt[$0] != 0 }
    if let all = runGram(T.self, GramCase(n: n, d: d, x: xInt, weights: wInt, center: cInt)),
      let fewer = runGram(
        T.self,
        GramCase(n: kept.count, d: d, x: kept.flatMap { i in xInt[(i * d)..<(i * d + d)] }, weights: kept.map { wInt[$0] }, center: cInt)),
      let minus = runGram(T.self, GramCase(n: n, d: d, x: xInt, weights: wInt.map { -$0 }, center: cInt))
    {
      XCTAssertNil(firstDifference(all.got, fewer.got), "\(T.self): zero-weight rows changed the result")
      XCTAssertNil(firstDifference(minus.got, all.got.map { -$0 }), "\(T.self): G(−w) ≠ −G(w)")
    }
    // All weights zero: exactly zero, whatever the data, with and without a center.
    for c in [nil, center] {
      for threads in [1, 2] {
        let run = runGram(
          T.self, GramCase(n: n, d: d, x: x, weights: [Double](repeating: 0, count: n), center: c),
          options: KernelOptions(threads: threads, memoryLimit: smallGramLimit(d: d, elementSize: MemoryLayout<T>.stride)))
        XCTAssertNil(firstDifference(run?.got ?? [], [Double](repeating: 0, count: d * d)), "\(T.self): all-zero weights")
      }
    }
    // Weights of all ones equal no weights.
    if let ones = runGram(T.self, GramCase(n: n, d: d, x: x, weights: [Double](repeating: 1, count: n), center: center)),
      let none = runGram(T.self, GramCase(n: n, d: d, x: x, weights: nil, center: center))
    {
      let want = referenceWeightedGram(x: none.x, rows: n, cols: d, center: none.center)
      XCTAssertNil(firstMismatch(ones.got, want, bound: roundingBound(T.self, terms: n)), "\(T.self): w = 1")
      XCTAssertNil(firstMismatch(none.got, want, bound: roundingBound(T.self, terms: n)), "\(T.self): w = nil")
    }
  }

  func testNaNPropagates() {
    nanPropagates(Float.self)
    nanPropagates(Double.self)
  }

  private func nanPropagates<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 27)
    let (n, d) = (60, 6)
    let x = rng.uniform(count: n * d, -1, 1)
    let w = rng.uniform(count: n, 0.5, 1)
    let center = rng.uniform(count: d, -1, 1)
    let bound = roundingBound(T.self, terms: n)
    // NaN in X[11, 2]: row and column 2 of G are NaN, the rest as without it (as numpy).
    var xNaN = x
    xNaN[11 * d + 2] = .nan
    var centerNaN = center
    centerNaN[2] = .nan
    for (name, c) in [
      ("X", GramCase(n: n, d: d, x: xNaN, weights: w, center: center)),
      ("X, unweighted", GramCase(n: n, d: d, x: xNaN, weights: nil, center: nil)),
      ("center", GramCase(n: n, d: d, x: x, weights: w, center: centerNaN)),
    ] {
      guard let run = runGram(T.self, c) else { continue }
      let want = referenceWeightedGram(x: run.x, rows: n, cols: d, weights: run.weights, center: run.center)
      for j in 0..<d {
        XCTAssertTrue(run.got[2 * d + j].isNaN && run.got[j * d + 2].isNaN, "\(T.self) NaN in \(name): G[2, \(j)] = \(run.got[2 * d + j])")
      }
      XCTAssertNil(firstMismatch(run.got, want, bound: bound), "\(T.self) NaN in \(name)")
    }
    // A NaN weight reaches every element.
    var wNaN = w
    wNaN[37] = .nan
    for c in [nil, center] {
      guard let run = runGram(T.self, GramCase(n: n, d: d, x: x, weights: wNaN, center: c)) else { continue }
      XCTAssertTrue(run.got.allSatisfy { $0.isNaN }, "\(T.self): NaN weight gave \(run.got.filter { !$0.isNaN }.count) non-NaN elements")
    }
  }

  func testShapeMismatchesThrow() {
    shapeMismatches(Float.self)
    shapeMismatches(Double.self)
  }

  private func shapeMismatches<T: KernelScalar>(_: T.Type) {
    let (n, d) = (10, 4)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let w = TestVector<T>(values: [Double](repeating: 1, count: n))
    let center = TestVector<T>(values: [Double](repeating: 0, count: d))
    defer { withExtendedLifetime((x, w, center)) {} }
    func attempt(_ name: String, x xView: StridedMatrix<T>, w wView: StridedVector<T>?, center c: StridedVector<T>?, out: (Int, Int)) {
      let o = TestMatrix<T>(rows: out.0, cols: out.1)
      defer { withExtendedLifetime(o) {} }
      let error = thrownError { () throws(KernelError) in
        try weightedGram(xView, weights: wView, center: c, out: o.view)
      }
      assertInvalidArgument(error, mentions: name, "\(T.self) weightedGram with a wrong \(name)")
      XCTAssertTrue(o.untouched(), "\(T.self): out written before the \(name) check")
    }
    let longW = TestVector<T>(values: [Double](repeating: 1, count: n + 1))
    let shortW = TestVector<T>(values: [Double](repeating: 1, count: n - 1))
    let longCenter = TestVector<T>(values: [Double](repeating: 0, count: d + 1))
    let empty = TestMatrix<T>(rows: 0, cols: d)
    defer { withExtendedLifetime((longW, shortW, longCenter, empty)) {} }
    attempt("w", x: x.view, w: longW.view, center: nil, out: (d, d))
    attempt("w", x: x.view, w: shortW.view, center: center.view, out: (d, d))
    attempt("w", x: empty.view, w: w.view, center: nil, out: (d, d))
    attempt("center", x: x.view, w: w.view, center: longCenter.view, out: (d, d))
    attempt("out", x: x.view, w: nil, center: nil, out: (d, d + 1))
    attempt("out", x: x.view, w: w.view, center: nil, out: (d + 1, d))
    attempt("out", x: empty.view, w: nil, center: nil, out: (d - 1, d - 1))
  }

  func testMemoryLimitTooSmallThrows() {
    tooSmall(Float.self)
    tooSmall(Double.self)
  }

  private func tooSmall<T: KernelScalar>(_: T.Type) {
    let (n, d) = (100, 16)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let w = TestVector<T>(values: [Double](repeating: 2, count: n))
    defer { withExtendedLifetime((x, w)) {} }
    // With weights every plan packs at least one row of d elements.
    for limit in [0, 1, 64, d * MemoryLayout<T>.stride - 1] {
      for threads in [1, 3] {
        let out = TestMatrix<T>(rows: d, cols: d)
        defer { withExtendedLifetime(out) {} }
        let error = thrownError { () throws(KernelError) in
          try weightedGram(x.view, weights: w.view, out: out.view, options: KernelOptions(threads: threads, memoryLimit: limit))
        }
        assertInvalidArgument(error, mentions: "memory_limit", "\(T.self) memoryLimit=\(limit) threads=\(threads)")
        XCTAssertTrue(out.untouched(), "\(T.self) memoryLimit=\(limit): out was written")
      }
    }
  }

  /// When no worker's d × d accumulator fits, the sum goes into `out` itself: float64 by
  /// SYRK straight into an `out` BLAS can write, anything else by tile products added with
  /// a compensated sum. No workspace at all for float64 without weights (BLAS reads X in
  /// place), one packed row with them.
  func testAccumulationInOutput() {
    intoOutput(Float.self)
    intoOutput(Double.self)
  }

  private func intoOutput<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 12)
    let e = MemoryLayout<T>.stride
    let d = 261  // a tile of 256 columns and a partial one
    let n = 512 + 7  // two blocks
    let fits = d * d * MemoryLayout<Double>.stride  // not even one accumulator beside anything
    let cases = [(false, false), (true, false), (true, true)]
    for (i, outLayout) in [MatrixLayout.cOrder, .fortranOrder, .everyOtherColumn].enumerated() {
      let (weighted, centred) = cases[i]
      var c = GramCase(
        n: n, d: d, x: exactValues(&rng, count: n * d),
        weights: weighted ? rng.integers(count: n, in: -2...2).map { $0 * abs($0) } : nil,
        center: centred ? exactValues(&rng, count: d) : nil)
      c.outLayout = outLayout
      checkGramExact(T.self, c, options: KernelOptions(threads: 2, memoryLimit: fits - 1))
    }
    // The least workspace each case needs.
    let small = GramCase(n: 50, d: 16, x: exactValues(&rng, count: 50 * 16), weights: nil, center: nil)
    if T.self == Double.self {
      checkGramExact(T.self, small, options: KernelOptions(threads: 2, memoryLimit: 0))
    }
    var weighted = small
    weighted.weights = rng.integers(count: 50, in: 0...3).map { $0 * $0 }
    let row = 16 * e
    let tile = T.self == Double.self ? 0 : 16 * 16 * e + 16 * MemoryLayout<Double>.stride
    checkGramExact(T.self, weighted, options: KernelOptions(threads: 2, memoryLimit: row + tile))
  }

  /// float32 sums in `out` keep about twice float32's digits across blocks: rows whose
  /// products float32 cannot add exactly (a large row, then many small ones) still give
  /// the sum to within a few float32 roundings of the result.
  func testCompensatedSumInFloatOutput() {
    var rng = SplitMix64(seed: 13)
    let (n, d) = (4096, 3)
    var x = rng.uniform(count: n * d, 0.5, 1.5)
    for j in 0..<d { x[j] = 4096 }  // row 0: a product of 2^24
    // Unit weights and room for one packed row beside the sink's tile: blocks of one row, so
    // every sum across rows is the sink's own (a float32 SYRK of many rows would round first).
    let c = GramCase(n: n, d: d, x: x, weights: [Double](repeating: 1, count: n), center: nil)
    let limit = d * 4 + d * d * 4 + d * 8
    guard let run = runGram(Float.self, c, options: KernelOptions(threads: 1, memoryLimit: limit)) else { return }
    let want = referenceWeightedGram(x: run.x, rows: n, cols: d, weights: run.weights, center: nil)
    XCTAssertNil(firstMismatch(run.got, want, bound: roundingBound(Float.self, terms: 4)))
  }

  /// A larger problem checked in O(n·d), as STYLE.md suggests: G·t against Yᵀ(w ∘ (Y t))
  /// for a random t.
  func testLargeProblemAgainstProductIdentity() {
    large(Float.self)
    large(Double.self)
  }

  private func large<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 30)
    let (n, d) = (5000, 64)
    let xValues = rng.uniform(count: n * d, -1, 1)
    let t = rng.uniform(count: d, -1, 1)
    let limit = smallGramLimit(d: d, elementSize: MemoryLayout<T>.stride)
    let cases: [(MatrixLayout, [Double]?, [Double]?, KernelOptions)] = [
      (.cOrder, nil, nil, KernelOptions()),
      (.fortranOrder, rng.uniform(count: n, -1, 1), rng.uniform(count: d, -0.5, 0.5), KernelOptions(threads: 2, memoryLimit: limit)),
      (.unaligned(byteOffset: 3), rng.uniform(count: n, 0, 1), nil, KernelOptions(threads: 3, memoryLimit: 2 * limit)),
    ]
    for (layout, weights, center, options) in cases {
      let c = GramCase(n: n, d: d, x: xValues, weights: weights, center: center, xLayout: layout)
      guard let run = runGram(T.self, c, options: options) else { continue }
      let want = referenceGramTimes(t, x: run.x, rows: n, cols: d, weights: run.weights, center: run.center)
      let got = matrixVector(run.got, rows: d, cols: d, t)
      XCTAssertNil(firstMismatch(got, want, bound: roundingBound(T.self, terms: n + d)), "\(T.self) \(c.description): G·t")
    }
  }
}
