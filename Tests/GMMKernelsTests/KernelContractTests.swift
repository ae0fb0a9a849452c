import CBLAS
import GMMKernels
import XCTest
import _GMKTestSupport

/// One kernel as the contract tests call it, on fixed data: `rows` is what its progress
/// counts; `call` runs it with the given options into fresh outputs and returns them as
/// Doubles (NaN where nothing was written).
struct ContractKernel {
  let name: String
  let rows: Int
  let call: (KernelOptions) throws(KernelError) -> [Double]
}

/// Every kernel of the library, on data of small integers (so that sums in any order are
/// exact, float32 included, except the mixture pass's exponentials) with enough rows for
/// many blocks under `contractLimit`.
func contractKernels<T: KernelScalar>(_: T.Type) -> [ContractKernel] {
  var rng = SplitMix64(seed: 41)
  // Enough rows for at least three blocks of every kernel (matmul's are 2048 rows high).
  let (n, d, k, m) = (5000, 6, 3, 5)
  let x = TestMatrix<T>(rows: n, cols: d, values: exactValues(&rng, count: n * d))
  let q = TestMatrix<T>(rows: d, cols: d, values: exactValues(&rng, count: d * d))
  let qs = TestMatrix<T>(rows: k * d, cols: d, values: exactValues(&rng, count: k * d * d))
  let center = TestVector<T>(values: exactValues(&rng, count: d))
  let centers = TestMatrix<T>(rows: k, cols: d, values: exactValues(&rng, count: k * d))
  let w = TestVector<T>(values: exactValues(&rng, count: n))
  let r = TestMatrix<T>(rows: n, cols: k, values: exactValues(&rng, count: n * k))
  let b = TestMatrix<T>(rows: d, cols: m, values: exactValues(&rng, count: d * m))
  let y = TestVector<T>(values: exactValues(&rng, count: n))
  // outer's blocks are 1 MiB of `out`: a wide x gives it several.
  let wide = TestVector<T>(values: exactValues(&rng, count: 200))
  var identity = [Double](repeating: 0, count: d * d)
  for i in 0..<d { identity[i * d + i] = 0.25 }
  let precision = TestMatrix<T>(rows: d, cols: d, values: identity)
  let logNorm = TestVector<T>(values: [Double](repeating: -1, count: k))

  return [
    ContractKernel(name: "quadform", rows: n) { options throws(KernelError) in
      let out = TestVector<T>(count: n)
      try quadform(x.view, q.view, center: center.view, out: out.view, options: options)
      return out.values
    },
    ContractKernel(name: "quadformMany", rows: n) { options throws(KernelError) in
      let out = TestMatrix<T>(rows: n, cols: k)
      try quadformMany(x.view, qs.rowBlocks(k), centers: centers.view, out: out.view, options: options)
      return out.values
    },
    ContractKernel(name: "weightedGram", rows: n) { options throws(KernelError) in
      let out = TestMatrix<T>(rows: d, cols: d)
      try weightedGram(x.view, weights: w.view, center: center.view, out: out.view, options: options)
      return out.values
    },
    ContractKernel(name: "weightedGramMany", rows: n) { options throws(KernelError) in
      let out = TestMatrix<T>(rows: k * d, cols: d)
      try weightedGramMany(x.view, r.view, centers: centers.view, out: out.rowBlocks(k), options: options)
      return out.values
    },
    ContractKernel(name: "weightedSum", rows: n) { options throws(KernelError) in
      let out = TestMatrix<T>(rows: k, cols: d)
      try weightedSum(x.view, r.view, out: out.view, options: options)
      return out.values
    },
    ContractKernel(name: "matmul", rows: n) { options throws(KernelError) in
      let out = TestMatrix<T>(rows: n, cols: m)
      try matmul(x.view, b.view, out: out.view, options: options)
      return out.values
    },
    ContractKernel(name: "outer", rows: n) { options throws(KernelError) in
      let out = TestMatrix<T>(rows: n, cols: 200)
      try outer(y.view, wide.view, out: out.view, options: options)
      return out.values
    },
    ContractKernel(name: "mixturePass", rows: n) { options throws(KernelError) in
      let resp = TestMatrix<T>(rows: n, cols: k)
      let stats = try mixturePass(
        x.view, sampleWeights: nil, logNorm: logNorm.view, means: centers.view,
        precisions: .matrices([precision.view, precision.view, precision.view]), scatter: .full,
        responsibilities: resp.view, options: options)
      return [stats.logLikelihood] + stats.counts + stats.firstMoments + stats.scatter + resp.values
    },
  ]
}

/// A limit small enough for many blocks of the contract's data, large enough for every kernel.
let contractLimit = 48 << 10

/// The contract every kernel keeps, checked on each through the same table: results that do
/// not depend on the blocks or the threads, cancellation, progress, and OpenBLAS's thread
/// count as it was.
final class KernelContractTests: XCTestCase {
  private func forEachKernel(_ body: (ContractKernel, String) -> Void) {
    for kernel in contractKernels(Float.self) { body(kernel, "Float") }
    for kernel in contractKernels(Double.self) { body(kernel, "Double") }
  }

  private func run(_ kernel: ContractKernel, _ options: KernelOptions, _ label: String) -> [Double]? {
    do {
      return try kernel.call(options)
    } catch {
      XCTFail("\(kernel.name) \(label): \(error)")
      return nil
    }
  }

  func testSameResultWhateverTheBlocksAndThreads() {
    forEachKernel { kernel, type in
      let tolerance = type == "Float" ? 1e-6 : 1e-13
      guard let want = run(kernel, KernelOptions(threads: 1), "\(type) threads=1") else { return }
      XCTAssertFalse(want.contains { $0.isNaN }, "\(kernel.name) \(type): an output element was not written")
      let scale = want.map(abs).max() ?? 0
      for (threads, limit) in [(2, KernelOptions.defaultMemoryLimit), (1, contractLimit), (2, contractLimit), (3, contractLimit)] {
        let label = "\(type) threads=\(threads) memoryLimit=\(limit)"
        guard let got = run(kernel, KernelOptions(threads: threads, memoryLimit: limit), label) else { continue }
        let worst = zip(got, want).map { $0.isNaN ? Double.infinity : abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, tolerance * scale, "\(kernel.name) \(label)")
      }
    }
  }

  func testCancelledBeforeTheFirstBlock() {
    forEachKernel { kernel, type in
      for threads in [1, 2] {
        let options = KernelOptions(threads: threads, memoryLimit: contractLimit, isCancelled: { true })
        XCTAssertEqual(thrownError { () throws(KernelError) in _ = try kernel.call(options) }, .cancelled,
                       "\(kernel.name) \(type) threads=\(threads)")
      }
    }
  }

  func testCancelledPartWayStopsEarly() {
    forEachKernel { kernel, type in
      for threads in [1, 2] {
        let polls = AtomicCounter()
        let rows = AtomicCounter()
        let options = KernelOptions(
          // Each worker starts one block, then the cancel fires.
          threads: threads, memoryLimit: contractLimit, isCancelled: { polls.fetchAdd(1) >= threads },
          progress: { rows.add($0) })
        let label = "\(kernel.name) \(type) threads=\(threads)"
        XCTAssertEqual(thrownError { () throws(KernelError) in _ = try kernel.call(options) }, .cancelled, label)
        XCTAssertGreaterThan(rows.value, 0, "\(label): no block finished before the cancel")
        XCTAssertLessThan(rows.value, kernel.rows, "\(label): every row was done despite the cancel")
      }
    }
  }

  func testProgressCountsEveryRow() {
    forEachKernel { kernel, type in
      for (threads, limit) in [(nil, KernelOptions.defaultMemoryLimit), (1, contractLimit), (2, contractLimit), (3, contractLimit)] as [(Int?, Int)] {
        let rows = AtomicCounter()
        let calls = AtomicCounter()
        let label = "\(kernel.name) \(type) threads=\(String(describing: threads)) memoryLimit=\(limit)"
        _ = run(kernel, progressOptions(threads: threads, memoryLimit: limit, rows: rows, calls: calls), label)
        XCTAssertEqual(rows.value, kernel.rows, label)
      }
    }
  }

  func testOpenBLASThreadCountIsRestored() {
    let before = openblas_get_num_threads()
    defer { openblas_set_num_threads(before) }
    // A count no plan here chooses (OpenBLAS may cap it: the count it took is the marker).
    openblas_set_num_threads(7)
    let marker = openblas_get_num_threads()
    forEachKernel { kernel, type in
      for (threads, limit) in [(1, KernelOptions.defaultMemoryLimit), (2, KernelOptions.defaultMemoryLimit), (2, contractLimit)] {
        let label = "\(kernel.name) \(type) threads=\(threads) memoryLimit=\(limit)"
        _ = run(kernel, KernelOptions(threads: threads, memoryLimit: limit), label)
        XCTAssertEqual(openblas_get_num_threads(), marker, label)
      }
    }
  }
}
