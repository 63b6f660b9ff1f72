/* PLACEHOLDER — replaced by the issue that delivers `solve`. */
#include <stdio.h>

#include "tools/cli.h"

int cmd_solve(int argc, char **argv)
{
    fprintf(stderr, "gptq-eora: error: 'solve' is not built yet\n");
    return 1;
}
