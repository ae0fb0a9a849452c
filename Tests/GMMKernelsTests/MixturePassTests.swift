@testable import GMMKernels
import XCTest
import _GMKTestSupport

// mixturePass has four internal paths: the tied pass (one matrix K times, K ≥
// tiedMinComponents, tied scatter or none, when its sums fit the limit), the lifted pass
// (full or shared precision matrices, d ≤ liftedMaxFeatures, scatter other than .diagonal),
// the diagonal pass (diagonal or spherical precisions with diagonal scatter or none) and the
// per-component pass (the rest: more features, matrices with diagonal scatter, diagonal
// precisions with full or tied scatter). Every test below runs all of them; the tied and
// diagonal passes, which compute in Double, are held to the bounds of the path they replace.

/// How the precisions of a test mixture are passed.
enum PrecisionKind: CustomStringConvertible, CaseIterable {
  /// K matrices of d × d, stored as one (K·d) × d array.
  case full
  /// One d × d matrix passed K times as the same view (a tied covariance).
  case tied
  /// Their diagonals, a K × d array.
  case diagonal
  /// One value per component, viewed as K × d with a zero column stride.
  case spherical

  var description: String {
    switch self {
    case .full: return "full"
    case .tied: return "tied (one view K times)"
    case .diagonal: return "diagonal"
    case .spherical: return "spherical (zero column stride)"
    }
  }

  /// How many values describe the precisions of K components of d features.
  func count(k: Int, d: Int) -> Int {
    switch self {
    case .full: return k * d * d
    case .tied: return d * d
    case .diagonal: return k * d
    case .spherical: return k
    }
  }
}

/// The inputs of one mixturePass call, as Doubles, and where to put them.
struct MixtureCase {
  var n: Int
  var d: Int
  var k: Int
  var x: [Double]
  var weights: [Double]?
  var logNorm: [Double]
  /// K × d, row-major.
  var means: [Double]
  /// `kind.count(k:d:)` values: K matrices, one matrix, K diagonals or K scalars.
  var precisions: [Double]
  var kind: PrecisionKind
  var scatter: MixtureScatter
  var wantResponsibilities = true
  var wantScores = true
  var xLayout: MatrixLayout = .cOrder
  var meansLayout: MatrixLayout = .cOrder
  var precisionsLayout: MatrixLayout = .cOrder
  /// Of the weights, log-norms, scores and spherical precisions.
  var vectorLayout: VectorLayout = .contiguous
  var respLayout: MatrixLayout = .cOrder
  /// Call the lifted pass itself, whatever d.
  var forceLifted = false

  /// Whether mixturePass takes the lifted pass for this case.
  var takesLiftedPass: Bool {
    forceLifted || ((kind == .full || kind == .tied) && d <= liftedMaxFeatures && scatter != .diagonal)
  }

  /// Whether mixturePass takes the tied pass for this case (when its sums fit the memory limit).
  var takesTiedPass: Bool {
    kind == .tied && k >= tiedMinComponents && (scatter == .tied || scatter == .none)
  }

  /// Whether mixturePass takes the diagonal pass for this case.
  var takesDiagonalPass: Bool {
    !takesLiftedPass && (kind == .diagonal || kind == .spherical) && (scatter == .diagonal || scatter == .none)
  }

  var description: String {
    "n=\(n) d=\(d) K=\(k) \(kind) precisions \(precisionsLayout), scatter \(scatter), "
      + (takesTiedPass ? "tied pass" : takesLiftedPass ? "lifted pass" : takesDiagonalPass ? "diagonal pass" : "per-component pass")
      + ", X \(xLayout), means \(meansLayout), "
      + (weights == nil ? "no weights" : "weights") + ", vectors \(vectorLayout), "
      + (wantResponsibilities ? "resp \(respLayout)" : "no resp") + (wantScores ? ", scores" : ", no scores")
  }

  /// The K precision matrices (row-major d × d) these values stand for.
  func precisionMatrices(_ values: [Double]) -> [[Double]] {
    switch kind {
    case .full:
      return (0..<k).map { Array(values[($0 * d * d)..<(($0 + 1) * d * d)]) }
    case .tied:
      return [[Double]](repeating: values, count: k)
    case .diagonal, .spherical:
      return (0..<k).map { j in
        var m = [Double](repeating: 0, count: d * d)
        for a in 0..<d { m[a * d + a] = kind == .diagonal ? values[j * d + a] : values[j] }
        return m
      }
    }
  }
}

/// What a mixturePass call gave, and the reference on the same (rounded) inputs.
struct MixtureRun {
  var stats: MixtureStatistics
  var responsibilities: [Double]?
  var scores: [Double]?
  var want: MixtureReference
}

/// Runs mixturePass (or the lifted pass itself) on `c` in `T`; checks that the inputs came
/// back unchanged and nothing outside the per-row outputs was written.
func runMixture<T: KernelScalar>(
  _: T.Type, _ c: MixtureCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) -> MixtureRun? {
  let (n, d, k) = (c.n, c.d, c.k)
  let x = TestMatrix<T>(rows: n, cols: d, layout: c.xLayout, values: c.x)
  let w = c.weights.map { TestVector<T>(layout: c.vectorLayout, values: $0) }
  let logNorm = TestVector<T>(layout: c.vectorLayout, values: c.logNorm)
  let means = TestMatrix<T>(rows: k, cols: d, layout: c.meansLayout, values: c.means)
  let resp = c.wantResponsibilities ? TestMatrix<T>(rows: n, cols: k, layout: c.respLayout) : nil
  let scores = c.wantScores ? TestVector<T>(count: n, layout: c.vectorLayout) : nil
  // The precisions' storage and views.
  var matrixStorage: TestMatrix<T>?
  var vectorStorage: TestVector<T>?
  let precisions: MixturePrecisions<T>
  switch c.kind {
  case .full:
    let m = TestMatrix<T>(rows: k * d, cols: d, layout: c.precisionsLayout, values: c.precisions)
    matrixStorage = m
    precisions = .matrices(m.rowBlocks(k))
  case .tied:
    let m = TestMatrix<T>(rows: d, cols: d, layout: c.precisionsLayout, values: c.precisions)
    matrixStorage = m
    precisions = .matrices([StridedMatrix<T>](repeating: m.view, count: k))
  case .diagonal:
    let m = TestMatrix<T>(rows: k, cols: d, layout: c.precisionsLayout, values: c.precisions)
    matrixStorage = m
    precisions = .diagonal(m.view)
  case .spherical:
    let v = TestVector<T>(layout: c.vectorLayout, values: c.precisions)
    vectorStorage = v
    precisions = .diagonal(StridedMatrix(base: v.view.base, rows: k, cols: d, rowStride: v.view.stride, colStride: 0))
  }
  defer { withExtendedLifetime((x, w, logNorm, means, resp, scores, matrixStorage, vectorStorage)) {} }
  let inputs = named("X", x) + named("sample weights", w) + named("log_norm", logNorm) + named("means", means)
    + named("precisions", matrixStorage) + named("precisions", vectorStorage)
  var stats: MixtureStatistics?
  let returned = guardedCall(
    "\(T.self) \(c.description)", inputs: inputs, outputs: named("resp_out", resp) + named("score_out", scores),
    file: file, line: line
  ) {
    if c.forceLifted, case .matrices(let qs) = precisions {
      stats = try collectStatistics(components: k, features: d, scatter: c.scatter) { (statistics) throws(KernelError) in
        try liftedMixturePass(
          x.view, sampleWeights: w?.view, logNorm: logNorm.view, means: means.view, precisions: qs,
          scatter: c.scatter, responsibilities: resp?.view, scores: scores?.view, into: statistics,
          options: options)
      }
    } else {
      stats = try mixturePass(
        x.view, sampleWeights: w?.view, logNorm: logNorm.view, means: means.view, precisions: precisions,
        scatter: c.scatter, responsibilities: resp?.view, scores: scores?.view, options: options)
    }
  }
  guard returned, let stats else { return nil }
  let want = referenceMixturePass(
    x: x.values, rows: n, cols: d, sampleWeights: w?.values, logNorm: logNorm.values, means: means.values,
    precisions: c.precisionMatrices(matrixStorage?.values ?? vectorStorage!.values), scatter: c.scatter)
  return MixtureRun(stats: stats, responsibilities: resp?.values, scores: scores?.values, want: want)
}

/// The rounding bounds of a mixture pass in `T`, per unit of the reference's magnitudes:
/// `perRow` for scores and responsibilities, `sums` for the statistics summed over rows.
///
/// A log-density is one quadratic form: 2d terms in `T` on the per-component pass; on the
/// lifted pass d(d+1)/2 lifted products, d linear terms and a constant in Double whatever
/// `T`. Log-sum-exp adds K terms in Double; per-row outputs are rounded to `T`. The
/// statistics sum n rows: in Double on the lifted pass, and on the per-component pass by
/// rank-k updates in `T` within a block.
func mixtureBounds<T: KernelScalar>(_: T.Type, _ c: MixtureCase) -> (perRow: Double, sums: Double) {
  let (n, d, k) = (c.n, c.d, c.k)
  if c.takesLiftedPass {
    let row = roundingBound(Double.self, terms: d * (d + 1) / 2 + d + 1) + roundingBound(Double.self, terms: k)
    return (row + roundingBound(T.self, terms: 0), row + roundingBound(Double.self, terms: n))
  }
  let row = roundingBound(T.self, terms: 2 * d) + roundingBound(Double.self, terms: k)
  return (row, row + roundingBound(T.self, terms: n))
}

/// The number of statistics of each kind: K counts, K·d first moments, and the scatter.
func scatterCount(_ scatter: MixtureScatter, k: Int, d: Int) -> Int {
  switch scatter {
  case .full: return k * d * d
  case .tied: return d * d
  case .diagonal: return k * d
  case .none: return 0
  }
}

/// Runs `c` and requires every output within the rounding bounds of the path it takes.
func checkMixture<T: KernelScalar>(
  _: T.Type, _ c: MixtureCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runMixture(T.self, c, options: options, file: file, line: line) else { return }
  let (perRow, sums) = mixtureBounds(T.self, c)
  let context = "\(T.self) \(c.description)"
  if let got = run.scores {
    XCTAssertNil(firstMismatch(got, run.want.scores, bound: perRow), "\(context): scores", file: file, line: line)
  }
  if let got = run.responsibilities {
    // Responsibilities far below 1 may underflow in float32.
    XCTAssertNil(
      firstMismatch(got, run.want.responsibilities, bound: perRow, absolute: Double(T.leastNonzeroMagnitude) / 2),
      "\(context): responsibilities", file: file, line: line)
  }
  XCTAssertNil(firstMismatch([run.stats.logLikelihood], run.want.logLikelihood, bound: sums), "\(context): log-likelihood", file: file, line: line)
  XCTAssertNil(firstMismatch(run.stats.counts, run.want.counts, bound: sums), "\(context): N", file: file, line: line)
  XCTAssertNil(firstMismatch(run.stats.firstMoments, run.want.firstMoments, bound: sums), "\(context): S1", file: file, line: line)
  XCTAssertNil(firstMismatch(run.stats.scatter, run.want.scatter, bound: sums), "\(context): S2", file: file, line: line)
}

/// Runs `c` (one component, integer data: every output exact) and requires exact results.
func checkMixtureExact<T: KernelScalar>(
  _: T.Type, _ c: MixtureCase, options: KernelOptions = KernelOptions(),
  file: StaticString = #filePath, line: UInt = #line
) {
  guard let run = runMixture(T.self, c, options: options, file: file, line: line) else { return }
  let context = "\(T.self) \(c.description)"
  if let got = run.scores { XCTAssertNil(firstDifference(got, run.want.scores.values), "\(context): scores", file: file, line: line) }
  if let got = run.responsibilities {
    XCTAssertNil(firstDifference(got, run.want.responsibilities.values), "\(context): responsibilities", file: file, line: line)
  }
  XCTAssertNil(firstDifference([run.stats.logLikelihood], run.want.logLikelihood.values), "\(context): log-likelihood", file: file, line: line)
  XCTAssertNil(firstDifference(run.stats.counts, run.want.counts.values), "\(context): N", file: file, line: line)
  XCTAssertNil(firstDifference(run.stats.firstMoments, run.want.firstMoments.values), "\(context): S1", file: file, line: line)
  XCTAssertNil(firstDifference(run.stats.scatter, run.want.scatter.values), "\(context): S2", file: file, line: line)
}

/// Sample weights of a test: none, positive with about a third zeros, or all zero.
enum WeightKind: CaseIterable {
  case none, someZeros, allZero
}

/// A random K-component mixture over n rows of data `offset` + U(−2, 2): means inside the
/// data, symmetric positive definite precisions (diagonals in [0.5, 1), off-diagonal
/// entries below 0.4/d: positive definite by Gershgorin's theorem), the first component's
/// exactly symmetric and the others' with an antisymmetric part that must not matter, and
/// log-norms in [−3, 0).
func randomMixture(
  _ rng: inout SplitMix64, n: Int, d: Int, k: Int, kind: PrecisionKind, scatter: MixtureScatter,
  weights: WeightKind = .none, offset: Double = 0
) -> MixtureCase {
  func spd(symmetric: Bool) -> [Double] {
    var p = [Double](repeating: 0, count: d * d)
    for i in 0..<d {
      p[i * d + i] = rng.uniform(0.5, 1)
      for j in 0..<i {
        let v = rng.uniform(-0.4, 0.4) / Double(d)
        let s = symmetric ? 0 : rng.uniform(-0.3, 0.3)
        p[i * d + j] = v + s
        p[j * d + i] = v - s
      }
    }
    return p
  }
  let precisions: [Double]
  switch kind {
  case .full: precisions = (0..<k).flatMap { spd(symmetric: $0 == 0) }
  case .tied: precisions = spd(symmetric: true)
  case .diagonal: precisions = rng.uniform(count: k * d, 0.3, 2)
  case .spherical: precisions = rng.uniform(count: k, 0.3, 2)
  }
  let w: [Double]?
  switch weights {
  case .none: w = nil
  case .someZeros: w = rng.choose(count: n, from: [0, 0.5, 1, 2, 0, 1.5])
  case .allZero: w = [Double](repeating: 0, count: n)
  }
  return MixtureCase(
    n: n, d: d, k: k, x: rng.uniform(count: n * d, -2, 2).map { offset + $0 }, weights: w,
    logNorm: rng.uniform(count: k, -3, 0), means: rng.uniform(count: k * d, -1, 1).map { offset + $0 },
    precisions: precisions, kind: kind, scatter: scatter)
}

/// One component over integer data with integer means and precisions and square weights:
/// responsibilities are exactly 1, and every score and statistic is exact in any order.
func exactMixture(
  _ rng: inout SplitMix64, n: Int, d: Int, kind: PrecisionKind, scatter: MixtureScatter, weighted: Bool
) -> MixtureCase {
  let precisions: [Double]
  switch kind {
  case .full, .tied: precisions = exactValues(&rng, count: d * d)
  case .diagonal: precisions = rng.integers(count: d, in: 1...3)
  case .spherical: precisions = [2]
  }
  return MixtureCase(
    n: n, d: d, k: 1, x: exactValues(&rng, count: n * d),
    weights: weighted ? rng.choose(count: n, from: exactWeights.filter { $0 >= 0 }) : nil,
    logNorm: [-2.25], means: exactValues(&rng, count: d), precisions: precisions, kind: kind, scatter: scatter)
}

/// A memory limit with room for the statistics of three workers in Double (K·d² scatter and
/// the lifted pass's K·d(d+1)/2 products), copies of the precisions, and about 40 rows;
/// any block of m rows needs at least m·d·e bytes, so no block holds more than
/// `limit / (d·e)` rows.
func smallMixtureLimit(k: Int, d: Int, elementSize e: Int) -> Int {
  let statistics = 8 * (1 + k + k * d + k * d * d + k * d * (d + 1) / 2)
  return 3 * statistics + 8 * (k + 2) * (d * d + d) + 40 * d * e
}

/// Every scatter (matrices with the diagonal scatter take the per-component pass).
let allScatters: [MixtureScatter] = [.full, .tied, .diagonal, .none]

final class MixturePassTests: XCTestCase {
  /// The lifted pass: full and shared matrices, d ≤ liftedMaxFeatures, every scatter it
  /// takes, with and without sample weights and per-row outputs.
  func testLiftedPassAgainstReference() {
    lifted(Float.self)
    lifted(Double.self)
  }

  private func lifted<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 601)
    var i = 0
    for (n, d) in [(1, 1), (37, 2), (300, 5), (50, 17)] {
      for k in [1, 3] {
        for kind in [PrecisionKind.full, .tied] {
          for scatter in [MixtureScatter.full, .tied, .none] {
            var c = randomMixture(&rng, n: n, d: d, k: k, kind: kind, scatter: scatter, weights: i % 2 == 0 ? .none : .someZeros)
            c.wantResponsibilities = i % 4 < 2
            c.wantScores = i % 3 != 2
            XCTAssertTrue(c.takesLiftedPass)
            checkMixture(T.self, c)
            i += 1
          }
        }
      }
    }
    // At the dispatch limit.
    let c = randomMixture(&rng, n: 12, d: liftedMaxFeatures, k: 2, kind: .full, scatter: .full, weights: .someZeros)
    XCTAssertTrue(c.takesLiftedPass)
    checkMixture(T.self, c, options: KernelOptions(threads: 2))
  }

  /// The per-component pass: more features than the lifted pass takes, matrices with a
  /// diagonal scatter, diagonal and spherical precisions; every scatter.
  func testPerComponentPassAgainstReference() {
    perComponent(Float.self)
    perComponent(Double.self)
  }

  private func perComponent<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 602)
    let wide = liftedMaxFeatures + 1
    for (kind, scatter) in [(PrecisionKind.full, MixtureScatter.full), (.full, .diagonal), (.tied, .tied), (.tied, .none)] {
      let c = randomMixture(&rng, n: 12, d: wide, k: 2, kind: kind, scatter: scatter, weights: .someZeros)
      XCTAssertFalse(c.takesLiftedPass)
      checkMixture(T.self, c, options: KernelOptions(threads: 2))
    }
    var i = 0
    for (n, d) in [(1, 1), (37, 2), (300, 5), (50, 17)] {
      for k in [1, 3] {
        for kind in [PrecisionKind.full, .tied] {
          var c = randomMixture(&rng, n: n, d: d, k: k, kind: kind, scatter: .diagonal, weights: i % 2 == 0 ? .none : .someZeros)
          c.wantResponsibilities = i % 3 != 1
          XCTAssertFalse(c.takesLiftedPass)
          checkMixture(T.self, c)
          i += 1
        }
        for kind in [PrecisionKind.diagonal, .spherical] {
          for scatter in allScatters {
            var c = randomMixture(&rng, n: n, d: d, k: k, kind: kind, scatter: scatter, weights: i % 2 == 0 ? .none : .someZeros)
            c.wantScores = i % 3 != 1
            c.wantResponsibilities = i % 4 != 3
            XCTAssertFalse(c.takesLiftedPass)
            checkMixture(T.self, c)
            i += 1
          }
        }
      }
    }
  }

  /// The lifted pass itself is right beyond the features it is chosen for.
  func testLiftedPassBeyondItsDispatchLimit() {
    liftedWide(Float.self)
    liftedWide(Double.self)
  }

  private func liftedWide<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 603)
    for (kind, scatter) in [(PrecisionKind.full, MixtureScatter.full), (.tied, .tied)] {
      var c = randomMixture(&rng, n: 10, d: liftedMaxFeatures + 1, k: 2, kind: kind, scatter: scatter, weights: .someZeros)
      c.forceLifted = true
      checkMixture(T.self, c, options: KernelOptions(threads: 2))
    }
  }

  /// Separated components: most responsibilities lie far below `negligibleWeight` without
  /// being zero, and the second moments skip them (the lifted pass then sums its products by
  /// AXPYs instead of a GEMM). The first third of the rows lie midway between two neighbouring means
  /// (two significant responsibilities of five: those blocks keep the GEMM), the rest near
  /// one mean; the outputs must stay within rounding of the reference, which sums them all.
  func testSeparatedComponentsSkipNegligibleResponsibilities() {
    separated(Float.self)
    separated(Double.self)
  }

  private func separated<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 611)
    let k = 5
    // One significant responsibility of K per row must be sparse enough for the AXPYs.
    XCTAssertGreaterThanOrEqual(k, sparseStatisticsRatio)
    let cases: [(Int, Int, PrecisionKind, MixtureScatter)] = [
      (900, 4, .full, .full), (900, 7, .tied, .tied), (300, liftedMaxFeatures + 1, .full, .full), (900, 6, .diagonal, .diagonal),
    ]
    for (n, d, kind, scatter) in cases {
      let midway = n / 3
      var c = randomMixture(&rng, n: n, d: d, k: k, kind: kind, scatter: scatter)
      // Neighbouring means ½·λ·spacing²·d ≈ 140–280 apart in log-density: e^−280 is not 0.
      let spacing = (560 / Double(d)).squareRoot()
      c.means = (0..<(k * d)).map { Double($0 / d) * spacing }
      c.x = (0..<n).flatMap { i -> [Double] in
        let j = i % k
        let centre = i < midway ? (Double(j % (k - 1)) + 0.5) * spacing : Double(j) * spacing
        return (0..<d).map { _ in centre + rng.uniform(-0.5, 0.5) }
      }
      guard let run = runMixture(T.self, c, options: KernelOptions(threads: 2)) else { continue }
      let r = run.want.responsibilities.values
      let kept = { (rows: Range<Int>) in rows.flatMap { i in r[(i * k)..<((i + 1) * k)] }.filter { $0 >= negligibleWeight }.count }
      let skipped = (midway * k..<(n * k)).filter { r[$0] > 0 && r[$0] < negligibleWeight }.count
      let context = "\(T.self) d=\(d) \(kind)"
      XCTAssertEqual(kept(midway..<n), n - midway, "\(context): one significant responsibility per row near a mean")
      XCTAssertGreaterThanOrEqual(kept(0..<midway), 2 * midway, "\(context): two per row midway")
      XCTAssertGreaterThan(skipped, n - midway, "\(context): negligible responsibilities that are not zero")
      checkMixture(T.self, c, options: KernelOptions(threads: 2))
    }
  }

  /// Full and tied mixtures up to liftedMaxFeatures features take the lifted pass: with one
  /// thread (a fixed summation order) mixturePass gives the lifted pass's results to the bit.
  func testFullAndTiedMixturesOfFewFeaturesTakeTheLiftedPass() {
    dispatch(Float.self)
    dispatch(Double.self)
  }

  private func dispatch<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 604)
    for (d, kind, scatter) in [(5, PrecisionKind.full, MixtureScatter.full), (9, .tied, .tied), (liftedMaxFeatures, .full, .none)] {
      var c = randomMixture(&rng, n: d > 10 ? 12 : 40, d: d, k: 3, kind: kind, scatter: scatter, weights: .someZeros)
      guard let dispatched = runMixture(T.self, c, options: KernelOptions(threads: 1)) else { continue }
      c.forceLifted = true
      guard let lifted = runMixture(T.self, c, options: KernelOptions(threads: 1)) else { continue }
      let context = "\(T.self) d=\(d) \(kind) scatter \(scatter)"
      XCTAssertEqual(dispatched.stats.logLikelihood.bitPattern, lifted.stats.logLikelihood.bitPattern, context)
      XCTAssertNil(firstBitwiseDifference(dispatched.stats.counts, lifted.stats.counts), context)
      XCTAssertNil(firstBitwiseDifference(dispatched.stats.firstMoments, lifted.stats.firstMoments), context)
      XCTAssertNil(firstBitwiseDifference(dispatched.stats.scatter, lifted.stats.scatter), context)
      XCTAssertNil(firstBitwiseDifference(dispatched.scores ?? [], lifted.scores ?? []), context)
      XCTAssertNil(firstBitwiseDifference(dispatched.responsibilities ?? [], lifted.responsibilities ?? []), context)
    }
  }

  /// One component over integer data, sizes that do not divide the block, a memory limit
  /// that forces many small blocks, 1, 2 and 3 threads: every output must be exact.
  func testBlocksAndThreadsExact() {
    blocksExact(Float.self)
    blocksExact(Double.self)
  }

  private func blocksExact<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 605)
    let d = 6
    let e = MemoryLayout<T>.stride
    let limit = smallMixtureLimit(k: 1, d: d, elementSize: e)
    let maxRowsPerBlock = limit / (d * e)
    let configurations: [(PrecisionKind, MixtureScatter)] = [(.full, .full), (.tied, .tied), (.full, .diagonal), (.diagonal, .full), (.spherical, .tied)]
    for n in [1, 7, 513, 2049 + 3] {
      for threads in [1, 2, 3] {
        for (j, (kind, scatter)) in configurations.enumerated() {
          var c = exactMixture(&rng, n: n, d: d, kind: kind, scatter: scatter, weighted: (n + j) % 2 == 0)
          c.wantResponsibilities = j % 2 == 0
          let rows = AtomicCounter()
          let calls = AtomicCounter()
          checkMixtureExact(T.self, c, options: progressOptions(threads: threads, memoryLimit: limit, rows: rows, calls: calls))
          let context = "\(T.self) \(c.description) threads=\(threads)"
          // Rows of weight 0 are skipped without per-row outputs, but their blocks still count.
          XCTAssertEqual(rows.value, n, "\(context): rows reported")
          XCTAssertGreaterThanOrEqual(
            calls.value, (n + maxRowsPerBlock - 1) / maxRowsPerBlock, "\(context): too few blocks for memory_limit=\(limit)")
        }
      }
    }
  }

  /// Full and tied scatter where the workers' own d × d sums do not fit the memory limit:
  /// one worker, threaded BLAS, S2 accumulated in the statistics buffer (float64 by SYRK into
  /// it, float32 through tiles); the precisions by the strip method. Integer data: exact.
  func testSecondMomentsInTheOutput() {
    secondMomentsInOutput(Float.self)
    secondMomentsInOutput(Double.self)
  }

  private func secondMomentsInOutput<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 611)
    let d = 261
    // One d × d of Double and room for rows: not the workers' own sums.
    let limit = d * d * MemoryLayout<Double>.stride + 64 * d * MemoryLayout<Double>.stride
    for (kind, scatter) in [(PrecisionKind.full, MixtureScatter.full), (.tied, .tied)] {
      let c = exactMixture(&rng, n: mixtureBlockRows + 9, d: d, kind: kind, scatter: scatter, weighted: true)
      checkMixtureExact(T.self, c, options: KernelOptions(threads: 2, memoryLimit: limit))
    }
  }

  /// Several components over many small blocks and 1, 2 and 3 threads, against the reference.
  func testBlocksAndThreads() {
    blocks(Float.self)
    blocks(Double.self)
  }

  private func blocks<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 606)
    let (n, d, k) = (2 * mixtureBlockRows + 5, 4, 3)
    let limit = smallMixtureLimit(k: k, d: d, elementSize: MemoryLayout<T>.stride)
    for (kind, scatter) in [(PrecisionKind.full, MixtureScatter.full), (.tied, .tied), (.diagonal, .diagonal), (.full, .diagonal)] {
      let c = randomMixture(&rng, n: n, d: d, k: k, kind: kind, scatter: scatter, weights: .someZeros)
      for threads in [1, 2, 3] {
        checkMixture(T.self, c, options: KernelOptions(threads: threads, memoryLimit: limit))
      }
      checkMixture(T.self, c, options: KernelOptions(threads: nil))
      // Every worker takes blocks (as many as the CPUs run at once): the workers' statistics
      // must be added up.
      let workers = WorkerThreads()
      checkMixture(T.self, c, options: spreadingOptions(threads: 3, workers: workers))
      XCTAssertGreaterThanOrEqual(workers.count, min(3, KernelOptions.availableCPUs), "\(T.self) \(kind) scatter \(scatter): threads that took blocks")
    }
  }

  /// Every storage layout of X and resp_out, crossed; the means, the precisions and the
  /// vectors in every layout in turn; both paths and every kind of precisions.
  func testEveryLayout() {
    layouts(Float.self)
    layouts(Double.self)
  }

  private func layouts<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 607)
    let all = MatrixLayout.all
    let vectors = VectorLayout.all
    let kinds = PrecisionKind.allCases
    var i = 0
    for xLayout in all {
      for respLayout in all {
        let kind = kinds[i % kinds.count]
        let scatter = allScatters[(i / kinds.count) % allScatters.count]
        var c = randomMixture(&rng, n: 15, d: 4, k: 2, kind: kind, scatter: scatter, weights: i % 3 == 0 ? .none : .someZeros)
        c.xLayout = xLayout
        c.respLayout = respLayout
        c.meansLayout = all[(i / 2) % all.count]
        c.precisionsLayout = all[(i / 3) % all.count]
        c.vectorLayout = vectors[i % vectors.count]
        checkMixture(T.self, c)
        checkMixture(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallMixtureLimit(k: 2, d: 4, elementSize: MemoryLayout<T>.stride)))
        i += 1
      }
    }
  }

  /// Sample weights with zeros: per-row outputs cover every row, the statistics only the
  /// weighted ones; NaN rows of weight 0 are skipped when no per-row output is asked for;
  /// all-zero weights give exactly zero statistics.
  func testSampleWeightsWithZeros() {
    sampleWeights(Float.self)
    sampleWeights(Double.self)
  }

  private func sampleWeights<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 608)
    let (n, d, k) = (200, 5, 3)
    let paths: [(PrecisionKind, MixtureScatter)] = [(.full, .full), (.tied, .tied), (.full, .diagonal), (.diagonal, .full), (.spherical, .tied)]
    for (kind, scatter) in paths {
      // Zeros among positive weights, with responsibilities and scores of every row.
      let c = randomMixture(&rng, n: n, d: d, k: k, kind: kind, scatter: scatter, weights: .someZeros)
      checkMixture(T.self, c, options: KernelOptions(threads: 2))
      if let run = runMixture(T.self, c) {
        let zeroRows = (0..<n).filter { c.weights![$0] == 0 }
        XCTAssertFalse(zeroRows.isEmpty)
        XCTAssertTrue(zeroRows.allSatisfy { !(run.scores![$0].isNaN) }, "\(T.self) \(c.description): rows of weight 0 have no score")
      }

      // NaN in rows of weight 0, no per-row outputs: those rows never enter.
      var poisoned = c
      poisoned.wantResponsibilities = false
      poisoned.wantScores = false
      let zeroRows = (0..<n).filter { c.weights![$0] == 0 }
      for i in zeroRows.prefix(5) { poisoned.x[i * d + 1] = .nan }
      var kept = c
      let keep = (0..<n).filter { c.weights![$0] != 0 }
      kept.n = keep.count
      kept.x = keep.flatMap { i in c.x[(i * d)..<(i * d + d)] }
      kept.weights = keep.map { c.weights![$0] }
      kept.wantResponsibilities = false
      kept.wantScores = false
      for threads in [1, 3] {
        guard let run = runMixture(T.self, poisoned, options: KernelOptions(threads: threads)) else { continue }
        let want = runMixture(T.self, kept)!.want
        let sums = mixtureBounds(T.self, c).sums
        let context = "\(T.self) \(poisoned.description) threads=\(threads), NaN rows of weight 0"
        XCTAssertNil(firstMismatch([run.stats.logLikelihood], want.logLikelihood, bound: sums), "\(context): log-likelihood")
        XCTAssertNil(firstMismatch(run.stats.counts, want.counts, bound: sums), "\(context): N")
        XCTAssertNil(firstMismatch(run.stats.firstMoments, want.firstMoments, bound: sums), "\(context): S1")
        XCTAssertNil(firstMismatch(run.stats.scatter, want.scatter, bound: sums), "\(context): S2")
      }

      // All weights zero: every statistic exactly 0; per-row outputs still computed.
      var zero = randomMixture(&rng, n: n, d: d, k: k, kind: kind, scatter: scatter, weights: .allZero)
      for wantRows in [false, true] {
        zero.wantResponsibilities = wantRows
        zero.wantScores = wantRows
        guard let run = runMixture(T.self, zero, options: KernelOptions(threads: 2)) else { continue }
        let context = "\(T.self) \(zero.description): all weights 0"
        XCTAssertEqual(run.stats.logLikelihood, 0, context)
        XCTAssertNil(firstDifference(run.stats.counts, [Double](repeating: 0, count: k)), context)
        XCTAssertNil(firstDifference(run.stats.firstMoments, [Double](repeating: 0, count: k * d)), context)
        XCTAssertNil(firstDifference(run.stats.scatter, [Double](repeating: 0, count: scatterCount(scatter, k: k, d: d))), context)
        if wantRows {
          XCTAssertNil(firstMismatch(run.scores!, run.want.scores, bound: mixtureBounds(T.self, zero).perRow), context)
        }
      }
    }
  }

  /// A tied model: one precision matrix passed K times as the same view, on both paths,
  /// with the tied scatter and the others.
  func testTiedModelAsOneViewKTimes() {
    tied(Float.self)
    tied(Double.self)
  }

  private func tied<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 609)
    for d in [6, liftedMaxFeatures + 1] {
      for scatter in allScatters {
        let c = randomMixture(&rng, n: d > 10 ? 10 : 250, d: d, k: 4, kind: .tied, scatter: scatter, weights: .someZeros)
        checkMixture(T.self, c, options: KernelOptions(threads: 2))
      }
    }
    // One component: the tied and the full scatter are the same matrix, to the bit.
    let c = randomMixture(&rng, n: 300, d: 7, k: 1, kind: .tied, scatter: .tied)
    var full = c
    full.scatter = .full
    if let a = runMixture(T.self, c, options: KernelOptions(threads: 1)), let b = runMixture(T.self, full, options: KernelOptions(threads: 1)) {
      XCTAssertNil(firstBitwiseDifference(a.stats.scatter, b.stats.scatter), "\(T.self): K=1 tied vs full scatter")
    }
  }

  /// A spherical model: K precisions viewed as K × d through a zero column stride.
  func testSphericalModelByZeroColumnStride() {
    spherical(Float.self)
    spherical(Double.self)
  }

  private func spherical<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 610)
    for scatter in allScatters {
      for vectorLayout in VectorLayout.all {
        var c = randomMixture(&rng, n: 120, d: 6, k: 3, kind: .spherical, scatter: scatter, weights: .someZeros)
        c.vectorLayout = vectorLayout
        checkMixture(T.self, c, options: KernelOptions(threads: 3))
      }
    }
  }

  /// Data 1e3 from the origin, means near it: the statistics are centred at the means, and
  /// must be as accurate as for centred data (the magnitudes leave the offset out).
  func testMeanOffset() {
    meanOffset(Float.self)
    meanOffset(Double.self)
  }

  private func meanOffset<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 611)
    let paths: [(PrecisionKind, MixtureScatter)] = [
      (.full, .full), (.tied, .tied), (.full, .diagonal), (.diagonal, .full), (.diagonal, .diagonal), (.spherical, .tied),
    ]
    for (kind, scatter) in paths {
      let c = randomMixture(&rng, n: 400, d: 6, k: 3, kind: kind, scatter: scatter, weights: .someZeros, offset: 1e3)
      checkMixture(T.self, c)
      checkMixture(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallMixtureLimit(k: 3, d: 6, elementSize: MemoryLayout<T>.stride)))
    }
    let wide = randomMixture(&rng, n: 10, d: liftedMaxFeatures + 1, k: 2, kind: .full, scatter: .full, offset: 1e3)
    checkMixture(T.self, wide, options: KernelOptions(threads: 2))
    // Tied mixtures of enough components for the tied pass (and, under the small limit, the
    // passes it falls back to).
    for scatter in [MixtureScatter.tied, .none] {
      let c = randomMixture(&rng, n: 400, d: 6, k: tiedMinComponents + 1, kind: .tied, scatter: scatter, weights: .someZeros, offset: 1e3)
      XCTAssertTrue(c.takesTiedPass)
      checkMixture(T.self, c)
      checkMixture(T.self, c, options: KernelOptions(threads: 2, memoryLimit: smallMixtureLimit(k: c.k, d: 6, elementSize: MemoryLayout<T>.stride)))
    }
  }

  func testEmptyAndDegenerateShapes() {
    empty(Float.self)
    empty(Double.self)
  }

  private func empty<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 612)
    // n = 0: every statistic is an empty sum, exactly 0.
    for kind in PrecisionKind.allCases {
      for scatter in allScatters {
        let c = randomMixture(&rng, n: 0, d: 3, k: 2, kind: kind, scatter: scatter)
        guard let run = runMixture(T.self, c, options: KernelOptions(threads: 2)) else { continue }
        let context = "\(T.self) \(c.description)"
        XCTAssertEqual(run.stats.logLikelihood, 0, context)
        XCTAssertEqual(run.stats.counts, [0, 0], context)
        XCTAssertEqual(run.stats.firstMoments, [Double](repeating: 0, count: 6), context)
        XCTAssertEqual(run.stats.scatter, [Double](repeating: 0, count: scatterCount(scatter, k: 2, d: 3)), context)
      }
    }
    // K = 1 and d = 1 on both paths.
    for n in [1, 9, 600] {
      for (kind, scatter) in [(PrecisionKind.full, MixtureScatter.full), (.full, .diagonal), (.spherical, .tied), (.tied, .none)] {
        checkMixture(T.self, randomMixture(&rng, n: n, d: 1, k: 1, kind: kind, scatter: scatter, weights: .someZeros))
        checkMixture(T.self, randomMixture(&rng, n: n, d: 1, k: 4, kind: kind, scatter: scatter))
        checkMixtureExact(T.self, exactMixture(&rng, n: n, d: 1, kind: kind, scatter: scatter, weighted: true))
      }
    }
  }

  /// d = 0: every log-density is its log-norm; no first or second moments. Nothing may call
  /// BLAS with an illegal argument (OpenBLAS reports that by printing, other BLAS
  /// libraries by ending the process).
  func testNoFeatures() {
    noFeatures(Float.self)
    noFeatures(Double.self)
  }

  private func noFeatures<T: KernelScalar>(_: T.Type) {
    let (n, k) = (5, 2)
    for kind in PrecisionKind.allCases {
      for scatter in allScatters {
        let x = TestMatrix<T>(rows: n, cols: 0)
        let logNorm = TestVector<T>(values: [-1, -2])
        let means = TestMatrix<T>(rows: k, cols: 0)
        let storage = TestMatrix<T>(rows: kind == .full || kind == .tied ? 0 : k, cols: 0)
        let sphere = TestVector<T>(values: [1, 2])
        let resp = TestMatrix<T>(rows: n, cols: k)
        let scores = TestVector<T>(count: n)
        defer { withExtendedLifetime((x, logNorm, means, storage, sphere, resp, scores)) {} }
        let precisions: MixturePrecisions<T>
        switch kind {
        case .full, .tied: precisions = .matrices([StridedMatrix<T>](repeating: storage.view, count: k))
        case .diagonal: precisions = .diagonal(storage.view)
        case .spherical:
          precisions = .diagonal(StridedMatrix(base: sphere.view.base, rows: k, cols: 0, rowStride: sphere.view.stride, colStride: 0))
        }
        var result: Result<MixtureStatistics, KernelError>?
        let printed = capturedOutput {
          do throws(KernelError) {
            result = .success(
              try mixturePass(
                x.view, logNorm: logNorm.view, means: means.view, precisions: precisions, scatter: scatter,
                responsibilities: resp.view, scores: scores.view, options: KernelOptions(threads: 1)))
          } catch {
            result = .failure(error)
          }
        }
        let context = "\(T.self) d=0 \(kind) scatter \(scatter)"
        XCTAssertEqual(printed, "", "\(context): the call printed")
        guard case .success(let stats)? = result else {
          XCTFail("\(context): \(String(describing: result))")
          continue
        }
        let want = referenceMixturePass(
          x: [], rows: n, cols: 0, sampleWeights: nil, logNorm: logNorm.values, means: [], precisions: [[], []], scatter: scatter)
        let c = MixtureCase(
          n: n, d: 0, k: k, x: [], weights: nil, logNorm: logNorm.values, means: [], precisions: [], kind: kind, scatter: scatter)
        let (perRow, sums) = mixtureBounds(T.self, c)
        XCTAssertNil(firstMismatch(scores.values, want.scores, bound: perRow), context)
        XCTAssertNil(firstMismatch(resp.values, want.responsibilities, bound: perRow), context)
        XCTAssertNil(firstMismatch([stats.logLikelihood], want.logLikelihood, bound: sums), context)
        XCTAssertNil(firstMismatch(stats.counts, want.counts, bound: sums), context)
        XCTAssertEqual(stats.firstMoments, [], context)
        XCTAssertEqual(stats.scatter, [], context)
      }
    }
  }

  func testShapeMismatchesThrow() {
    shapeMismatches(Float.self)
    shapeMismatches(Double.self)
  }

  private func shapeMismatches<T: KernelScalar>(_: T.Type) {
    let (n, d, k) = (10, 4, 3)
    let x = TestMatrix<T>(rows: n, cols: d, values: [Double](repeating: 1, count: n * d))
    let logNorm = TestVector<T>(values: [Double](repeating: -1, count: k))
    let noComponents = TestVector<T>(values: [])
    let means = TestMatrix<T>(rows: k, cols: d, values: [Double](repeating: 0, count: k * d))
    let fewMeans = TestMatrix<T>(rows: k - 1, cols: d, values: [Double](repeating: 0, count: (k - 1) * d))
    let narrowMeans = TestMatrix<T>(rows: k, cols: d - 1, values: [Double](repeating: 0, count: k * (d - 1)))
    let qs = TestMatrix<T>(rows: k * d, cols: d, values: [Double](repeating: 1, count: k * d * d))
    let wide = TestMatrix<T>(rows: d, cols: d + 1, values: [Double](repeating: 1, count: d * (d + 1)))
    let noMeans = TestMatrix<T>(rows: 0, cols: d)
    let shortWeights = TestVector<T>(values: [Double](repeating: 1, count: n - 1))
    let negativeWeight = TestVector<T>(values: (0..<n).map { $0 == 7 ? -0.5 : 1 })
    defer {
      withExtendedLifetime((x, logNorm, noComponents, noMeans, means, fewMeans, narrowMeans, qs, wide, shortWeights, negativeWeight)) {}
    }
    var badQs = qs.rowBlocks(k)
    badQs[1] = wide.view

    func attempt(
      _ name: String, logNorm ln: StridedVector<T>? = nil, means m: StridedMatrix<T>? = nil,
      precisions p: MixturePrecisions<T>? = nil, weights w: StridedVector<T>? = nil,
      resp: (Int, Int) = (n, k), scores: Int = n
    ) {
      let r = TestMatrix<T>(rows: resp.0, cols: resp.1)
      let s = TestVector<T>(count: scores)
      defer { withExtendedLifetime((r, s)) {} }
      for scatter in allScatters {
        let error = thrownError { () throws(KernelError) in
          _ = try mixturePass(
            x.view, sampleWeights: w, logNorm: ln ?? logNorm.view, means: m ?? means.view,
            precisions: p ?? .matrices(qs.rowBlocks(k)), scatter: scatter, responsibilities: r.view, scores: s.view)
        }
        assertInvalidArgument(error, mentions: name, "\(T.self) mixturePass scatter \(scatter) with a wrong \(name)")
      }
      XCTAssertTrue(r.untouched() && s.untouched(), "\(T.self): an output was written before the \(name) check")
    }
    attempt("log_norm", logNorm: noComponents.view, means: noMeans.view, precisions: .matrices([]), resp: (n, 0))
    attempt("means", means: fewMeans.view)
    attempt("means", means: narrowMeans.view)
    attempt("precisions", precisions: .matrices(Array(qs.rowBlocks(k).prefix(2))))
    attempt("precisions[1]", precisions: .matrices(badQs))
    attempt("diagonal precisions", precisions: .diagonal(qs.view))
    attempt("diagonal precisions", precisions: .diagonal(fewMeans.view))
    attempt("sample_weight", weights: shortWeights.view)
    attempt("non-negative", weights: negativeWeight.view)
    attempt("resp_out", resp: (n, k + 1))
    attempt("resp_out", resp: (n - 1, k))
    attempt("score_out", scores: n + 1)
  }

  func testMemoryLimitTooSmallThrows() {
    tooSmall(Float.self)
    tooSmall(Double.self)
  }

  private func tooSmall<T: KernelScalar>(_: T.Type) {
    var rng = SplitMix64(seed: 613)
    for (kind, scatter) in [(PrecisionKind.full, MixtureScatter.full), (.full, .diagonal), (.diagonal, .full)] {
      let c = randomMixture(&rng, n: 100, d: 8, k: 2, kind: kind, scatter: scatter)
      // Any plan keeps at least one row of d values.
      for limit in [0, 1, 64, 8 * MemoryLayout<T>.stride - 1] {
        for threads in [1, 3] {
          let x = TestMatrix<T>(rows: c.n, cols: c.d, values: c.x)
          let logNorm = TestVector<T>(values: c.logNorm)
          let means = TestMatrix<T>(rows: c.k, cols: c.d, values: c.means)
          let p = TestMatrix<T>(rows: kind == .full ? c.k * c.d : c.k, cols: c.d, values: c.precisions)
          let resp = TestMatrix<T>(rows: c.n, cols: c.k)
          let scores = TestVector<T>(count: c.n)
          defer { withExtendedLifetime((x, logNorm, means, p, resp, scores)) {} }
          let error = thrownError { () throws(KernelError) in
            _ = try mixturePass(
              x.view, logNorm: logNorm.view, means: means.view,
              precisions: kind == .full ? .matrices(p.rowBlocks(c.k)) : .diagonal(p.view), scatter: scatter,
              responsibilities: resp.view, scores: scores.view, options: KernelOptions(threads: threads, memoryLimit: limit))
          }
          assertInvalidArgument(error, mentions: "memory_limit", "\(T.self) \(c.description) memoryLimit=\(limit) threads=\(threads)")
          XCTAssertTrue(resp.untouched() && scores.untouched(), "\(T.self) memoryLimit=\(limit): an output was written")
        }
      }
    }
  }
}
