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

int main(void) {
    check(gmk_abi_version() == GMK_ABI_VERSION, "gmk_abi_version() == GMK_ABI_VERSION");
    check(gmk_version() != NULL && gmk_version()[0] != '\0', "gmk_version() is a non-empty string");
    check(gmk_default_threads() >= 1, "gmk_default_threads() >= 1");

    double q[N], qmag[N], g[D][D], gmag[D][D];
    reference(q, qmag, g, gmag);
    check_float64(q, qmag, g, gmag);
    check_float32(q, qmag, g, gmag);
    check_errors();

    printf("abi_check: libgmmkernels %s, ABI %d: %d checks, %d failed\n", gmk_version(), gmk_abi_version(), checks,
           failures);
    return failures == 0 ? 0 : 1;
}
