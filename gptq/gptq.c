/* gptq — GPTQModel's GPTQ.quantize in C (REFERENCE.md §2).
 *
 * Layout: W is kept [out, in] row-major in solve (permuted) order. Inside a block of
 * `blocksize` columns every row is independent (the rank-1 updates of row r only use row r's
 * error), so rows are distributed over OpenMP threads and each row runs the block's column
 * loop on a private copy (GPTQModel's W1). The lazy update of the columns right of the block
 * is one sgemm per block, outside any parallel region. */
#include "gptq/gptq.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gptq/grid.h"
#include "gptq/hinv.h"
#include "gptq/order.h"
#include "io/err.h"

void gptq_opts_default(gptq_opts *o)
{
    memset(o, 0, sizeof *o);
    o->bits = 4;
    o->group_size = 128;
    o->sym = 1;
    o->desc_act = 1;
    o->static_groups = 0;
    o->act_group_aware = 0;
    o->damp_percent = 0.05;
    o->damp_auto_increment = 0.01;
    o->blocksize = 128;
}

void gptq_result_free(gptq_result *r)
{
    if (!r) return;
    free(r->Q);
    free(r->scale);
    free(r->zero);
    free(r->g_idx);
    free(r->codes);
    memset(r, 0, sizeof *r);
}

static int check_opts(const char *module, int out, int in, const gptq_opts *o)
{
    if (out <= 0 || in <= 0) return err_set("gptq: module %s: bad shape [%d, %d]", module, out, in);
    if (o->bits != 2 && o->bits != 3 && o->bits != 4 && o->bits != 8)
        return err_set("gptq: module %s: bits must be 2, 3, 4 or 8 (got %d)", module, o->bits);
    if (o->group_size != -1 && o->group_size <= 0)
        return err_set("gptq: module %s: group_size must be -1 or positive (got %d)", module, o->group_size);
    if (o->blocksize <= 0) return err_set("gptq: module %s: blocksize must be positive", module);
    if (!(o->damp_percent > 0 && o->damp_percent < 1))
        return err_set("gptq: module %s: damp_percent must be in (0, 1) (got %g)", module, o->damp_percent);
    if (!(o->damp_auto_increment >= 0 && o->damp_auto_increment < 1))
        return err_set("gptq: module %s: damp_auto_increment must be in [0, 1) (got %g)", module,
                       o->damp_auto_increment);
    return 0;
}

/* Index of the first non-finite value, or -1. */
static int64_t find_nonfinite(const float *x, int64_t n)
{
    int64_t first = INT64_MAX;
#pragma omp parallel for reduction(min : first)
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]) && i < first) first = i;
    return first == INT64_MAX ? -1 : first;
}

/* 0 when every value of x [rows, cols] is finite, else -1 naming the first bad element. */
static int check_finite(const char *module, const char *what, const float *x, int rows, int cols)
{
    int64_t bad = find_nonfinite(x, (int64_t)rows * cols);
    if (bad < 0) return 0;
    return err_set("gptq: module %s: %s has a non-finite value at [%lld, %lld]", module, what,
                   (long long)(bad / cols), (long long)(bad % cols));
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int n_groups_of(int in, int gs) { return gs == -1 ? 1 : (in + gs - 1) / gs; }

static void result_alloc(gptq_result *r, int out, int in, const gptq_opts *o)
{
    memset(r, 0, sizeof *r);
    r->out = out;
    r->in = in;
    r->bits = o->bits;
    r->group_size = o->group_size;
    r->sym = o->sym;
    r->n_groups = n_groups_of(in, o->group_size);
    r->Q = xmalloc((size_t)out * in * sizeof(float));
    r->scale = xmalloc((size_t)out * r->n_groups * sizeof(float));
    r->zero = xmalloc((size_t)out * r->n_groups * sizeof(float));
    r->g_idx = xmalloc((size_t)in * sizeof(int32_t));
    r->codes = xmalloc((size_t)out * in);
    r->loss = -1;
}

double gptq_layer_loss(const float *W, const float *Q, int out, int in, const float *H)
{
    size_t nel = (size_t)out * in;
    float *D = xmalloc_aligned(nel * sizeof(float));
    float *T = xmalloc_aligned(nel * sizeof(float));
#pragma omp parallel for
    for (size_t i = 0; i < nel; i++) D[i] = W[i] - Q[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, in, 1.f, D, in, H, in, 0.f, T, in);
    double s = 0;
#pragma omp parallel for reduction(+ : s)
    for (size_t i = 0; i < nel; i++) s += (double)D[i] * (double)T[i];
    free(D);
    free(T);
    return s;
}

/* The block loop of GPTQ.quantize on the permuted weight Wp [out, in] with Hinv factor U.
 * perm maps solve position → original column; gmap maps solve-order group → stored group
 * column (GAR's inverse reorder, identity otherwise). Returns Σ Losses (already halved). */
static double solve_blocks(float *Wp, const float *U, const int *perm, const int *gmap,
                           const float *static_scale, const float *static_zero, int out, int in,
                           const gptq_opts *o, gptq_result *r)
{
    const int gs = o->group_size, bs = o->blocksize, maxq = (1 << o->bits) - 1;
    const int ng = r->n_groups;
    const int permuted_groups = o->desc_act || (o->act_group_aware && gs > 0);
    float *Err = xmalloc_aligned((size_t)out * bs * sizeof(float));
    double total = 0;
    for (int i1 = 0; i1 < in; i1 += bs) {
        const int i2 = i1 + bs < in ? i1 + bs : in, cnt = i2 - i1;
        double block_loss = 0;
#pragma omp parallel reduction(+ : block_loss)
        {
            float *w1 = xmalloc((size_t)cnt * sizeof(float));
#pragma omp for schedule(static)
            for (int row = 0; row < out; row++) {
                float *wrow = Wp + (size_t)row * in;
                float *err = Err + (size_t)row * bs;
                memcpy(w1, wrow + i1, (size_t)cnt * sizeof(float));
                float s = 0.f, z = 0.f;
                if (gs == -1) {
                    s = r->scale[(size_t)row * ng];
                    z = r->zero[(size_t)row * ng];
                } else if (!o->static_groups && i1 % gs != 0) {
                    /* a group that started in an earlier block: its parameters are stored */
                    int g = gmap[i1 / gs];
                    s = r->scale[(size_t)row * ng + g];
                    z = r->zero[(size_t)row * ng + g];
                }
                double loss = 0;
                for (int i = 0; i < cnt; i++) {
                    const int c = i1 + i;
                    if (gs != -1) {
                        if (o->static_groups) {
                            int g = (permuted_groups ? perm[c] : c) / gs;
                            s = static_scale[(size_t)row * ng + g];
                            z = static_zero[(size_t)row * ng + g];
                        } else if (c % gs == 0) {
                            /* GPTQModel reads W here, i.e. the values as of the block start */
                            int len = c + gs <= in ? gs : in - c;
                            grid_params(wrow + c, len, maxq, o->sym, &s, &z);
                            int g = gmap[c / gs];
                            r->scale[(size_t)row * ng + g] = s;
                            r->zero[(size_t)row * ng + g] = z;
                        }
                    }
                    const float w = w1[i];
                    const float code = grid_code(w, s, z, maxq);
                    const float q = grid_dequant(code, s, z);
                    const size_t dst = (size_t)row * in + perm[c];
                    r->Q[dst] = q;
                    r->codes[dst] = (uint8_t)code;
                    const float *urow = U + (size_t)c * in + i1;
                    const float d = urow[i];
                    const float diff = w - q;
                    loss += (double)((diff * diff) / (d * d));
                    const float e = diff / d;
                    err[i] = e;
#pragma omp simd
                    for (int j = i + 1; j < cnt; j++) w1[j] -= e * urow[j];
                }
                block_loss += loss;
            }
            free(w1);
        }
        total += block_loss / 2;
        /* lazy update of everything right of the block: one sgemm, no OpenMP around it */
        if (i2 < in)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in - i2, cnt, -1.f, Err, bs,
                        U + (size_t)i1 * in + i2, in, 1.f, Wp + i2, in);
    }
    free(Err);
    return total;
}

int gptq_solve(const char *module, const float *W, int out, int in, const float *H,
               int64_t n_samples, const gptq_opts *o, gptq_result *r)
{
    memset(r, 0, sizeof *r);
    if (!module) module = "?";
    if (check_opts(module, out, in, o)) return -1;
    if (check_finite(module, "weight", W, out, in) || check_finite(module, "Hessian", H, in, in)) return -1;

    const int gs = o->group_size, maxq = (1 << o->bits) - 1;
    const int use_gar = !o->desc_act && o->act_group_aware && gs > 0;
    result_alloc(r, out, in, o);
    const int ng = r->n_groups;

    /* 1. per-channel grid on the untouched weight (used when group_size = -1) */
    if (gs == -1) {
#pragma omp parallel for
        for (int row = 0; row < out; row++)
            grid_params(W + (size_t)row * in, in, maxq, o->sym, &r->scale[row], &r->zero[row]);
    }

    /* 2. dead columns: diag(H) = 0 → H[i,i] = 1, W[:, i] = 0 */
    float *diag = xmalloc((size_t)in * sizeof(float));
    unsigned char *dead = xcalloc((size_t)in, 1);
    for (int i = 0; i < in; i++) {
        diag[i] = H[(size_t)i * in + i];
        if (diag[i] == 0.f) {
            dead[i] = 1;
            diag[i] = 1.f;
            r->dead_columns++;
        }
    }

    /* 3. column order */
    int *perm = xmalloc((size_t)in * sizeof(int));
    int *gmap = xmalloc((size_t)(ng > 0 ? ng : 1) * sizeof(int));
    for (int g = 0; g < ng; g++) gmap[g] = g;
    if (o->desc_act)
        order_desc_act(diag, in, perm);
    else if (use_gar)
        order_gar(diag, in, gs, perm, gmap); /* full groups: solve slot k → original group */
    else
        for (int i = 0; i < in; i++) perm[i] = i;

    /* 4. permuted copies of W (dead columns zeroed) and H */
    float *Wp = xmalloc_aligned((size_t)out * in * sizeof(float));
#pragma omp parallel for
    for (int row = 0; row < out; row++) {
        const float *src = W + (size_t)row * in;
        float *dst = Wp + (size_t)row * in;
        for (int k = 0; k < in; k++) dst[k] = dead[perm[k]] ? 0.f : src[perm[k]];
    }
    float *static_scale = NULL, *static_zero = NULL;
    if (o->static_groups && gs != -1) {
        /* 5. static groups: parameters per original group, from W with dead columns zeroed */
        static_scale = xmalloc((size_t)out * ng * sizeof(float));
        static_zero = xmalloc((size_t)out * ng * sizeof(float));
#pragma omp parallel
        {
            float *tmp = xmalloc((size_t)gs * sizeof(float));
#pragma omp for
            for (int row = 0; row < out; row++)
                for (int g = 0; g < ng; g++) {
                    int c0 = g * gs, len = c0 + gs <= in ? gs : in - c0;
                    for (int j = 0; j < len; j++) tmp[j] = dead[c0 + j] ? 0.f : W[(size_t)row * in + c0 + j];
                    grid_params(tmp, len, maxq, o->sym, &static_scale[(size_t)row * ng + g],
                                &static_zero[(size_t)row * ng + g]);
                }
            free(tmp);
        }
        memcpy(r->scale, static_scale, (size_t)out * ng * sizeof(float));
        memcpy(r->zero, static_zero, (size_t)out * ng * sizeof(float));
    }
    float *Hp = xmalloc_aligned((size_t)in * in * sizeof(float));
#pragma omp parallel for
    for (int a = 0; a < in; a++)
        for (int b = 0; b < in; b++)
            Hp[(size_t)a * in + b] = a == b ? diag[perm[a]] : H[(size_t)perm[a] * in + perm[b]];

    /* 6. damped inverse factor */
    float *U = xmalloc_aligned((size_t)in * in * sizeof(float));
    hinv_info hi;
    double t0 = now_s();
    int rc = hinv_factor(module, Hp, in, o->damp_percent, o->damp_auto_increment,
                         o->hinv_fast ? HINV_FAST : HINV_TORCH, U, &hi);
    free(Hp);
    double t1 = now_s();
    if (rc == 0) {
        r->t_hinv = t1 - t0;
        r->damp = hi.damp;
        r->diag_floor = hi.diag_floor;
        double losses = solve_blocks(Wp, U, perm, gmap, static_scale, static_zero, out, in, o, r);
        r->t_blocks = now_s() - t1;
        r->avg_loss = n_samples > 0 ? losses / (double)n_samples : losses;
        /* 7. g_idx in original column order */
        if (gs == -1)
            memset(r->g_idx, 0, (size_t)in * sizeof(int32_t));
        else if (o->desc_act && !o->static_groups)
            for (int k = 0; k < in; k++) r->g_idx[perm[k]] = k / gs;
        else
            for (int j = 0; j < in; j++) r->g_idx[j] = j / gs;
    }
    free(U);
    free(Wp);
    free(diag);
    free(dead);
    free(perm);
    free(gmap);
    free(static_scale);
    free(static_zero);
    if (rc != 0) {
        gptq_result_free(r);
        return -1;
    }
    if (!o->skip_layer_loss) {
        double t2 = now_s();
        r->loss = gptq_layer_loss(W, r->Q, out, in, H);
        r->t_loss = now_s() - t2;
    }
    return 0;
}

int gptq_rtn(const char *module, const float *W, int out, int in, const gptq_opts *o, gptq_result *r)
{
    memset(r, 0, sizeof *r);
    if (!module) module = "?";
    gptq_opts oo = *o;
    oo.damp_percent = 0.5; /* not used; keeps check_opts quiet */
    if (check_opts(module, out, in, &oo)) return -1;
    if (check_finite(module, "weight", W, out, in)) return -1;
    result_alloc(r, out, in, o);
    const int gs = o->group_size == -1 ? in : o->group_size, ng = r->n_groups;
    const int maxq = (1 << o->bits) - 1;
#pragma omp parallel for
    for (int row = 0; row < out; row++) {
        const float *w = W + (size_t)row * in;
        for (int g = 0; g < ng; g++) {
            int c0 = g * gs, len = c0 + gs <= in ? gs : in - c0;
            float s, z;
            grid_params(w + c0, len, maxq, o->sym, &s, &z);
            r->scale[(size_t)row * ng + g] = s;
            r->zero[(size_t)row * ng + g] = z;
            for (int j = c0; j < c0 + len; j++) {
                float code = grid_code(w[j], s, z, maxq);
                r->codes[(size_t)row * in + j] = (uint8_t)code;
                r->Q[(size_t)row * in + j] = grid_dequant(code, s, z);
            }
        }
    }
    for (int j = 0; j < in; j++) r->g_idx[j] = j / gs;
    r->damp = 0;
    r->avg_loss = 0;
    return 0;
}
