import GMMKernels
import XCTest
import _GMKSupport
import _GMKTestSupport

/// A counter that kernel callbacks update from worker threads.
final class AtomicCounter: @unchecked Sendable {
  private let cell = UnsafeMutablePointer<Int64>.allocate(capacity: 1)

  init() { cell.initialize(to: 0) }
  deinit { cell.deallocate() }

  func add(_ v: Int) { gmk_atomic_add_i64(cell, Int64(v)) }
  /// Adds `v` and returns the value before.
  func fetchAdd(_ v: Int) -> Int { Int(gmk_atomic_fetch_add_i64(cell, Int64(v))) }
  var value: Int { Int(gmk_atomic_fetch_add_i64(cell, 0)) }
}

/// Options that report progress into `rows` (rows finished) and `calls` (blocks finished).
func progressOptions(
  threads: Int? = nil, memoryLimit: Int = KernelOptions.defaultMemoryLimit,
  rows: AtomicCounter, calls: AtomicCounter
) -> KernelOptions {
  KernelOptions(
    threads: threads, memoryLimit: memoryLimit,
    progress: { done in
      rows.add(done)
      calls.add(1)
    })
}

/// The error a throwing call raised, or nil.
func thrownError(_ body: () throws(KernelError) -> Void) -> KernelError? {
  do {
    try body()
    return nil
  } catch {
    return error
  }
}

/// Asserts that `error` is `.invalidArgument` with a message that contains `mentions`.
func assertInvalidArgument(
  _ error: KernelError?, mentions: String, _ context: String,
  file: StaticString = #filePath, line: UInt = #line
) {
  guard case .invalidArgument(let message)? = error else {
    XCTFail("\(context): expected invalidArgument, got \(String(describing: error))", file: file, line: line)
    return
  }
  XCTAssertTrue(
    message.contains(mentions), "\(context): message \"\(message)\" does not mention \(mentions)",
    file: file, line: line)
}

/// Square weights (√w exact) of both signs and zeros, for data whose every product and
/// sum is an exact integer in Float.
let exactWeights: [Double] = [0, 1, 4, 9, -1, -4, 1, 4]

/// Uniform random integers small enough that quadform and weighted_gram of the sizes
/// these tests use are exact in Float: every product and partial sum is an integer (or a
/// half integer) below 2²³.
func exactValues(_ rng: inout SplitMix64, count: Int) -> [Double] {
  rng.integers(count: count, in: -4...4)
}
