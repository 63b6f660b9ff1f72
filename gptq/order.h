/* order — the column orders GPTQModel solves in: desc_act (argsort of diag(H), descending)
 * and act_group_aware (GAR, gptqmodel/quantization/gar.py). Ties keep index order. */
#ifndef GPTQ_ORDER_H
#define GPTQ_ORDER_H

/* perm[k] = original column solved k-th; columns by diag descending. */
void order_desc_act(const float *diag, int n, int *perm);

/* GAR: inside each full group of gs columns sort by diag descending; order the full groups by
 * their largest diag (stable, descending); tail columns (n % gs) stay last in identity order.
 * perm as above; global_perm[k] = original group solved k-th (n / gs entries). */
void order_gar(const float *diag, int n, int gs, int *perm, int *global_perm);

/* inv[perm[k]] = k */
void order_invert(const int *perm, int n, int *inv);

#endif
