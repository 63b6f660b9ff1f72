#include "tools/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

int cli_parse_int(const char *s, int lo, int hi, int *out)
{
    long x;
    if (cli_parse_long(s, lo, hi, &x)) return -1;
    *out = (int)x;
    return 0;
}
