/* Top-r SVD of a dense fp32 matrix: exact (sgesdd) or randomized (Halko, Martinsson & Tropp
 * 2011, Alg. 4.4: subspace iteration with QR after every multiplication). */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eora/eora.h"
#include "io/err.h"

/* Full thin SVD of a row-major A [m, n] (destroyed): U [m, k], s[k], Vt [k, n], k = min(m, n).
 * A row-major [m, n] is the column-major [n, m] matrix Aᵀ = V Σ Uᵀ, so LAPACK's "U" of Aᵀ is
 * Vt in row-major layout and its "VT" is U: no transposition copies. */
static int svd_thin(float *A, int m, int n, float *U, float *s, float *Vt)
{
    int k = m < n ? m : n;
    lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', n, m, A, n, s, Vt, n, U, k);
    if (info < 0) return err_set("eora: sgesdd: illegal argument %d", (int)-info);
    if (info > 0) return err_set("eora: sgesdd did not converge (info %d) on a %dx%d matrix", (int)info, m, n);
    return 0;
}

/* Orthonormal basis of the columns of a row-major Y [m, k] (m ≥ k), in place. */
static int orthonormalize(float *Y, int m, int k)
{
    float *tau = xmalloc(sizeof *tau * (size_t)k);
    lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, m, k, Y, k, tau);
    if (info == 0) info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, m, k, k, Y, k, tau);
    free(tau);
    if (info != 0) return err_set("eora: QR of a %dx%d sketch failed (info %d)", m, k, (int)info);
    return 0;
}

/* Deterministic standard normals: splitmix64-seeded xoshiro256**, Box–Muller. */
typedef struct { uint64_t s[4]; } rng_t;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *g)
{
    uint64_t *s = g->s, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static double rng_uniform(rng_t *g) /* (0, 1] */
{
    return ((double)(rng_next(g) >> 11) + 1.0) * 0x1.0p-53;
}

static void fill_gaussian(float *x, size_t n, uint64_t seed)
{
    rng_t g;
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++) g.s[i] = splitmix64(&sm);
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(rng_uniform(&g))), t = 2.0 * M_PI * rng_uniform(&g);
        x[i] = (float)(r * cos(t));
        if (i + 1 < n) x[i + 1] = (float)(r * sin(t));
    }
}

static int svd_exact_topr(const float *M, int m, int n, int r, float *U, float *s, float *Vt)
{
    int k = m < n ? m : n;
    float *a = xmalloc(sizeof *a * (size_t)m * n), *u = xmalloc(sizeof *u * (size_t)m * k),
          *sv = xmalloc(sizeof *sv * (size_t)k), *vt = xmalloc(sizeof *vt * (size_t)k * n);
    memcpy(a, M, sizeof *a * (size_t)m * n);
    int rc = svd_thin(a, m, n, u, sv, vt);
    if (rc == 0) {
        for (int i = 0; i < m; i++) memcpy(U + (size_t)i * r, u + (size_t)i * k, sizeof *U * (size_t)r);
        memcpy(s, sv, sizeof *s * (size_t)r);
        memcpy(Vt, vt, sizeof *Vt * (size_t)r * n);
    }
    free(a);
    free(u);
    free(sv);
    free(vt);
    return rc;
}

static int svd_randomized_topr(const float *M, int m, int n, int r, int p, int q, uint64_t seed,
                               float *U, float *s, float *Vt)
{
    int k = r + p;
    float *omega = xmalloc(sizeof *omega * (size_t)n * k), *Y = xmalloc(sizeof *Y * (size_t)m * k);
    float *Bs = NULL, *ub = NULL, *sv = NULL, *vt = NULL;
    int rc = 0;
    fill_gaussian(omega, (size_t)n * k, seed);
    /* Range finder: Y = orth(M Ω), then q rounds of Z = orth(Mᵀ Y), Y = orth(M Z). */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, n, 1.f, M, n, omega, k, 0.f, Y, k);
    if ((rc = orthonormalize(Y, m, k))) goto done;
    for (int it = 0; it < q; it++) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, k, m, 1.f, M, n, Y, k, 0.f, omega, k);
        if ((rc = orthonormalize(omega, n, k))) goto done;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, n, 1.f, M, n, omega, k, 0.f, Y, k);
        if ((rc = orthonormalize(Y, m, k))) goto done;
    }
    /* Project: Bs = Yᵀ M [k, n]; its SVD Ub Σ Vt lifts to U = Y Ub. */
    Bs = xmalloc(sizeof *Bs * (size_t)k * n);
    ub = xmalloc(sizeof *ub * (size_t)k * k);
    sv = xmalloc(sizeof *sv * (size_t)k);
    vt = xmalloc(sizeof *vt * (size_t)k * n);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, m, 1.f, Y, k, M, n, 0.f, Bs, n);
    if ((rc = svd_thin(Bs, k, n, ub, sv, vt))) goto done;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, r, k, 1.f, Y, k, ub, k, 0.f, U, r);
    memcpy(s, sv, sizeof *s * (size_t)r);
    memcpy(Vt, vt, sizeof *Vt * (size_t)r * n);
done:
    free(omega);
    free(Y);
    free(Bs);
    free(ub);
    free(sv);
    free(vt);
    return rc;
}

int eora_svd_topr(const float *M, int m, int n, int r, eora_svd kind, int oversample,
                  int power_iters, uint64_t seed, float *U, float *s, float *Vt)
{
    int kmax = m < n ? m : n;
    if (m < 1 || n < 1 || r < 1 || r > kmax)
        return err_set("eora: SVD rank %d outside 1..min(%d, %d)", r, m, n);
    if (oversample < 0 || power_iters < 0)
        return err_set("eora: randomized SVD needs oversample ≥ 0 and power iterations ≥ 0 (got %d, %d)",
                       oversample, power_iters);
    /* A sketch as wide as the matrix is no cheaper than the exact SVD. */
    if (kind == EORA_SVD_EXACT || r + oversample >= kmax) return svd_exact_topr(M, m, n, r, U, s, Vt);
    return svd_randomized_topr(M, m, n, r, oversample, power_iters, seed, U, s, Vt);
}
