// Naive references: the definitions, written as plain loops in Double on row-major
// [Double] arrays. Each also returns the "magnitude" of every result, the same sum with
// every term replaced by its absolute value, which is the scale that rounding errors of
// any summation order are bounded by (see Tolerances.swift).

/// Reference results and the magnitudes their rounding errors scale with.
public struct Reference {
  public var values: [Double]
  /// Σ |term| for each result.
  public var magnitudes: [Double]

  public init(values: [Double], magnitudes: [Double]) {
    self.values = values
    self.magnitudes = magnitudes
  }
}

/// Rows of x (n × d, row-major) minus `center` (d), in Double.
public func centred(_ x: [Double], rows n: Int, cols d: Int, center: [Double]?) -> [Double] {
  guard let c = center else { return x }
  var y = x
  for i in 0..<n {
    for j in 0..<d { y[i * d + j] -= c[j] }
  }
  return y
}

/// q_i = (x_i − c)ᵀ Q (x_i − c) for x (n × d) and Q (d × d), both row-major; Q need not
/// be symmetric (the definition uses Q itself, whose symmetric part gives the same value).
public func referenceQuadform(
  x: [Double], rows n: Int, cols d: Int, q: [Double], center: [Double]? = nil
) -> Reference {
  let y = centred(x, rows: n, cols: d, center: center)
  var values = [Double](repeating: 0, count: n)
  var magnitudes = [Double](repeating: 0, count: n)
  // The magnitude uses the symmetric part, the matrix the result depends on.
  var s = [Double](repeating: 0, count: d * d)
  for j in 0..<d {
    for k in 0..<d { s[j * d + k] = abs((q[j * d + k] + q[k * d + j]) / 2) }
  }
  y.withUnsafeBufferPointer { y in
    q.withUnsafeBufferPointer { q in
      s.withUnsafeBufferPointer { s in
        for i in 0..<n {
          var v = 0.0
          var m = 0.0
          for j in 0..<d {
            let yj = y[i * d + j]
            var rowV = 0.0
            var rowM = 0.0
            for k in 0..<d {
              let yk = y[i * d + k]
              rowV += q[j * d + k] * yk
              rowM += s[j * d + k] * abs(yk)
            }
            v += yj * rowV
            m += abs(yj) * rowM
          }
          values[i] = v
          magnitudes[i] = m
        }
      }
    }
  }
  return Reference(values: values, magnitudes: magnitudes)
}

/// Q = Σ_r u_r v_rᵀ (d × d, row-major): a non-symmetric matrix whose quadratic form is
/// cheap to evaluate, xᵀQx = Σ_r (x·u_r)(x·v_r).
public func lowRankMatrix(u: [[Double]], v: [[Double]], size d: Int) -> [Double] {
  var q = [Double](repeating: 0, count: d * d)
  for r in 0..<u.count {
    for j in 0..<d {
      for k in 0..<d { q[j * d + k] += u[r][j] * v[r][k] }
    }
  }
  return q
}

/// q_i = Σ_r (y_i·u_r)(y_i·v_r) with y_i = x_i − c: the quadratic form of
/// `lowRankMatrix(u:v:size:)` in O(n·d·r) instead of O(n·d²).
public func referenceLowRankQuadform(
  x: [Double], rows n: Int, cols d: Int, u: [[Double]], v: [[Double]], center: [Double]? = nil
) -> Reference {
  let y = centred(x, rows: n, cols: d, center: center)
  var values = [Double](repeating: 0, count: n)
  var magnitudes = [Double](repeating: 0, count: n)
  for i in 0..<n {
    for r in 0..<u.count {
      var yu = 0.0, yv = 0.0, ayu = 0.0, ayv = 0.0
      for j in 0..<d {
        let yj = y[i * d + j]
        yu += yj * u[r][j]
        yv += yj * v[r][j]
        ayu += abs(yj * u[r][j])
        ayv += abs(yj * v[r][j])
      }
      values[i] += yu * yv
      magnitudes[i] += ayu * ayv
    }
  }
  return Reference(values: values, magnitudes: magnitudes)
}

/// G = Σ_i w_i (x_i − c)(x_i − c)ᵀ (d × d, row-major) for x (n × d, row-major);
/// `weights == nil` means all ones.
public func referenceWeightedGram(
  x: [Double], rows n: Int, cols d: Int, weights: [Double]? = nil, center: [Double]? = nil
) -> Reference {
  let y = centred(x, rows: n, cols: d, center: center)
  var values = [Double](repeating: 0, count: d * d)
  var magnitudes = [Double](repeating: 0, count: d * d)
  y.withUnsafeBufferPointer { y in
    values.withUnsafeMutableBufferPointer { g in
      magnitudes.withUnsafeMutableBufferPointer { m in
        for i in 0..<n {
          let w = weights?[i] ?? 1
          for j in 0..<d {
            let wy = w * y[i * d + j]
            for k in 0..<d {
              let term = wy * y[i * d + k]
              g[j * d + k] += term
              m[j * d + k] += abs(term)
            }
          }
        }
      }
    }
  }
  return Reference(values: values, magnitudes: magnitudes)
}

/// Yᵀ(w ∘ (Y t)) with Y = X − 1cᵀ: what G·t must equal for G = Σ_i w_i y_i y_iᵀ, in
/// O(n·d) instead of the O(n·d²) of computing G.
public func referenceGramTimes(
  _ t: [Double], x: [Double], rows n: Int, cols d: Int, weights: [Double]? = nil,
  center: [Double]? = nil
) -> Reference {
  let y = centred(x, rows: n, cols: d, center: center)
  var values = [Double](repeating: 0, count: d)
  var magnitudes = [Double](repeating: 0, count: d)
  for i in 0..<n {
    let w = weights?[i] ?? 1
    var yt = 0.0
    var ayt = 0.0
    for k in 0..<d {
      yt += y[i * d + k] * t[k]
      ayt += abs(y[i * d + k] * t[k])
    }
    for j in 0..<d {
      values[j] += w * y[i * d + j] * yt
      magnitudes[j] += abs(w * y[i * d + j]) * ayt
    }
  }
  return Reference(values: values, magnitudes: magnitudes)
}

/// a (rows × cols, row-major) times t, in Double.
public func matrixVector(_ a: [Double], rows: Int, cols: Int, _ t: [Double]) -> [Double] {
  (0..<rows).map { i in
    var s = 0.0
    for k in 0..<cols { s += a[i * cols + k] * t[k] }
    return s
  }
}
