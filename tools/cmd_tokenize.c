/* PLACEHOLDER — replaced by the issue that delivers `tokenize`. */
#include <stdio.h>

#include "tools/cli.h"

int cmd_tokenize(int argc, char **argv)
{
    fprintf(stderr, "gptq-eora: error: 'tokenize' is not built yet\n");
    return 1;
}
