internal import Dispatch
internal import _GMKSupport

// The one mechanism for blocking and threading that every kernel reuses.
//
// A kernel states what workspace it needs (`WorkspaceNeeds`); `RowBlockPlan` turns that,
// the thread count and the memory limit into a number of workers, a block height and a
// BLAS thread count; `RowBlockPlan.run` hands row blocks to the workers, checks the
// cancel flag between blocks and reports progress.

/// Workspace a kernel needs, in bytes.
struct WorkspaceNeeds {
  /// Allocated once per call (e.g. a symmetrised copy of Q).
  var shared: Int = 0
  /// Allocated once per worker, independent of the block height (e.g. a d × d accumulator).
  var perWorker: Int = 0
  /// Allocated per worker for each row of its block (packed rows, block products).
  var perRow: Int = 0
  /// The block height that measured fastest for this kernel; fewer rows when memory is short.
  var preferredBlockRows: Int = 256
}

struct RowBlockPlan: Equatable {
  /// Threads that process row blocks in parallel.
  var workers: Int
  /// OpenBLAS threads inside each worker: 1 when workers > 1 (no oversubscription).
  var blasThreads: Int
  /// Rows per block; the last block is min(blockRows, remaining).
  var blockRows: Int
  /// Total bytes of workspace this plan allocates.
  var workspaceBytes: Int

  init(workers: Int, blasThreads: Int, blockRows: Int, workspaceBytes: Int) {
    self.workers = workers
    self.blasThreads = blasThreads
    self.blockRows = blockRows
    self.workspaceBytes = workspaceBytes
  }

  /// The plan for `rows` rows: as many workers as there are threads and blocks, as long as
  /// each can hold at least one row within `options.memoryLimit`; with one worker, BLAS
  /// gets the threads instead.
  init(rows: Int, needs: WorkspaceNeeds, options: KernelOptions) throws(KernelError) {
    let threads = options.resolvedThreads
    let limit = options.memoryLimit
    let wanted = max(1, min(needs.preferredBlockRows, rows))
    var workers = max(1, min(threads, (rows + wanted - 1) / wanted))
    while true {
      let fixed = needs.shared + workers * needs.perWorker
      let perRow = max(1, workers * needs.perRow)
      let fit = limit >= fixed ? (limit - fixed) / perRow : 0
      if fit >= 1 {
        // Balance: every worker gets a block of about the same height.
        let balanced = (rows + workers - 1) / workers
        let block = max(1, min(wanted, fit, balanced))
        self.init(
          workers: workers, blasThreads: workers == 1 ? threads : 1, blockRows: block,
          workspaceBytes: fixed + block * workers * needs.perRow)
        return
      }
      if workers == 1 {
        throw .invalidArgument(
          "memory_limit=\(limit) bytes is too small for this call: it needs at least "
            + "\(needs.shared + needs.perWorker + needs.perRow) bytes of workspace")
      }
      workers -= 1
    }
  }

  /// Runs `body(worker, rows)` over all row blocks of `0..<rows`, `workers` at a time, with
  /// OpenBLAS set to `blasThreads`. Blocks go to whichever worker is free (dynamic schedule).
  /// Throws `.cancelled` when the cancel check fires; blocks already started are finished.
  func run(
    rows: Int, options: KernelOptions, _ body: (_ worker: Int, _ rows: Range<Int>) -> Void
  ) throws(KernelError) {
    guard rows > 0 else { return }
    let blocks = (rows + blockRows - 1) / blockRows
    let next = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
    let stopped = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
    next.initialize(to: 0)
    stopped.initialize(to: 0)
    defer {
      next.deallocate()
      stopped.deallocate()
    }
    func worker(_ w: Int) {
      while true {
        let b = Int(gmk_atomic_fetch_add_i64(next, 1))
        if b >= blocks { return }
        if let cancelled = options.isCancelled, cancelled() {
          gmk_atomic_add_i64(stopped, 1)
          return
        }
        let lo = b * blockRows
        let hi = min(lo + blockRows, rows)
        body(w, lo..<hi)
        options.progress?(hi - lo)
      }
    }
    try BLASThreads.with(blasThreads) { () throws(KernelError) in
      if workers == 1 {
        worker(0)
      } else {
        DispatchQueue.concurrentPerform(iterations: workers, execute: worker)
      }
    }
    if stopped.pointee != 0 { throw .cancelled }
  }
}
