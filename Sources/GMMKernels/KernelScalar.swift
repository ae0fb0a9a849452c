internal import CBLAS

/// The element types the kernels run on: `Float` and `Double`.
///
/// The requirements wrap the BLAS routines the kernels use, always in row-major
/// order. They are implementation details (underscored); call the kernels instead.
public protocol KernelScalar: BinaryFloatingPoint, Sendable {
  /// `C = alpha * op(A) * op(B) + beta * C`, row-major; `op(M)` is `M` or `Mᵀ`.
  static func _gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Self, a: UnsafePointer<Self>, lda: Int,
    b: UnsafePointer<Self>, ldb: Int,
    beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

  /// Lower triangle (i ≥ j) of `C = alpha * op(A)ᵀ op(A) + beta * C` (n × n), row-major,
  /// where `op(A)` is the k × n matrix `A` (trans = true) or `Aᵀ` (trans = false).
  /// OpenBLAS 0.3.21's DSYRK runs 3–5% faster into this triangle than into the upper one
  /// (weighted_gram at n=200000, d=900: 4% less time; SSYRK the same either way).
  static func _syrkLower(
    trans: Bool, n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
    beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

  /// `B = alpha · B · op(A)` in place, row-major, for B (m × n) and A (n × n) triangular
  /// (its `lower` or upper triangle is read); `op(A)` is `A` or `Aᵀ`.
  static func _trmmRight(
    lower: Bool, trans: Bool, m: Int, n: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
    b: UnsafeMutablePointer<Self>, ldb: Int)
}

@inline(__always)
private func cblasTrans(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

/// A leading dimension BLAS accepts: at least 1 even when a dimension is 0 (nothing is read
/// then, but the reference BLAS checks, and OpenBLAS complains on stderr).
@inline(__always)
private func ld(_ value: Int) -> blasint { blasint(max(1, value)) }

extension Double: KernelScalar {
  public static func _gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Double, a: UnsafePointer<Double>, lda: Int,
    b: UnsafePointer<Double>, ldb: Int,
    beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
  ) {
    cblas_dgemm(
      CblasRowMajor, cblasTrans(transA), cblasTrans(transB), blasint(m), blasint(n), blasint(k),
      alpha, a, ld(lda), b, ld(ldb), beta, c, ld(ldc))
  }

  public static func _syrkLower(
    trans: Bool, n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
    beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
  ) {
    cblas_dsyrk(
      CblasRowMajor, CblasLower, cblasTrans(trans), blasint(n), blasint(k),
      alpha, a, ld(lda), beta, c, ld(ldc))
  }
}

extension Double {
  public static func _trmmRight(
    lower: Bool, trans: Bool, m: Int, n: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
    b: UnsafeMutablePointer<Double>, ldb: Int
  ) {
    cblas_dtrmm(
      CblasRowMajor, CblasRight, lower ? CblasLower : CblasUpper, cblasTrans(trans), CblasNonUnit,
      blasint(m), blasint(n), alpha, a, ld(lda), b, ld(ldb))
  }

  /// `y += alpha * x` over `n` contiguous elements.
  static func _axpy(n: Int, alpha: Double, x: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>) {
    cblas_daxpy(blasint(n), alpha, x, 1, y, 1)
  }
}

extension Float: KernelScalar {
  public static func _gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    cblas_sgemm(
      CblasRowMajor, cblasTrans(transA), cblasTrans(transB), blasint(m), blasint(n), blasint(k),
      alpha, a, ld(lda), b, ld(ldb), beta, c, ld(ldc))
  }

  public static func _syrkLower(
    trans: Bool, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    cblas_ssyrk(
      CblasRowMajor, CblasLower, cblasTrans(trans), blasint(n), blasint(k),
      alpha, a, ld(lda), beta, c, ld(ldc))
  }

  public static func _trmmRight(
    lower: Bool, trans: Bool, m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafeMutablePointer<Float>, ldb: Int
  ) {
    cblas_strmm(
      CblasRowMajor, CblasRight, lower ? CblasLower : CblasUpper, cblasTrans(trans), CblasNonUnit,
      blasint(m), blasint(n), alpha, a, ld(lda), b, ld(ldb))
  }
}
