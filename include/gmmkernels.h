/*
 * gmmkernels.h — the C contract of libgmmkernels.
 *
 * Blocked, multithreaded, memory-bounded kernels for the linear algebra of
 * Gaussian-mixture EM. Every array crosses this boundary as a gmk_array: a base
 * pointer, a dtype code, a shape and strides in BYTES (numpy's convention, so any
 * sign, Fortran order, every-other-row views and unaligned memmap offsets are all
 * described exactly). Nothing is copied unless a kernel must pack a block.
 *
 * Every function returns a gmk_status. On failure, gmk_last_error() returns a
 * message for the calling thread. No input makes a function abort the process or
 * write outside its `out` array.
 */
#ifndef GMMKERNELS_H
#define GMMKERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bumped whenever a struct layout or a function signature below changes. */
#define GMK_ABI_VERSION 1

/** The element type of a gmk_array. */
typedef enum gmk_dtype {
    /** IEEE single precision. */
    GMK_FLOAT32 = 1,
    /** IEEE double precision. */
    GMK_FLOAT64 = 2
} gmk_dtype;

/** What every kernel returns: GMK_OK, or why it failed (gmk_last_error() says more). */
typedef enum gmk_status {
    /** Success. */
    GMK_OK = 0,
    /** Shapes, strides, null pointers, sizes, overlap. */
    GMK_ERR_VALUE = 1,
    /** Unknown or mismatched dtype codes. */
    GMK_ERR_TYPE = 2,
    /** The workspace could not be allocated. */
    GMK_ERR_MEMORY = 3,
    /** ``*options.cancel`` became non-zero. */
    GMK_ERR_CANCELLED = 4,
    /** A bug: please report it with the message. */
    GMK_ERR_INTERNAL = 5
} gmk_status;

/** The most dimensions a gmk_array has. */
#define GMK_MAX_NDIM 3

/**
 * A strided view of float32 or float64 elements. Element (i, j, k) is at
 * ``(char *)data + i * strides[0] + j * strides[1] + k * strides[2]``.
 * Entries of shape and strides beyond ndim are ignored.
 */
typedef struct gmk_array {
    /** The address of element (0, 0, 0). */
    void *data;
    /** A gmk_dtype. */
    int32_t dtype;
    /** 0 ... GMK_MAX_NDIM. */
    int32_t ndim;
    /** Elements along each dimension. */
    int64_t shape[GMK_MAX_NDIM];
    /** In bytes, any sign. */
    int64_t strides[GMK_MAX_NDIM];
} gmk_array;

/** Per-call options. A NULL options pointer means all defaults. */
typedef struct gmk_options {
    /** Worker threads; <= 0: every CPU this process may use. */
    int32_t threads;
    /** Must be 0. */
    int32_t reserved;
    /** Bytes of workspace beside the inputs and outputs; <= 0: GMK_DEFAULT_MEMORY_LIMIT. */
    int64_t memory_limit;
    /** Optional: non-zero stops the call between row blocks with GMK_ERR_CANCELLED. */
    const volatile int32_t *cancel;
    /** Optional: rows finished so far, updated atomically as blocks complete. */
    volatile int64_t *rows_done;
} gmk_options;

/** The workspace a call may use when options.memory_limit <= 0: 64 MiB. */
#define GMK_DEFAULT_MEMORY_LIMIT (64LL << 20)

/** The ABI version the library was built with; must equal GMK_ABI_VERSION. */
int32_t gmk_abi_version(void);

/** The library version, e.g. "0.1.0". Static storage. */
const char *gmk_version(void);

/**
 * The message of the last failed call on this thread ("" if none). Valid until
 * the next call into the library on this thread.
 */
const char *gmk_last_error(void);

/** The number of threads threads <= 0 stands for. */
int32_t gmk_default_threads(void);

/**
 * out[i] = (x_i - c)^T Q (x_i - c) for the rows x_i of X. ::
 *
 *   x:      (n, d)
 *   q:      (d, d); only its symmetric part (Q + Q^T) / 2 matters
 *   center: (d,) or NULL for c = 0
 *   out:    (n,)
 *
 * All arrays share x's dtype. Sums are accumulated in float64.
 */
int32_t gmk_quadform(const gmk_array *x, const gmk_array *q,
                     const gmk_array *center, const gmk_array *out,
                     const gmk_options *options);

/**
 * out = sum_i w_i (x_i - c)(x_i - c)^T, written in full (both triangles). ::
 *
 *   x:      (n, d)
 *   w:      (n,) or NULL for all ones; rows with w_i == 0 are skipped
 *   center: (d,) or NULL for c = 0
 *   out:    (d, d)
 *
 * All arrays share x's dtype. Sums are accumulated in float64 (for float32, over partial
 * SSYRK sums of up to about a thousand rows).
 */
int32_t gmk_weighted_gram(const gmk_array *x, const gmk_array *w,
                          const gmk_array *center, const gmk_array *out,
                          const gmk_options *options);

/**
 * out[i, k] = (x_i - c_k)^T Q_k (x_i - c_k); X is read once for all K. ::
 *
 *   x:       (n, d)
 *   qs:      (K, d, d); only the symmetric part of each Q_k matters
 *   centers: (K, d) or NULL for zeros
 *   out:     (n, K)
 */
int32_t gmk_quadform_many(const gmk_array *x, const gmk_array *qs,
                          const gmk_array *centers, const gmk_array *out,
                          const gmk_options *options);

/**
 * out[k] = sum_i r[i, k] (x_i - c_k)(x_i - c_k)^T, written in full; X is read once. ::
 *
 *   x:       (n, d)
 *   r:       (n, K) weights of any sign; zeros are skipped
 *   centers: (K, d) or NULL for zeros
 *   out:     (K, d, d)
 */
int32_t gmk_weighted_gram_many(const gmk_array *x, const gmk_array *r,
                               const gmk_array *centers, const gmk_array *out,
                               const gmk_options *options);

/**
 * out = R^T X. ::
 *
 *   x:   (n, d)
 *   r:   (n, K)
 *   out: (K, d)
 */
int32_t gmk_weighted_sum(const gmk_array *x, const gmk_array *r,
                         const gmk_array *out, const gmk_options *options);

/**
 * out = A B, by row blocks of A and out (either may be a file mapping larger than RAM). ::
 *
 *   a:   (n, k)
 *   b:   (k, m)
 *   out: (n, m)
 */
int32_t gmk_matmul(const gmk_array *a, const gmk_array *b,
                   const gmk_array *out, const gmk_options *options);

/**
 * out[i, j] = y[i] * x[j], written by parallel row blocks. ::
 *
 *   y:   (n,)
 *   x:   (m,)
 *   out: (n, m)
 *
 * Here y plays the part of X: its dtype is the one every array must have.
 */
int32_t gmk_outer(const gmk_array *y, const gmk_array *x,
                  const gmk_array *out, const gmk_options *options);

/** Which second moment gmk_mixture_pass accumulates. */
typedef enum gmk_scatter {
    /** Log-likelihood and counts only. */
    GMK_SCATTER_NONE = 0,
    /** S2_k in full: K * d * d values. */
    GMK_SCATTER_FULL = 1,
    /** The sum over k of S2_k: d * d values. */
    GMK_SCATTER_TIED = 2,
    /** The diagonals of S2_k: K * d values. */
    GMK_SCATTER_DIAGONAL = 3
} gmk_scatter;

/**
 * One EM iteration's pass over X for a K-component Gaussian mixture, fused per row
 * block: log-densities log_norm_k - (x - mu_k)^T L_k (x - mu_k) / 2, log-sum-exp
 * responsibilities r_ik, and the next M-step's statistics centred at the means: ::
 *
 *   N_k = sum_i w_i r_ik,  S1_k = sum_i w_i r_ik (x_i - mu_k),
 *   S2_k = sum_i w_i r_ik (x_i - mu_k)(x_i - mu_k)^T.
 *
 * Terms of w_i r_ik < 1e-60 may be left out of S1 and S2 (never out of N or the
 * log-likelihood): over n < 1e18 rows they weigh less than 1e-42. ::
 *
 *   x:             (n, d)
 *   sample_weight: (n,) weights >= 0 (a negative one: GMK_ERR_VALUE), or NULL for ones
 *   log_norm:      (K,) log pi_k + log det(L_k) / 2 - d log(2 pi) / 2
 *   means:         (K, d)
 *   precisions:    (K, d, d) matrices L_k (a zero first stride shares one), or
 *                  (K, d) their diagonals (a zero second stride: spherical)
 *   scatter:       a gmk_scatter
 *   resp_out:      (n, K) responsibilities, or NULL
 *   score_out:     (n,) log sum_k exp(log-density_ik + ...), or NULL
 *   stats_out:     float64 (1 + K + K*d + S,): [sum_i w_i score_i, N, S1, S2] with S the
 *                  size the scatter asks for; row-major; both triangles written
 *
 * Arrays other than stats_out share x's dtype.
 */
int32_t gmk_mixture_pass(const gmk_array *x, const gmk_array *sample_weight,
                         const gmk_array *log_norm, const gmk_array *means,
                         const gmk_array *precisions, int32_t scatter,
                         const gmk_array *resp_out, const gmk_array *score_out,
                         const gmk_array *stats_out, const gmk_options *options);

#ifdef __cplusplus
}
#endif

#endif /* GMMKERNELS_H */
