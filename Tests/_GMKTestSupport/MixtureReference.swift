import GMMKernels

#if canImport(Glibc)
import Glibc
#endif

// The fused E/M pass of a Gaussian mixture by its definition, in Double: the log-density
// of every row under every component, log-sum-exp, responsibilities, and the statistics
// centred at the component means.
//
// Magnitudes. Rounding errors of the quadratic form q_ik = (x_i − μ_k)ᵀ Λ_k (x_i − μ_k)
// scale with Σ_ab |S_ab| e_a e_b, S = (Λ + Λᵀ)/2, where e = |z_i| + |δ_k| with z_i = x_i − m,
// δ_k = μ_k − m and m the mean of the component means: it bounds the absolute terms of
// the direct sum (|x − μ| ≤ |z| + |δ|) and of its expansion about m alike, and it leaves
// out any common offset of the data, so data far from the origin must stay centred. From
// there the magnitudes follow the outputs:
//   log-density      L_ik = |log_norm_k| + ½ Σ_ab |S_ab| e_a e_b
//   score            s_i  = max_k L_ik + |score_i| + 1   (log-sum-exp is 1-Lipschitz in
//                           the log-densities; the 1 is the scale of log(1 + ε))
//   responsibility   ρ_ik = r_ik (L_ik + s_i + 1)         (exp(lp − score) moves by r·Δ)
//   N_k, S1_k, S2_k  Σ_i w_i ρ_ik · (1, e_a, e_a e_b)
//   log-likelihood   Σ_i w_i s_i

/// The outputs of one mixture pass, each with the magnitudes its rounding errors scale with.
public struct MixtureReference {
  /// Σ_i w_i score_i (one value).
  public var logLikelihood: Reference
  /// N_k (K).
  public var counts: Reference
  /// S1_k (K × d, row-major); zeros for `.none` (scoring only).
  public var firstMoments: Reference
  /// S2 as `scatter` asks: K × d × d, d × d, K × d, or empty.
  public var scatter: Reference
  /// r_ik (n × K, row-major), without sample weights.
  public var responsibilities: Reference
  /// log Σ_k exp(logp_ik) (n).
  public var scores: Reference
}

/// The mixture pass over x (n × d, row-major) for K = `logNorm.count` components with
/// `means` (K × d, row-major) and `precisions` (K matrices of d × d, row-major; only their
/// symmetric parts matter). `sampleWeights` nil means ones.
public func referenceMixturePass(
  x: [Double], rows n: Int, cols d: Int, sampleWeights: [Double]?, logNorm: [Double],
  means: [Double], precisions: [[Double]], scatter: MixtureScatter
) -> MixtureReference {
  let k = logNorm.count
  precondition(means.count == k * d && precisions.count == k && precisions.allSatisfy { $0.count == d * d })
  // The mean of the means, the δ_k and |S_k|.
  var m = [Double](repeating: 0, count: d)
  for j in 0..<k { for a in 0..<d { m[a] += means[j * d + a] / Double(k) } }
  let delta = (0..<k).map { j in (0..<d).map { means[j * d + $0] - m[$0] } }
  let absSymmetric = precisions.map { p in
    (0..<(d * d)).map { abs((p[$0] + p[($0 % d) * d + $0 / d]) / 2) }
  }

  let scatterCount: Int
  switch scatter {
  case .full: scatterCount = k * d * d
  case .tied: scatterCount = d * d
  case .diagonal: scatterCount = k * d
  case .none: scatterCount = 0
  }
  var logLikelihood = Reference(values: [0], magnitudes: [0])
  var counts = Reference(values: .init(repeating: 0, count: k), magnitudes: .init(repeating: 0, count: k))
  var first = Reference(values: .init(repeating: 0, count: k * d), magnitudes: .init(repeating: 0, count: k * d))
  var second = Reference(
    values: .init(repeating: 0, count: scatterCount), magnitudes: .init(repeating: 0, count: scatterCount))
  var resp = Reference(values: .init(repeating: 0, count: n * k), magnitudes: .init(repeating: 0, count: n * k))
  var scores = Reference(values: .init(repeating: 0, count: n), magnitudes: .init(repeating: 0, count: n))

  var y = [Double](repeating: 0, count: d)
  var e = [[Double]](repeating: [Double](repeating: 0, count: d), count: k)
  var lp = [Double](repeating: 0, count: k)
  var size = [Double](repeating: 0, count: k)
  for i in 0..<n {
    // 1. Log-densities and their magnitudes.
    for j in 0..<k {
      let p = precisions[j]
      let s = absSymmetric[j]
      var q = 0.0
      var mag = 0.0
      for a in 0..<d {
        y[a] = x[i * d + a] - means[j * d + a]
        e[j][a] = abs(x[i * d + a] - m[a]) + abs(delta[j][a])
      }
      for a in 0..<d {
        var row = 0.0
        var rowMag = 0.0
        for b in 0..<d {
          row += p[a * d + b] * y[b]
          rowMag += s[a * d + b] * e[j][b]
        }
        q += y[a] * row
        mag += e[j][a] * rowMag
      }
      lp[j] = logNorm[j] - 0.5 * q
      size[j] = abs(logNorm[j]) + 0.5 * mag
    }
    // 2. Log-sum-exp and responsibilities.
    let top = lp.max()!
    var total = 0.0
    for j in 0..<k { total += exp(lp[j] - top) }
    let lse = top + log(total)
    let scoreMag = size.max()! + abs(lse) + 1
    scores.values[i] = lse
    scores.magnitudes[i] = scoreMag
    let w = sampleWeights?[i] ?? 1
    logLikelihood.values[0] += w * lse
    logLikelihood.magnitudes[0] += abs(w) * scoreMag
    for j in 0..<k {
      let r = exp(lp[j] - lse)
      let rMag = r * (size[j] + scoreMag + 1)
      resp.values[i * k + j] = r
      resp.magnitudes[i * k + j] = rMag
      // 3. Statistics centred at μ_j: the counts always, the moments unless scoring only.
      let wr = w * r
      let wrMag = abs(w) * rMag
      counts.values[j] += wr
      counts.magnitudes[j] += wrMag
      if scatter == .none { continue }
      for a in 0..<d {
        let ya = x[i * d + a] - means[j * d + a]
        first.values[j * d + a] += wr * ya
        first.magnitudes[j * d + a] += wrMag * e[j][a]
        switch scatter {
        case .full, .tied:
          let base = scatter == .full ? j * d * d : 0
          for b in 0..<d {
            let yb = x[i * d + b] - means[j * d + b]
            second.values[base + a * d + b] += wr * ya * yb
            second.magnitudes[base + a * d + b] += wrMag * e[j][a] * e[j][b]
          }
        case .diagonal:
          second.values[j * d + a] += wr * ya * ya
          second.magnitudes[j * d + a] += wrMag * e[j][a] * e[j][a]
        case .none:
          break
        }
      }
    }
  }
  return MixtureReference(
    logLikelihood: logLikelihood, counts: counts, firstMoments: first, scatter: second,
    responsibilities: resp, scores: scores)
}
