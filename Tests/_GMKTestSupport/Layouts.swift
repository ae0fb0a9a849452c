import GMMKernels

#if canImport(Glibc)
import Glibc
#endif

// Test arrays in every storage layout a numpy caller can hand over: C order, Fortran
// order, padded rows, negative strides, every-other-row and every-other-column views,
// and base addresses that are not a multiple of the element size (a memmap at an odd
// offset). Each array owns a byte buffer with guard bytes on both sides; every byte
// that is not an element of the view (gaps and guards) holds `fillByte`. 0xFF bytes read
// as NaN in both Float and Double, so a kernel that reads a gap produces NaN, and
// `onlyViewChanged()` finds any write outside the view.

/// The byte that fills everything outside a view: all-ones is a NaN for Float and Double.
public let fillByte: UInt8 = 0xFF
/// Guard bytes before and after every buffer.
let guardBytes = 32

/// How a rows × cols matrix is laid out in its buffer.
public enum MatrixLayout: CustomStringConvertible, Equatable {
  /// Row-major, contiguous.
  case cOrder
  /// Column-major, contiguous.
  case fortranOrder
  /// Row-major with 3 unused elements after each row (a leading dimension > cols).
  case paddedRows
  /// Row-major storage viewed from its last row: negative row stride.
  case reversedRows
  /// Row-major storage viewed from its last element: both strides negative.
  case reversedBoth
  /// Every other row of a row-major (2·rows) × cols buffer.
  case everyOtherRow
  /// Every other row and column of a row-major (2·rows) × (2·cols) buffer.
  case everyOtherColumn
  /// Row-major at a base address `byteOffset` (1...7) bytes past an aligned address.
  case unaligned(byteOffset: Int)
  /// Column-major at an unaligned base address.
  case unalignedFortran(byteOffset: Int)

  /// One of each kind.
  public static let all: [MatrixLayout] = [
    .cOrder, .fortranOrder, .paddedRows, .reversedRows, .reversedBoth, .everyOtherRow,
    .everyOtherColumn, .unaligned(byteOffset: 1), .unalignedFortran(byteOffset: 7),
  ]

  public var description: String {
    switch self {
    case .cOrder: return "C order"
    case .fortranOrder: return "Fortran order"
    case .paddedRows: return "padded rows"
    case .reversedRows: return "reversed rows"
    case .reversedBoth: return "reversed rows and columns"
    case .everyOtherRow: return "every other row"
    case .everyOtherColumn: return "every other row and column"
    case .unaligned(let k): return "C order at +\(k) bytes"
    case .unalignedFortran(let k): return "Fortran order at +\(k) bytes"
    }
  }

  /// Buffer size, offset of element (0, 0) and strides, all in bytes, for a rows × cols
  /// matrix of `e`-byte elements.
  func geometry(rows r: Int, cols c: Int, elementSize e: Int)
    -> (bytes: Int, origin: Int, rowStride: Int, colStride: Int)
  {
    let lastRow = max(r - 1, 0)
    let lastCol = max(c - 1, 0)
    switch self {
    case .cOrder: return (r * c * e, 0, c * e, e)
    case .fortranOrder: return (r * c * e, 0, e, r * e)
    case .paddedRows: return (r * (c + 3) * e, 0, (c + 3) * e, e)
    case .reversedRows: return (r * c * e, lastRow * c * e, -c * e, e)
    case .reversedBoth: return (r * c * e, (lastRow * c + lastCol) * e, -c * e, -e)
    case .everyOtherRow: return (2 * r * c * e, 0, 2 * c * e, e)
    case .everyOtherColumn: return (4 * r * c * e, 0, 4 * c * e, 2 * e)
    case .unaligned(let k): return (r * c * e + k, k, c * e, e)
    case .unalignedFortran(let k): return (r * c * e + k, k, e, r * e)
    }
  }
}

/// How a vector is laid out in its buffer.
public enum VectorLayout: CustomStringConvertible, Equatable {
  case contiguous
  /// Viewed from its last element: negative stride.
  case reversed
  /// Every other element.
  case everyOther
  /// Contiguous at a base address `byteOffset` (1...7) bytes past an aligned address.
  case unaligned(byteOffset: Int)

  public static let all: [VectorLayout] = [.contiguous, .reversed, .everyOther, .unaligned(byteOffset: 3)]

  public var description: String {
    switch self {
    case .contiguous: return "contiguous"
    case .reversed: return "reversed"
    case .everyOther: return "every other element"
    case .unaligned(let k): return "contiguous at +\(k) bytes"
    }
  }

  func geometry(count n: Int, elementSize e: Int) -> (bytes: Int, origin: Int, stride: Int) {
    switch self {
    case .contiguous: return (n * e, 0, e)
    case .reversed: return (n * e, max(n - 1, 0) * e, -e)
    case .everyOther: return (2 * n * e, 0, 2 * e)
    case .unaligned(let k): return (n * e + k, k, e)
    }
  }
}

/// A byte buffer with guard bytes, every byte set to `fillByte`; freed on deinit.
final class GuardedBuffer {
  let raw: UnsafeMutableRawPointer
  let byteCount: Int

  init(bytes: Int) {
    byteCount = bytes + 2 * guardBytes
    raw = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
    raw.initializeMemory(as: UInt8.self, repeating: fillByte, count: byteCount)
  }

  deinit { raw.deallocate() }

  /// The address of byte `offset` of the payload (after the leading guard bytes).
  func address(_ offset: Int) -> UnsafeMutableRawPointer { raw + guardBytes + offset }

  /// Whether every byte outside `elementOffsets` (payload offsets of `e`-byte elements)
  /// still holds `fillByte`.
  func onlyChanged(elementOffsets: [Int], elementSize e: Int) -> Bool {
    // Compare a copy with the view's elements reset to the fill against an all-fill
    // buffer: memcmp keeps this cheap for large views in debug builds.
    let copy = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
    let pristine = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
    defer {
      copy.deallocate()
      pristine.deallocate()
    }
    copy.copyMemory(from: raw, byteCount: byteCount)
    pristine.initializeMemory(as: UInt8.self, repeating: fillByte, count: byteCount)
    for o in elementOffsets {
      (copy + guardBytes + o).initializeMemory(as: UInt8.self, repeating: fillByte, count: e)
    }
    return memcmp(copy, pristine, byteCount) == 0
  }

  /// A copy of every byte, guards included.
  func snapshot() -> [UInt8] {
    [UInt8](UnsafeRawBufferPointer(start: raw, count: byteCount))
  }

  /// Whether every byte, guards included, equals `snapshot`.
  func equals(_ snapshot: [UInt8]) -> Bool {
    snapshot.count == byteCount && snapshot.withUnsafeBytes { memcmp($0.baseAddress!, raw, byteCount) == 0 }
  }
}

/// A rows × cols matrix of `T` in a given layout, owning its memory. Keep it alive (for
/// example with `withExtendedLifetime`) while a kernel uses `view`.
public final class TestMatrix<T: KernelScalar> {
  public let rows: Int
  public let cols: Int
  public let layout: MatrixLayout
  public let view: StridedMatrix<T>
  let buffer: GuardedBuffer
  let origin: Int

  /// A matrix whose elements are all `fillByte` bytes (NaN).
  public init(rows: Int, cols: Int, layout: MatrixLayout = .cOrder) {
    let e = MemoryLayout<T>.stride
    let g = layout.geometry(rows: rows, cols: cols, elementSize: e)
    self.rows = rows
    self.cols = cols
    self.layout = layout
    buffer = GuardedBuffer(bytes: g.bytes)
    origin = g.origin
    view = StridedMatrix(
      base: buffer.address(g.origin), rows: rows, cols: cols,
      rowStride: g.rowStride, colStride: g.colStride)
  }

  /// A matrix holding `values` (row-major, rows · cols of them) rounded to `T`.
  public convenience init(rows: Int, cols: Int, layout: MatrixLayout = .cOrder, values: [Double]) {
    precondition(values.count == rows * cols)
    self.init(rows: rows, cols: cols, layout: layout)
    for i in 0..<rows {
      for j in 0..<cols { self[i, j] = T(values[i * cols + j]) }
    }
  }

  /// Element (i, j), written with `storeBytes` (the address may be unaligned).
  public subscript(i: Int, j: Int) -> T {
    get { view.base.loadUnaligned(fromByteOffset: i * view.rowStride + j * view.colStride, as: T.self) }
    set { view.base.storeBytes(of: newValue, toByteOffset: i * view.rowStride + j * view.colStride, as: T.self) }
  }

  /// The elements as Doubles, row-major.
  public var values: [Double] {
    var v: [Double] = []
    v.reserveCapacity(rows * cols)
    for i in 0..<rows {
      for j in 0..<cols { v.append(Double(self[i, j])) }
    }
    return v
  }

  /// The matrix as `count` stacked matrices of `rows / count` rows each (the K matrices of a
  /// K × d × d array, say): block k is rows k·(rows / count) ..< (k + 1)·(rows / count).
  public func rowBlocks(_ count: Int) -> [StridedMatrix<T>] {
    if count == 0 { return [] }
    precondition(count > 0 && rows % count == 0)
    let height = rows / count
    return (0..<count).map {
      StridedMatrix(
        base: view.base + $0 * height * view.rowStride, rows: height, cols: cols,
        rowStride: view.rowStride, colStride: view.colStride)
    }
  }

  /// Whether nothing outside the view's elements was written since creation.
  public func onlyViewChanged() -> Bool {
    var offsets: [Int] = []
    for i in 0..<rows {
      for j in 0..<cols { offsets.append(origin + i * view.rowStride + j * view.colStride) }
    }
    return buffer.onlyChanged(elementOffsets: offsets, elementSize: MemoryLayout<T>.stride)
  }

  /// Whether no byte of the buffer was written since creation (not even in the view).
  public func untouched() -> Bool {
    buffer.onlyChanged(elementOffsets: [], elementSize: MemoryLayout<T>.stride)
  }

  /// Every byte of the buffer, to check later with `unchanged(since:)`.
  public func snapshot() -> [UInt8] { buffer.snapshot() }

  /// Whether no byte of the buffer changed since `snapshot`.
  public func unchanged(since snapshot: [UInt8]) -> Bool { buffer.equals(snapshot) }
}

/// A vector of `T` in a given layout, owning its memory.
public final class TestVector<T: KernelScalar> {
  public let count: Int
  public let layout: VectorLayout
  public let view: StridedVector<T>
  let buffer: GuardedBuffer
  let origin: Int

  /// A vector whose elements are all `fillByte` bytes (NaN).
  public init(count: Int, layout: VectorLayout = .contiguous) {
    let e = MemoryLayout<T>.stride
    let g = layout.geometry(count: count, elementSize: e)
    self.count = count
    self.layout = layout
    buffer = GuardedBuffer(bytes: g.bytes)
    origin = g.origin
    view = StridedVector(base: buffer.address(g.origin), count: count, stride: g.stride)
  }

  /// A vector holding `values` rounded to `T`.
  public convenience init(layout: VectorLayout = .contiguous, values: [Double]) {
    self.init(count: values.count, layout: layout)
    for i in 0..<values.count { self[i] = T(values[i]) }
  }

  public subscript(i: Int) -> T {
    get { view.base.loadUnaligned(fromByteOffset: i * view.stride, as: T.self) }
    set { view.base.storeBytes(of: newValue, toByteOffset: i * view.stride, as: T.self) }
  }

  public var values: [Double] { (0..<count).map { Double(self[$0]) } }

  public func onlyViewChanged() -> Bool {
    buffer.onlyChanged(
      elementOffsets: (0..<count).map { origin + $0 * view.stride }, elementSize: MemoryLayout<T>.stride)
  }

  public func untouched() -> Bool {
    buffer.onlyChanged(elementOffsets: [], elementSize: MemoryLayout<T>.stride)
  }

  public func snapshot() -> [UInt8] { buffer.snapshot() }

  public func unchanged(since snapshot: [UInt8]) -> Bool { buffer.equals(snapshot) }
}
