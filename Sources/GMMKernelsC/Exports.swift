// The C ABI of include/gmmkernels.h: @_cdecl functions that check every argument
// (null pointers, dtype codes, ndim, shape × stride overflow), build the strided views,
// call the Swift kernels and turn every error into a status code and a per-thread
// message. No Swift error or trap may cross this boundary.

import GMMKernels
import _GMKSupport

let libraryVersion: StaticString = "0.1.0"

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

@_cdecl("gmk_quadform")
public func gmk_quadform(
  _ x: UnsafePointer<gmk_array>?, _ q: UnsafePointer<gmk_array>?,
  _ center: UnsafePointer<gmk_array>?, _ out: UnsafePointer<gmk_array>?,
  _ options: UnsafePointer<gmk_options>?
) -> Int32 {
  exported { () throws(KernelError) in
    let args = try Arguments(x: x, options: options)
    switch args.dtype {
    case GMK_FLOAT32: try quadformCall(Float.self, args, q: q, center: center, out: out)
    default: try quadformCall(Double.self, args, q: q, center: center, out: out)
    }
  }
}

private func quadformCall<T: KernelScalar>(
  _: T.Type, _ args: Arguments, q: UnsafePointer<gmk_array>?,
  center: UnsafePointer<gmk_array>?, out: UnsafePointer<gmk_array>?
) throws(KernelError) {
  try quadform(
    try args.matrix(T.self),
    try matrix(T.self, q, "Q", dtype: args.dtype),
    center: try optionalVector(T.self, center, "center", dtype: args.dtype),
    out: try vector(T.self, out, "out", dtype: args.dtype),
    options: args.options)
}

@_cdecl("gmk_weighted_gram")
public func gmk_weighted_gram(
  _ x: UnsafePointer<gmk_array>?, _ w: UnsafePointer<gmk_array>?,
  _ center: UnsafePointer<gmk_array>?, _ out: UnsafePointer<gmk_array>?,
  _ options: UnsafePointer<gmk_options>?
) -> Int32 {
  exported { () throws(KernelError) in
    let args = try Arguments(x: x, options: options)
    switch args.dtype {
    case GMK_FLOAT32: try weightedGramCall(Float.self, args, w: w, center: center, out: out)
    default: try weightedGramCall(Double.self, args, w: w, center: center, out: out)
    }
  }
}

private func weightedGramCall<T: KernelScalar>(
  _: T.Type, _ args: Arguments, w: UnsafePointer<gmk_array>?,
  center: UnsafePointer<gmk_array>?, out: UnsafePointer<gmk_array>?
) throws(KernelError) {
  try weightedGram(
    try args.matrix(T.self),
    weights: try optionalVector(T.self, w, "w", dtype: args.dtype),
    center: try optionalVector(T.self, center, "center", dtype: args.dtype),
    out: try matrix(T.self, out, "out", dtype: args.dtype),
    options: args.options)
}
