#include "tools/cli.h"

#include <stdarg.h>
#include <stdio.h>

#include "io/err.h"

int cli_fail(void)
{
    fprintf(stderr, "gptq-eora: error: %s\n", err_msg());
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gptq-eora %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see gptq-eora %s --help)\n", cmd);
    va_end(ap);
    return 2;
}
