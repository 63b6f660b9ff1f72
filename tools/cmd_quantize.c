/* PLACEHOLDER — replaced by the issue that delivers `quantize`. */
#include <stdio.h>

#include "tools/cli.h"

int cmd_quantize(int argc, char **argv)
{
    fprintf(stderr, "gptq-eora: error: 'quantize' is not built yet\n");
    return 1;
}
