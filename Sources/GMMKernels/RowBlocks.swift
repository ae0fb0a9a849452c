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
  /// Allocated once per worker beyond the first (the first writes into the output itself).
  var perAdditionalWorker: Int = 0
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
  /// gets the threads instead. Blocks are of about equal height, and their number a
  /// multiple of the workers', so that no worker is left with a lone last block.
  /// `maxWorkers: 1` asks for sequential blocks with threaded BLAS.
  init(rows: Int, needs: WorkspaceNeeds, options: KernelOptions, maxWorkers: Int? = nil) throws(KernelError) {
    let threads = options.resolvedThreads
    let limit = options.memoryLimit
    let wanted = max(1, min(needs.preferredBlockRows, rows))
    var workers = RowBlockPlan.parallelWorkers(rows: rows, needs: needs, options: options)
    if let maxWorkers { workers = max(1, min(workers, maxWorkers)) }
    while true {
      let fixed = total(
        needs.shared, bytes(workers, needs.perWorker), bytes(workers - 1, needs.perAdditionalWorker))
      let perRow = bytes(workers, needs.perRow)
      let fit = limit < fixed ? 0 : perRow == 0 ? Int.max : (limit - fixed) / perRow
      if fit >= 1 {
        let height = min(wanted, fit)
        var blocks = max(1, (rows + height - 1) / height)
        blocks = (blocks + workers - 1) / workers * workers
        let block = max(1, min(height, (rows + blocks - 1) / blocks))
        self.init(
          workers: workers, blasThreads: workers == 1 ? threads : 1, blockRows: block,
          workspaceBytes: total(fixed, bytes(block, perRow)))
        return
      }
      if workers == 1 {
        throw .invalidArgument(
          "memory_limit=\(limit) bytes is too small for this call: it needs at least "
            + "\(total(needs.shared, needs.perWorker, needs.perRow)) bytes of workspace")
      }
      workers -= 1
    }
  }

  /// The workers a parallel plan starts from: one per thread, at most one per block.
  static func parallelWorkers(rows: Int, needs: WorkspaceNeeds, options: KernelOptions) -> Int {
    let wanted = max(1, min(needs.preferredBlockRows, rows))
    return max(1, min(options.resolvedThreads, (rows + wanted - 1) / wanted))
  }

  /// The plan with every worker of `parallelWorkers`, or nil when their workspace does not
  /// fit the memory limit: the kernel then takes a policy that needs less.
  static func allWorkers(rows: Int, needs: WorkspaceNeeds, options: KernelOptions) -> RowBlockPlan? {
    guard let plan = try? RowBlockPlan(rows: rows, needs: needs, options: options) else { return nil }
    return plan.workers == parallelWorkers(rows: rows, needs: needs, options: options) ? plan : nil
  }

  func block(_ b: Int, of rows: Int) -> Range<Int> {
    b * blockRows..<min((b + 1) * blockRows, rows)
  }

  /// Runs `body(worker, rows)` over all row blocks of `0..<rows`, `workers` at a time, with
  /// OpenBLAS set to `blasThreads`. Blocks go to whichever worker is free (dynamic schedule),
  /// or, with `reproducible`, block b to worker b mod workers: kernels that sum per worker
  /// then give the same bits on every call with the same thread count.
  /// Throws `.cancelled` when the cancel check fires; blocks already started are finished.
  func run(
    rows: Int, options: KernelOptions, reproducible: Bool = false,
    _ body: (_ worker: Int, _ rows: Range<Int>) -> Void
  ) throws(KernelError) {
    guard rows > 0 else { return }
    let blocks = (rows + blockRows - 1) / blockRows
    var cancelled = false
    try BLASThreads.with(blasThreads) { () throws(KernelError) in
      cancelled = parallelFor(blocks, workers: workers, options: options, fixedOrder: reproducible) { w, b in
        let r = block(b, of: rows)
        body(w, r)
        options.progress?(r.count)
      }
    }
    if cancelled { throw .cancelled }
  }
}

/// Runs `body(worker, item)` for every item of `0..<count` on `workers` threads, each taking
/// the next item when it is free (or, with `fixedOrder`, items w, w + workers, … for worker w).
/// Before each item the cancel check runs; once it fires, no further item starts. Returns
/// whether it fired.
func parallelFor(
  _ count: Int, workers: Int, options: KernelOptions, fixedOrder: Bool = false,
  _ body: (_ worker: Int, _ item: Int) -> Void
) -> Bool {
  let next = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
  let stopped = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
  next.initialize(to: 0)
  stopped.initialize(to: 0)
  defer {
    next.deallocate()
    stopped.deallocate()
  }
  let active = min(max(workers, 1), count)
  func worker(_ w: Int) {
    var mine = w
    while true {
      let item: Int
      if fixedOrder {
        item = mine
        mine += active
      } else {
        item = Int(gmk_atomic_fetch_add_i64(next, 1))
      }
      if item >= count { return }
      if let isCancelled = options.isCancelled, isCancelled() {
        gmk_atomic_add_i64(stopped, 1)
        return
      }
      body(w, item)
    }
  }
  if active <= 1 {
    worker(0)
  } else {
    DispatchQueue.concurrentPerform(iterations: active, execute: worker)
  }
  return stopped.pointee != 0
}
