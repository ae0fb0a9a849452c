import GMMKernels
import _GMKSupport

/// Runs `body`, mapping its outcome to a gmk_status and the thread's error message.
func exported(_ body: () throws(KernelError) -> Void) -> Int32 {
  do {
    try body()
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

/// The checked X and options every kernel starts from.
struct Arguments {
  var x: gmk_array
  var dtype: gmk_dtype
  var options: KernelOptions

  init(x: UnsafePointer<gmk_array>?, options: UnsafePointer<gmk_options>?) throws(KernelError) {
    self.x = try checked(x, "X", ndim: 2)
    dtype = gmk_dtype(rawValue: UInt32(self.x.dtype))
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

  func matrix<T: KernelScalar>(_: T.Type) throws(KernelError) -> StridedMatrix<T> {
    makeMatrix(x)
  }
}

/// Checks a descriptor: non-null, known dtype, the expected ndim, non-negative shape, and
/// that no element's byte offset overflows (so every address the kernel forms is valid
/// pointer arithmetic on the caller's buffer).
func checked(_ a: UnsafePointer<gmk_array>?, _ name: String, ndim: Int32) throws(KernelError) -> gmk_array {
  guard let a else { throw .invalidArgument("\(name) is a null pointer") }
  let v = a.pointee
  guard v.dtype == Int32(GMK_FLOAT32.rawValue) || v.dtype == Int32(GMK_FLOAT64.rawValue) else {
    throw .invalidType("\(name) has unknown dtype code \(v.dtype) (float32 is 1, float64 is 2)")
  }
  guard v.ndim == ndim else {
    throw .invalidArgument("\(name) must be \(ndim)-dimensional, got ndim=\(v.ndim)")
  }
  let shape = [v.shape.0, v.shape.1, v.shape.2].prefix(Int(ndim))
  let strides = [v.strides.0, v.strides.1, v.strides.2].prefix(Int(ndim))
  guard shape.allSatisfy({ $0 >= 0 }) else {
    throw .invalidArgument("\(name) has a negative dimension in shape \(Array(shape))")
  }
  let elements = shape.reduce(Int64(1)) { r, s in r.multipliedReportingOverflow(by: s).overflow ? -1 : (r < 0 ? -1 : r * s) }
  if elements != 0 {
    guard v.data != nil else { throw .invalidArgument("\(name) has a null data pointer") }
    // The extent of the view in bytes: Σ |stride| · (shape − 1) + element size.
    var extent: Int64 = v.dtype == Int32(GMK_FLOAT32.rawValue) ? 4 : 8
    for (s, st) in zip(shape, strides) {
      let (m, o1) = st.magnitude > UInt64(Int64.max) ? (0, true) : Int64(st.magnitude).multipliedReportingOverflow(by: s - 1)
      let (sum, o2) = extent.addingReportingOverflow(m)
      guard !o1 && !o2 else {
        throw .invalidArgument("\(name): shape \(Array(shape)) with strides \(Array(strides)) overflows the address space")
      }
      extent = sum
    }
  }
  return v
}

private func checkDtype(_ v: gmk_array, _ name: String, _ dtype: gmk_dtype) throws(KernelError) {
  guard v.dtype == Int32(dtype.rawValue) else {
    throw .invalidType("\(name) has dtype code \(v.dtype) but X has \(dtype.rawValue); they must match")
  }
}

func makeMatrix<T: KernelScalar>(_ v: gmk_array) -> StridedMatrix<T> {
  StridedMatrix(
    base: v.data ?? UnsafeMutableRawPointer(bitPattern: 64)!, rows: Int(v.shape.0), cols: Int(v.shape.1),
    rowStride: Int(v.strides.0), colStride: Int(v.strides.1))
}

func matrix<T: KernelScalar>(
  _: T.Type, _ a: UnsafePointer<gmk_array>?, _ name: String, dtype: gmk_dtype
) throws(KernelError) -> StridedMatrix<T> {
  let v = try checked(a, name, ndim: 2)
  try checkDtype(v, name, dtype)
  return makeMatrix(v)
}

func vector<T: KernelScalar>(
  _: T.Type, _ a: UnsafePointer<gmk_array>?, _ name: String, dtype: gmk_dtype
) throws(KernelError) -> StridedVector<T> {
  let v = try checked(a, name, ndim: 1)
  try checkDtype(v, name, dtype)
  return StridedVector(
    base: v.data ?? UnsafeMutableRawPointer(bitPattern: 64)!, count: Int(v.shape.0), stride: Int(v.strides.0))
}

func optionalVector<T: KernelScalar>(
  _: T.Type, _ a: UnsafePointer<gmk_array>?, _ name: String, dtype: gmk_dtype
) throws(KernelError) -> StridedVector<T>? {
  guard a != nil else { return nil }
  return try vector(T.self, a, name, dtype: dtype)
}
