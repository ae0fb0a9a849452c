// Packing: copying rows of a strided view into aligned, contiguous, row-major workspace,
// centring (and scaling) them on the way. Centring here, before any product, is what
// keeps data with a large mean offset from cancelling (x·x − c·c loses every digit the
// offset takes).

/// Copies `x` (m × d) into `dst` (row-major, leading dimension `d`), subtracting `center`.
@inline(__always)
func packRows<T: KernelScalar>(
  _ x: StridedMatrix<T>, into dst: UnsafeMutablePointer<T>, center: UnsafePointer<T>?
) {
  for i in 0..<x.rows {
    packRow(x.row(i), into: dst + i * x.cols, center: center, scale: 1)
  }
}

/// Copies one row into `dst`, as `scale * (x - center)`.
@inline(__always)
func packRow<T: KernelScalar>(
  _ x: StridedVector<T>, into dst: UnsafeMutablePointer<T>, center: UnsafePointer<T>?, scale: T
) {
  let d = x.count
  let e = MemoryLayout<T>.stride
  if x.stride == e && Int(bitPattern: x.base) % MemoryLayout<T>.alignment == 0 {
    let src = x.base.assumingMemoryBound(to: T.self)
    if let c = center {
      if scale == 1 {
        for j in 0..<d { dst[j] = src[j] - c[j] }
      } else {
        for j in 0..<d { dst[j] = scale * (src[j] - c[j]) }
      }
    } else if scale == 1 {
      dst.update(from: src, count: d)
    } else {
      for j in 0..<d { dst[j] = scale * src[j] }
    }
    return
  }
  if let c = center {
    for j in 0..<d { dst[j] = scale * (x[j] - c[j]) }
  } else {
    for j in 0..<d { dst[j] = scale * x[j] }
  }
}

/// A contiguous copy of a small operand vector (a center), or nil.
func packVector<T: KernelScalar>(_ v: StridedVector<T>?) throws(KernelError) -> Workspace<T>? {
  guard let v else { return nil }
  let w = try Workspace<T>(count: v.count)
  for j in 0..<v.count { w.pointer[j] = v[j] }
  return w
}

/// Packs a strided block row-major into `buffer` and returns it as a BLAS operand.
@inline(__always)
func packed<T: KernelScalar>(_ x: StridedMatrix<T>, into buffer: Workspace<T>) -> BLASOperand<T> {
  packRows(x, into: buffer.pointer, center: nil)
  return BLASOperand(pointer: UnsafePointer(buffer.pointer), rowMajor: true, ld: max(1, x.cols))
}
