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

/// Q_k's quadratic forms for K matrices over one X: an n × K row-major result,
/// out[i, k] = (x_i − c_k)ᵀ Q_k (x_i − c_k), with `centers` (K × d, row-major) or nil.
public func referenceQuadformMany(
  x: [Double], rows n: Int, cols d: Int, qs: [[Double]], centers: [Double]? = nil
) -> Reference {
  let k = qs.count
  var values = [Double](repeating: 0, count: n * k)
  var magnitudes = [Double](repeating: 0, count: n * k)
  for j in 0..<k {
    let c = centers.map { Array($0[(j * d)..<(j * d + d)]) }
    let one = referenceQuadform(x: x, rows: n, cols: d, q: qs[j], center: c)
    for i in 0..<n {
      values[i * k + j] = one.values[i]
      magnitudes[i * k + j] = one.magnitudes[i]
    }
  }
  return Reference(values: values, magnitudes: magnitudes)
}

/// G_k = Σ_i r_ik (x_i − c_k)(x_i − c_k)ᵀ for the K columns of r (n × K, row-major):
/// K × d × d, row-major, with `centers` (K × d) or nil.
public func referenceWeightedGramMany(
  x: [Double], rows n: Int, cols d: Int, r: [Double], components k: Int, centers: [Double]? = nil
) -> Reference {
  var values: [Double] = []
  var magnitudes: [Double] = []
  for j in 0..<k {
    let weights = (0..<n).map { r[$0 * k + j] }
    let c = centers.map { Array($0[(j * d)..<(j * d + d)]) }
    let one = referenceWeightedGram(x: x, rows: n, cols: d, weights: weights, center: c)
    values += one.values
    magnitudes += one.magnitudes
  }
  return Reference(values: values, magnitudes: magnitudes)
}

/// Rᵀ X (K × d, row-major) for x (n × d) and r (n × K), both row-major.
public func referenceWeightedSum(x: [Double], rows n: Int, cols d: Int, r: [Double], components k: Int) -> Reference {
  var values = [Double](repeating: 0, count: k * d)
  var magnitudes = [Double](repeating: 0, count: k * d)
  for i in 0..<n {
    for j in 0..<k {
      let rij = r[i * k + j]
      for c in 0..<d {
        let term = rij * x[i * d + c]
        values[j * d + c] += term
        magnitudes[j * d + c] += abs(term)
      }
    }
  }
  return Reference(values: values, magnitudes: magnitudes)
}

/// A B (n × m, row-major) for a (n × k) and b (k × m), both row-major.
public func referenceMatmul(a: [Double], rows n: Int, inner k: Int, b: [Double], cols m: Int) -> Reference {
  var values = [Double](repeating: 0, count: n * m)
  var magnitudes = [Double](repeating: 0, count: n * m)
  for i in 0..<n {
    for p in 0..<k {
      let aip = a[i * k + p]
      for j in 0..<m {
        let term = aip * b[p * m + j]
        values[i * m + j] += term
        magnitudes[i * m + j] += abs(term)
      }
    }
  }
  return Reference(values: values, magnitudes: magnitudes)
}

/// y_i · x_j (n × m, row-major) for values exactly representable in `T`, rounded to `T`
/// once, as `T`'s own multiplication rounds it: the Double product of two Floats is exact,
/// so rounding it to Float gives Float's correctly rounded product.
public func referenceOuter<T: BinaryFloatingPoint>(_: T.Type, y: [Double], x: [Double]) -> [Double] {
  y.flatMap { yi in x.map { Double(T(yi * $0)) } }
}
