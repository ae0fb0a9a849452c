import Foundation
import GMMKernels
import XCTest
import _GMKSupport
import _GMKTestSupport

#if canImport(Glibc)
import Glibc
#endif

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

/// Runs `body` with the process's standard output and standard error sent to a temporary
/// file, and returns what was written there: for libraries (BLAS) that report misuse by
/// printing instead of failing.
func capturedOutput(_ body: () -> Void) -> String {
  fflush(stdout)
  fflush(stderr)
  var template = Array("/tmp/gmk-output-XXXXXX".utf8CString)
  let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
  guard fd >= 0 else {
    XCTFail("could not create a temporary file")
    body()
    return ""
  }
  let path = String(cString: template)
  let (savedOut, savedErr) = (dup(1), dup(2))
  dup2(fd, 1)
  dup2(fd, 2)
  body()
  fflush(stdout)
  fflush(stderr)
  dup2(savedOut, 1)
  dup2(savedErr, 2)
  close(savedOut)
  close(savedErr)
  close(fd)
  defer { unlink(path) }
  return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}

/// The threads that finished row blocks, recorded from the progress callback.
final class WorkerThreads: @unchecked Sendable {
  private let lock = NSLock()
  private var seen: Set<UInt> = []

  func record() {
    let id = UInt(pthread_self())
    lock.lock()
    seen.insert(id)
    lock.unlock()
  }

  var count: Int {
    lock.lock()
    defer { lock.unlock() }
    return seen.count
  }
}

/// Options that hold each worker after each block it finishes until as many threads as
/// can run at once have finished a block (or 2 s have passed), so that with several
/// workers and blocks every worker takes blocks on a thread of its own — under any load,
/// and with a fixed block order too — and their partial results must be combined; and
/// record which threads did.
func spreadingOptions(threads: Int, workers: WorkerThreads) -> KernelOptions {
  let wanted = min(threads, KernelOptions.availableCPUs)
  return KernelOptions(
    threads: threads,
    progress: { _ in
      workers.record()
      for _ in 0..<2000 where workers.count < wanted { usleep(1000) }
    })
}

/// A test array whose bytes a kernel call must leave alone: all of them (an input), or
/// all but its view's elements (an output).
protocol GuardedStorage {
  func snapshot() -> [UInt8]
  func unchanged(since snapshot: [UInt8]) -> Bool
  func onlyViewChanged() -> Bool
  func untouched() -> Bool
}

extension TestMatrix: GuardedStorage {}
extension TestVector: GuardedStorage {}

/// `[(name, a)]`, or nothing when the optional array `a` is absent: for `guardedCall`'s lists.
func named(_ name: String, _ a: (any GuardedStorage)?) -> [(String, any GuardedStorage)] {
  a.map { [(name, $0)] } ?? []
}

/// Runs `call` and fails the test if it throws, if one of `inputs` changed, or if it wrote
/// outside the view of one of `outputs` (each named in the message). Returns whether the
/// call returned.
func guardedCall(
  _ context: String, inputs: [(String, any GuardedStorage)], outputs: [(String, any GuardedStorage)],
  file: StaticString, line: UInt, _ call: () throws -> Void
) -> Bool {
  let before = inputs.map { $0.1.snapshot() }
  do {
    try call()
  } catch {
    XCTFail("\(context): threw \(error)", file: file, line: line)
    return false
  }
  for ((name, input), snapshot) in zip(inputs, before) {
    XCTAssertTrue(input.unchanged(since: snapshot), "\(context): \(name) was modified", file: file, line: line)
  }
  for (name, output) in outputs {
    XCTAssertTrue(output.onlyViewChanged(), "\(context): wrote outside \(name)", file: file, line: line)
  }
  return true
}
