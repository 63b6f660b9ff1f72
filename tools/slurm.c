/* slurm — sbatch script generation (see slurm.h). */
#include "tools/slurm.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"

void slurm_opts_default(slurm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->nodes = 1;
    o->ntasks_per_node = 1;
    o->cpus_per_task = 1;
    o->launcher = "srun";
}

/* [D-]HH:MM:SS with minutes and seconds below 60. */
static int valid_time(const char *t)
{
    int d = 0, h, m, s, n = 0;
    if (strchr(t, '-')) {
        if (sscanf(t, "%d-%d:%d:%d%n", &d, &h, &m, &s, &n) != 4 || t[n]) return 0;
    } else if (sscanf(t, "%d:%d:%d%n", &h, &m, &s, &n) != 3 || t[n]) {
        return 0;
    }
    for (const char *c = t; *c; c++)
        if (!isdigit((unsigned char)*c) && *c != ':' && *c != '-') return 0;
    return d >= 0 && h >= 0 && m >= 0 && m < 60 && s >= 0 && s < 60;
}

/* Digits with an optional K/M/G/T suffix (Slurm's --mem). */
static int valid_mem(const char *m)
{
    const char *c = m;
    while (isdigit((unsigned char)*c)) c++;
    if (c == m) return 0;
    return !*c || (strchr("KMGTkmgt", *c) && !c[1]);
}

/* Characters that need no quoting in a shell word or an #SBATCH value. */
static int plain_word(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_-.,/+@%:=", *s)) return 0;
    return 1;
}

int slurm_check(const slurm_opts *o)
{
    if (!o->job_path || !*o->job_path) return err_set("slurm: no job file");
    if (!o->binary || !*o->binary) return err_set("slurm: no gptq-eora binary");
    if (o->nodes < 1) return err_set("slurm: --nodes must be at least 1 (got %d)", o->nodes);
    if (o->ntasks_per_node < 1) return err_set("slurm: --ntasks-per-node must be at least 1 (got %d)", o->ntasks_per_node);
    if (o->cpus_per_task < 1) return err_set("slurm: --cpus-per-task must be at least 1 (got %d)", o->cpus_per_task);
    if ((int64_t)o->nodes * o->ntasks_per_node > INT32_MAX) /* MPI ranks are ints */
        return err_set("slurm: --nodes %d x --ntasks-per-node %d is more MPI ranks than an int holds", o->nodes,
                       o->ntasks_per_node);
    if (o->time && !valid_time(o->time)) return err_set("slurm: --time '%s' is not [D-]HH:MM:SS", o->time);
    if (o->mem && !valid_mem(o->mem)) return err_set("slurm: --mem '%s' is not a size like 200G", o->mem);
    if (o->partition && !plain_word(o->partition)) return err_set("slurm: --partition '%s' has odd characters", o->partition);
    if (o->job_name && !plain_word(o->job_name)) return err_set("slurm: --job-name '%s' has odd characters", o->job_name);
    if (!o->launcher || (strcmp(o->launcher, "srun") && strcmp(o->launcher, "mpirun")))
        return err_set("slurm: --launcher must be srun or mpirun (got '%s')", o->launcher ? o->launcher : "");
    if (strchr(o->job_path, '\'') || strchr(o->binary, '\''))
        return err_set("slurm: paths with a single quote are not supported (%s)", o->job_path);
    return 0;
}

typedef struct {
    char *p;
    size_t len, cap;
} text;

__attribute__((format(printf, 2, 3))) static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->p = xrealloc(t->p, t->cap);
    }
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

char *slurm_script(const slurm_opts *o)
{
    if (slurm_check(o) != 0) return NULL;
    text t = {0};
    const char *name = o->job_name ? o->job_name : "gptq-eora";
    add(&t, "#!/bin/bash\n");
    add(&t, "# gptq-eora quantize %s on %d node(s) x %d rank(s), %d CPU(s) per rank (docs/mpi.md).\n", o->job_path,
        o->nodes, o->ntasks_per_node, o->cpus_per_task);
    add(&t, "#SBATCH --job-name=%s\n", name);
    add(&t, "#SBATCH --nodes=%d\n", o->nodes);
    add(&t, "#SBATCH --ntasks-per-node=%d\n", o->ntasks_per_node);
    add(&t, "#SBATCH --cpus-per-task=%d\n", o->cpus_per_task);
    if (o->time) add(&t, "#SBATCH --time=%s\n", o->time);
    if (o->partition) add(&t, "#SBATCH --partition=%s\n", o->partition);
    if (o->mem) add(&t, "#SBATCH --mem=%s\n", o->mem);
    add(&t, "#SBATCH --exclusive\n");
    add(&t, "#SBATCH --requeue\n");
    add(&t, "#SBATCH --open-mode=append\n");
    add(&t, "#SBATCH --output=%s-%%j.log\n", name);
    add(&t, "set -euo pipefail\n\n");
    add(&t, "# one OpenMP/OpenBLAS thread per CPU of the task; idle OpenMP and OpenBLAS workers must\n"
            "# not spin (gptq-eora would set both itself, at the cost of re-executing each rank)\n");
    add(&t, "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-%d}\n", o->cpus_per_task);
    add(&t, "export OMP_WAIT_POLICY=passive\n");
    add(&t, "export OPENBLAS_THREAD_TIMEOUT=4\n");
    add(&t, "export OMP_PROC_BIND=false\n\n");
    add(&t, "# a requeued job (node failure, preemption) continues from the journal's last layer\n");
    add(&t, "RESUME=\n");
    add(&t, "if [ \"${SLURM_RESTART_COUNT:-0}\" -gt 0 ]; then RESUME=--resume; fi\n\n");
    add(&t, "GPTQ_EORA='%s'\nJOB='%s'\n", o->binary, o->job_path);
    if (!strcmp(o->launcher, "srun"))
        add(&t, "srun --kill-on-bad-exit=1 --cpus-per-task=\"$OMP_NUM_THREADS\" \\\n"
                "    \"$GPTQ_EORA\" quantize \"$JOB\" --threads \"$OMP_NUM_THREADS\" $RESUME\n");
    else
        add(&t, "mpirun -np \"${SLURM_NTASKS:-%d}\" --map-by ppr:%d:node:PE=\"$OMP_NUM_THREADS\" \\\n"
                "    -x OMP_NUM_THREADS -x OMP_WAIT_POLICY -x OMP_PROC_BIND -x OPENBLAS_THREAD_TIMEOUT \\\n"
                "    \"$GPTQ_EORA\" quantize \"$JOB\" --threads \"$OMP_NUM_THREADS\" $RESUME\n",
            o->nodes * o->ntasks_per_node, o->ntasks_per_node);
    return t.p;
}
