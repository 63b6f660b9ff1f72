/* PLACEHOLDER — replaced by the issue that delivers `eora`. */
#include <stdio.h>

#include "tools/cli.h"

int cmd_eora(int argc, char **argv)
{
    fprintf(stderr, "gptq-eora: error: 'eora' is not built yet\n");
    return 1;
}
