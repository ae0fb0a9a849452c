/// A small deterministic generator for test data: SplitMix64 (Steele, Lea and Flood,
/// "Fast splittable pseudorandom number generators", OOPSLA 2014).
///
/// The same seed gives the same sequence on every platform and every run, so a failing
/// case can be replayed from its seed. Not for anything but tests.
public struct SplitMix64 {
  public private(set) var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform in [0, 1), from the top 53 bits.
  public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

  /// Uniform in [lo, hi).
  public mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * unit() }

  /// An integer in `range`; the modulo bias is below 2⁻⁴⁰ for the small ranges tests use.
  public mutating func integer(in range: ClosedRange<Int>) -> Int {
    range.lowerBound + Int(next() % UInt64(range.count))
  }

  /// `count` values uniform in [lo, hi).
  public mutating func uniform(count: Int, _ lo: Double, _ hi: Double) -> [Double] {
    (0..<count).map { _ in uniform(lo, hi) }
  }

  /// `count` integers in `range`, as Doubles.
  public mutating func integers(count: Int, in range: ClosedRange<Int>) -> [Double] {
    (0..<count).map { _ in Double(integer(in: range)) }
  }

  /// `count` elements drawn from `choices`.
  public mutating func choose(count: Int, from choices: [Double]) -> [Double] {
    (0..<count).map { _ in choices[integer(in: 0...(choices.count - 1))] }
  }
}
