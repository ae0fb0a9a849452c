// The C contract of include/gmmkernels.h, called through its C declarations (module
// _GMKSupport), exactly as C and ctypes callers reach the library.

import GMMKernels
import GMMKernelsC
import Dispatch
import Foundation
import XCTest
import _GMKSupport
import _GMKTestSupport

#if canImport(Glibc)
import Glibc
#endif

let ok = Int32(GMK_OK.rawValue)
let valueError = Int32(GMK_ERR_VALUE.rawValue)
let typeError = Int32(GMK_ERR_TYPE.rawValue)
let memoryError = Int32(GMK_ERR_MEMORY.rawValue)
let cancelledStatus = Int32(GMK_ERR_CANCELLED.rawValue)
let float32Code = Int32(GMK_FLOAT32.rawValue)
let float64Code = Int32(GMK_FLOAT64.rawValue)

/// The calling thread's last error message.
func lastError() -> String { String(cString: _GMKSupport.gmk_last_error()) }

/// A gmk_array; entries of shape and strides beyond those given are filled with values
/// that must be ignored.
func descriptor(
  _ data: UnsafeMutableRawPointer?, dtype: Int32, shape: [Int64], strides: [Int64], ndim: Int32? = nil
) -> gmk_array {
  let s = shape + [Int64](repeating: -7, count: 3 - shape.count)
  let t = strides + [Int64](repeating: Int64.min, count: 3 - strides.count)
  return gmk_array(
    data: data, dtype: dtype, ndim: ndim ?? Int32(shape.count), shape: (s[0], s[1], s[2]), strides: (t[0], t[1], t[2]))
}

func descriptor<T: KernelScalar>(_ m: TestMatrix<T>) -> gmk_array {
  descriptor(
    m.view.base, dtype: T.self == Float.self ? float32Code : float64Code,
    shape: [Int64(m.rows), Int64(m.cols)], strides: [Int64(m.view.rowStride), Int64(m.view.colStride)])
}

func descriptor<T: KernelScalar>(_ v: TestVector<T>) -> gmk_array {
  descriptor(
    v.view.base, dtype: T.self == Float.self ? float32Code : float64Code,
    shape: [Int64(v.count)], strides: [Int64(v.view.stride)])
}

/// Calls gmk_quadform with descriptors (nil for a NULL pointer).
private func callQuadform(
  _ x: gmk_array?, _ q: gmk_array?, _ center: gmk_array?, _ out: gmk_array?, _ options: gmk_options? = nil
) -> Int32 {
  withOptionalPointers(x, q, center, out, options) { x, q, center, out, options in
    _GMKSupport.gmk_quadform(x, q, center, out, options)
  }
}

/// Calls gmk_weighted_gram with descriptors (nil for a NULL pointer).
private func callGram(
  _ x: gmk_array?, _ w: gmk_array?, _ center: gmk_array?, _ out: gmk_array?, _ options: gmk_options? = nil
) -> Int32 {
  withOptionalPointers(x, w, center, out, options) { x, w, center, out, options in
    _GMKSupport.gmk_weighted_gram(x, w, center, out, options)
  }
}

func withOptionalPointers<R>(
  _ a: gmk_array?, _ b: gmk_array?, _ c: gmk_array?, _ d: gmk_array?, _ o: gmk_options?,
  _ body: (UnsafePointer<gmk_array>?, UnsafePointer<gmk_array>?, UnsafePointer<gmk_array>?, UnsafePointer<gmk_array>?, UnsafePointer<gmk_options>?) -> R
) -> R {
  func pointer<V>(_ v: V?, _ f: (UnsafePointer<V>?) -> R) -> R {
    guard var v else { return f(nil) }
    return withUnsafePointer(to: &v) { f($0) }
  }
  return pointer(a) { pa in pointer(b) { pb in pointer(c) { pc in pointer(d) { pd in pointer(o) { po in body(pa, pb, pc, pd, po) } } } } }
}

func options(
  threads: Int32 = 0, reserved: Int32 = 0, memoryLimit: Int64 = 0,
  cancel: UnsafePointer<Int32>? = nil, rowsDone: UnsafeMutablePointer<Int64>? = nil
) -> gmk_options {
  gmk_options(threads: threads, reserved: reserved, memory_limit: memoryLimit, cancel: cancel, rows_done: rowsDone)
}

/// A small problem in T, for the ABI tests: X (n × d), Q, center, w and both outputs.
private final class Problem<T: KernelScalar> {
  let n: Int
  let d: Int
  let x: TestMatrix<T>
  let q: TestMatrix<T>
  let center: TestVector<T>
  let w: TestVector<T>
  let out: TestVector<T>
  let gram: TestMatrix<T>

  init(n: Int = 37, d: Int = 5, seed: UInt64 = 41, xLayout: MatrixLayout = .cOrder) {
    var rng = SplitMix64(seed: seed)
    self.n = n
    self.d = d
    x = TestMatrix(rows: n, cols: d, layout: xLayout, values: rng.uniform(count: n * d, -1, 1))
    q = TestMatrix(rows: d, cols: d, layout: .fortranOrder, values: rng.uniform(count: d * d, -1, 1))
    center = TestVector(layout: .reversed, values: rng.uniform(count: d, -1, 1))
    w = TestVector(layout: .everyOther, values: rng.uniform(count: n, -1, 1))
    out = TestVector(count: n, layout: .unaligned(byteOffset: 3))
    gram = TestMatrix(rows: d, cols: d, layout: .reversedBoth)
  }

  var dx: gmk_array { descriptor(x) }
  var dq: gmk_array { descriptor(q) }
  var dcenter: gmk_array { descriptor(center) }
  var dw: gmk_array { descriptor(w) }
  var dout: gmk_array { descriptor(out) }
  var dgram: gmk_array { descriptor(gram) }

  func quadformMismatch() -> String? {
    let want = referenceQuadform(x: x.values, rows: n, cols: d, q: q.values, center: center.values)
    return firstMismatch(out.values, want, bound: roundingBound(T.self, terms: 2 * d))
  }

  func gramMismatch(weighted: Bool = true) -> String? {
    let want = referenceWeightedGram(x: x.values, rows: n, cols: d, weights: weighted ? w.values : nil, center: center.values)
    return firstMismatch(gram.values, want, bound: roundingBound(T.self, terms: n))
  }
}

/// Asserts `status` and a message for this thread that names `argument`.
func assertFailure(
  _ status: Int32, _ expected: Int32, names argument: String, _ context: String,
  file: StaticString = #filePath, line: UInt = #line
) {
  XCTAssertEqual(status, expected, "\(context): status (message: \(lastError()))", file: file, line: line)
  let message = lastError()
  XCTAssertTrue(message.contains(argument), "\(context): message \"\(message)\" does not name \(argument)", file: file, line: line)
}

/// Runs `body` in a child process and returns how it ended: its exit code, or the signal
/// that killed it. For inputs that must not crash the caller: a crash here fails one
/// test instead of killing the whole run.
private func inChildProcess(addressSpaceHeadroom: Int, _ body: () -> Int32) -> (code: Int32?, signal: Int32?) {
  fflush(stdout)
  let pid = fork()
  if pid == 0 {
    // Bound what the child may allocate, so a wrong size cannot exhaust the machine.
    var pages = 0
    if let f = fopen("/proc/self/statm", "r") {
      _ = withUnsafeMutablePointer(to: &pages) { p in withVaList([p]) { vfscanf(f, "%ld", $0) } }
      fclose(f)
    }
    var limit = rlimit(
      rlim_cur: rlim_t(pages * Int(sysconf(Int32(_SC_PAGESIZE))) + addressSpaceHeadroom),
      rlim_max: rlim_t(pages * Int(sysconf(Int32(_SC_PAGESIZE))) + addressSpaceHeadroom))
    _ = setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit)
    _exit(body())
  }
  var status: Int32 = 0
  guard pid > 0, waitpid(pid, &status, 0) == pid else { return (nil, nil) }
  // WIFEXITED / WEXITSTATUS / WTERMSIG of <sys/wait.h>.
  if status & 0x7f == 0 { return ((status >> 8) & 0xff, nil) }
  return (nil, status & 0x7f)
}

final class CABITests: XCTestCase {
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
    successfulCalls(Float.self)
    successfulCalls(Double.self)
  }

  private func successfulCalls<T: KernelScalar>(_: T.Type) {
    let p = Problem<T>()
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

  func testNullPointers() {
    let p = Problem<Double>()
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

  func testDtypeCodes() {
    let p = Problem<Double>()
    let f = Problem<Float>()
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
    let p = Problem<Double>()
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

  func testNegativeShapes() {
    let p = Problem<Double>()
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
    let p = Problem<Double>()
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
    let p = Problem<Double>()
    defer { withExtendedLifetime(p) {} }
    XCTAssertEqual(p.dx.shape.2, -7)
    XCTAssertEqual(p.dout.strides.1, Int64.min)
    XCTAssertEqual(callQuadform(p.dx, p.dq, p.dcenter, p.dout), ok, lastError())
    XCTAssertNil(p.quadformMismatch())
  }

  func testShapeMismatchesNameArgumentAndShapes() {
    let p = Problem<Double>(n: 10, d: 4)
    let other = Problem<Double>(n: 11, d: 3)
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
    let p = Problem<Double>(n: 3000, d: 6)
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

  /// The message belongs to the thread that made the failing call.
  func testMessagesArePerThread() {
    let p = Problem<Double>()
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
}
