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
