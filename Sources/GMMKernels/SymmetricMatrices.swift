// Symmetric d × d matrices kept as one triangle while they are summed (the Gram kernels and
// the mixture pass's second moments): adding a triangle, mirroring it, storing it whole.

/// acc[i, j] += g[i, j] for the lower triangle (i ≥ j) of d × d row-major matrices (leading
/// dimensions `ldg` and `ld`, both d by default).
@inline(__always)
func addLower<T: KernelScalar>(
  _ g: UnsafePointer<T>, ldg: Int? = nil, into acc: UnsafeMutablePointer<Double>, ld: Int? = nil, _ d: Int
) {
  let ldg = ldg ?? d
  let lda = ld ?? d
  for i in 0..<d {
    // Row pointers and a plain count keep the inner loop free of overflow checks, so that
    // it vectorises (the indexed form ran scalar).
    let src = g + i &* ldg
    let dst = acc + i &* lda
    for j in 0..<(i &+ 1) { dst[j] += Double(src[j]) }
  }
}

/// Copies the lower triangle of the d × d row-major matrix at `p` (leading dimension `ld`)
/// into its upper triangle.
func mirrorLower(_ p: UnsafeMutablePointer<Double>, ld: Int, _ d: Int) {
  for i in 0..<d {
    for j in (i + 1)..<max(d, i + 1) { p[i * ld + j] = p[j * ld + i] }
  }
}

/// Writes the symmetric matrix whose lower triangle is `acc` (d × d, row-major) into `out`.
func storeSymmetric<T: KernelScalar>(_ acc: UnsafePointer<Double>, _ d: Int, into out: StridedMatrix<T>) {
  for i in 0..<d {
    for j in 0...i {
      let v = T(acc[i * d + j])
      out[i, j] = v
      out[j, i] = v
    }
  }
}
