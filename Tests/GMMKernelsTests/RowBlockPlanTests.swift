@testable import GMMKernels
import XCTest
import _GMKSupport

final class RowBlockPlanTests: XCTestCase {
  /// For many (rows, needs, limit, threads): the plan fits the limit and accounts for all
  /// the workspace it asks for, never runs threaded BLAS inside parallel workers, and
  /// throws only when even one row in one worker does not fit.
  func testPlansRespectTheLimitAndTheThreadPolicy() {
    var plans = 0
    var refusals = 0
    var grid: [(rows: Int, needs: WorkspaceNeeds)] = []
    for rows in [0, 1, 2, 7, 100, 513, 2052, 1_000_000] {
      for shared in [0, 64, 40_000] {
        for perWorker in [0, 800, 80_000] {
          for perRow in [0, 8, 72, 1_000] {
            for preferred in [1, 256, 2048] {
              grid.append((rows, WorkspaceNeeds(shared: shared, perWorker: perWorker, perRow: perRow, preferredBlockRows: preferred)))
            }
          }
        }
      }
    }
    for (rows, needs) in grid {
      let smallest = needs.shared + needs.perWorker + needs.perRow
      // (Nothing needed within a limit of 0 has its own test below.)
      for limit in [0, 1, 100, 4_096, 100_000, 1 << 20, 64 << 20] where smallest > 0 || limit > 0 {
        for threads in [1, 2, 3, 8] {
          for additional in [0, 800] {
            var needs = needs
            needs.perAdditionalWorker = additional
            let context = "rows=\(rows) \(needs) limit=\(limit) threads=\(threads)"
            let plan: RowBlockPlan
            do {
              plan = try RowBlockPlan(
                rows: rows, needs: needs, options: KernelOptions(threads: threads, memoryLimit: limit))
            } catch {
              refusals += 1
              guard case .invalidArgument(let message) = error else {
                XCTFail("\(context): threw \(error)")
                return
              }
              XCTAssertTrue(message.contains("memory_limit"), "\(context): \(message)")
              XCTAssertGreaterThan(smallest, limit, "\(context): refused although one row fits")
              continue
            }
            plans += 1
            XCTAssertLessThanOrEqual(plan.workspaceBytes, limit, context)
            XCTAssertGreaterThanOrEqual(
              plan.workspaceBytes,
              needs.shared + plan.workers * (needs.perWorker + plan.blockRows * needs.perRow)
                + (plan.workers - 1) * needs.perAdditionalWorker,
              "\(context): workspaceBytes does not cover the plan \(plan)")
            XCTAssertGreaterThanOrEqual(plan.blockRows, 1, context)
            XCTAssertLessThanOrEqual(plan.blockRows, max(needs.preferredBlockRows, 1), context)
            XCTAssertGreaterThanOrEqual(plan.workers, 1, context)
            XCTAssertLessThanOrEqual(plan.workers, threads, context)
            if plan.workers == 1 {
              XCTAssertEqual(plan.blasThreads, threads, "\(context): one worker gets every thread for BLAS")
            } else {
              XCTAssertEqual(plan.blasThreads, 1, "\(context): parallel workers with threaded BLAS")
            }
          }
        }
      }
    }
    // The grid must exercise both outcomes.
    XCTAssertGreaterThan(plans, 1000)
    XCTAssertGreaterThan(refusals, 100)
  }

  /// A call that needs no workspace fits any limit, 0 included: one row costs 0 bytes.
  func testNoWorkspaceFitsALimitOfZero() {
    let needs = WorkspaceNeeds(shared: 0, perWorker: 0, perRow: 0, preferredBlockRows: 256)
    for rows in [0, 1, 1000] {
      do {
        let plan = try RowBlockPlan(rows: rows, needs: needs, options: KernelOptions(threads: 2, memoryLimit: 0))
        XCTAssertEqual(plan.workspaceBytes, 0)
      } catch {
        XCTFail("rows=\(rows), nothing needed, memoryLimit=0: threw \(error)")
      }
    }
  }

  /// Rows are split among workers when there is room and enough rows.
  func testParallelWorkersWhenThereIsRoom() throws {
    let needs = WorkspaceNeeds(shared: 0, perWorker: 1_000, perRow: 100, preferredBlockRows: 256)
    let plan = try RowBlockPlan(rows: 100_000, needs: needs, options: KernelOptions(threads: 3, memoryLimit: 64 << 20))
    XCTAssertEqual(plan.workers, 3)
    XCTAssertEqual(plan.blasThreads, 1)
    // About the preferred height, in a number of blocks that the workers share evenly.
    XCTAssertLessThanOrEqual(plan.blockRows, 256)
    XCTAssertGreaterThan(plan.blockRows, 250)
    XCTAssertEqual((100_000 + plan.blockRows - 1) / plan.blockRows % 3, 0)
    // A single block's worth of rows goes to one worker with threaded BLAS.
    let one = try RowBlockPlan(rows: 100, needs: needs, options: KernelOptions(threads: 3, memoryLimit: 64 << 20))
    XCTAssertEqual(one.workers, 1)
    XCTAssertEqual(one.blasThreads, 3)
    // threads = nil means every CPU this process may use.
    let all = try RowBlockPlan(rows: 1, needs: needs, options: KernelOptions(threads: nil))
    XCTAssertEqual(all.blasThreads, KernelOptions.availableCPUs)
    XCTAssertGreaterThanOrEqual(KernelOptions.availableCPUs, 1)
  }

  /// `run` visits every row exactly once, in blocks of at most blockRows, from workers
  /// numbered below `workers`, and reports every row as progress.
  func testRunVisitsEveryRowOnce() throws {
    for rows in [0, 1, 7, 513, 2052] {
      for threads in [1, 2, 3] {
        for limit in [2_000, 20_000, 64 << 20] {
          let needs = WorkspaceNeeds(shared: 0, perWorker: 0, perRow: 40, preferredBlockRows: 128)
          let progressed = AtomicCounter()
          let options = KernelOptions(threads: threads, memoryLimit: limit, progress: { progressed.add($0) })
          let plan = try RowBlockPlan(rows: rows, needs: needs, options: options)
          let visits = UnsafeMutablePointer<Int64>.allocate(capacity: max(rows, 1))
          visits.initialize(repeating: 0, count: max(rows, 1))
          defer { visits.deallocate() }
          let badWorker = AtomicCounter()
          let badBlock = AtomicCounter()
          try plan.run(rows: rows, options: options) { worker, block in
            if worker < 0 || worker >= plan.workers { badWorker.add(1) }
            if block.isEmpty || block.count > plan.blockRows { badBlock.add(1) }
            for i in block { gmk_atomic_add_i64(visits + i, 1) }
          }
          let context = "rows=\(rows) threads=\(threads) limit=\(limit) plan=\(plan)"
          XCTAssertEqual(badWorker.value, 0, context)
          XCTAssertEqual(badBlock.value, 0, context)
          XCTAssertEqual((0..<rows).filter { visits[$0] != 1 }.count, 0, "\(context): rows not visited exactly once")
          XCTAssertEqual(progressed.value, rows, context)
        }
      }
    }
  }
}
