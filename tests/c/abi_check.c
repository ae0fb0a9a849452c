/*
 * abi_check.c — calls libgmmkernels through include/gmmkernels.h alone, as any C user
 * would, and checks the results against plain loops.
 *
 *   cc -std=c99 -Iinclude tests/c/abi_check.c -Lbuild-dir -lgmmkernels \
 *      -Wl,-rpath,build-dir -lm -o abi_check && ./abi_check
 *
 * Exits 0 when every check passes; prints one line per failure and a summary line.
 */
#include "gmmkernels.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define N 7
#define D 3

static int checks = 0;
static int failures = 0;

static void check(int ok, const char *what) {
    checks++;
    if (!ok) {
        failures++;
        printf("FAIL: %s\n", what);
    }
}

/* |got - want| <= (terms + 4) * eps * magnitude, magnitude = sum of |terms|: the
 * rounding bound of a sum of `terms` products in a type with machine epsilon `eps`. */
static int close_to(double got, double want, double magnitude, int terms, double eps) {
    return fabs(got - want) <= (terms + 4) * eps * magnitude;
}

/* The test data, in double; each case copies it into its own dtype and layout. */
static const double X[N][D] = {
    {0.5, -1.25, 2.0}, {1.0, 0.0, -0.5}, {-2.0, 0.75, 1.5}, {0.25, 0.5, -1.0},
    {3.0, -1.0, 0.125}, {-0.5, -0.5, -0.5}, {1.5, 2.5, -2.0},
};
static const double Q[D][D] = {{2.0, 0.5, -1.0}, {1.5, 1.0, 0.25}, {0.0, -0.75, 3.0}};
static const double C[D] = {0.25, -0.5, 1.0};
static const double W[N] = {1.0, 0.0, -0.5, 2.0, 0.25, -1.5, 0.75};

/* K matrices and centers for gmk_quadform_many; a K-component mixture for gmk_mixture_pass
 * (symmetric positive definite precisions, means inside the data, sample weights >= 0). */
#define K 2
static const double QS[K][D][D] = {
    {{2.0, 0.5, -1.0}, {1.5, 1.0, 0.25}, {0.0, -0.75, 3.0}},
    {{1.0, -0.25, 0.0}, {0.5, 2.0, 1.0}, {0.25, 0.0, 0.5}},
};
static const double CS[K][D] = {{0.25, -0.5, 1.0}, {-1.0, 0.5, 0.0}};
static const double LAMBDA[K][D][D] = {
    {{1.5, 0.25, 0.0}, {0.25, 1.0, -0.125}, {0.0, -0.125, 0.75}},
    {{0.5, 0.0, 0.125}, {0.0, 2.0, 0.25}, {0.125, 0.25, 1.25}},
};
static const double LOG_NORM[K] = {-2.5, -3.0};
static const double SAMPLE_W[N] = {1.0, 0.0, 0.5, 2.0, 1.0, 1.5, 0.25};

/* q_i = (x_i - c)^T Q (x_i - c) and G = sum_i w_i (x_i - c)(x_i - c)^T with their
 * magnitudes, by plain loops in double. */
static void reference(double q[N], double qmag[N], double g[D][D], double gmag[D][D]) {
    double y[N][D];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) y[i][j] = X[i][j] - C[j];
    for (int i = 0; i < N; i++) {
        q[i] = 0;
        qmag[i] = 0;
        for (int j = 0; j < D; j++)
            for (int k = 0; k < D; k++) {
                q[i] += y[i][j] * Q[j][k] * y[i][k];
                qmag[i] += fabs(y[i][j] * 0.5 * (Q[j][k] + Q[k][j]) * y[i][k]);
            }
    }
    for (int j = 0; j < D; j++)
        for (int k = 0; k < D; k++) {
            g[j][k] = 0;
            gmag[j][k] = 0;
            for (int i = 0; i < N; i++) {
                g[j][k] += W[i] * y[i][j] * y[i][k];
                gmag[j][k] += fabs(W[i] * y[i][j] * y[i][k]);
            }
        }
}

static gmk_array array2(void *data, int32_t dtype, int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
    gmk_array a;
    memset(&a, 0, sizeof a);
    a.data = data;
    a.dtype = dtype;
    a.ndim = 2;
    a.shape[0] = rows;
    a.shape[1] = cols;
    a.strides[0] = rs;
    a.strides[1] = cs;
    return a;
}

static gmk_array array1(void *data, int32_t dtype, int64_t count, int64_t stride) {
    gmk_array a;
    memset(&a, 0, sizeof a);
    a.data = data;
    a.dtype = dtype;
    a.ndim = 1;
    a.shape[0] = count;
    a.strides[0] = stride;
    return a;
}

static void check_float64(const double q_want[N], const double qmag[N], double g_want[D][D], double gmag[D][D]) {
    /* X in C order, Q in Fortran order (its transpose in memory), everything else contiguous. */
    double x[N * D], qf[D * D], c[D], w[N], out[N], g[D * D];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) x[i * D + j] = X[i][j];
    for (int j = 0; j < D; j++)
        for (int k = 0; k < D; k++) qf[k * D + j] = Q[j][k];
    for (int j = 0; j < D; j++) c[j] = C[j];
    for (int i = 0; i < N; i++) w[i] = W[i];

    const int64_t e = sizeof(double);
    gmk_array ax = array2(x, GMK_FLOAT64, N, D, D * e, e);
    gmk_array aq = array2(qf, GMK_FLOAT64, D, D, e, D * e);
    gmk_array ac = array1(c, GMK_FLOAT64, D, e);
    gmk_array aw = array1(w, GMK_FLOAT64, N, e);
    gmk_array aout = array1(out, GMK_FLOAT64, N, e);
    gmk_array ag = array2(g, GMK_FLOAT64, D, D, D * e, e);

    int64_t rows_done = 0;
    gmk_options options = {2, 0, 0, NULL, &rows_done};
    check(gmk_quadform(&ax, &aq, &ac, &aout, &options) == GMK_OK, "float64 gmk_quadform returns GMK_OK");
    check(strcmp(gmk_last_error(), "") == 0, "float64 gmk_quadform leaves no error message");
    check(rows_done == N, "float64 gmk_quadform reports every row in rows_done");
    for (int i = 0; i < N; i++) check(close_to(out[i], q_want[i], qmag[i], 2 * D, DBL_EPSILON), "float64 quadform value");

    check(gmk_weighted_gram(&ax, &aw, &ac, &ag, NULL) == GMK_OK, "float64 gmk_weighted_gram returns GMK_OK");
    for (int j = 0; j < D; j++)
        for (int k = 0; k < D; k++)
            check(close_to(g[j * D + k], g_want[j][k], gmag[j][k], N, DBL_EPSILON), "float64 weighted_gram value");
}

static void check_float32(const double q_want[N], const double qmag[N], double g_want[D][D], double gmag[D][D]) {
    /* X in Fortran order, read every other row of a (2N x D) buffer for w: general strides. */
    float x[N * D], q[D * D], c[D], w[2 * N], out[N], g[D * D];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) x[j * N + i] = (float)X[i][j];
    for (int j = 0; j < D; j++)
        for (int k = 0; k < D; k++) q[j * D + k] = (float)Q[j][k];
    for (int j = 0; j < D; j++) c[j] = (float)C[j];
    for (int i = 0; i < N; i++) {
        w[2 * i] = (float)W[i];
        w[2 * i + 1] = NAN;
    }

    const int64_t e = sizeof(float);
    gmk_array ax = array2(x, GMK_FLOAT32, N, D, e, N * e);
    gmk_array aq = array2(q, GMK_FLOAT32, D, D, D * e, e);
    gmk_array ac = array1(c, GMK_FLOAT32, D, e);
    gmk_array aw = array1(w, GMK_FLOAT32, N, 2 * e);
    gmk_array aout = array1(out, GMK_FLOAT32, N, e);
    gmk_array ag = array2(g, GMK_FLOAT32, D, D, D * e, e);

    check(gmk_quadform(&ax, &aq, &ac, &aout, NULL) == GMK_OK, "float32 gmk_quadform returns GMK_OK");
    for (int i = 0; i < N; i++) check(close_to(out[i], q_want[i], qmag[i], 2 * D, FLT_EPSILON), "float32 quadform value");
    check(gmk_weighted_gram(&ax, &aw, &ac, &ag, NULL) == GMK_OK, "float32 gmk_weighted_gram returns GMK_OK");
    for (int j = 0; j < D; j++)
        for (int k = 0; k < D; k++)
            check(close_to(g[j * D + k], g_want[j][k], gmag[j][k], N, FLT_EPSILON), "float32 weighted_gram value");
}

static void check_errors(void) {
    double x[N * D] = {0}, q[D * D] = {0}, out[N];
    float q32[D * D] = {0};
    const int64_t e = sizeof(double);
    gmk_array ax = array2(x, GMK_FLOAT64, N, D, D * e, e);
    gmk_array aq = array2(q, GMK_FLOAT64, D, D, D * e, e);
    gmk_array aq32 = array2(q32, GMK_FLOAT32, D, D, D * sizeof(float), sizeof(float));
    gmk_array aout = array1(out, GMK_FLOAT64, N, e);

    check(gmk_quadform(&ax, NULL, NULL, &aout, NULL) == GMK_ERR_VALUE, "Q = NULL gives GMK_ERR_VALUE");
    check(strstr(gmk_last_error(), "Q") != NULL, "the message for Q = NULL names Q");
    check(gmk_quadform(&ax, &aq32, NULL, &aout, NULL) == GMK_ERR_TYPE, "float32 Q with float64 X gives GMK_ERR_TYPE");
    check(strstr(gmk_last_error(), "Q") != NULL, "the message for a float32 Q names Q");
    printf("expected error message: %s\n", gmk_last_error());
    gmk_array bad = aq;
    bad.shape[0] = D + 1;
    check(gmk_quadform(&ax, &bad, NULL, &aout, NULL) == GMK_ERR_VALUE, "Q of the wrong shape gives GMK_ERR_VALUE");
    gmk_options reserved = {0, 1, 0, NULL, NULL};
    check(gmk_weighted_gram(&ax, NULL, NULL, &aq, &reserved) == GMK_ERR_VALUE, "options.reserved != 0 gives GMK_ERR_VALUE");
    volatile int32_t cancel = 1;
    gmk_options cancelled = {1, 0, 0, &cancel, NULL};
    check(gmk_quadform(&ax, &aq, NULL, &aout, &cancelled) == GMK_ERR_CANCELLED, "a set cancel flag gives GMK_ERR_CANCELLED");
    check(gmk_quadform(&ax, &aq, NULL, &aout, NULL) == GMK_OK, "a valid call after failures returns GMK_OK");
    check(strcmp(gmk_last_error(), "") == 0, "a successful call clears the message");
}

/* gmk_quadform_many: out[i][k] = (x_i - c_k)^T Q_k (x_i - c_k), X in C order, the Qs as
 * a (K, D, D) array in C order, out (N, K) in Fortran order. */
static void check_quadform_many(void) {
    double x[N * D], qs[K * D * D], cs[K * D], out[K * N];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) x[i * D + j] = X[i][j];
    for (int k = 0; k < K; k++)
        for (int j = 0; j < D; j++) {
            cs[k * D + j] = CS[k][j];
            for (int l = 0; l < D; l++) qs[(k * D + j) * D + l] = QS[k][j][l];
        }
    const int64_t e = sizeof(double);
    gmk_array ax = array2(x, GMK_FLOAT64, N, D, D * e, e);
    gmk_array aqs = array2(qs, GMK_FLOAT64, K, D, D * D * e, D * e);
    aqs.ndim = 3;
    aqs.shape[2] = D;
    aqs.strides[2] = e;
    gmk_array acs = array2(cs, GMK_FLOAT64, K, D, D * e, e);
    gmk_array aout = array2(out, GMK_FLOAT64, N, K, e, N * e);

    int64_t rows_done = 0;
    gmk_options options = {2, 0, 0, NULL, &rows_done};
    check(gmk_quadform_many(&ax, &aqs, &acs, &aout, &options) == GMK_OK, "gmk_quadform_many returns GMK_OK");
    check(strcmp(gmk_last_error(), "") == 0, "gmk_quadform_many leaves no error message");
    check(rows_done == N, "gmk_quadform_many reports every row in rows_done");
    for (int i = 0; i < N; i++)
        for (int k = 0; k < K; k++) {
            double want = 0, magnitude = 0;
            for (int j = 0; j < D; j++)
                for (int l = 0; l < D; l++) {
                    double yj = X[i][j] - CS[k][j], yl = X[i][l] - CS[k][l];
                    want += yj * QS[k][j][l] * yl;
                    magnitude += fabs(yj * 0.5 * (QS[k][j][l] + QS[k][l][j]) * yl);
                }
            check(close_to(out[k * N + i], want, magnitude, 2 * D, DBL_EPSILON), "gmk_quadform_many value");
        }
}

/* gmk_mixture_pass with the full scatter: log-densities, log-sum-exp, responsibilities and
 * the statistics centred at the means, against the definitions by plain loops. Each value's
 * magnitude is the sum its rounding errors scale with: the quadratic forms' absolute terms
 * about the mean of the means m (e = |x - m| + |mu_k - m|), carried through log-sum-exp,
 * the responsibilities and the sums over rows. */
static void check_mixture_pass(void) {
    double x[N * D], w[N], log_norm[K], means[K * D], lambda[K * D * D];
    double resp[N * K], score[N], stats[1 + K + K * D + K * D * D];
    for (int i = 0; i < N; i++) {
        w[i] = SAMPLE_W[i];
        for (int j = 0; j < D; j++) x[i * D + j] = X[i][j];
    }
    for (int k = 0; k < K; k++) {
        log_norm[k] = LOG_NORM[k];
        for (int j = 0; j < D; j++) {
            means[k * D + j] = CS[k][j];
            for (int l = 0; l < D; l++) lambda[(k * D + j) * D + l] = LAMBDA[k][j][l];
        }
    }
    const int64_t e = sizeof(double);
    gmk_array ax = array2(x, GMK_FLOAT64, N, D, D * e, e);
    gmk_array aw = array1(w, GMK_FLOAT64, N, e);
    gmk_array aln = array1(log_norm, GMK_FLOAT64, K, e);
    gmk_array amu = array2(means, GMK_FLOAT64, K, D, D * e, e);
    gmk_array alambda = array2(lambda, GMK_FLOAT64, K, D, D * D * e, D * e);
    alambda.ndim = 3;
    alambda.shape[2] = D;
    alambda.strides[2] = e;
    gmk_array aresp = array2(resp, GMK_FLOAT64, N, K, K * e, e);
    gmk_array ascore = array1(score, GMK_FLOAT64, N, e);
    gmk_array astats = array1(stats, GMK_FLOAT64, 1 + K + K * D + K * D * D, e);

    int64_t rows_done = 0;
    gmk_options options = {2, 0, 0, NULL, &rows_done};
    check(gmk_mixture_pass(&ax, &aw, &aln, &amu, &alambda, GMK_SCATTER_FULL, &aresp, &ascore, &astats, &options) == GMK_OK,
          "gmk_mixture_pass returns GMK_OK");
    check(strcmp(gmk_last_error(), "") == 0, "gmk_mixture_pass leaves no error message");
    check(rows_done == N, "gmk_mixture_pass reports every row in rows_done");

    double want[1 + K + K * D + K * D * D] = {0}, magnitude[1 + K + K * D + K * D * D] = {0};
    double m[D] = {0};
    for (int k = 0; k < K; k++)
        for (int j = 0; j < D; j++) m[j] += CS[k][j] / K;
    const int terms = D * (D + 1) / 2 + D + 1 + K + N;
    for (int i = 0; i < N; i++) {
        double lp[K], size[K], ex[K][D], top = -INFINITY;
        for (int k = 0; k < K; k++) {
            double q = 0, qmag = 0;
            for (int j = 0; j < D; j++) ex[k][j] = fabs(X[i][j] - m[j]) + fabs(CS[k][j] - m[j]);
            for (int j = 0; j < D; j++)
                for (int l = 0; l < D; l++) {
                    q += (X[i][j] - CS[k][j]) * LAMBDA[k][j][l] * (X[i][l] - CS[k][l]);
                    qmag += ex[k][j] * fabs(LAMBDA[k][j][l]) * ex[k][l];
                }
            lp[k] = LOG_NORM[k] - 0.5 * q;
            size[k] = fabs(LOG_NORM[k]) + 0.5 * qmag;
            if (lp[k] > top) top = lp[k];
        }
        double total = 0, largest = 0;
        for (int k = 0; k < K; k++) {
            total += exp(lp[k] - top);
            if (size[k] > largest) largest = size[k];
        }
        double lse = top + log(total);
        double score_magnitude = largest + fabs(lse) + 1;
        check(close_to(score[i], lse, score_magnitude, terms, DBL_EPSILON), "gmk_mixture_pass score");
        want[0] += SAMPLE_W[i] * lse;
        magnitude[0] += SAMPLE_W[i] * score_magnitude;
        for (int k = 0; k < K; k++) {
            double r = exp(lp[k] - lse), rmag = r * (size[k] + score_magnitude + 1);
            check(close_to(resp[i * K + k], r, rmag, terms, DBL_EPSILON), "gmk_mixture_pass responsibility");
            double wr = SAMPLE_W[i] * r, wrmag = SAMPLE_W[i] * rmag;
            want[1 + k] += wr;
            magnitude[1 + k] += wrmag;
            for (int j = 0; j < D; j++) {
                double yj = X[i][j] - CS[k][j];
                want[1 + K + k * D + j] += wr * yj;
                magnitude[1 + K + k * D + j] += wrmag * ex[k][j];
                for (int l = 0; l < D; l++) {
                    want[1 + K + K * D + (k * D + j) * D + l] += wr * yj * (X[i][l] - CS[k][l]);
                    magnitude[1 + K + K * D + (k * D + j) * D + l] += wrmag * ex[k][j] * ex[k][l];
                }
            }
        }
    }
    for (int t = 0; t < 1 + K + K * D + K * D * D; t++)
        check(close_to(stats[t], want[t], magnitude[t], terms, DBL_EPSILON), "gmk_mixture_pass statistic");

    /* stats_out of the wrong length: an error that names it. */
    astats.shape[0] -= 1;
    check(gmk_mixture_pass(&ax, &aw, &aln, &amu, &alambda, GMK_SCATTER_FULL, NULL, NULL, &astats, NULL) == GMK_ERR_VALUE,
          "a short stats_out gives GMK_ERR_VALUE");
    check(strstr(gmk_last_error(), "stats_out") != NULL, "the message for a short stats_out names stats_out");
}

int main(void) {
    check(gmk_abi_version() == GMK_ABI_VERSION, "gmk_abi_version() == GMK_ABI_VERSION");
    check(gmk_version() != NULL && gmk_version()[0] != '\0', "gmk_version() is a non-empty string");
    check(gmk_default_threads() >= 1, "gmk_default_threads() >= 1");

    double q[N], qmag[N], g[D][D], gmag[D][D];
    reference(q, qmag, g, gmag);
    check_float64(q, qmag, g, gmag);
    check_float32(q, qmag, g, gmag);
    check_errors();
    check_quadform_many();
    check_mixture_pass();

    printf("abi_check: libgmmkernels %s, ABI %d: %d checks, %d failed\n", gmk_version(), gmk_abi_version(), checks,
           failures);
    return failures == 0 ? 0 : 1;
}
