/* PLACEHOLDER — replaced by the issue that delivers `eval`. */
#include <stdio.h>

#include "tools/cli.h"

int cmd_eval(int argc, char **argv)
{
    fprintf(stderr, "gptq-eora: error: 'eval' is not built yet\n");
    return 1;
}
