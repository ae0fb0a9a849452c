// The C ABI of include/gmmkernels.h: @_cdecl functions that check every argument
// (null pointers, dtype codes, ndim, shape × stride overflow), build the strided views,
// call the Swift kernels and turn every error into a status code and a per-thread
// message. No Swift error or trap may cross this boundary.

import GMMKernels
import _GMKSupport

let libraryVersion: StaticString = "0.1.0"

public typealias ArrayPointer = UnsafePointer<gmk_array>?
public typealias OptionsPointer = UnsafePointer<gmk_options>?

@_cdecl("gmk_abi_version")
public func gmk_abi_version() -> Int32 { Int32(GMK_ABI_VERSION) }

@_cdecl("gmk_version")
public func gmk_version() -> UnsafePointer<CChar> {
  UnsafeRawPointer(libraryVersion.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("gmk_last_error")
public func gmk_last_error() -> UnsafePointer<CChar> { gmk_support_error() }

@_cdecl("gmk_default_threads")
public func gmk_default_threads() -> Int32 { Int32(KernelOptions.availableCPUs) }

// MARK: - Kernels

@_cdecl("gmk_quadform")
public func gmk_quadform(
  _ x: ArrayPointer, _ q: ArrayPointer, _ center: ArrayPointer, _ out: ArrayPointer,
  _ options: OptionsPointer
) -> Int32 {
  exported(x, options, QuadformCall(q: q, center: center, out: out))
}

struct QuadformCall: KernelCall {
  let q, center, out: ArrayPointer
  func run<T: KernelScalar>(_: T.Type, _ a: Arguments) throws(KernelError) {
    try quadform(
      a.x(T.self), a.matrix(T.self, q, "Q"), center: a.optionalVector(T.self, center, "center"),
      out: a.vector(T.self, out, "out"), options: a.options)
  }
}

@_cdecl("gmk_weighted_gram")
public func gmk_weighted_gram(
  _ x: ArrayPointer, _ w: ArrayPointer, _ center: ArrayPointer, _ out: ArrayPointer,
  _ options: OptionsPointer
) -> Int32 {
  exported(x, options, WeightedGramCall(w: w, center: center, out: out))
}

struct WeightedGramCall: KernelCall {
  let w, center, out: ArrayPointer
  func run<T: KernelScalar>(_: T.Type, _ a: Arguments) throws(KernelError) {
    try weightedGram(
      a.x(T.self), weights: a.optionalVector(T.self, w, "w"),
      center: a.optionalVector(T.self, center, "center"), out: a.matrix(T.self, out, "out"),
      options: a.options)
  }
}

@_cdecl("gmk_quadform_many")
public func gmk_quadform_many(
  _ x: ArrayPointer, _ qs: ArrayPointer, _ centers: ArrayPointer, _ out: ArrayPointer,
  _ options: OptionsPointer
) -> Int32 {
  exported(x, options, QuadformManyCall(qs: qs, centers: centers, out: out))
}

struct QuadformManyCall: KernelCall {
  let qs, centers, out: ArrayPointer
  func run<T: KernelScalar>(_: T.Type, _ a: Arguments) throws(KernelError) {
    try quadformMany(
      a.x(T.self), a.matrices(T.self, qs, "Qs"),
      centers: a.optionalMatrix(T.self, centers, "centers"), out: a.matrix(T.self, out, "out"),
      options: a.options)
  }
}

@_cdecl("gmk_weighted_gram_many")
public func gmk_weighted_gram_many(
  _ x: ArrayPointer, _ r: ArrayPointer, _ centers: ArrayPointer, _ out: ArrayPointer,
  _ options: OptionsPointer
) -> Int32 {
  exported(x, options, WeightedGramManyCall(r: r, centers: centers, out: out))
}

struct WeightedGramManyCall: KernelCall {
  let r, centers, out: ArrayPointer
  func run<T: KernelScalar>(_: T.Type, _ a: Arguments) throws(KernelError) {
    try weightedGramMany(
      a.x(T.self), a.matrix(T.self, r, "R"), centers: a.optionalMatrix(T.self, centers, "centers"),
      out: a.matrices(T.self, out, "out"), options: a.options)
  }
}

@_cdecl("gmk_weighted_sum")
public func gmk_weighted_sum(
  _ x: ArrayPointer, _ r: ArrayPointer, _ out: ArrayPointer, _ options: OptionsPointer
) -> Int32 {
  exported(x, options, WeightedSumCall(r: r, out: out))
}

struct WeightedSumCall: KernelCall {
  let r, out: ArrayPointer
  func run<T: KernelScalar>(_: T.Type, _ a: Arguments) throws(KernelError) {
    try weightedSum(
      a.x(T.self), a.matrix(T.self, r, "R"), out: a.matrix(T.self, out, "out"), options: a.options)
  }
}

@_cdecl("gmk_matmul")
public func gmk_matmul(
  _ a: ArrayPointer, _ b: ArrayPointer, _ out: ArrayPointer, _ options: OptionsPointer
) -> Int32 {
  exported(a, options, name: "A", MatmulCall(b: b, out: out))
}

struct MatmulCall: KernelCall {
  let b, out: ArrayPointer
  func run<T: KernelScalar>(_: T.Type, _ a: Arguments) throws(KernelError) {
    try matmul(a.x(T.self), a.matrix(T.self, b, "B"), out: a.matrix(T.self, out, "out"), options: a.options)
  }
}

@_cdecl("gmk_outer")
public func gmk_outer(
  _ y: ArrayPointer, _ x: ArrayPointer, _ out: ArrayPointer, _ options: OptionsPointer
) -> Int32 {
  exported(y, options, name: "y", ndim: 1, OuterCall(x: x, out: out))
}

struct OuterCall: KernelCall {
  let x, out: ArrayPointer
  func run<T: KernelScalar>(_: T.Type, _ a: Arguments) throws(KernelError) {
    try outer(a.xVector(T.self), a.vector(T.self, x, "x"), out: a.matrix(T.self, out, "out"), options: a.options)
  }
}

@_cdecl("gmk_mixture_pass")
public func gmk_mixture_pass(
  _ x: ArrayPointer, _ sampleWeight: ArrayPointer, _ logNorm: ArrayPointer, _ means: ArrayPointer,
  _ precisions: ArrayPointer, _ scatter: Int32, _ respOut: ArrayPointer, _ scoreOut: ArrayPointer,
  _ statsOut: ArrayPointer, _ options: OptionsPointer
) -> Int32 {
  exported(
    x, options,
    MixturePassCall(
      sampleWeight: sampleWeight, logNorm: logNorm, means: means, precisions: precisions,
      scatter: scatter, respOut: respOut, scoreOut: scoreOut, statsOut: statsOut))
}

struct MixturePassCall: KernelCall {
  let sampleWeight, logNorm, means, precisions: ArrayPointer
  let scatter: Int32
  let respOut, scoreOut, statsOut: ArrayPointer

  func run<T: KernelScalar>(_: T.Type, _ a: Arguments) throws(KernelError) {
    let kind: MixtureScatter
    switch UInt32(bitPattern: scatter) {
    case GMK_SCATTER_NONE.rawValue: kind = .none
    case GMK_SCATTER_FULL.rawValue: kind = .full
    case GMK_SCATTER_TIED.rawValue: kind = .tied
    case GMK_SCATTER_DIAGONAL.rawValue: kind = .diagonal
    default: throw .invalidArgument("scatter must be 0 (none), 1 (full), 2 (tied) or 3 (diagonal), got \(scatter)")
    }
    let p = try checked(precisions, "precisions", ndim: nil)
    let lambda: MixturePrecisions<T> =
      p.ndim == 3 ? .matrices(try a.matrices(T.self, precisions, "precisions"))
      : .diagonal(try a.matrix(T.self, precisions, "precisions"))
    let x: StridedMatrix<T> = a.x(T.self)
    let weights = try a.optionalVector(T.self, sampleWeight, "sample_weight")
    let norms = try a.vector(T.self, logNorm, "log_norm")
    let mu = try a.matrix(T.self, means, "means")
    let resp = try a.optionalMatrix(T.self, respOut, "resp_out")
    let scores = try a.optionalVector(T.self, scoreOut, "score_out")
    try checkMixtureArguments(
      x, sampleWeights: weights, logNorm: norms, means: mu, precisions: lambda,
      responsibilities: resp, scores: scores)
    // Checked before the pass, so that a failed call writes no output.
    let stats = try a.float64Vector(statsOut, "stats_out")
    let wanted = mixtureStatisticsCount(components: norms.count, features: x.cols, scatter: kind)
    guard wanted < Int.max, stats.count == wanted else {
      throw .invalidArgument(
        "stats_out must have \(wanted < Int.max ? String(wanted) : "more than Int.max") elements "
          + "(1 + K + K*d + scatter), got \(stats.count)")
    }
    // The pass accumulates into stats_out itself when it is contiguous and aligned (its
    // K·d² second moments are an output, not workspace); otherwise through a copy.
    let e = MemoryLayout<Double>.stride
    if stats.stride == e && Int(bitPattern: stats.base) % MemoryLayout<Double>.alignment == 0 {
      try mixturePass(
        x, sampleWeights: weights, logNorm: norms, means: mu, precisions: lambda, scatter: kind,
        responsibilities: resp, scores: scores, into: stats.base.assumingMemoryBound(to: Double.self),
        options: a.options)
      return
    }
    let result = try mixturePass(
      x, sampleWeights: weights, logNorm: norms, means: mu, precisions: lambda, scatter: kind,
      responsibilities: resp, scores: scores, options: a.options)
    let values = [result.logLikelihood] + result.counts + result.firstMoments + result.scatter
    for (i, v) in values.enumerated() { stats[i] = v }
  }
}
