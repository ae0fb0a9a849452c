internal import CBLAS
internal import Glibc

/// The library's one policy for OpenBLAS threads.
///
/// A call either runs parallel row blocks with single-threaded BLAS in each worker, or
/// sequential blocks with threaded BLAS; never both, which would put workers × BLAS
/// threads on the cores. OpenBLAS's thread count is process-wide, so concurrent calls
/// share it: calls wanting the same count run together, a call wanting another count
/// waits until the running ones finish. The count found before the first call is restored
/// whenever no call is running. (The OpenBLAS that numpy bundles is a different library
/// and is never touched.)
enum BLASThreads {
  private static let state = GateState()

  static func with<R>(_ threads: Int, _ body: () throws(KernelError) -> R) throws(KernelError) -> R {
    state.enter(threads)
    defer { state.leave() }
    return try body()
  }
}

private final class GateState: @unchecked Sendable {
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
  private var active = 0
  private var current = 0
  private var original = 0

  init() {
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(changed, nil)
  }

  func enter(_ threads: Int) {
    pthread_mutex_lock(mutex)
    while active > 0 && current != threads { pthread_cond_wait(changed, mutex) }
    if active == 0 {
      original = Int(openblas_get_num_threads())
      if original != threads { openblas_set_num_threads(Int32(threads)) }
      current = threads
    }
    active += 1
    pthread_mutex_unlock(mutex)
  }

  func leave() {
    pthread_mutex_lock(mutex)
    active -= 1
    if active == 0 {
      if original != current { openblas_set_num_threads(Int32(original)) }
      current = original
      pthread_cond_broadcast(changed)
    }
    pthread_mutex_unlock(mutex)
  }
}
