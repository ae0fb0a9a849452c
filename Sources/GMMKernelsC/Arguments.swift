import GMMKernels
import _GMKSupport

/// One exported kernel's call, run once its element type is known.
protocol KernelCall {
  func run<T: KernelScalar>(_: T.Type, _ arguments: Arguments) throws(KernelError)
}

/// Checks the leading array (X, or A, or y) and the options, dispatches on the dtype, and
/// maps the outcome to a gmk_status and the thread's error message.
func exported(
  _ x: ArrayPointer, _ options: OptionsPointer, name: String = "X", ndim: Int32 = 2,
  _ call: some KernelCall
) -> Int32 {
  do throws(KernelError) {
    let args = try Arguments(x: x, name: name, ndim: ndim, options: options)
    if args.dtype == GMK_FLOAT32 {
      try call.run(Float.self, args)
    } else {
      try call.run(Double.self, args)
    }
    gmk_support_set_error(nil)
    return Int32(GMK_OK.rawValue)
  } catch {
    gmk_support_set_error(error.description)
    switch error {
    case .invalidArgument: return Int32(GMK_ERR_VALUE.rawValue)
    case .invalidType: return Int32(GMK_ERR_TYPE.rawValue)
    case .outOfMemory: return Int32(GMK_ERR_MEMORY.rawValue)
    case .cancelled: return Int32(GMK_ERR_CANCELLED.rawValue)
    }
  }
}

/// The checked leading array and options every kernel starts from; the other arrays are
/// checked against its dtype as they are read.
struct Arguments {
  let leading: gmk_array
  let dtype: gmk_dtype
  let options: KernelOptions

  init(x: ArrayPointer, name: String, ndim: Int32, options: OptionsPointer) throws(KernelError) {
    leading = try checked(x, name, ndim: ndim)
    dtype = gmk_dtype(rawValue: UInt32(leading.dtype))
    var o = KernelOptions()
    if let options {
      let raw = options.pointee
      guard raw.reserved == 0 else { throw .invalidArgument("options.reserved must be 0") }
      if raw.threads > 0 { o.threads = Int(raw.threads) }
      if raw.memory_limit > 0 { o.memoryLimit = Int(raw.memory_limit) }
      if let flag = raw.cancel {
        let address = UInt(bitPattern: flag)
        o.isCancelled = { gmk_atomic_load_i32(UnsafePointer(bitPattern: address)) != 0 }
      }
      if let counter = raw.rows_done {
        let address = UInt(bitPattern: counter)
        o.progress = { rows in gmk_atomic_add_i64(UnsafeMutablePointer(bitPattern: address), Int64(rows)) }
      }
    }
    self.options = o
  }

  func x<T: KernelScalar>(_: T.Type) -> StridedMatrix<T> { makeMatrix(leading, offset: 0) }

  func xVector<T: KernelScalar>(_: T.Type) -> StridedVector<T> { makeVector(leading) }

  func matrix<T: KernelScalar>(_: T.Type, _ a: ArrayPointer, _ name: String) throws(KernelError) -> StridedMatrix<T> {
    makeMatrix(try typed(a, name, ndim: 2), offset: 0)
  }

  func optionalMatrix<T: KernelScalar>(_: T.Type, _ a: ArrayPointer, _ name: String) throws(KernelError) -> StridedMatrix<T>? {
    a == nil ? nil : try matrix(T.self, a, name)
  }

  /// A (K, rows, cols) array as K matrices.
  func matrices<T: KernelScalar>(_: T.Type, _ a: ArrayPointer, _ name: String) throws(KernelError) -> [StridedMatrix<T>] {
    let v = try typed(a, name, ndim: 3)
    // The K views are workspace too (a zero first stride can make K huge at no size).
    let viewBytes = bytes(Int(v.shape.0), MemoryLayout<StridedMatrix<T>>.stride)
    guard viewBytes <= options.memoryLimit else {
      throw .invalidArgument("\(name) holds \(v.shape.0) matrices: describing them exceeds memory_limit=\(options.memoryLimit) bytes")
    }
    try probeAllocation(bytes(2, viewBytes))
    return (0..<Int(v.shape.0)).map { makeMatrix(v, offset: $0 * Int(v.strides.0), dims: (1, 2)) }
  }

  func vector<T: KernelScalar>(_: T.Type, _ a: ArrayPointer, _ name: String) throws(KernelError) -> StridedVector<T> {
    makeVector(try typed(a, name, ndim: 1))
  }

  func optionalVector<T: KernelScalar>(_: T.Type, _ a: ArrayPointer, _ name: String) throws(KernelError) -> StridedVector<T>? {
    a == nil ? nil : try vector(T.self, a, name)
  }

  /// A float64 vector whatever the data's dtype (accumulated statistics).
  func float64Vector(_ a: ArrayPointer, _ name: String) throws(KernelError) -> StridedVector<Double> {
    let v = try checked(a, name, ndim: 1)
    guard v.dtype == Int32(GMK_FLOAT64.rawValue) else {
      throw .invalidType("\(name) must be float64 (dtype code 2), got dtype code \(v.dtype)")
    }
    return makeVector(v)
  }

  private func typed(_ a: ArrayPointer, _ name: String, ndim: Int32) throws(KernelError) -> gmk_array {
    let v = try checked(a, name, ndim: ndim)
    guard v.dtype == Int32(dtype.rawValue) else {
      throw .invalidType("\(name) has dtype code \(v.dtype) but the data has \(dtype.rawValue); they must match")
    }
    return v
  }
}

/// Checks a descriptor: non-null, known dtype, the expected ndim, non-negative shape, and
/// that no element's byte offset overflows (so every address the kernel forms is valid
/// pointer arithmetic on the caller's buffer).
func checked(_ a: ArrayPointer, _ name: String, ndim expected: Int32?) throws(KernelError) -> gmk_array {
  guard let a else { throw .invalidArgument("\(name) is a null pointer") }
  let v = a.pointee
  guard v.dtype == Int32(GMK_FLOAT32.rawValue) || v.dtype == Int32(GMK_FLOAT64.rawValue) else {
    throw .invalidType("\(name) has unknown dtype code \(v.dtype) (float32 is 1, float64 is 2)")
  }
  guard v.ndim >= 0 && v.ndim <= GMK_MAX_NDIM && (expected == nil || v.ndim == expected) else {
    throw .invalidArgument("\(name) must be \(expected ?? GMK_MAX_NDIM)-dimensional, got ndim=\(v.ndim)")
  }
  let ndim = v.ndim
  let shape = [v.shape.0, v.shape.1, v.shape.2].prefix(Int(ndim))
  let strides = [v.strides.0, v.strides.1, v.strides.2].prefix(Int(ndim))
  guard shape.allSatisfy({ $0 >= 0 }) else {
    throw .invalidArgument("\(name) has a negative dimension in shape \(Array(shape))")
  }
  if shape.allSatisfy({ $0 > 0 }) {
    guard v.data != nil else { throw .invalidArgument("\(name) has a null data pointer") }
    // The extent of the view in bytes, Σ |stride| · (shape − 1) + element size, must not
    // overflow; nor may the element count.
    // The byte offsets of the first and last elements along each axis, below and above the
    // base address, must stay inside the address space; so must the element count.
    let overflow = KernelError.invalidArgument(
      "\(name): shape \(Array(shape)) with strides \(Array(strides)) overflows the address space")
    var below: UInt64 = 0
    var above: UInt64 = v.dtype == Int32(GMK_FLOAT32.rawValue) ? 4 : 8
    var count: Int64 = 1
    for (s, st) in zip(shape, strides) {
      let (span, o1) = st.magnitude.multipliedReportingOverflow(by: UInt64(s - 1))
      let (c, o2) = count.multipliedReportingOverflow(by: s)
      guard !o1 && !o2 else { throw overflow }
      let (sum, o3) = st < 0 ? below.addingReportingOverflow(span) : above.addingReportingOverflow(span)
      // Offsets are formed as signed 64-bit products: each must fit.
      guard !o3, sum <= UInt64(Int64.max) else { throw overflow }
      if st < 0 { below = sum } else { above = sum }
      count = c
    }
    let base = UInt64(UInt(bitPattern: v.data))
    guard below <= base, !base.addingReportingOverflow(above).overflow else { throw overflow }
  }
  return v
}

private let placeholder = UnsafeMutableRawPointer(bitPattern: 64)!

func makeMatrix<T: KernelScalar>(_ v: gmk_array, offset: Int, dims: (Int, Int) = (0, 1)) -> StridedMatrix<T> {
  let shape = [v.shape.0, v.shape.1, v.shape.2]
  let strides = [v.strides.0, v.strides.1, v.strides.2]
  return StridedMatrix(
    base: (v.data ?? placeholder) + offset, rows: Int(shape[dims.0]), cols: Int(shape[dims.1]),
    rowStride: Int(strides[dims.0]), colStride: Int(strides[dims.1]))
}

func makeVector<T: KernelScalar>(_ v: gmk_array) -> StridedVector<T> {
  StridedVector(base: v.data ?? placeholder, count: Int(v.shape.0), stride: Int(v.strides.0))
}
