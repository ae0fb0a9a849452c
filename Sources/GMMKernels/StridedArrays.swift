/// A strided 1-D view of `T` elements: element `i` is at `base + i * stride` (bytes).
///
/// Strides are in bytes, numpy's convention, so views at unaligned addresses (a memmap
/// at an odd offset) are described exactly; elements are read with unaligned loads.
/// The view does not own its memory and does not check bounds.
public struct StridedVector<T: KernelScalar> {
  public var base: UnsafeMutableRawPointer
  public var count: Int
  public var stride: Int

  public init(base: UnsafeMutableRawPointer, count: Int, stride: Int) {
    self.base = base
    self.count = count
    self.stride = stride
  }

  /// A view of a contiguous buffer.
  public init(_ buffer: UnsafeMutableBufferPointer<T>) {
    self.init(
      base: UnsafeMutableRawPointer(buffer.baseAddress ?? UnsafeMutablePointer(bitPattern: MemoryLayout<T>.alignment)!),
      count: buffer.count, stride: MemoryLayout<T>.stride)
  }

  @inline(__always) public subscript(i: Int) -> T {
    get { base.loadUnaligned(fromByteOffset: i &* stride, as: T.self) }
    nonmutating set { base.storeBytes(of: newValue, toByteOffset: i &* stride, as: T.self) }
  }
}

/// A strided 2-D view of `T` elements: element `(i, j)` is at
/// `base + i * rowStride + j * colStride` (bytes). Covers C order, Fortran order,
/// negative strides, every-other-row views and unaligned addresses.
public struct StridedMatrix<T: KernelScalar> {
  public var base: UnsafeMutableRawPointer
  public var rows: Int
  public var cols: Int
  public var rowStride: Int
  public var colStride: Int

  public init(base: UnsafeMutableRawPointer, rows: Int, cols: Int, rowStride: Int, colStride: Int) {
    self.base = base
    self.rows = rows
    self.cols = cols
    self.rowStride = rowStride
    self.colStride = colStride
  }

  /// A view of a contiguous row-major buffer of `rows * cols` elements.
  public init(rowMajor buffer: UnsafeMutableBufferPointer<T>, rows: Int, cols: Int) {
    precondition(buffer.count >= rows * cols)
    let e = MemoryLayout<T>.stride
    self.init(
      base: UnsafeMutableRawPointer(buffer.baseAddress ?? UnsafeMutablePointer(bitPattern: MemoryLayout<T>.alignment)!),
      rows: rows, cols: cols, rowStride: cols * e, colStride: e)
  }

  @inline(__always) public subscript(i: Int, j: Int) -> T {
    get { base.loadUnaligned(fromByteOffset: i &* rowStride &+ j &* colStride, as: T.self) }
    nonmutating set { base.storeBytes(of: newValue, toByteOffset: i &* rowStride &+ j &* colStride, as: T.self) }
  }

  /// Rows `range` of this view.
  @inline(__always) func rows(_ range: Range<Int>) -> StridedMatrix<T> {
    StridedMatrix(
      base: base + range.lowerBound * rowStride, rows: range.count, cols: cols,
      rowStride: rowStride, colStride: colStride)
  }

  /// Row `i` as a vector.
  @inline(__always) func row(_ i: Int) -> StridedVector<T> {
    StridedVector(base: base + i * rowStride, count: cols, stride: colStride)
  }

  /// How BLAS can read this view in place, if it can: a typed pointer, whether the
  /// storage is row-major (else column-major), and the leading dimension in elements.
  /// `nil` when the view must be packed first (misaligned, negative or non-unit strides).
  var blasOperand: BLASOperand<T>? {
    let e = MemoryLayout<T>.stride
    guard Int(bitPattern: base) % MemoryLayout<T>.alignment == 0 else { return nil }
    // BLAS takes leading dimensions as 32-bit integers: wider strides are packed instead.
    guard abs(rowStride) / e <= blasIntMax && abs(colStride) / e <= blasIntMax else { return nil }
    let p = UnsafePointer(base.assumingMemoryBound(to: T.self))
    if colStride == e || cols <= 1, rowStride % e == 0, rowStride / e >= max(1, cols) {
      return BLASOperand(pointer: p, rowMajor: true, ld: rowStride / e)
    }
    if rowStride == e || rows <= 1, colStride % e == 0, colStride / e >= max(1, rows) {
      return BLASOperand(pointer: p, rowMajor: false, ld: colStride / e)
    }
    if rows <= 1 && cols <= 1 { return BLASOperand(pointer: p, rowMajor: true, ld: 1) }
    return nil
  }
}

/// A matrix as BLAS sees it (see `StridedMatrix.blasOperand`).
struct BLASOperand<T: KernelScalar> {
  var pointer: UnsafePointer<T>
  var rowMajor: Bool
  var ld: Int

  /// The operand for rows `r0...` and columns `c0...` of the same matrix.
  @inline(__always) func offset(row r0: Int, col c0: Int) -> UnsafePointer<T> {
    rowMajor ? pointer + (r0 * ld + c0) : pointer + (c0 * ld + r0)
  }
}

/// The largest dimension or leading dimension BLAS (32-bit integers) accepts.
let blasIntMax = Int(Int32.max)

/// Throws unless every dimension fits BLAS's 32-bit integers.
func checkBLASDimensions(_ dims: Int...) throws(KernelError) {
  for d in dims where d > blasIntMax {
    throw .invalidArgument("a dimension of \(d) exceeds what BLAS takes (2**31 - 1)")
  }
}
