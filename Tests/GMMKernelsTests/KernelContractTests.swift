import CBLAS
import GMMKernels
import XCTest
import _GMKTestSupport

/// One call of a kernel on fixed data, with fresh outputs: `run` calls it with the given
/// options; `values` reads what it produced as Doubles (NaN where nothing was written);
/// `rowsWritten`, for kernels with one output row per row of X, counts the rows written.
struct ContractCall {
  let outputs: [(String, any GuardedStorage)]
  let run: (KernelOptions) throws(KernelError) -> Void
  let values: () -> [Double]
  let rowsWritten: (() -> Int)?

  init(
    outputs: [(String, any GuardedStorage)], rowsWritten: (() -> Int)? = nil,
    values: @escaping () -> [Double], run: @escaping (KernelOptions) throws(KernelError) -> Void
  ) {
    (self.outputs, self.rowsWritten, self.values, self.run) = (outputs, rowsWritten, values, run)
  }
}

/// A kernel as the contract tests see it: `rows` is what its progress counts; `make` sets up
/// a new call into new outputs.
struct ContractKernel {
  let name: String
  let rows: Int
  let make: () -> ContractCall
}

/// How many of the `rows` rows of a row-major `values` have their first element written.
private func writtenRows(_ values: [Double], rows: Int) -> Int {
  guard rows > 0 else { return 0 }
  let width = values.count / rows
  return (0..<rows).filter { !values[$0 * width].isNaN }.count
}

/// Every kernel of the library on `n` rows of small integers (so that sums in any order are
/// exact, float32 included, except the mixture pass's exponentials); the default `n` makes
/// many blocks under `contractLimit`.
func contractKernels<T: KernelScalar>(_: T.Type, rows n: Int = 5000) -> [ContractKernel] {
  var rng = SplitMix64(seed: 41)
  // 5000 rows are at least three blocks of every kernel (matmul's are 2048 rows high).
  let (d, k, m) = (6, 3, 5)
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
    ContractKernel(name: "quadform", rows: n) {
      let out = TestVector<T>(count: n)
      return ContractCall(outputs: [("out", out)], rowsWritten: { writtenRows(out.values, rows: n) }, values: { out.values }) {
        options throws(KernelError) in
        try quadform(x.view, q.view, center: center.view, out: out.view, options: options)
      }
    },
    ContractKernel(name: "quadformMany", rows: n) {
      let out = TestMatrix<T>(rows: n, cols: k)
      return ContractCall(outputs: [("out", out)], rowsWritten: { writtenRows(out.values, rows: n) }, values: { out.values }) {
        options throws(KernelError) in
        try quadformMany(x.view, qs.rowBlocks(k), centers: centers.view, out: out.view, options: options)
      }
    },
    ContractKernel(name: "weightedGram", rows: n) {
      let out = TestMatrix<T>(rows: d, cols: d)
      return ContractCall(outputs: [("out", out)], values: { out.values }) { options throws(KernelError) in
        try weightedGram(x.view, weights: w.view, center: center.view, out: out.view, options: options)
      }
    },
    ContractKernel(name: "weightedGramMany", rows: n) {
      let out = TestMatrix<T>(rows: k * d, cols: d)
      return ContractCall(outputs: [("out", out)], values: { out.values }) { options throws(KernelError) in
        try weightedGramMany(x.view, r.view, centers: centers.view, out: out.rowBlocks(k), options: options)
      }
    },
    ContractKernel(name: "weightedSum", rows: n) {
      let out = TestMatrix<T>(rows: k, cols: d)
      return ContractCall(outputs: [("out", out)], values: { out.values }) { options throws(KernelError) in
        try weightedSum(x.view, r.view, out: out.view, options: options)
      }
    },
    ContractKernel(name: "matmul", rows: n) {
      let out = TestMatrix<T>(rows: n, cols: m)
      return ContractCall(outputs: [("out", out)], rowsWritten: { writtenRows(out.values, rows: n) }, values: { out.values }) {
        options throws(KernelError) in
        try matmul(x.view, b.view, out: out.view, options: options)
      }
    },
    ContractKernel(name: "outer", rows: n) {
      let out = TestMatrix<T>(rows: n, cols: 200)
      return ContractCall(outputs: [("out", out)], rowsWritten: { writtenRows(out.values, rows: n) }, values: { out.values }) {
        options throws(KernelError) in
        try outer(y.view, wide.view, out: out.view, options: options)
      }
    },
    ContractKernel(name: "mixturePass", rows: n) {
      let resp = TestMatrix<T>(rows: n, cols: k)
      let scores = TestVector<T>(count: n)
      let stats = StatisticsBox()
      return ContractCall(
        outputs: [("responsibilities", resp), ("scores", scores)],
        rowsWritten: {
          let (r, s) = (writtenRows(resp.values, rows: n), writtenRows(scores.values, rows: n))
          return r == s ? r : -1
        },
        values: { stats.values + resp.values + scores.values }
      ) { options throws(KernelError) in
        let result = try mixturePass(
          x.view, sampleWeights: nil, logNorm: logNorm.view, means: centers.view,
          precisions: .matrices([precision.view, precision.view, precision.view]), scatter: .full,
          responsibilities: resp.view, scores: scores.view, options: options)
        stats.values = [result.logLikelihood] + result.counts + result.firstMoments + result.scatter
      }
    },
  ]
}

/// Where a mixture pass's returned statistics are kept for `ContractCall.values`.
private final class StatisticsBox {
  var values: [Double] = []
}

/// A limit small enough for many blocks of the contract's data, large enough for every kernel.
let contractLimit = 48 << 10

/// The contract every kernel keeps, checked on each through the same table: results that do
/// not depend on the blocks or the threads, nothing written outside the outputs' views,
/// cancellation (nothing written before the first block; part way, exactly the rows
/// reported), progress, and OpenBLAS's thread count as it was.
final class KernelContractTests: XCTestCase {
  private func forEachKernel(_ body: (ContractKernel, String) -> Void) {
    for kernel in contractKernels(Float.self) { body(kernel, "Float") }
    for kernel in contractKernels(Double.self) { body(kernel, "Double") }
  }

  /// Runs `call` with `options`: nil (and a failure) if it throws or writes outside an
  /// output's view, else its values.
  private func run(_ call: ContractCall, _ options: KernelOptions, _ label: String) -> [Double]? {
    do {
      try call.run(options)
    } catch {
      XCTFail("\(label): \(error)")
      return nil
    }
    for (name, output) in call.outputs where !output.onlyViewChanged() {
      XCTFail("\(label): wrote outside \(name)")
      return nil
    }
    return call.values()
  }

  func testSameResultWhateverTheBlocksAndThreads() {
    forEachKernel { kernel, type in
      let tolerance = type == "Float" ? 1e-6 : 1e-13
      guard let want = run(kernel.make(), KernelOptions(threads: 1), "\(kernel.name) \(type) threads=1") else { return }
      XCTAssertFalse(want.contains { $0.isNaN }, "\(kernel.name) \(type): an output element was not written")
      let scale = want.map(abs).max() ?? 0
      for (threads, limit) in [(2, KernelOptions.defaultMemoryLimit), (1, contractLimit), (2, contractLimit), (3, contractLimit)] {
        let label = "\(kernel.name) \(type) threads=\(threads) memoryLimit=\(limit)"
        guard let got = run(kernel.make(), KernelOptions(threads: threads, memoryLimit: limit), label) else { continue }
        let worst = zip(got, want).map { $0.isNaN ? Double.infinity : abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, tolerance * scale, label)
      }
    }
  }

  func testCancelledBeforeTheFirstBlockWritesNothing() {
    forEachKernel { kernel, type in
      for threads in [1, 2] {
        let label = "\(kernel.name) \(type) threads=\(threads)"
        let call = kernel.make()
        let rows = AtomicCounter()
        let options = KernelOptions(
          threads: threads, memoryLimit: contractLimit, isCancelled: { true }, progress: { rows.add($0) })
        XCTAssertEqual(thrownError { () throws(KernelError) in try call.run(options) }, .cancelled, label)
        XCTAssertEqual(rows.value, 0, "\(label): rows reported")
        for (name, output) in call.outputs {
          XCTAssertTrue(output.untouched(), "\(label): \(name) was written")
        }
      }
    }
  }

  func testCancelledPartWayStopsEarly() {
    forEachKernel { kernel, type in
      for threads in [1, 2] {
        let label = "\(kernel.name) \(type) threads=\(threads)"
        let call = kernel.make()
        let polls = AtomicCounter()
        let rows = AtomicCounter()
        let options = KernelOptions(
          // Each worker starts one block, then the cancel fires.
          threads: threads, memoryLimit: contractLimit, isCancelled: { polls.fetchAdd(1) >= threads },
          progress: { rows.add($0) })
        XCTAssertEqual(thrownError { () throws(KernelError) in try call.run(options) }, .cancelled, label)
        XCTAssertGreaterThan(rows.value, 0, "\(label): no block finished before the cancel")
        XCTAssertLessThan(rows.value, kernel.rows, "\(label): every row was done despite the cancel")
        if let written = call.rowsWritten {
          XCTAssertEqual(written(), rows.value, "\(label): rows written against rows reported")
        }
        for (name, output) in call.outputs {
          XCTAssertTrue(output.onlyViewChanged(), "\(label): wrote outside \(name)")
        }
      }
    }
  }

  func testProgressCountsEveryRow() {
    for n in [0, 1, 5000] {
      for (kernel, type) in contractKernels(Float.self, rows: n).map({ ($0, "Float") })
        + contractKernels(Double.self, rows: n).map({ ($0, "Double") })
      {
        for (threads, limit) in [(nil, KernelOptions.defaultMemoryLimit), (1, contractLimit), (2, contractLimit), (3, contractLimit)] as [(Int?, Int)] {
          let rows = AtomicCounter()
          let calls = AtomicCounter()
          let label = "\(kernel.name) \(type) n=\(n) threads=\(String(describing: threads)) memoryLimit=\(limit)"
          _ = run(kernel.make(), progressOptions(threads: threads, memoryLimit: limit, rows: rows, calls: calls), label)
          XCTAssertEqual(rows.value, n, label)
        }
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
        _ = run(kernel.make(), KernelOptions(threads: threads, memoryLimit: limit), label)
        XCTAssertEqual(openblas_get_num_threads(), marker, label)
      }
    }
  }
}
