/* order — desc_act and GAR column permutations. */
#include "gptq/order.h"

#include <stdlib.h>

#include "io/err.h"

typedef struct {
    float v;
    int i;
} keyed;

/* Descending by value, ties by ascending index: a total order, so qsort is deterministic
 * and equals a stable descending sort. */
static int cmp_desc(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

static void sort_desc(const float *v, int n, int *idx)
{
    keyed *k = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *k);
    for (int i = 0; i < n; i++) k[i] = (keyed){v[i], i};
    qsort(k, (size_t)n, sizeof *k, cmp_desc);
    for (int i = 0; i < n; i++) idx[i] = k[i].i;
    free(k);
}

void order_desc_act(const float *diag, int n, int *perm) { sort_desc(diag, n, perm); }

void order_gar(const float *diag, int n, int gs, int *perm, int *global_perm)
{
    int G = gs > 0 ? n / gs : 0;
    int *local = xmalloc((size_t)(G * gs > 0 ? G * gs : 1) * sizeof *local);
    float *score = xmalloc((size_t)(G > 0 ? G : 1) * sizeof *score);
    for (int g = 0; g < G; g++) {
        sort_desc(diag + (size_t)g * gs, gs, local + (size_t)g * gs);
        score[g] = diag[(size_t)g * gs + local[(size_t)g * gs]]; /* the group's max */
    }
    sort_desc(score, G, global_perm);
    for (int k = 0; k < G; k++) {
        int g = global_perm[k];
        for (int j = 0; j < gs; j++) perm[(size_t)k * gs + j] = g * gs + local[(size_t)g * gs + j];
    }
    for (int c = G * gs; c < n; c++) perm[c] = c;
    free(local);
    free(score);
}

void order_invert(const int *perm, int n, int *inv)
{
    for (int k = 0; k < n; k++) inv[perm[k]] = k;
}
