/// Why a kernel call failed. Every kernel checks its arguments before it touches memory,
/// so a thrown error means nothing was written to the output (except `.cancelled`, after
/// which the output holds the blocks finished so far).
public enum KernelError: Error, Equatable, CustomStringConvertible {
  /// Shapes, strides or sizes that do not fit together, or a memory limit below what one
  /// row block needs.
  case invalidArgument(String)
  /// An element type that is not supported or does not match.
  case invalidType(String)
  /// Workspace could not be allocated.
  case outOfMemory(String)
  /// The cancel check returned true between two row blocks.
  case cancelled

  public var description: String {
    switch self {
    case .invalidArgument(let m), .invalidType(let m), .outOfMemory(let m): return m
    case .cancelled: return "cancelled"
    }
  }
}
