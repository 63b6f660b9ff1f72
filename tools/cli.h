/* cli — the subcommands of bin/gptq-eora. Each returns the process exit status:
 * 0 success, 1 failure (one line on stderr: "gptq-eora: error: ..."), 2 usage error. */
#ifndef TOOLS_CLI_H
#define TOOLS_CLI_H

#define GPTQ_EORA_VERSION "0.1.0"

int cmd_inspect(int argc, char **argv);
int cmd_solve(int argc, char **argv);
int cmd_eora(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_slurm(int argc, char **argv);

/* s as a whole decimal integer in [lo, hi] → *out. Returns 0, or -1 (empty, trailing
 * characters, out of range; *out untouched). */
int cli_parse_long(const char *s, long lo, long hi, long *out);
int cli_parse_int(const char *s, int lo, int hi, int *out);
/* Print "gptq-eora: error: <err_msg()>" and return 1. */
int cli_fail(void);
/* Print "gptq-eora <cmd>: <msg>" plus a usage hint and return 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
