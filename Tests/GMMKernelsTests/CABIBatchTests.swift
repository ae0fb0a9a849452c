// The C contract of gmk_quadform_many, gmk_weighted_gram_many, gmk_weighted_sum,
// gmk_matmul, gmk_outer and gmk_mixture_pass, called through their C declarations
// (module _GMKSupport) as C and ctypes callers reach them.

@testable import GMMKernels
import XCTest
import _GMKSupport
import _GMKTestSupport

/// A (K, rows / K, cols) descriptor of the K stacked matrices of `m` (see `rowBlocks`).
func descriptor<T: KernelScalar>(stacked m: TestMatrix<T>, count k: Int) -> gmk_array {
  descriptor(
    m.view.base, dtype: T.self == Float.self ? float32Code : float64Code,
    shape: [Int64(k), Int64(m.rows / k), Int64(m.cols)],
    strides: [Int64(m.rows / k * m.view.rowStride), Int64(m.view.rowStride), Int64(m.view.colStride)])
}

/// Calls `body` with pointers to copies of `arrays` (nil for a NULL pointer) and `options`.
func withArrayPointers<R>(
  _ arrays: [gmk_array?], _ options: gmk_options?,
  _ body: ([UnsafePointer<gmk_array>?], UnsafePointer<gmk_options>?) -> R
) -> R {
  let storage = UnsafeMutablePointer<gmk_array>.allocate(capacity: max(arrays.count, 1))
  defer { storage.deallocate() }
  var pointers: [UnsafePointer<gmk_array>?] = []
  for (i, a) in arrays.enumerated() {
    if let a {
      (storage + i).initialize(to: a)
      pointers.append(UnsafePointer(storage + i))
    } else {
      pointers.append(nil)
    }
  }
  guard var o = options else { return body(pointers, nil) }
  return withUnsafePointer(to: &o) { body(pointers, $0) }
}

func callQuadformMany(_ x: gmk_array?, _ qs: gmk_array?, _ centers: gmk_array?, _ out: gmk_array?, _ o: gmk_options? = nil) -> Int32 {
  withArrayPointers([x, qs, centers, out], o) { p, o in _GMKSupport.gmk_quadform_many(p[0], p[1], p[2], p[3], o) }
}

func callGramMany(_ x: gmk_array?, _ r: gmk_array?, _ centers: gmk_array?, _ out: gmk_array?, _ o: gmk_options? = nil) -> Int32 {
  withArrayPointers([x, r, centers, out], o) { p, o in _GMKSupport.gmk_weighted_gram_many(p[0], p[1], p[2], p[3], o) }
}

func callWeightedSum(_ x: gmk_array?, _ r: gmk_array?, _ out: gmk_array?, _ o: gmk_options? = nil) -> Int32 {
  withArrayPointers([x, r, out], o) { p, o in _GMKSupport.gmk_weighted_sum(p[0], p[1], p[2], o) }
}

func callMatmul(_ a: gmk_array?, _ b: gmk_array?, _ out: gmk_array?, _ o: gmk_options? = nil) -> Int32 {
  withArrayPointers([a, b, out], o) { p, o in _GMKSupport.gmk_matmul(p[0], p[1], p[2], o) }
}

func callOuter(_ y: gmk_array?, _ x: gmk_array?, _ out: gmk_array?, _ o: gmk_options? = nil) -> Int32 {
  withArrayPointers([y, x, out], o) { p, o in _GMKSupport.gmk_outer(p[0], p[1], p[2], o) }
}

func callMixturePass(
  _ x: gmk_array?, _ w: gmk_array?, _ logNorm: gmk_array?, _ means: gmk_array?, _ precisions: gmk_array?,
  _ scatter: Int32, _ resp: gmk_array?, _ score: gmk_array?, _ stats: gmk_array?, _ o: gmk_options? = nil
) -> Int32 {
  withArrayPointers([x, w, logNorm, means, precisions, resp, score, stats], o) { p, o in
    _GMKSupport.gmk_mixture_pass(p[0], p[1], p[2], p[3], p[4], scatter, p[5], p[6], p[7], o)
  }
}

/// The C code of a scatter.
func scatterCode(_ s: MixtureScatter) -> Int32 {
  switch s {
  case .none: return Int32(GMK_SCATTER_NONE.rawValue)
  case .full: return Int32(GMK_SCATTER_FULL.rawValue)
  case .tied: return Int32(GMK_SCATTER_TIED.rawValue)
  case .diagonal: return Int32(GMK_SCATTER_DIAGONAL.rawValue)
  }
}

/// A small problem in T for the batch kernels and the mixture pass, each operand in its
/// own layout: X (n × d), K matrices, centers, R, a B for matmul, vectors for outer, a
/// K-component mixture, and every output.
final class BatchProblem<T: KernelScalar> {
  let n: Int
  let d: Int
  let k: Int
  let m = 4
  let x: TestMatrix<T>
  let qs: TestMatrix<T>
  let centers: TestMatrix<T>
  let r: TestMatrix<T>
  let b: TestMatrix<T>
  let y: TestVector<T>
  let xs: TestVector<T>
  let forms: TestMatrix<T>
  let grams: TestMatrix<T>
  let sums: TestMatrix<T>
  let product: TestMatrix<T>
  let outer: TestMatrix<T>
  // The mixture: means are `centers`, precisions stacked like `qs`.
  let mixture: MixtureCase
  let weights: TestVector<T>
  let logNorm: TestVector<T>
  let precisions: TestMatrix<T>
  let resp: TestMatrix<T>
  let scores: TestVector<T>

  init(n: Int = 37, d: Int = 5, k: Int = 3, seed: UInt64 = 701, xLayout: MatrixLayout = .cOrder) {
    var rng = SplitMix64(seed: seed)
    self.n = n
    self.d = d
    self.k = k
    var c = randomMixture(&rng, n: n, d: d, k: k, kind: .full, scatter: .full, weights: .someZeros)
    c.xLayout = xLayout
    mixture = c
    x = TestMatrix(rows: n, cols: d, layout: xLayout, values: c.x)
    qs = TestMatrix(rows: k * d, cols: d, layout: .fortranOrder, values: rng.uniform(count: k * d * d, -1, 1))
    centers = TestMatrix(rows: k, cols: d, layout: .reversedBoth, values: c.means)
    r = TestMatrix(rows: n, cols: k, layout: .everyOtherColumn, values: rng.uniform(count: n * k, -1, 1))
    b = TestMatrix(rows: d, cols: m, layout: .fortranOrder, values: rng.uniform(count: d * m, -1, 1))
    y = TestVector(layout: .reversed, values: rng.uniform(count: n, -1, 1))
    xs = TestVector(layout: .unaligned(byteOffset: 5), values: rng.uniform(count: m, -1, 1))
    forms = TestMatrix(rows: n, cols: k, layout: .unaligned(byteOffset: 3))
    grams = TestMatrix(rows: k * d, cols: d, layout: .cOrder)
    sums = TestMatrix(rows: k, cols: d, layout: .fortranOrder)
    product = TestMatrix(rows: n, cols: m, layout: .reversedRows)
    outer = TestMatrix(rows: n, cols: m, layout: .paddedRows)
    weights = TestVector(layout: .everyOther, values: c.weights!)
    logNorm = TestVector(values: c.logNorm)
    precisions = TestMatrix(rows: k * d, cols: d, layout: .reversedRows, values: c.precisions)
    resp = TestMatrix(rows: n, cols: k, layout: .fortranOrder)
    scores = TestVector(count: n, layout: .unaligned(byteOffset: 1))
  }

  var dx: gmk_array { descriptor(x) }
  var dqs: gmk_array { descriptor(stacked: qs, count: k) }
  var dcenters: gmk_array { descriptor(centers) }
  var dr: gmk_array { descriptor(r) }
  var db: gmk_array { descriptor(b) }
  var dy: gmk_array { descriptor(y) }
  var dxs: gmk_array { descriptor(xs) }
  var dforms: gmk_array { descriptor(forms) }
  var dgrams: gmk_array { descriptor(stacked: grams, count: k) }
  var dsums: gmk_array { descriptor(sums) }
  var dproduct: gmk_array { descriptor(product) }
  var douter: gmk_array { descriptor(outer) }
  var dweights: gmk_array { descriptor(weights) }
  var dlogNorm: gmk_array { descriptor(logNorm) }
  var dprecisions: gmk_array { descriptor(stacked: precisions, count: k) }
  var dresp: gmk_array { descriptor(resp) }
  var dscores: gmk_array { descriptor(scores) }

  /// A float64 stats_out of `count` elements (NaN until written).
  func statsOut(_ count: Int) -> TestVector<Double> { TestVector<Double>(count: count, layout: .everyOther) }

  func statsCount(_ scatter: MixtureScatter) -> Int { 1 + k + k * d + scatterCount(scatter, k: k, d: d) }

  var qsMatrices: [[Double]] {
    let v = qs.values
    return (0..<k).map { Array(v[($0 * d * d)..<(($0 + 1) * d * d)]) }
  }

  func formsMismatch() -> String? {
    let want = referenceQuadformMany(x: x.values, rows: n, cols: d, qs: qsMatrices, centers: centers.values)
    return firstMismatch(forms.values, want, bound: roundingBound(T.self, terms: 2 * d))
  }

  func gramsMismatch() -> String? {
    let want = referenceWeightedGramMany(x: x.values, rows: n, cols: d, r: r.values, components: k, centers: centers.values)
    return firstMismatch(grams.values, want, bound: roundingBound(T.self, terms: n))
  }

  func sumsMismatch() -> String? {
    let want = referenceWeightedSum(x: x.values, rows: n, cols: d, r: r.values, components: k)
    return firstMismatch(sums.values, want, bound: roundingBound(T.self, terms: n))
  }

  func productMismatch() -> String? {
    let want = referenceMatmul(a: x.values, rows: n, inner: d, b: b.values, cols: m)
    return firstMismatch(product.values, want, bound: roundingBound(T.self, terms: d))
  }

  func outerMismatch() -> String? {
    firstBitwiseDifference(outer.values, referenceOuter(T.self, y: y.values, x: xs.values))
  }

  /// The outputs of gmk_mixture_pass against the reference for the mixture `c` (whose
  /// precisions the call was given as `c.kind` says).
  func mixtureMismatch(_ c: MixtureCase, precisionValues: [Double], stats: TestVector<Double>) -> String? {
    let want = referenceMixturePass(
      x: x.values, rows: n, cols: d, sampleWeights: weights.values, logNorm: logNorm.values, means: centers.values,
      precisions: c.precisionMatrices(precisionValues), scatter: c.scatter)
    var withWeights = c
    withWeights.weights = weights.values
    let (perRow, sums) = mixtureBounds(T.self, withWeights)
    let wantStats = Reference(
      values: want.logLikelihood.values + want.counts.values + want.firstMoments.values + want.scatter.values,
      magnitudes: want.logLikelihood.magnitudes + want.counts.magnitudes + want.firstMoments.magnitudes + want.scatter.magnitudes)
    if let m = firstMismatch(stats.values, wantStats, bound: sums) { return "stats_out: \(m)" }
    if let m = firstMismatch(resp.values, want.responsibilities, bound: perRow, absolute: Double(T.leastNonzeroMagnitude) / 2) {
      return "resp_out: \(m)"
    }
    if let m = firstMismatch(scores.values, want.scores, bound: perRow) { return "score_out: \(m)" }
    return nil
  }

  var outputsUntouched: Bool {
    forms.untouched() && grams.untouched() && sums.untouched() && product.untouched() && outer.untouched()
      && resp.untouched() && scores.untouched()
  }
}

final class CABIBatchTests: XCTestCase {
  func testSuccessfulCalls() {
    successfulCalls(Float.self)
    successfulCalls(Double.self)
  }

  private func successfulCalls<T: KernelScalar>(_: T.Type) {
    // The default problem, a Fortran-order X, and K = 1, d = 1.
    for (n, d, k, layout) in [(37, 5, 3, MatrixLayout.cOrder), (40, 4, 2, .fortranOrder), (9, 1, 1, .unaligned(byteOffset: 2))] {
      let p = BatchProblem<T>(n: n, d: d, k: k, xLayout: layout)
      defer { withExtendedLifetime(p) {} }
      let context = "\(T.self) n=\(n) d=\(d) K=\(k) X \(layout)"
      // Options: NULL, defaults, explicit threads and a small memory limit.
      for o in [nil, options(), options(threads: 2, memoryLimit: 1 << 12), options(threads: 3, memoryLimit: 1 << 14)] as [gmk_options?] {
        let c = "\(context) \(String(describing: o))"
        // A failure first, so each success below must clear the message.
        XCTAssertEqual(callQuadformMany(nil, p.dqs, nil, p.dforms), valueError)
        XCTAssertEqual(callQuadformMany(p.dx, p.dqs, p.dcenters, p.dforms, o), ok, "\(c): \(lastError())")
        XCTAssertEqual(lastError(), "", "\(c): a successful call must clear the message")
        XCTAssertNil(p.formsMismatch(), "\(c) gmk_quadform_many")
        XCTAssertEqual(callGramMany(p.dx, p.dr, p.dcenters, p.dgrams, o), ok, "\(c): \(lastError())")
        XCTAssertNil(p.gramsMismatch(), "\(c) gmk_weighted_gram_many")
        XCTAssertEqual(callWeightedSum(p.dx, p.dr, p.dsums, o), ok, "\(c): \(lastError())")
        XCTAssertNil(p.sumsMismatch(), "\(c) gmk_weighted_sum")
        XCTAssertEqual(callMatmul(p.dx, p.db, p.dproduct, o), ok, "\(c): \(lastError())")
        XCTAssertNil(p.productMismatch(), "\(c) gmk_matmul")
        XCTAssertEqual(callOuter(p.dy, p.dxs, p.douter, o), ok, "\(c): \(lastError())")
        XCTAssertNil(p.outerMismatch(), "\(c) gmk_outer")
        XCTAssertEqual(lastError(), "")
      }
      XCTAssertTrue(p.forms.onlyViewChanged() && p.grams.onlyViewChanged() && p.sums.onlyViewChanged(), context)
      XCTAssertTrue(p.product.onlyViewChanged() && p.outer.onlyViewChanged(), context)
      // centers = NULL.
      XCTAssertEqual(callQuadformMany(p.dx, p.dqs, nil, p.dforms), ok, lastError())
      let forms = referenceQuadformMany(x: p.x.values, rows: n, cols: d, qs: p.qsMatrices)
      XCTAssertNil(firstMismatch(p.forms.values, forms, bound: roundingBound(T.self, terms: 2 * d)), "\(context): centers = NULL")
      XCTAssertEqual(callGramMany(p.dx, p.dr, nil, p.dgrams), ok, lastError())
      let grams = referenceWeightedGramMany(x: p.x.values, rows: n, cols: d, r: p.r.values, components: k)
      XCTAssertNil(firstMismatch(p.grams.values, grams, bound: roundingBound(T.self, terms: n)), "\(context): centers = NULL")
    }
  }

  /// gmk_mixture_pass with every scatter code and every form of precisions: (K, d, d)
  /// matrices, one matrix shared through a zero first stride, (K, d) diagonals, and one
  /// value per component through a zero second stride.
  func testMixturePassSucceeds() {
    mixturePass(Float.self)
    mixturePass(Double.self)
  }

  private func mixturePass<T: KernelScalar>(_: T.Type) {
    for (n, d, k) in [(37, 5, 3), (9, 1, 1), (12, liftedMaxFeatures + 1, 2)] {
      let p = BatchProblem<T>(n: n, d: d, k: k, seed: 702)
      let tied = TestMatrix<T>(rows: d, cols: d, layout: .fortranOrder, values: Array(p.mixture.precisions[0..<(d * d)]))
      var rng = SplitMix64(seed: 703)
      let diagonal = TestMatrix<T>(rows: k, cols: d, layout: .everyOtherColumn, values: rng.uniform(count: k * d, 0.3, 2))
      let spherical = TestVector<T>(layout: .reversed, values: rng.uniform(count: k, 0.3, 2))
      defer { withExtendedLifetime((p, tied, diagonal, spherical)) {} }
      let e = T.self == Float.self ? float32Code : float64Code
      let forms: [(PrecisionKind, gmk_array, [Double])] = [
        (.full, p.dprecisions, p.precisions.values),
        (.tied, descriptor(tied.view.base, dtype: e, shape: [Int64(k), Int64(d), Int64(d)],
                           strides: [0, Int64(tied.view.rowStride), Int64(tied.view.colStride)]), tied.values),
        (.diagonal, descriptor(diagonal), diagonal.values),
        (.spherical, descriptor(spherical.view.base, dtype: e, shape: [Int64(k), Int64(d)], strides: [Int64(spherical.view.stride), 0]),
         spherical.values),
      ]
      for (kind, precisions, values) in forms {
        for scatter in allScatters {
          var c = p.mixture
          c.kind = kind
          c.scatter = scatter
          let stats = p.statsOut(p.statsCount(scatter))
          defer { withExtendedLifetime(stats) {} }
          let rowsDone = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
          defer { rowsDone.deallocate() }
          rowsDone.initialize(to: 0)
          let context = "\(T.self) n=\(n) d=\(d) K=\(k) \(kind) scatter \(scatter)"
          let status = callMixturePass(
            p.dx, p.dweights, p.dlogNorm, p.dcenters, precisions, scatterCode(scatter), p.dresp, p.dscores, descriptor(stats),
            options(threads: 2, rowsDone: rowsDone))
          XCTAssertEqual(status, ok, "\(context): \(lastError())")
          XCTAssertEqual(lastError(), "", context)
          XCTAssertEqual(rowsDone.pointee, Int64(n), "\(context): rows_done")
          XCTAssertNil(p.mixtureMismatch(c, precisionValues: values, stats: stats), context)
          XCTAssertTrue(stats.onlyViewChanged() && p.resp.onlyViewChanged() && p.scores.onlyViewChanged(), context)
        }
      }
      // No sample weights, no per-row outputs.
      let stats = p.statsOut(p.statsCount(.tied))
      defer { withExtendedLifetime(stats) {} }
      XCTAssertEqual(
        callMixturePass(p.dx, nil, p.dlogNorm, p.dcenters, p.dprecisions, scatterCode(.tied), nil, nil, descriptor(stats)), ok, lastError())
      var c = p.mixture
      c.weights = nil
      c.scatter = .tied
      let want = referenceMixturePass(
        x: p.x.values, rows: n, cols: d, sampleWeights: nil, logNorm: p.logNorm.values, means: p.centers.values,
        precisions: c.precisionMatrices(p.precisions.values), scatter: .tied)
      let wantStats = Reference(
        values: want.logLikelihood.values + want.counts.values + want.firstMoments.values + want.scatter.values,
        magnitudes: want.logLikelihood.magnitudes + want.counts.magnitudes + want.firstMoments.magnitudes + want.scatter.magnitudes)
      XCTAssertNil(firstMismatch(stats.values, wantStats, bound: mixtureBounds(T.self, c).sums), "\(T.self) d=\(d): no weights, no per-row outputs")
    }
  }

  /// n = 0: every call succeeds with NULL data; sums are written as exact zeros.
  func testNoRows() {
    for e in [float32Code, float64Code] {
      let (d, k) = (3, 2)
      let size: Int64 = e == float32Code ? 4 : 8
      let x = descriptor(nil, dtype: e, shape: [0, Int64(d)], strides: [Int64(d) * size, size])
      let r = descriptor(nil, dtype: e, shape: [0, Int64(k)], strides: [Int64(k) * size, size])
      let empty2 = descriptor(nil, dtype: e, shape: [0, Int64(k)], strides: [Int64(k) * size, size])
      let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1024, alignment: 64)
      defer { buffer.deallocate() }
      buffer.initializeMemory(as: UInt8.self, repeating: 0, count: 1024)
      let qs = descriptor(buffer, dtype: e, shape: [Int64(k), Int64(d), Int64(d)], strides: [0, 0, 0])
      XCTAssertEqual(callQuadformMany(x, qs, nil, empty2), ok, lastError())
      buffer.initializeMemory(as: UInt8.self, repeating: 0xFF, count: 1024)
      let grams = descriptor(buffer, dtype: e, shape: [Int64(k), Int64(d), Int64(d)], strides: [Int64(d * d) * size, Int64(d) * size, size])
      XCTAssertEqual(callGramMany(x, r, nil, grams), ok, lastError())
      let zeros = (0..<(k * d * d)).allSatisfy {
        e == float32Code ? buffer.load(fromByteOffset: 4 * $0, as: Float.self) == 0 : buffer.load(fromByteOffset: 8 * $0, as: Double.self) == 0
      }
      XCTAssertTrue(zeros, "gmk_weighted_gram_many with n = 0 must write zeros")
      buffer.initializeMemory(as: UInt8.self, repeating: 0xFF, count: 1024)
      let sums = descriptor(buffer, dtype: e, shape: [Int64(k), Int64(d)], strides: [Int64(d) * size, size])
      XCTAssertEqual(callWeightedSum(x, r, sums), ok, lastError())
      let sumZeros = (0..<(k * d)).allSatisfy {
        e == float32Code ? buffer.load(fromByteOffset: 4 * $0, as: Float.self) == 0 : buffer.load(fromByteOffset: 8 * $0, as: Double.self) == 0
      }
      XCTAssertTrue(sumZeros, "gmk_weighted_sum with n = 0 must write zeros")
      let b = descriptor(buffer, dtype: e, shape: [Int64(d), 4], strides: [4 * size, size])
      XCTAssertEqual(callMatmul(x, b, descriptor(nil, dtype: e, shape: [0, 4], strides: [4 * size, size])), ok, lastError())
      XCTAssertEqual(
        callOuter(
          descriptor(nil, dtype: e, shape: [0], strides: [size]), descriptor(buffer, dtype: e, shape: [4], strides: [size]),
          descriptor(nil, dtype: e, shape: [0, 4], strides: [4 * size, size])), ok, lastError())
      // The mixture: stats all zero.
      let means = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 64)
      defer { means.deallocate() }
      means.initializeMemory(as: UInt8.self, repeating: 0, count: 256)
      let stats = TestVector<Double>(count: 1 + k + k * d + k * d * d)
      defer { withExtendedLifetime(stats) {} }
      XCTAssertEqual(
        callMixturePass(
          x, nil, descriptor(means, dtype: e, shape: [Int64(k)], strides: [size]),
          descriptor(means, dtype: e, shape: [Int64(k), Int64(d)], strides: [0, 0]),
          descriptor(means, dtype: e, shape: [Int64(k), Int64(d), Int64(d)], strides: [0, 0, 0]), scatterCode(.full),
          empty2, descriptor(nil, dtype: e, shape: [0], strides: [size]), descriptor(stats)), ok, lastError())
      XCTAssertEqual(stats.values, [Double](repeating: 0, count: stats.count), "gmk_mixture_pass with n = 0")
    }
  }

  func testWrongNdim() {
    let p = BatchProblem<Double>()
    defer { withExtendedLifetime(p) {} }
    let stats = p.statsOut(p.statsCount(.full))
    defer { withExtendedLifetime(stats) {} }
    func with(_ a: gmk_array, ndim: Int32) -> gmk_array {
      var b = a
      b.ndim = ndim
      return b
    }
    for ndim: Int32 in [-1, 0, 1, 3, 4] {
      assertFailure(callQuadformMany(with(p.dx, ndim: ndim), p.dqs, nil, p.dforms), valueError, names: "X", "quadform_many X ndim \(ndim)")
      assertFailure(callQuadformMany(p.dx, p.dqs, with(p.dcenters, ndim: ndim), p.dforms), valueError, names: "centers", "centers ndim \(ndim)")
      assertFailure(callQuadformMany(p.dx, p.dqs, nil, with(p.dforms, ndim: ndim)), valueError, names: "out", "quadform_many out ndim \(ndim)")
      assertFailure(callGramMany(with(p.dx, ndim: ndim), p.dr, nil, p.dgrams), valueError, names: "X", "gram_many X ndim \(ndim)")
      assertFailure(callGramMany(p.dx, with(p.dr, ndim: ndim), nil, p.dgrams), valueError, names: "R", "gram_many R ndim \(ndim)")
      assertFailure(callWeightedSum(with(p.dx, ndim: ndim), p.dr, p.dsums), valueError, names: "X", "weighted_sum X ndim \(ndim)")
      assertFailure(callWeightedSum(p.dx, with(p.dr, ndim: ndim), p.dsums), valueError, names: "R", "weighted_sum R ndim \(ndim)")
      assertFailure(callWeightedSum(p.dx, p.dr, with(p.dsums, ndim: ndim)), valueError, names: "out", "weighted_sum out ndim \(ndim)")
      assertFailure(callMatmul(with(p.dx, ndim: ndim), p.db, p.dproduct), valueError, names: "A", "matmul A ndim \(ndim)")
      assertFailure(callMatmul(p.dx, with(p.db, ndim: ndim), p.dproduct), valueError, names: "B", "matmul B ndim \(ndim)")
      assertFailure(callMatmul(p.dx, p.db, with(p.dproduct, ndim: ndim)), valueError, names: "out", "matmul out ndim \(ndim)")
      assertFailure(callOuter(p.dy, p.dxs, with(p.douter, ndim: ndim)), valueError, names: "out", "outer out ndim \(ndim)")
      assertFailure(
        callMixturePass(with(p.dx, ndim: ndim), p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, 1, p.dresp, p.dscores, descriptor(stats)),
        valueError, names: "X", "mixture_pass X ndim \(ndim)")
      assertFailure(
        callMixturePass(p.dx, p.dweights, p.dlogNorm, with(p.dcenters, ndim: ndim), p.dprecisions, 1, p.dresp, p.dscores, descriptor(stats)),
        valueError, names: "means", "mixture_pass means ndim \(ndim)")
      assertFailure(
        callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, 1, with(p.dresp, ndim: ndim), p.dscores, descriptor(stats)),
        valueError, names: "resp_out", "mixture_pass resp_out ndim \(ndim)")
    }
    for ndim: Int32 in [-1, 0, 1, 2, 4] {
      assertFailure(callQuadformMany(p.dx, with(p.dqs, ndim: ndim), nil, p.dforms), valueError, names: "Qs", "Qs ndim \(ndim)")
      assertFailure(callGramMany(p.dx, p.dr, nil, with(p.dgrams, ndim: ndim)), valueError, names: "out", "gram_many out ndim \(ndim)")
    }
    // precisions: (K, d, d) or (K, d), nothing else.
    for ndim: Int32 in [-1, 0, 1, 4] {
      assertFailure(
        callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, with(p.dprecisions, ndim: ndim), 1, p.dresp, p.dscores, descriptor(stats)),
        valueError, names: "precisions", "mixture_pass precisions ndim \(ndim)")
    }
    for ndim: Int32 in [-1, 0, 2, 3] {
      assertFailure(callOuter(with(p.dy, ndim: ndim), p.dxs, p.douter), valueError, names: "y", "outer y ndim \(ndim)")
      assertFailure(callOuter(p.dy, with(p.dxs, ndim: ndim), p.douter), valueError, names: "x", "outer x ndim \(ndim)")
      assertFailure(
        callMixturePass(p.dx, with(p.dweights, ndim: ndim), p.dlogNorm, p.dcenters, p.dprecisions, 1, p.dresp, p.dscores, descriptor(stats)),
        valueError, names: "sample_weight", "mixture_pass sample_weight ndim \(ndim)")
      assertFailure(
        callMixturePass(p.dx, p.dweights, with(p.dlogNorm, ndim: ndim), p.dcenters, p.dprecisions, 1, p.dresp, p.dscores, descriptor(stats)),
        valueError, names: "log_norm", "mixture_pass log_norm ndim \(ndim)")
      assertFailure(
        callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, 1, p.dresp, with(p.dscores, ndim: ndim), descriptor(stats)),
        valueError, names: "score_out", "mixture_pass score_out ndim \(ndim)")
      assertFailure(
        callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, 1, p.dresp, p.dscores, with(descriptor(stats), ndim: ndim)),
        valueError, names: "stats_out", "mixture_pass stats_out ndim \(ndim)")
    }
    XCTAssertTrue(p.outputsUntouched && stats.untouched(), "an output was written by a failed call")
  }

  func testDtypeMismatches() {
    let p = BatchProblem<Double>()
    let f = BatchProblem<Float>()
    defer { withExtendedLifetime((p, f)) {} }
    let stats = p.statsOut(p.statsCount(.full))
    defer { withExtendedLifetime(stats) {} }
    // Every operand must share the leading array's dtype, both ways round.
    assertFailure(callQuadformMany(p.dx, f.dqs, nil, p.dforms), typeError, names: "Qs", "float32 Qs")
    assertFailure(callQuadformMany(p.dx, p.dqs, f.dcenters, p.dforms), typeError, names: "centers", "float32 centers")
    assertFailure(callQuadformMany(p.dx, p.dqs, nil, f.dforms), typeError, names: "out", "float32 out")
    assertFailure(callQuadformMany(f.dx, p.dqs, nil, f.dforms), typeError, names: "Qs", "float64 Qs, float32 X")
    assertFailure(callGramMany(p.dx, f.dr, nil, p.dgrams), typeError, names: "R", "float32 R")
    assertFailure(callGramMany(p.dx, p.dr, f.dcenters, p.dgrams), typeError, names: "centers", "gram_many float32 centers")
    assertFailure(callGramMany(f.dx, f.dr, nil, p.dgrams), typeError, names: "out", "gram_many float64 out, float32 X")
    assertFailure(callWeightedSum(p.dx, f.dr, p.dsums), typeError, names: "R", "weighted_sum float32 R")
    assertFailure(callWeightedSum(f.dx, f.dr, p.dsums), typeError, names: "out", "weighted_sum float64 out, float32 X")
    assertFailure(callMatmul(p.dx, f.db, p.dproduct), typeError, names: "B", "matmul float32 B")
    assertFailure(callMatmul(f.dx, f.db, p.dproduct), typeError, names: "out", "matmul float64 out, float32 A")
    assertFailure(callOuter(p.dy, f.dxs, p.douter), typeError, names: "x", "outer float32 x")
    assertFailure(callOuter(f.dy, f.dxs, p.douter), typeError, names: "out", "outer float64 out, float32 y")
    let mixtureArguments: [(String, Int)] = [("sample_weight", 1), ("log_norm", 2), ("means", 3), ("precisions", 4), ("resp_out", 5), ("score_out", 6)]
    for (name, index) in mixtureArguments {
      var arrays: [gmk_array] = [p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, p.dresp, p.dscores]
      let floats: [gmk_array] = [f.dx, f.dweights, f.dlogNorm, f.dcenters, f.dprecisions, f.dresp, f.dscores]
      arrays[index] = floats[index]
      assertFailure(
        callMixturePass(arrays[0], arrays[1], arrays[2], arrays[3], arrays[4], 1, arrays[5], arrays[6], descriptor(stats)),
        typeError, names: name, "mixture_pass float32 \(name), float64 X")
    }
    // stats_out is float64 whatever X's dtype.
    let floatStats = TestVector<Float>(count: f.statsCount(.full))
    defer { withExtendedLifetime(floatStats) {} }
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, 1, p.dresp, p.dscores, descriptor(floatStats)),
      typeError, names: "stats_out", "float32 stats_out, float64 X")
    assertFailure(
      callMixturePass(f.dx, f.dweights, f.dlogNorm, f.dcenters, f.dprecisions, 1, f.dresp, f.dscores, descriptor(floatStats)),
      typeError, names: "stats_out", "float32 stats_out, float32 X")
    // Unknown dtype codes, on the leading array and on the others.
    for code: Int32 in [0, 3, -1, Int32.max] {
      func with(_ a: gmk_array) -> gmk_array {
        var b = a
        b.dtype = code
        return b
      }
      assertFailure(callQuadformMany(with(p.dx), p.dqs, nil, p.dforms), typeError, names: "X", "quadform_many X dtype \(code)")
      assertFailure(callQuadformMany(p.dx, with(p.dqs), nil, p.dforms), typeError, names: "Qs", "Qs dtype \(code)")
      assertFailure(callGramMany(p.dx, p.dr, nil, with(p.dgrams)), typeError, names: "out", "gram_many out dtype \(code)")
      assertFailure(callWeightedSum(p.dx, with(p.dr), p.dsums), typeError, names: "R", "weighted_sum R dtype \(code)")
      assertFailure(callMatmul(with(p.dx), p.db, p.dproduct), typeError, names: "A", "matmul A dtype \(code)")
      assertFailure(callOuter(with(p.dy), p.dxs, p.douter), typeError, names: "y", "outer y dtype \(code)")
      assertFailure(
        callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, with(p.dprecisions), 1, p.dresp, p.dscores, descriptor(stats)),
        typeError, names: "precisions", "mixture_pass precisions dtype \(code)")
      assertFailure(
        callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, 1, p.dresp, p.dscores, with(descriptor(stats))),
        typeError, names: "stats_out", "mixture_pass stats_out dtype \(code)")
    }
    XCTAssertTrue(p.outputsUntouched && f.outputsUntouched && stats.untouched() && floatStats.untouched(), "an output was written by a failed call")
  }

  /// K must agree between every argument that carries it; the message names the argument.
  func testComponentCountMismatches() {
    let p = BatchProblem<Double>(n: 20, d: 4, k: 3)
    let q = BatchProblem<Double>(n: 20, d: 4, k: 2)
    defer { withExtendedLifetime((p, q)) {} }
    let stats = p.statsOut(p.statsCount(.full))
    defer { withExtendedLifetime(stats) {} }
    assertFailure(callQuadformMany(p.dx, p.dqs, q.dcenters, p.dforms), valueError, names: "centers", "quadform_many 3 Qs, 2 centers")
    XCTAssertTrue(lastError().contains("(3, 4)") && lastError().contains("(2, 4)"), lastError())
    assertFailure(callQuadformMany(p.dx, p.dqs, nil, q.dforms), valueError, names: "out", "quadform_many 3 Qs, out (20, 2)")
    assertFailure(callGramMany(p.dx, p.dr, q.dcenters, p.dgrams), valueError, names: "centers", "gram_many R of 3 columns, 2 centers")
    assertFailure(callGramMany(p.dx, p.dr, nil, q.dgrams), valueError, names: "out", "gram_many R of 3 columns, out (2, 4, 4)")
    XCTAssertTrue(lastError().contains("3") && lastError().contains("2"), lastError())
    assertFailure(callWeightedSum(p.dx, p.dr, q.dsums), valueError, names: "out", "weighted_sum R of 3 columns, out (2, 4)")
    XCTAssertTrue(lastError().contains("(3, 4)") && lastError().contains("(2, 4)"), lastError())
    // The mixture: log_norm sets K.
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, q.dcenters, p.dprecisions, 1, p.dresp, p.dscores, descriptor(stats)),
      valueError, names: "means", "mixture_pass 3 log-norms, 2 means")
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, q.dprecisions, 1, p.dresp, p.dscores, descriptor(stats)),
      valueError, names: "precisions", "mixture_pass 3 log-norms, 2 precision matrices")
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, q.dcenters, 3, p.dresp, p.dscores, descriptor(stats)),
      valueError, names: "precisions", "mixture_pass 3 log-norms, 2 diagonals")
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, 1, q.dresp, p.dscores, descriptor(stats)),
      valueError, names: "resp_out", "mixture_pass 3 log-norms, resp_out (20, 2)")
    assertFailure(
      callMixturePass(p.dx, p.dweights, q.dlogNorm, p.dcenters, p.dprecisions, 1, p.dresp, p.dscores, descriptor(stats)),
      valueError, names: "means", "mixture_pass 2 log-norms, 3 means")
    // Other shapes: rows of R, sample_weight, score_out, d of the means.
    let other = BatchProblem<Double>(n: 21, d: 3, k: 3)
    defer { withExtendedLifetime(other) {} }
    assertFailure(callGramMany(p.dx, other.dr, nil, p.dgrams), valueError, names: "R", "gram_many R of 21 rows for 20")
    assertFailure(callWeightedSum(p.dx, other.dr, p.dsums), valueError, names: "R", "weighted_sum R of 21 rows for 20")
    assertFailure(
      callMixturePass(p.dx, other.dweights, p.dlogNorm, p.dcenters, p.dprecisions, 1, p.dresp, p.dscores, descriptor(stats)),
      valueError, names: "sample_weight", "mixture_pass 21 weights for 20 rows")
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, 1, p.dresp, other.dscores, descriptor(stats)),
      valueError, names: "score_out", "mixture_pass score_out of 21 for 20 rows")
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, other.dcenters, p.dprecisions, 1, p.dresp, p.dscores, descriptor(stats)),
      valueError, names: "means", "mixture_pass means (3, 3) for d = 4")
    XCTAssertTrue(p.outputsUntouched && stats.untouched(), "an output was written by a failed call")
  }

  func testMatmulInnerDimensionMismatch() {
    for e in [float32Code, float64Code] {
      func run<T: KernelScalar>(_: T.Type) {
        let p = BatchProblem<T>(n: 10, d: 4, k: 1)
        let tall = TestMatrix<T>(rows: 5, cols: p.m, values: [Double](repeating: 1, count: 5 * p.m))
        defer { withExtendedLifetime((p, tall)) {} }
        assertFailure(callMatmul(p.dx, descriptor(tall), p.dproduct), valueError, names: "inner dimensions", "\(T.self) (10, 4) @ (5, 4)")
        XCTAssertTrue(lastError().contains("(10, 4)") && lastError().contains("(5, 4)"), lastError())
        let wide = TestMatrix<T>(rows: 10, cols: p.m + 1)
        defer { withExtendedLifetime(wide) {} }
        assertFailure(callMatmul(p.dx, p.db, descriptor(wide)), valueError, names: "out", "\(T.self) out (10, 5) for (10, 4)")
        XCTAssertTrue(p.product.untouched() && wide.untouched())
      }
      if e == float32Code { run(Float.self) } else { run(Double.self) }
    }
  }

  func testBadScatterCode() {
    let p = BatchProblem<Double>()
    defer { withExtendedLifetime(p) {} }
    let stats = p.statsOut(p.statsCount(.full))
    defer { withExtendedLifetime(stats) {} }
    for code: Int32 in [4, 5, -1, 100, Int32.max, Int32.min] {
      assertFailure(
        callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, code, p.dresp, p.dscores, descriptor(stats)),
        valueError, names: "scatter", "scatter code \(code)")
      XCTAssertTrue(lastError().contains("\(code)"), lastError())
    }
    XCTAssertTrue(p.resp.untouched() && p.scores.untouched() && stats.untouched(), "an output was written by a failed call")
  }

  /// stats_out must hold 1 + K + K·d + the scatter's size, in float64; a wrong length is an
  /// error that names the length wanted and, as every failed call, writes no output.
  func testStatsOutOfTheWrongLength() {
    let p = BatchProblem<Double>(n: 20, d: 4, k: 3)
    defer { withExtendedLifetime(p) {} }
    for scatter in allScatters {
      let wanted = p.statsCount(scatter)
      var written: [Int] = []
      for count in [0, 1, wanted - 1, wanted + 1, p.statsCount(.full) + (scatter == .full ? 1 : 0)] {
        let stats = p.statsOut(count)
        let resp = TestMatrix<Double>(rows: p.n, cols: p.k)
        let scores = TestVector<Double>(count: p.n)
        defer { withExtendedLifetime((stats, resp, scores)) {} }
        let context = "scatter \(scatter): stats_out of \(count) for \(wanted)"
        assertFailure(
          callMixturePass(
            p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, scatterCode(scatter), descriptor(resp), descriptor(scores),
            descriptor(stats)),
          valueError, names: "stats_out", context)
        XCTAssertTrue(lastError().contains("\(wanted)"), "\(context): \(lastError())")
        XCTAssertTrue(stats.untouched(), "\(context): stats_out was written")
        if !(resp.untouched() && scores.untouched()) { written.append(count) }
      }
      XCTAssertEqual(written, [], "scatter \(scatter): resp_out and score_out written by failed calls with stats_out of these lengths")
    }
  }

  func testNullPointers() {
    let p = BatchProblem<Double>()
    defer { withExtendedLifetime(p) {} }
    let stats = p.statsOut(p.statsCount(.full))
    defer { withExtendedLifetime(stats) {} }
    assertFailure(callQuadformMany(p.dx, nil, nil, p.dforms), valueError, names: "Qs", "Qs = NULL")
    assertFailure(callQuadformMany(p.dx, p.dqs, nil, nil), valueError, names: "out", "quadform_many out = NULL")
    assertFailure(callGramMany(p.dx, nil, nil, p.dgrams), valueError, names: "R", "gram_many R = NULL")
    assertFailure(callWeightedSum(nil, p.dr, p.dsums), valueError, names: "X", "weighted_sum X = NULL")
    assertFailure(callMatmul(nil, p.db, p.dproduct), valueError, names: "A", "matmul A = NULL")
    assertFailure(callMatmul(p.dx, nil, p.dproduct), valueError, names: "B", "matmul B = NULL")
    assertFailure(callOuter(nil, p.dxs, p.douter), valueError, names: "y", "outer y = NULL")
    assertFailure(callOuter(p.dy, nil, p.douter), valueError, names: "x", "outer x = NULL")
    let full = scatterCode(.full)
    assertFailure(
      callMixturePass(p.dx, p.dweights, nil, p.dcenters, p.dprecisions, full, p.dresp, p.dscores, descriptor(stats)),
      valueError, names: "log_norm", "log_norm = NULL")
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, nil, p.dprecisions, full, p.dresp, p.dscores, descriptor(stats)),
      valueError, names: "means", "means = NULL")
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, nil, full, p.dresp, p.dscores, descriptor(stats)),
      valueError, names: "precisions", "precisions = NULL")
    assertFailure(
      callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, full, p.dresp, p.dscores, nil),
      valueError, names: "stats_out", "stats_out = NULL")
    XCTAssertTrue(p.outputsUntouched && stats.untouched(), "an output was written by a failed call")
  }

  /// A zero first stride describes K matrices with one; K itself is bounded by the memory
  /// limit, since the K views are workspace.
  func testZeroStrideMatricesAndTheirCount() {
    let p = BatchProblem<Double>(n: 20, d: 4, k: 3)
    defer { withExtendedLifetime(p) {} }
    var shared = p.dqs
    shared.strides.0 = 0
    XCTAssertEqual(callQuadformMany(p.dx, shared, p.dcenters, p.dforms), ok, lastError())
    let first = Array(p.qsMatrices[0])
    let want = referenceQuadformMany(x: p.x.values, rows: p.n, cols: p.d, qs: [first, first, first], centers: p.centers.values)
    XCTAssertNil(firstMismatch(p.forms.values, want, bound: roundingBound(Double.self, terms: 2 * p.d)), "Qs with a zero first stride")

    var huge = shared
    huge.shape.0 = 1 << 40
    let out = descriptor(p.forms.view.base, dtype: float64Code, shape: [Int64(p.n), 1 << 40], strides: [0, 0])
    assertFailure(callQuadformMany(p.dx, huge, nil, out), valueError, names: "Qs", "2^40 matrices through a zero stride")
    XCTAssertTrue(lastError().contains("memory_limit"), lastError())
    var hugePrecisions = p.dprecisions
    hugePrecisions.strides.0 = 0
    hugePrecisions.shape.0 = 1 << 40
    let stats = p.statsOut(4)
    defer { withExtendedLifetime(stats) {} }
    let logNorm = descriptor(p.logNorm.view.base, dtype: float64Code, shape: [1 << 40], strides: [0])
    let means = descriptor(p.centers.view.base, dtype: float64Code, shape: [1 << 40, Int64(p.d)], strides: [0, 8])
    assertFailure(
      callMixturePass(p.dx, nil, logNorm, means, hugePrecisions, scatterCode(.none), nil, nil, descriptor(stats)),
      valueError, names: "precisions", "2^40 precision matrices through a zero stride")
    XCTAssertTrue(stats.untouched())
  }

  func testOptions() {
    let p = BatchProblem<Double>(n: 1500, d: 4, k: 2)
    defer { withExtendedLifetime(p) {} }
    let stats = p.statsOut(p.statsCount(.full))
    defer { withExtendedLifetime(stats) {} }
    let full = scatterCode(.full)
    let calls: [(String, (gmk_options) -> Int32)] = [
      ("gmk_quadform_many", { callQuadformMany(p.dx, p.dqs, p.dcenters, p.dforms, $0) }),
      ("gmk_weighted_gram_many", { callGramMany(p.dx, p.dr, p.dcenters, p.dgrams, $0) }),
      ("gmk_weighted_sum", { callWeightedSum(p.dx, p.dr, p.dsums, $0) }),
      ("gmk_matmul", { callMatmul(p.dx, p.db, p.dproduct, $0) }),
      ("gmk_outer", { callOuter(p.dy, p.dxs, p.douter, $0) }),
      ("gmk_mixture_pass", {
        callMixturePass(p.dx, p.dweights, p.dlogNorm, p.dcenters, p.dprecisions, full, p.dresp, p.dscores, descriptor(stats), $0)
      }),
    ]
    for (name, call) in calls {
      for reserved: Int32 in [1, -1] {
        assertFailure(call(options(reserved: reserved)), valueError, names: "reserved", "\(name) reserved = \(reserved)")
      }
      assertFailure(call(options(memoryLimit: 1)), valueError, names: "memory_limit", "\(name) memory_limit = 1")
    }
    XCTAssertTrue(p.outputsUntouched && stats.untouched(), "an output was written by a failed call")

    // rows_done counts every row; a cancel flag of 0 changes nothing.
    let cancel = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    let rowsDone = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
    defer {
      cancel.deallocate()
      rowsDone.deallocate()
    }
    cancel.initialize(to: 0)
    rowsDone.initialize(to: 0)
    for threads: Int32 in [1, 2, 3] {
      for limit: Int64 in [0, 8 << 10] {
        for (name, call) in calls {
          rowsDone.pointee = 0
          XCTAssertEqual(call(options(threads: threads, memoryLimit: limit, cancel: cancel, rowsDone: rowsDone)), ok, "\(name): \(lastError())")
          XCTAssertEqual(rowsDone.pointee, Int64(p.n), "\(name) threads=\(threads) memory_limit=\(limit): rows_done")
        }
        XCTAssertNil(p.formsMismatch())
        XCTAssertNil(p.gramsMismatch())
        XCTAssertNil(p.sumsMismatch())
        XCTAssertNil(p.productMismatch())
        XCTAssertNil(p.outerMismatch())
        XCTAssertNil(p.mixtureMismatch(p.mixture, precisionValues: p.precisions.values, stats: stats))
      }
    }

    // A set cancel flag stops every call before its first block.
    cancel.pointee = 1
    let fresh = BatchProblem<Double>(n: 1500, d: 4, k: 2)
    defer { withExtendedLifetime(fresh) {} }
    let freshStats = fresh.statsOut(fresh.statsCount(.full))
    defer { withExtendedLifetime(freshStats) {} }
    let cancelled: [(String, (gmk_options) -> Int32)] = [
      ("gmk_quadform_many", { callQuadformMany(fresh.dx, fresh.dqs, fresh.dcenters, fresh.dforms, $0) }),
      ("gmk_weighted_gram_many", { callGramMany(fresh.dx, fresh.dr, fresh.dcenters, fresh.dgrams, $0) }),
      ("gmk_weighted_sum", { callWeightedSum(fresh.dx, fresh.dr, fresh.dsums, $0) }),
      ("gmk_matmul", { callMatmul(fresh.dx, fresh.db, fresh.dproduct, $0) }),
      ("gmk_outer", { callOuter(fresh.dy, fresh.dxs, fresh.douter, $0) }),
      ("gmk_mixture_pass", {
        callMixturePass(
          fresh.dx, fresh.dweights, fresh.dlogNorm, fresh.dcenters, fresh.dprecisions, full, fresh.dresp, fresh.dscores,
          descriptor(freshStats), $0)
      }),
    ]
    for threads: Int32 in [1, 2] {
      for (name, call) in cancelled {
        rowsDone.pointee = 0
        XCTAssertEqual(call(options(threads: threads, memoryLimit: 8 << 10, cancel: cancel, rowsDone: rowsDone)), cancelledStatus, "\(name): \(lastError())")
        XCTAssertFalse(lastError().isEmpty, name)
        XCTAssertEqual(rowsDone.pointee, 0, "\(name) threads=\(threads): rows reported after a cancel before any block")
      }
    }
    // Per-row outputs and sums stored at the end are untouched (gram_many may have zeroed
    // its accumulators in out).
    XCTAssertTrue(fresh.forms.untouched() && fresh.sums.untouched() && fresh.product.untouched() && fresh.outer.untouched())
    XCTAssertTrue(fresh.resp.untouched() && fresh.scores.untouched() && freshStats.untouched())
  }
}
