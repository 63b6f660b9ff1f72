/* slurm — print an sbatch script that runs a quantization job over MPI (tools/slurm.h). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/job.h"
#include "tools/cli.h"
#include "tools/slurm.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gptq-eora slurm JOB.yaml --nodes N [--ntasks-per-node T] [--cpus-per-task C]\n"
            "                       [--time [D-]HH:MM:SS] [--partition P] [--mem M] [--job-name NAME]\n"
            "                       [--launcher srun|mpirun]\n"
            "\n"
            "Prints an sbatch script that runs `gptq-eora quantize JOB.yaml` with N x T MPI ranks\n"
            "(this binary must be the MPI build, `make MPI=1`). Each rank streams its share of the\n"
            "calibration batches with C OpenMP/OpenBLAS threads; the job is requeueable and resumes\n"
            "from its journal when Slurm restarts it. Submit with: gptq-eora slurm job.yaml --nodes 4 | sbatch\n"
            "\n"
            "  --nodes N            nodes (required)\n"
            "  --ntasks-per-node T  MPI ranks per node (default 1)\n"
            "  --cpus-per-task C    CPUs (threads) per rank (default 1; use the node's cores / T)\n"
            "  --time, --partition, --mem, --job-name   passed to #SBATCH as given\n"
            "  --launcher           srun (default, Slurm's PMI) or mpirun\n"
            "\n"
            "exit status: 0 success, 1 failure (one-line error), 2 usage error\n");
}

static int positive(const char *opt, const char *v, int *out)
{
    if (cli_parse_int(v, 1, 1000000, out)) return cli_usage_error("slurm", "%s: '%s' is not a positive count", opt, v);
    return 0;
}

int cmd_slurm(int argc, char **argv)
{
    slurm_opts o;
    slurm_opts_default(&o);
    const char *job_path = NULL;
    int have_nodes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        int takes = !strcmp(a, "--nodes") || !strcmp(a, "--ntasks-per-node") || !strcmp(a, "--cpus-per-task") ||
                    !strcmp(a, "--time") || !strcmp(a, "--partition") || !strcmp(a, "--mem") ||
                    !strcmp(a, "--job-name") || !strcmp(a, "--launcher");
        if (takes && !v) return cli_usage_error("slurm", "%s needs a value", a);
        int rc = 0;
        if (!strcmp(a, "--nodes")) {
            rc = positive(a, v, &o.nodes);
            have_nodes = 1;
        } else if (!strcmp(a, "--ntasks-per-node")) {
            rc = positive(a, v, &o.ntasks_per_node);
        } else if (!strcmp(a, "--cpus-per-task")) {
            rc = positive(a, v, &o.cpus_per_task);
        } else if (!strcmp(a, "--time")) {
            o.time = v;
        } else if (!strcmp(a, "--partition")) {
            o.partition = v;
        } else if (!strcmp(a, "--mem")) {
            o.mem = v;
        } else if (!strcmp(a, "--job-name")) {
            o.job_name = v;
        } else if (!strcmp(a, "--launcher")) {
            o.launcher = v;
        } else if (a[0] == '-') {
            return cli_usage_error("slurm", "unknown option '%s'", a);
        } else if (!job_path) {
            job_path = a;
            continue;
        } else {
            return cli_usage_error("slurm", "more than one job file ('%s', '%s')", job_path, a);
        }
        if (rc) return rc;
        i++; /* the value */
    }
    if (!job_path) return cli_usage_error("slurm", "missing JOB.yaml");
    if (!have_nodes) return cli_usage_error("slurm", "missing --nodes N");

    /* the job must load here already; its path and this binary are made absolute for the nodes */
    job_t job;
    memset(&job, 0, sizeof job);
    if (job_load(job_path, &job) != 0) return cli_fail();
    /* int64: each count may be up to 10^6, and n_samples + spb can pass INT_MAX */
    int64_t ranks = (int64_t)o.nodes * o.ntasks_per_node;
    if (job.n_samples > 0 && job.seq_len > 0) {
        int64_t spb = job.batch_tokens / job.seq_len;
        if (spb < 1) spb = 1;
        if (spb > job.n_samples) spb = job.n_samples;
        int64_t batches = (job.n_samples + spb - 1) / spb;
        if (batches < ranks)
            fprintf(stderr, "gptq-eora slurm: warning: %s: %lld calibration batches for %lld ranks: every rank needs "
                            "one (lower resources.batch_tokens or use fewer ranks)\n", job_path, (long long)batches,
                    (long long)ranks);
    }
    job_free(&job);
    char *abs_job = realpath(job_path, NULL), *abs_bin = realpath("/proc/self/exe", NULL);
    if (!abs_job || !abs_bin) {
        free(abs_job);
        free(abs_bin);
        err_set("%s: cannot resolve the absolute path", abs_job ? "/proc/self/exe" : job_path);
        return cli_fail();
    }
    o.job_path = abs_job;
    o.binary = abs_bin;
    char *script = slurm_script(&o);
    if (script) fputs(script, stdout);
    free(script);
    free(abs_job);
    free(abs_bin);
    return script ? 0 : cli_fail();
}
