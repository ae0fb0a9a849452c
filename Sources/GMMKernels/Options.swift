internal import _GMKSupport

/// How a kernel call may use the machine.
public struct KernelOptions: Sendable {
  /// The default workspace bound: 64 MiB.
  public static let defaultMemoryLimit = 64 << 20

  /// Threads to use; `nil` means every CPU this process may run on.
  public var threads: Int?
  /// Bytes of workspace the call may allocate beside its output, whatever the number of rows.
  public var memoryLimit: Int
  /// Polled between row blocks; returning true stops the call with `KernelError.cancelled`.
  public var isCancelled: (@Sendable () -> Bool)?
  /// Called after each row block with the number of rows it finished, from worker threads.
  public var progress: (@Sendable (Int) -> Void)?

  public init(
    threads: Int? = nil, memoryLimit: Int = KernelOptions.defaultMemoryLimit,
    isCancelled: (@Sendable () -> Bool)? = nil, progress: (@Sendable (Int) -> Void)? = nil
  ) {
    self.threads = threads
    self.memoryLimit = memoryLimit
    self.isCancelled = isCancelled
    self.progress = progress
  }

  /// The number of CPUs this process may run on (its affinity mask).
  public static var availableCPUs: Int { Int(gmk_support_cpu_count()) }

  var resolvedThreads: Int {
    if let t = threads, t > 0 { return t }
    return KernelOptions.availableCPUs
  }
}
