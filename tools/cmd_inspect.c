/* PLACEHOLDER — replaced by the issue that delivers `inspect`. */
#include <stdio.h>

#include "tools/cli.h"

int cmd_inspect(int argc, char **argv)
{
    fprintf(stderr, "gptq-eora: error: 'inspect' is not built yet\n");
    return 1;
}
