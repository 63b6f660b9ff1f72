/* PLACEHOLDER — replaced by the issue that delivers `forward`. */
#include <stdio.h>

#include "tools/cli.h"

int cmd_forward(int argc, char **argv)
{
    fprintf(stderr, "gptq-eora: error: 'forward' is not built yet\n");
    return 1;
}
