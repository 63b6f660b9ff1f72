/* gptq-eora — GPTQ quantization and EoRA correction of LLM checkpoints on CPU nodes. */
#include <stdio.h>
#include <string.h>

#include "tools/blas_env.h"
#include "tools/cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"quantize", cmd_quantize, "run a YAML job: calibrate, GPTQ, EoRA, write checkpoint + adapter"},
    {"eval", cmd_eval, "perplexity and KL divergence of a quantized checkpoint vs. the original"},
    {"inspect", cmd_inspect, "list a checkpoint's tensors by module, dtypes, bits per weight"},
    {"solve", cmd_solve, "GPTQ-solve one weight with one Hessian"},
    {"eora", cmd_eora, "EoRA correction for one quantized weight"},
    {"forward", cmd_forward, "reference forward pass of a model on token ids"},
    {"tokenize", cmd_tokenize, "encode/decode text with a tokenizer.json"},
    {"slurm", cmd_slurm, "print an sbatch script running a quantize job over MPI on N nodes"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: gptq-eora <command> [options]   (gptq-eora <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit status: 0 success, 1 failure (one-line error on stderr), 2 usage error\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("gptq-eora %s\n", GPTQ_EORA_VERSION);
        return 0;
    }
    /* fast OpenBLAS kernels / passive OpenMP waits, for every command (see blas_env.h) */
    blas_env_reexec(argv);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gptq-eora: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
