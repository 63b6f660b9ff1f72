/* quantize — run a YAML job: calibrate, GPTQ, EoRA, write checkpoint + adapter (tools/pipeline.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/job.h"
#include "tools/cli.h"
#include "tools/dist.h"
#include "tools/pipeline.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gptq-eora quantize JOB.yaml [--dry-run] [--resume] [--quiet] [--log FILE] [--threads N]\n"
            "\n"
            "Quantizes the job's model layer by layer (GPTQ or RTN, optional EoRA) and writes a GPTQ\n"
            "checkpoint, eora/ adapter, quant_log.csv and report.json to the job's output directory.\n"
            "\n"
            "  --dry-run     print the plan (bits / group / EoRA rank per module), memory and FLOP\n"
            "                estimates, then exit\n"
            "  --resume      continue an interrupted run from its last finished layer (same job and\n"
            "                thread count: the output is byte-identical to an uninterrupted run)\n"
            "  --quiet       no progress lines on stderr\n"
            "  --log FILE    append progress events as JSON lines to FILE\n"
            "  --threads N   OpenMP/OpenBLAS threads (overrides resources.threads)\n"
            "\n"
            "exit status: 0 success, 1 failure (one-line error), 2 usage error\n");
}

int cmd_quantize(int argc, char **argv)
{
    pipeline_opts o;
    memset(&o, 0, sizeof o);
    const char *job_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--dry-run")) {
            o.dry_run = 1;
        } else if (!strcmp(a, "--resume")) {
            o.resume = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o.quiet = 1;
        } else if (!strcmp(a, "--log")) {
            if (++i >= argc) return cli_usage_error("quantize", "--log needs a file");
            o.log_path = argv[i];
        } else if (!strcmp(a, "--threads")) {
            if (++i >= argc) return cli_usage_error("quantize", "--threads needs a number");
            if (cli_parse_int(argv[i], 1, 4096, &o.threads))
                return cli_usage_error("quantize", "--threads: '%s' is not a positive count", argv[i]);
        } else if (a[0] == '-') {
            return cli_usage_error("quantize", "unknown option '%s'", a);
        } else if (!job_path) {
            job_path = a;
        } else {
            return cli_usage_error("quantize", "more than one job file ('%s', '%s')", job_path, a);
        }
    }
    if (!job_path) return cli_usage_error("quantize", "missing JOB.yaml");
    /* under mpirun/srun: one rank of a multi-process run (docs/mpi.md); else one process */
    dist_init(&argc, &argv);
    job_t job;
    memset(&job, 0, sizeof job);
    int rc = job_load(job_path, &job);
    if (rc == 0) rc = pipeline_run(&job, &o);
    job_free(&job);
    if (rc != 0 && dist_size() > 1) {
        /* the other ranks may be waiting in a collective: one line, then end them all */
        fprintf(stderr, "gptq-eora: error: rank %d of %d: %s\n", dist_rank(), dist_size(), err_msg());
        dist_abort(1);
    }
    dist_finalize();
    return rc == 0 ? 0 : cli_fail();
}
