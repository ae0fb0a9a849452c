// Sizes of workspace computed without overflow: products and sums saturate at Int.max, so
// that absurd shapes fail the memory limit with a clear error instead of trapping. The one
// overflow-checked arithmetic of the library's sizes, the C exports' included.

/// The product of `factors`, saturating at `Int.max`: workspace sizes of absurd shapes then
/// fail the memory limit with a clear error instead of overflowing.
package func bytes(_ factors: Int...) -> Int {
  var r = 1
  for f in factors {
    let (p, o) = r.multipliedReportingOverflow(by: max(f, 0))
    if o { return Int.max }
    r = p
  }
  return r
}

/// The sum of `terms`, saturating at `Int.max`.
package func total(_ terms: Int...) -> Int {
  var r = 0
  for t in terms {
    let (s, o) = r.addingReportingOverflow(t)
    if o { return Int.max }
    r = s
  }
  return r
}
