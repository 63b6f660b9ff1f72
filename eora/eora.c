/* EoRA: B·A = [ΔW·S]_r · S⁻¹ for a square root S·Sᵀ = C (REFERENCE.md §5).
 *
 * Square roots:
 *   eigen    — C = Q Λ Qᵀ (dsyevd, fp64), S = Q √Λ, S⁻¹ = √Λ⁻¹ Qᵀ with eigenvalues at or below
 *              max(λ)·min(1, in·FLT_EPSILON) dropped from both (GPTQModel's cutoff).
 *   cholesky — C = L Lᵀ (dpotrf, fp64), S = L. C whose factorisation fails, or has a pivot at or
 *              below max(diag C)·in·DBL_EPSILON (singular to working precision), falls back to
 *              eigen. A = √Σ V_rᵀ L⁻¹ is formed without L⁻¹: since U_rᵀ (ΔW L) = Σ_r V_rᵀ,
 *              A = Σ_r^{-1/2} U_rᵀ ΔW exactly, and B·A = U_r U_rᵀ ΔW — a projection, so an
 *              ill-conditioned L cannot amplify rounding into A (a triangular solve would by
 *              cond(L)).
 * The loss tr(E C Eᵀ) is evaluated through the factor the path already holds:
 *   eigen:    Σ_j λ_j ‖E q_j‖² over all eigenpairs (discarded and negative ones included),
 *   cholesky: ‖E L‖²_F,
 * with E = ΔW (before) or ΔW − B·A (after, from the returned fp32 A and B). */
#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eora/eora.h"
#include "io/err.h"

void eora_opts_default(eora_opts *o)
{
    o->rank = 64;
    o->method = EORA_CHOLESKY;
    o->svd = EORA_SVD_EXACT;
    o->oversample = 64;
    o->power_iters = 4;
    o->seed = 0;
}

const char *eora_method_name(eora_method m) { return m == EORA_CHOLESKY ? "cholesky" : "eigen"; }
const char *eora_svd_name(eora_svd s) { return s == EORA_SVD_RANDOMIZED ? "randomized" : "exact"; }

void eora_result_free(eora_result *r)
{
    if (!r) return;
    free(r->A);
    free(r->B);
    r->A = r->B = NULL;
}

/* A square root of C in fp32, as the two paths hold it. */
typedef struct {
    eora_method kind;
    float *F;      /* cholesky: L [n, n] row-major lower; eigen: Qᵀ (row j = eigenvector j) */
    double *lam;   /* eigen: eigenvalues, ascending */
    float *sq;     /* eigen: √λ_j, 0 where discarded */
    float *isq;    /* eigen: 1/√λ_j, 0 where discarded */
    int discarded;
    double cutoff;
} cov_root;

static void root_free(cov_root *s)
{
    free(s->F);
    free(s->lam);
    free(s->sq);
    free(s->isq);
    memset(s, 0, sizeof *s);
}

static double rank_rtol(int n) { return fmin(1.0, (double)n * FLT_EPSILON); }

/* Cholesky factor. Returns 0 with s->F set, 1 when C is not (numerically) PD, -1 on error. */
static int root_cholesky(const char *mod, const double *C, int n, cov_root *s)
{
    size_t nn = (size_t)n * n;
    double *a = xmalloc(sizeof *a * nn), maxdiag = 0;
    memcpy(a, C, sizeof *a * nn);
    for (int i = 0; i < n; i++) maxdiag = fmax(maxdiag, C[(size_t)i * n + i]);
    /* Column-major 'U' of the buffer = the row-major lower triangle, as torch reads it. */
    lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', n, a, n);
    if (info < 0) {
        free(a);
        return err_set("%s: dpotrf: illegal argument %d", mod, (int)-info);
    }
    double floor = maxdiag * (double)n * DBL_EPSILON;
    int pd = info == 0 && maxdiag > 0;
    for (int i = 0; pd && i < n; i++) {
        double p = a[(size_t)i * n + i];
        if (!(p * p > floor)) pd = 0;
    }
    if (!pd) {
        free(a);
        return 1;
    }
    /* The column-major upper factor U (C = UᵀU) read row-major is L = Uᵀ in its lower triangle. */
    s->kind = EORA_CHOLESKY;
    s->F = xmalloc(sizeof *s->F * nn);
    s->cutoff = floor;
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) s->F[(size_t)i * n + j] = j <= i ? (float)a[(size_t)i * n + j] : 0.f;
    free(a);
    return 0;
}

static int root_eigen(const char *mod, const double *C, int n, cov_root *s)
{
    size_t nn = (size_t)n * n;
    double *a = xmalloc(sizeof *a * nn);
    memcpy(a, C, sizeof *a * nn);
    s->kind = EORA_EIGEN;
    s->lam = xmalloc(sizeof *s->lam * (size_t)n);
    /* Column-major eigenvectors: column j of Q is row j of the buffer, i.e. the buffer is Qᵀ. */
    lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', n, a, n, s->lam);
    if (info != 0) {
        free(a);
        return err_set("%s: covariance eigendecomposition (dsyevd) failed (info %d)", mod, (int)info);
    }
    for (int j = 0; j < n; j++)
        if (!isfinite(s->lam[j])) {
            free(a);
            return err_set("%s: covariance eigendecomposition produced non-finite eigenvalues", mod);
        }
    double lmax = fmax(s->lam[n - 1], 0.0);
    if (!(lmax > 0)) {
        free(a);
        return err_set("%s: covariance has no positive eigenvalue (max %.3g): no input reached this linear",
                       mod, s->lam[n - 1]);
    }
    s->cutoff = lmax * rank_rtol(n);
    s->sq = xmalloc(sizeof *s->sq * (size_t)n);
    s->isq = xmalloc(sizeof *s->isq * (size_t)n);
    s->discarded = 0;
    for (int j = 0; j < n; j++) {
        int keep = s->lam[j] > s->cutoff;
        s->sq[j] = keep ? (float)sqrt(s->lam[j]) : 0.f;
        s->isq[j] = keep ? (float)(1.0 / sqrt(s->lam[j])) : 0.f;
        s->discarded += !keep;
    }
    s->F = xmalloc(sizeof *s->F * nn);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nn; i++) s->F[i] = (float)a[i];
    free(a);
    return 0;
}

/* ‖E S‖²-style losses. eigen: G = E·Q, loss = Σ_j λ_j Σ_o G[o,j]²; cholesky: G = E·L, Σ G². */
static double factor_loss(const cov_root *s, const float *G, int out, int in)
{
    double total = 0;
    if (s->kind == EORA_CHOLESKY) {
        #pragma omp parallel for reduction(+ : total) schedule(static)
        for (int o = 0; o < out; o++) {
            double acc = 0;
            for (int j = 0; j < in; j++) acc += (double)G[(size_t)o * in + j] * G[(size_t)o * in + j];
            total += acc;
        }
    } else {
        #pragma omp parallel for reduction(+ : total) schedule(static)
        for (int o = 0; o < out; o++) {
            double acc = 0;
            for (int j = 0; j < in; j++) acc += s->lam[j] * G[(size_t)o * in + j] * G[(size_t)o * in + j];
            total += acc;
        }
    }
    return total;
}

/* X ← X·S (eigen: X·Q, the √Λ scaling is applied separately) for row-major X [rows, n]. */
static void times_root(const cov_root *s, float *X, int rows, int n, float *tmp)
{
    if (s->kind == EORA_CHOLESKY) {
        cblas_strmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, rows, n, 1.f, s->F, n,
                    X, n);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, n, 1.f, X, n, s->F, n, 0.f, tmp, n);
        memcpy(X, tmp, sizeof *X * (size_t)rows * n);
    }
}

static int check_finite_f(const char *mod, const char *what, const float *x, size_t n)
{
    int bad = 0;
    #pragma omp parallel for reduction(| : bad) schedule(static)
    for (size_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return bad ? err_set("%s: %s contains non-finite values", mod, what) : 0;
}

int eora_compute(const char *module, const float *W, const float *Wq, int out, int in,
                 const double *C, const eora_opts *o, eora_result *r)
{
    const char *mod = module ? module : "eora";
    memset(r, 0, sizeof *r);
    if (!W || !Wq || !C || !o) return err_set("%s: eora_compute: missing input", mod);
    if (out < 1 || in < 1) return err_set("%s: bad shape [%d, %d]", mod, out, in);
    int kmax = out < in ? out : in;
    if (o->rank < 1 || o->rank > kmax)
        return err_set("%s: EoRA rank %d must be in 1..min(out %d, in %d) = %d", mod, o->rank, out, in, kmax);
    if (o->method != EORA_EIGEN && o->method != EORA_CHOLESKY) return err_set("%s: unknown EoRA method", mod);
    if (o->svd != EORA_SVD_EXACT && o->svd != EORA_SVD_RANDOMIZED) return err_set("%s: unknown SVD kind", mod);
    size_t on = (size_t)out * in, nn = (size_t)in * in;
    int bad = 0;
    #pragma omp parallel for reduction(| : bad) schedule(static)
    for (size_t i = 0; i < nn; i++) bad |= !isfinite(C[i]);
    if (bad) return err_set("%s: covariance contains non-finite values", mod);
    if (check_finite_f(mod, "weight", W, on) || check_finite_f(mod, "quantized weight", Wq, on)) return -1;

    const int rank = o->rank;
    cov_root s = {0};
    int fallback = 0, rc;
    if (o->method == EORA_CHOLESKY) {
        rc = root_cholesky(mod, C, in, &s);
        if (rc < 0) return -1;
        fallback = rc == 1;
    }
    if (o->method == EORA_EIGEN || fallback)
        if (root_eigen(mod, C, in, &s)) {
            root_free(&s);
            return -1;
        }

    float *dW = xmalloc(sizeof *dW * on), *G = xmalloc(sizeof *G * on), *M = xmalloc(sizeof *M * on);
    float *tmp = s.kind == EORA_EIGEN ? xmalloc(sizeof *tmp * on) : NULL;
    float *U = xmalloc(sizeof *U * (size_t)out * rank), *sv = xmalloc(sizeof *sv * (size_t)rank);
    float *A = xmalloc(sizeof *A * (size_t)rank * in), *B = xmalloc(sizeof *B * (size_t)out * rank);
    float *AS = xmalloc(sizeof *AS * (size_t)rank * in);

    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < on; i++) dW[i] = W[i] - Wq[i];

    /* G = ΔW·L (cholesky) or ΔW·Q (eigen); M = ΔW·S. */
    memcpy(G, dW, sizeof *G * on);
    times_root(&s, G, out, in, tmp);
    double loss_before = factor_loss(&s, G, out, in);
    memcpy(M, G, sizeof *M * on);
    if (s.kind == EORA_EIGEN) {
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < out; i++)
            for (int j = 0; j < in; j++) M[(size_t)i * in + j] *= s.sq[j];
    }

    rc = eora_svd_topr(M, out, in, rank, o->svd, o->oversample, o->power_iters, o->seed, U, sv, A);
    if (rc) {
        err_prefix("%s", mod);
        goto done;
    }
    /* B = U √Σ; A = √Σ Vᵀ S⁻¹. */
    for (int k = 0; k < rank; k++) sv[k] = sqrtf(fmaxf(sv[k], 0.f));
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < out; i++)
        for (int k = 0; k < rank; k++) B[(size_t)i * rank + k] = U[(size_t)i * rank + k] * sv[k];
    if (s.kind == EORA_CHOLESKY) {
        /* A = Σ^{-1/2} U_rᵀ ΔW (see the top of this file); zero rows where σ = 0. */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rank, in, out, 1.f, U, rank, dW, in, 0.f, A, in);
        #pragma omp parallel for schedule(static)
        for (int k = 0; k < rank; k++) {
            float f = sv[k] > 0 ? 1.f / sv[k] : 0.f;
            for (int j = 0; j < in; j++) A[(size_t)k * in + j] *= f;
        }
    } else {
        /* GPTQModel's form: A = (√Σ_r V_rᵀ)·(√Λ⁺ Qᵀ), cut eigenvalues contributing 0. */
        #pragma omp parallel for schedule(static)
        for (int k = 0; k < rank; k++)
            for (int j = 0; j < in; j++) A[(size_t)k * in + j] *= sv[k] * s.isq[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rank, in, in, 1.f, A, in, s.F, in, 0.f, AS, in);
        memcpy(A, AS, sizeof *A * (size_t)rank * in);
    }

    /* Loss after from the returned A, B: (ΔW − B·A)·S = G − B·(A·S). */
    memcpy(AS, A, sizeof *AS * (size_t)rank * in);
    times_root(&s, AS, rank, in, tmp);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, rank, -1.f, B, rank, AS, in, 1.f, G, in);
    double loss_after = factor_loss(&s, G, out, in);
    if (check_finite_f(mod, "EoRA A", A, (size_t)rank * in) || check_finite_f(mod, "EoRA B", B, (size_t)out * rank)) {
        rc = -1;
        goto done;
    }

    r->out = out;
    r->in = in;
    r->rank = rank;
    r->A = A;
    r->B = B;
    A = B = NULL;
    r->loss_before = loss_before;
    r->loss_after = loss_after;
    r->discarded = s.discarded;
    r->used = s.kind;
    r->cutoff = s.cutoff;
    r->fallback = fallback;
done:
    free(dW);
    free(G);
    free(M);
    free(tmp);
    free(U);
    free(sv);
    free(A);
    free(B);
    free(AS);
    root_free(&s);
    return rc ? -1 : 0;
}
