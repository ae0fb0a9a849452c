// The C contract of include/gmmkernels.h, the argument checks: bad pointers, dtypes, ranks,
// shapes, strides, options and workspace sizes each fail with the status and a message that
// names the argument, and leave the outputs untouched.

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

final class CABIArgumentTests: XCTestCase {
  func testNullPointers() {
    nullPointersOfQuadformAndGram()
    nullPointersOfTheBatchKernels()
  }

  private func nullPointersOfQuadformAndGram() {
    let p = QuadformGramProblem<Double>()
    defer { withExtendedLifetime(p) {} }
    assertFailure(callQuadform(nil, p.dq, nil, p.dout), valueError, names: "X", "quadform X = NULL")
    assertFailure(callQuadform(p.dx, nil, nil, p.dout), valueError, names: "Q", "quadform Q = NULL")
    assertFailure(callQuadform(p.dx, p.dq, nil, nil), valueError, names: "out", "quadform out = NULL")
    assertFailure(callGram(nil, nil, nil, p.dgram), valueError, names: "X", "weighted_gram X = NULL")
    assertFailure(callGram(p.dx, p.dw, p.dcenter, nil), valueError, names: "out", "weighted_gram out = NULL")

    // A NULL data pointer is an error when the array has elements.
    var x = p.dx
    x.data = nil
    assertFailure(callQuadform(x, p.dq, nil, p.dout), valueError, names: "X", "quadform X.data = NULL")
    assertFailure(callGram(x, nil, nil, p.dgram), valueError, names: "X", "weighted_gram X.data = NULL")
    var q = p.dq
    q.data = nil
    assertFailure(callQuadform(p.dx, q, nil, p.dout), valueError, names: "Q", "Q.data = NULL")
    var c = p.dcenter
    c.data = nil
    assertFailure(callQuadform(p.dx, p.dq, c, p.dout), valueError, names: "center", "center.data = NULL")
    var w = p.dw
    w.data = nil
    assertFailure(callGram(p.dx, w, nil, p.dgram), valueError, names: "w", "w.data = NULL")
    var out = p.dout
    out.data = nil
    assertFailure(callQuadform(p.dx, p.dq, nil, out), valueError, names: "out", "out.data = NULL")
    XCTAssertTrue(p.out.untouched() && p.gram.untouched(), "an output was written by a failed call")

    // ... and fine when it has none.
    var emptyX = descriptor(nil, dtype: float64Code, shape: [0, Int64(p.d)], strides: [Int64(8 * p.d), 8])
    let emptyOut = descriptor(nil, dtype: float64Code, shape: [0], strides: [8])
    XCTAssertEqual(callQuadform(emptyX, p.dq, nil, emptyOut), ok, lastError())
    emptyX.shape.1 = 0
    let emptyQ = descriptor(nil, dtype: float64Code, shape: [0, 0], strides: [0, 0])
    XCTAssertEqual(callGram(emptyX, nil, nil, emptyQ), ok, lastError())
  }

  private func nullPointersOfTheBatchKernels() {
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

  func testDtypeCodes() {
    let p = QuadformGramProblem<Double>()
    let f = QuadformGramProblem<Float>()
    defer { withExtendedLifetime((p, f)) {} }
    for code: Int32 in [0, 3, -1, 7, Int32.max] {
      var x = p.dx
      x.dtype = code
      assertFailure(callQuadform(x, p.dq, nil, p.dout), typeError, names: "X", "quadform X dtype \(code)")
      assertFailure(callGram(x, nil, nil, p.dgram), typeError, names: "X", "weighted_gram X dtype \(code)")
      var q = p.dq
      q.dtype = code
      assertFailure(callQuadform(p.dx, q, nil, p.dout), typeError, names: "Q", "Q dtype \(code)")
      var c = p.dcenter
      c.dtype = code
      assertFailure(callQuadform(p.dx, p.dq, c, p.dout), typeError, names: "center", "quadform center dtype \(code)")
      assertFailure(callGram(p.dx, nil, c, p.dgram), typeError, names: "center", "weighted_gram center dtype \(code)")
      var w = p.dw
      w.dtype = code
      assertFailure(callGram(p.dx, w, nil, p.dgram), typeError, names: "w", "w dtype \(code)")
      var out = p.dout
      out.dtype = code
      assertFailure(callQuadform(p.dx, p.dq, nil, out), typeError, names: "out", "quadform out dtype \(code)")
      var g = p.dgram
      g.dtype = code
      assertFailure(callGram(p.dx, nil, nil, g), typeError, names: "out", "weighted_gram out dtype \(code)")
    }
    // Every operand must share X's dtype: float64 X with float32 operands, and back.
    assertFailure(callQuadform(p.dx, f.dq, nil, p.dout), typeError, names: "Q", "float32 Q, float64 X")
    assertFailure(callQuadform(p.dx, p.dq, f.dcenter, p.dout), typeError, names: "center", "float32 center")
    assertFailure(callQuadform(p.dx, p.dq, nil, f.dout), typeError, names: "out", "float32 out")
    assertFailure(callQuadform(f.dx, p.dq, nil, f.dout), typeError, names: "Q", "float64 Q, float32 X")
    assertFailure(callGram(p.dx, f.dw, nil, p.dgram), typeError, names: "w", "float32 w")
    assertFailure(callGram(p.dx, nil, f.dcenter, p.dgram), typeError, names: "center", "float32 center")
    assertFailure(callGram(p.dx, nil, nil, f.dgram), typeError, names: "out", "float32 out")
    assertFailure(callGram(f.dx, nil, nil, p.dgram), typeError, names: "out", "float64 out, float32 X")
    XCTAssertTrue(p.out.untouched() && p.gram.untouched() && f.out.untouched() && f.gram.untouched())
  }

  func testWrongNdim() {
    wrongNdimOfQuadformAndGram()
    wrongNdimOfTheBatchKernels()
  }

  private func wrongNdimOfQuadformAndGram() {
    let p = QuadformGramProblem<Double>()
    defer { withExtendedLifetime(p) {} }
    for ndim: Int32 in [-1, 0, 1, 3, 4, 100] {
      var x = p.dx
      x.ndim = ndim
      assertFailure(callQuadform(x, p.dq, nil, p.dout), valueError, names: "X", "X ndim \(ndim)")
      assertFailure(callGram(x, nil, nil, p.dgram), valueError, names: "X", "weighted_gram X ndim \(ndim)")
      var q = p.dq
      q.ndim = ndim
      assertFailure(callQuadform(p.dx, q, nil, p.dout), valueError, names: "Q", "Q ndim \(ndim)")
      var g = p.dgram
      g.ndim = ndim
      assertFailure(callGram(p.dx, nil, nil, g), valueError, names: "out", "weighted_gram out ndim \(ndim)")
    }
    for ndim: Int32 in [-1, 0, 2, 3, 4] {
      var c = p.dcenter
      c.ndim = ndim
      assertFailure(callQuadform(p.dx, p.dq, c, p.dout), valueError, names: "center", "center ndim \(ndim)")
      var w = p.dw
      w.ndim = ndim
      assertFailure(callGram(p.dx, w, nil, p.dgram), valueError, names: "w", "w ndim \(ndim)")
      var out = p.dout
      out.ndim = ndim
      assertFailure(callQuadform(p.dx, p.dq, nil, out), valueError, names: "out", "quadform out ndim \(ndim)")
    }
    XCTAssertTrue(p.out.untouched() && p.gram.untouched())
  }

  private func wrongNdimOfTheBatchKernels() {
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

  func testNegativeShapes() {
    let p = QuadformGramProblem<Double>()
    defer { withExtendedLifetime(p) {} }
    var x = p.dx
    x.shape.0 = -1
    assertFailure(callQuadform(x, p.dq, nil, p.dout), valueError, names: "X", "X shape (-1, d)")
    x = p.dx
    x.shape.1 = -5
    assertFailure(callGram(x, nil, nil, p.dgram), valueError, names: "X", "X shape (n, -5)")
    x.shape.0 = 0
    assertFailure(callGram(x, nil, nil, p.dgram), valueError, names: "X", "X shape (0, -5)")
    var q = p.dq
    q.shape.1 = -3
    assertFailure(callQuadform(p.dx, q, nil, p.dout), valueError, names: "Q", "Q shape (d, -3)")
    var c = p.dcenter
    c.shape.0 = -1
    assertFailure(callQuadform(p.dx, p.dq, c, p.dout), valueError, names: "center", "center shape (-1,)")
    var w = p.dw
    w.shape.0 = Int64.min
    assertFailure(callGram(p.dx, w, nil, p.dgram), valueError, names: "w", "w shape (min,)")
    var out = p.dout
    out.shape.0 = -37
    assertFailure(callQuadform(p.dx, p.dq, nil, out), valueError, names: "out", "out shape (-37,)")
    XCTAssertTrue(p.out.untouched() && p.gram.untouched())
  }

  /// Shapes and strides whose byte extent does not fit in 64 bits.
  func testShapeTimesStrideOverflow() {
    let p = QuadformGramProblem<Double>()
    defer { withExtendedLifetime(p) {} }
    let huge: [([Int64], [Int64])] = [
      ([2, 3], [Int64.max, 8]),
      ([2, 3], [Int64.min, 8]),
      ([3, 2], [8, Int64.min + 8]),
      ([Int64.max, 2], [16, 8]),
      ([1 << 40, 1 << 40], [8 << 40, 8]),
      ([1 << 32, 1 << 32], [-(1 << 32), 1 << 32]),
      ([Int64.max, Int64.max], [1, 1]),
    ]
    for (shape, strides) in huge {
      let x = descriptor(p.x.view.base, dtype: float64Code, shape: shape, strides: strides)
      assertFailure(callQuadform(x, p.dq, nil, p.dout), valueError, names: "X", "X shape \(shape) strides \(strides)")
      assertFailure(callGram(x, nil, nil, p.dgram), valueError, names: "X", "weighted_gram X shape \(shape) strides \(strides)")
      let q = descriptor(p.q.view.base, dtype: float64Code, shape: shape, strides: strides)
      assertFailure(callQuadform(p.dx, q, nil, p.dout), valueError, names: "Q", "Q shape \(shape) strides \(strides)")
      let g = descriptor(p.gram.view.base, dtype: float64Code, shape: shape, strides: strides)
      assertFailure(callGram(p.dx, nil, nil, g), valueError, names: "out", "out shape \(shape) strides \(strides)")
    }
    for (n, s): (Int64, Int64) in [(2, Int64.max), (3, Int64.min), (Int64.max, 8), (1 << 62, -4)] {
      let v = descriptor(p.out.view.base, dtype: float64Code, shape: [n], strides: [s])
      assertFailure(callQuadform(p.dx, p.dq, nil, v), valueError, names: "out", "out shape (\(n),) stride \(s)")
      assertFailure(callQuadform(p.dx, p.dq, v, p.dout), valueError, names: "center", "center shape (\(n),) stride \(s)")
      assertFailure(callGram(p.dx, v, nil, p.dgram), valueError, names: "w", "w shape (\(n),) stride \(s)")
    }
    XCTAssertTrue(p.out.untouched() && p.gram.untouched())
  }

  /// Shape and stride entries beyond ndim are ignored (the descriptors of this file set
  /// them to −7 and Int64.min).
  func testEntriesBeyondNdimAreIgnored() {
    let p = QuadformGramProblem<Double>()
    defer { withExtendedLifetime(p) {} }
    XCTAssertEqual(p.dx.shape.2, -7)
    XCTAssertEqual(p.dout.strides.1, Int64.min)
    XCTAssertEqual(callQuadform(p.dx, p.dq, p.dcenter, p.dout), ok, lastError())
    XCTAssertNil(p.quadformMismatch())
  }

  func testShapeMismatchesNameArgumentAndShapes() {
    let p = QuadformGramProblem<Double>(n: 10, d: 4)
    let other = QuadformGramProblem<Double>(n: 11, d: 3)
    defer { withExtendedLifetime((p, other)) {} }
    assertFailure(callQuadform(p.dx, other.dq, nil, p.dout), valueError, names: "Q", "quadform Q (3, 3) for d = 4")
    XCTAssertTrue(lastError().contains("(4, 4)") && lastError().contains("(3, 3)"), lastError())
    assertFailure(callQuadform(p.dx, p.dq, other.dcenter, p.dout), valueError, names: "center", "center of 3")
    assertFailure(callQuadform(p.dx, p.dq, nil, other.dout), valueError, names: "out", "out of 11")
    XCTAssertTrue(lastError().contains("10") && lastError().contains("11"), lastError())
    assertFailure(callGram(p.dx, other.dw, nil, p.dgram), valueError, names: "w", "w of 11")
    assertFailure(callGram(p.dx, nil, other.dcenter, p.dgram), valueError, names: "center", "weighted_gram center of 3")
    assertFailure(callGram(p.dx, nil, nil, other.dgram), valueError, names: "out", "weighted_gram out (3, 3)")
    XCTAssertTrue(p.out.untouched() && p.gram.untouched())
  }

  func testOptions() {
    optionsOfQuadformAndGram()
    optionsOfTheBatchKernels()
  }

  private func optionsOfQuadformAndGram() {
    let p = QuadformGramProblem<Double>(n: 3000, d: 6)
    defer { withExtendedLifetime(p) {} }
    for reserved: Int32 in [1, -1, Int32.max] {
      assertFailure(
        callQuadform(p.dx, p.dq, nil, p.dout, options(reserved: reserved)), valueError, names: "reserved", "reserved = \(reserved)")
      assertFailure(
        callGram(p.dx, nil, nil, p.dgram, options(reserved: reserved)), valueError, names: "reserved", "weighted_gram reserved = \(reserved)")
    }
    XCTAssertTrue(p.out.untouched() && p.gram.untouched())

    for limit: Int64 in [1, 16, 100] {
      assertFailure(
        callQuadform(p.dx, p.dq, p.dcenter, p.dout, options(memoryLimit: limit)), valueError, names: "memory_limit", "memory_limit \(limit)")
      assertFailure(
        callGram(p.dx, p.dw, nil, p.dgram, options(memoryLimit: limit)), valueError, names: "memory_limit", "weighted_gram memory_limit \(limit)")
    }
    XCTAssertTrue(p.out.untouched() && p.gram.untouched())

    // rows_done counts every row once a call succeeds; the cancel flag, when 0, changes nothing.
    let cancel = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    let rowsDone = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
    defer {
      cancel.deallocate()
      rowsDone.deallocate()
    }
    cancel.initialize(to: 0)
    for threads: Int32 in [0, 1, 2, 3] {
      for limit: Int64 in [0, 8 << 10] {
        let o = options(threads: threads, memoryLimit: limit, cancel: cancel, rowsDone: rowsDone)
        rowsDone.initialize(to: 0)
        XCTAssertEqual(callQuadform(p.dx, p.dq, p.dcenter, p.dout, o), ok, lastError())
        XCTAssertEqual(rowsDone.pointee, Int64(p.n), "quadform threads=\(threads) memory_limit=\(limit)")
        XCTAssertNil(p.quadformMismatch())
        rowsDone.pointee = 0
        XCTAssertEqual(callGram(p.dx, p.dw, p.dcenter, p.dgram, o), ok, lastError())
        XCTAssertEqual(rowsDone.pointee, Int64(p.n), "weighted_gram threads=\(threads) memory_limit=\(limit)")
        XCTAssertNil(p.gramMismatch())
      }
    }

    // A set cancel flag stops the call.
    cancel.pointee = 1
    for threads: Int32 in [1, 2] {
      let o = options(threads: threads, memoryLimit: 8 << 10, cancel: cancel, rowsDone: rowsDone)
      rowsDone.pointee = 0
      XCTAssertEqual(callQuadform(p.dx, p.dq, p.dcenter, p.dout, o), cancelledStatus, lastError())
      XCTAssertFalse(lastError().isEmpty)
      XCTAssertEqual(rowsDone.pointee, 0)
      XCTAssertEqual(callGram(p.dx, p.dw, p.dcenter, p.dgram, o), cancelledStatus, lastError())
      XCTAssertFalse(lastError().isEmpty)
      XCTAssertEqual(rowsDone.pointee, 0)
    }
  }

  private func optionsOfTheBatchKernels() {
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

  /// The message belongs to the thread that made the failing call.
  func testMessagesArePerThread() {
    let p = QuadformGramProblem<Double>()
    defer { withExtendedLifetime(p) {} }
    XCTAssertEqual(callQuadform(nil, p.dq, nil, p.dout), valueError)
    let mine = lastError()
    XCTAssertFalse(mine.isEmpty)
    final class Seen: @unchecked Sendable {
      var initially = "unset"
      var afterSuccess = "unset"
    }
    let seen = Seen()
    let (x, q, out) = (p.dx, p.dq, p.dout)
    let finished = DispatchSemaphore(value: 0)
    let thread = Thread {
      seen.initially = lastError()
      _ = callQuadform(x, q, nil, out)
      seen.afterSuccess = lastError()
      _ = callGram(nil, nil, nil, nil)
      finished.signal()
    }
    thread.start()
    XCTAssertEqual(finished.wait(timeout: .now() + 30), .success)
    let otherSaw = seen.initially
    let otherAfterSuccess = seen.afterSuccess
    XCTAssertEqual(otherSaw, "", "a new thread starts with no message")
    XCTAssertEqual(otherAfterSuccess, "")
    XCTAssertEqual(lastError(), mine, "another thread's calls changed this thread's message")
  }

  /// Shapes whose workspace size overflows 64 bits although every view is valid (zero
  /// strides): the call must fail with a status, not crash or write out of bounds.
  func testWorkspaceSizeOverflowFailsCleanly() {
    // Large enough for the control call's 3 × 3 float64 out (72 bytes).
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 64)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0, count: 128)
    // The harness itself: a valid call in a child process ends normally.
    let control = inChildProcess(addressSpaceHeadroom: 1 << 30) {
      let x = descriptor(buffer, dtype: float64Code, shape: [0, 3], strides: [24, 8])
      let out = descriptor(buffer, dtype: float64Code, shape: [3, 3], strides: [24, 8])
      return callGram(x, nil, nil, out)
    }
    XCTAssertEqual(control.code, ok, "control call in a child process: \(control)")
    let d: Int64 = 1 << 31
    // weighted_gram: n = 0, X read in place (row stride d·8), out (d, d) with zero
    // strides; its d × d accumulator has d²·8 = 2⁶⁵ bytes.
    let gram = inChildProcess(addressSpaceHeadroom: 1 << 30) {
      let x = descriptor(buffer, dtype: float64Code, shape: [0, d], strides: [d * 8, 8])
      let out = descriptor(buffer, dtype: float64Code, shape: [d, d], strides: [0, 0])
      return callGram(x, nil, nil, out)
    }
    XCTAssertNil(gram.signal, "gmk_weighted_gram with n=0, d=2^31 killed the process with signal \(gram.signal ?? 0)")
    if let code = gram.code {
      XCTAssertTrue([valueError, memoryError].contains(code), "gmk_weighted_gram with d=2^31 returned \(code)")
    }
    // quadform: n = 1, X and Q (d, d) with zero strides and a memory limit large enough
    // for the rows; the symmetrised copy of Q has d²·8 = 2⁶⁵ bytes.
    let quad = inChildProcess(addressSpaceHeadroom: 1 << 30) {
      let x = descriptor(buffer, dtype: float64Code, shape: [1, d], strides: [0, 0])
      let q = descriptor(buffer, dtype: float64Code, shape: [d, d], strides: [0, 0])
      let out = descriptor(buffer + 8, dtype: float64Code, shape: [1], strides: [8])
      return callQuadform(x, q, nil, out, options(threads: 1, memoryLimit: 1 << 40))
    }
    XCTAssertNil(quad.signal, "gmk_quadform with d=2^31 killed the process with signal \(quad.signal ?? 0)")
    if let code = quad.code {
      XCTAssertTrue([valueError, memoryError].contains(code), "gmk_quadform with d=2^31 returned \(code)")
    }
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
}
