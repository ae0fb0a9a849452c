internal import Glibc

/// A 64-byte aligned buffer of `T`, freed when the workspace is released.
///
/// Allocation failure is reported, never trapped on: a kernel must return an error
/// status across the C boundary, not abort the interpreter that called it.
final class Workspace<T: KernelScalar> {
  let pointer: UnsafeMutablePointer<T>
  let count: Int

  init(count: Int) throws(KernelError) {
    let size = bytes(max(count, 1), MemoryLayout<T>.stride)
    if size == Int.max { throw .outOfMemory("could not allocate \(count) elements of workspace") }
    var raw: UnsafeMutableRawPointer?
    guard posix_memalign(&raw, 64, size) == 0, let raw else {
      throw .outOfMemory("could not allocate \(size) bytes of workspace")
    }
    pointer = raw.bindMemory(to: T.self, capacity: max(count, 1))
    self.count = count
  }

  deinit { free(pointer) }

  func zero() { pointer.update(repeating: 0, count: count) }
}

/// A workspace of `Double` accumulators.
typealias Accumulator = Workspace<Double>

/// Checks that `bytes` of memory can be allocated now, and releases them.
///
/// Swift arrays (of per-component views and buffers) stop the process when an allocation
/// fails; before building arrays whose size grows with the number of components, a kernel
/// probes for their memory with an allocation that can fail, and throws instead.
package func probeAllocation(_ bytes: Int) throws(KernelError) {
  var raw: UnsafeMutableRawPointer?
  guard bytes > 0 else { return }
  guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
    throw .outOfMemory("could not allocate \(bytes) bytes of per-component workspace")
  }
  free(raw)
}

/// A generous estimate of what Swift arrays of `count` per-component entries cost:
/// `perEntry` bytes each plus object headers.
func componentTableBytes(_ count: Int, perEntry: Int) -> Int {
  bytes(count, total(perEntry, 128))
}
