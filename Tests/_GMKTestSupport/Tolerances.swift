// Tolerances from ulps × sizes.
//
// A sum of k terms computed in floating point, in any order, is within γ_k · Σ|term| of
// the exact sum, γ_k = k·u/(1 − k·u) ≈ k·u, with u = ulpOfOne / 2 the unit roundoff
// (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1). A few more roundings
// come before and after the sum (centring, √w scaling, symmetrising Q, converting the
// result to T). The reference computed in Double makes an error of the same form with
// Double's u ≤ T's u, so the kernel and the reference together stay within
//     2 · (k + r) · u_T · magnitude = (k + r) · T.ulpOfOne · magnitude.

/// Roundings before and after the sum itself that every bound allows for.
public let extraRoundings = 4

/// The largest |computed − exact| allowed per unit of magnitude (Σ|term|) for a sum of
/// `terms` terms computed in `T`.
public func roundingBound<T: BinaryFloatingPoint>(_: T.Type, terms: Int, roundings: Int = extraRoundings) -> Double {
  Double(terms + roundings) * Double(T.ulpOfOne)
}

/// |got − want| / magnitude, or 0 when both are 0.
public func relativeError(_ got: Double, _ want: Double, magnitude: Double) -> Double {
  let diff = abs(got - want)
  if diff == 0 { return 0 }
  return diff / magnitude
}

/// A description of the first result that is not within `bound` · magnitude of the
/// reference, or nil when all are. A NaN reference requires a NaN result; a NaN result
/// against a number is a mismatch. `absolute` allows that much more for every result: the
/// underflow of a result rounded to a narrower type (at most half that type's least
/// nonzero magnitude), which no relative bound covers.
public func firstMismatch(_ got: [Double], _ want: Reference, bound: Double, absolute: Double = 0) -> String? {
  guard got.count == want.values.count else {
    return "got \(got.count) results, want \(want.values.count)"
  }
  for i in 0..<got.count {
    let w = want.values[i]
    let g = got[i]
    if w.isNaN {
      if !g.isNaN { return "element \(i): got \(g), want NaN" }
      continue
    }
    let err = relativeError(g, w, magnitude: want.magnitudes[i])
    if !(err <= bound) && !(abs(g - w) <= bound * want.magnitudes[i] + absolute) {
      return "element \(i): got \(g), want \(w) (relative error \(err) > bound \(bound), magnitude \(want.magnitudes[i]))"
    }
  }
  return nil
}

/// A description of the first element that differs from `want` at all (for data whose
/// every intermediate result is exactly representable), or nil.
public func firstDifference(_ got: [Double], _ want: [Double]) -> String? {
  guard got.count == want.count else { return "got \(got.count) results, want \(want.count)" }
  for i in 0..<got.count where !(got[i] == want[i]) {
    return "element \(i): got \(got[i]), want exactly \(want[i])"
  }
  return nil
}

/// A description of the first element whose bits differ from `want` (so −0 and +0 differ),
/// where any NaN matches any NaN (payloads and signs of NaN are not specified), or nil.
public func firstBitwiseDifference(_ got: [Double], _ want: [Double]) -> String? {
  guard got.count == want.count else { return "got \(got.count) results, want \(want.count)" }
  for i in 0..<got.count {
    if got[i].isNaN && want[i].isNaN { continue }
    if got[i].bitPattern != want[i].bitPattern { return "element \(i): got \(got[i]), want exactly \(want[i])" }
  }
  return nil
}
