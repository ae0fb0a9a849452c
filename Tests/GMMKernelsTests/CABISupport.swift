// What the C ABI tests share: status and dtype codes, gmk_array descriptors of test arrays,
// callers of every export through its C declaration (module _GMKSupport, exactly as C and
// ctypes callers reach the library), and small problems with every operand and output.

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
func callQuadform(
  _ x: gmk_array?, _ q: gmk_array?, _ center: gmk_array?, _ out: gmk_array?, _ options: gmk_options? = nil
) -> Int32 {
  withOptionalPointers(x, q, center, out, options) { x, q, center, out, options in
    _GMKSupport.gmk_quadform(x, q, center, out, options)
  }
}

/// Calls gmk_weighted_gram with descriptors (nil for a NULL pointer).
func callGram(
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

/// A small problem in T for gmk_quadform and gmk_weighted_gram: X (n × d), Q, center, w
/// and both outputs.
final class QuadformGramProblem<T: KernelScalar> {
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
func inChildProcess(addressSpaceHeadroom: Int, _ body: () -> Int32) -> (code: Int32?, signal: Int32?) {
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
