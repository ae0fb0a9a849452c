// The C contract of include/gmmkernels.h, the results: every export called through its C
// declaration gives the reference's values, on empty and zero-stride inputs too.

@testable import GMMKernels
import GMMKernelsC
import Dispatch
import Foundation
import XCTest
import _GMKSupport
import _GMKTestSupport

#if canImport(Glibc)
import Glibc
#endif

final class CABIResultTests: XCTestCase {
  func testVersions() {
    XCTAssertEqual(_GMKSupport.gmk_abi_version(), Int32(GMK_ABI_VERSION))
    XCTAssertEqual(GMMKernelsC.gmk_abi_version(), Int32(GMK_ABI_VERSION))
    XCTAssertFalse(String(cString: _GMKSupport.gmk_version()).isEmpty)
    XCTAssertEqual(Int(_GMKSupport.gmk_default_threads()), KernelOptions.availableCPUs)
    XCTAssertGreaterThanOrEqual(_GMKSupport.gmk_default_threads(), 1)
    XCTAssertEqual(MemoryLayout<gmk_array>.size, 8 + 4 + 4 + 3 * 8 + 3 * 8)
    XCTAssertEqual(MemoryLayout<gmk_options>.size, 4 + 4 + 8 + 8 + 8)
  }

  func testSuccessfulCalls() {
    successfulCallsOfQuadformAndGram()
    successfulCallsOfTheBatchKernels()
  }

  private func successfulCallsOfQuadformAndGram() {
    quadformAndGramCalls(Float.self)
    quadformAndGramCalls(Double.self)
  }

  private func quadformAndGramCalls<T: KernelScalar>(_: T.Type) {
    let p = QuadformGramProblem<T>()
    defer { withExtendedLifetime(p) {} }
    // A failure first, so the success below must clear the message.
    XCTAssertEqual(callQuadform(nil, p.dq, nil, p.dout), valueError)
    XCTAssertFalse(lastError().isEmpty)
    XCTAssertEqual(callQuadform(p.dx, p.dq, p.dcenter, p.dout), ok, lastError())
    XCTAssertEqual(lastError(), "", "\(T.self): a successful call must clear the message")
    XCTAssertNil(p.quadformMismatch(), "\(T.self) gmk_quadform")
    XCTAssertTrue(p.out.onlyViewChanged())

    XCTAssertEqual(callGram(p.dx, p.dw, p.dcenter, nil), valueError)
    XCTAssertEqual(callGram(p.dx, p.dw, p.dcenter, p.dgram), ok, lastError())
    XCTAssertEqual(lastError(), "")
    XCTAssertNil(p.gramMismatch(), "\(T.self) gmk_weighted_gram")
    XCTAssertTrue(p.gram.onlyViewChanged())
    XCTAssertEqual(callGram(p.dx, nil, p.dcenter, p.dgram), ok, lastError())
    XCTAssertNil(p.gramMismatch(weighted: false), "\(T.self) gmk_weighted_gram, w = NULL")

    // Options: NULL, all defaults (threads <= 0, memory_limit <= 0), explicit values.
    for o in [nil, options(), options(threads: -1, memoryLimit: -5), options(threads: 2, memoryLimit: 1 << 12)] as [gmk_options?] {
      XCTAssertEqual(callQuadform(p.dx, p.dq, p.dcenter, p.dout, o), ok, "\(T.self) \(String(describing: o)): \(lastError())")
      XCTAssertNil(p.quadformMismatch(), "\(T.self) \(String(describing: o))")
      XCTAssertEqual(callGram(p.dx, p.dw, p.dcenter, p.dgram, o), ok, "\(T.self) \(String(describing: o)): \(lastError())")
      XCTAssertNil(p.gramMismatch(), "\(T.self) \(String(describing: o))")
    }

    // The Swift-visible exports are the same functions.
    withUnsafePointer(to: p.dx) { x in
      withUnsafePointer(to: p.dq) { q in
        withUnsafePointer(to: p.dout) { out in
          XCTAssertEqual(GMMKernelsC.gmk_quadform(x, q, nil, out, nil), ok)
        }
      }
    }
    let want = referenceQuadform(x: p.x.values, rows: p.n, cols: p.d, q: p.q.values)
    XCTAssertNil(firstMismatch(p.out.values, want, bound: roundingBound(T.self, terms: 2 * p.d)))
  }

  private func successfulCallsOfTheBatchKernels() {
    batchCalls(Float.self)
    batchCalls(Double.self)
  }

  private func batchCalls<T: KernelScalar>(_: T.Type) {
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
}
