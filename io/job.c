/* JOB_PARSER_COMPLETE */
/* job — YAML job file → job_t, through libyaml's document API.
 *
 * Each section is described by a table of fields (key, kind, offset into the target struct,
 * allowed values, validator); one generic walker checks every mapping against its table, so the
 * rules "unknown key", "duplicate key", "wrong type", "missing required key" and the message
 * format "FILE:LINE:COL: key.path: message" live in one place. Line and column are 1-based and
 * point at the offending key or value; a missing key points at the mapping that lacks it.
 * A YAML null (`key:`, `~`, `null`) means "not given": the default applies.
 * Paths in the job are kept as written (relative ones resolve against the current directory). */
#include "io/job.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "io/err.h"
#include "io/fsutil.h"

/* ------------------------------------------------------------------ parser context, errors */

typedef struct {
    const char *file;
    yaml_document_t *doc;
} parser_t;

__attribute__((format(printf, 4, 5))) static int fail(const parser_t *p, const yaml_node_t *at,
                                                      const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line = at ? at->start_mark.line + 1 : 1, col = at ? at->start_mark.column + 1 : 1;
    return err_set("%s:%zu:%zu: %s: %s", p->file, line, col, path && *path ? path : "(top level)", msg);
}

static void join_path(char *dst, size_t cap, const char *parent, const char *key)
{
    /* the return value is checked so that a long path is cut visibly, not silently */
    int n = (parent && *parent) ? snprintf(dst, cap, "%s.%s", parent, key) : snprintf(dst, cap, "%s", key);
    if (n >= (int)cap && cap > 4) memcpy(dst + cap - 4, "...", 4);
}

static yaml_node_t *node_at(const parser_t *p, int index) { return yaml_document_get_node(p->doc, index); }

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int is_plain(const yaml_node_t *n) { return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || !is_plain(n)) return 0;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return is_plain(n) ? "a scalar" : "a quoted string";
    }
}

/* ------------------------------------------------------------------ scalar readers */

static int read_string(const parser_t *p, const yaml_node_t *n, const char *path, char **out)
{
    if (n->type != YAML_SCALAR_NODE) return fail(p, n, path, "expected a string, got %s", node_kind(n));
    if (!*scalar(n)) return fail(p, n, path, "expected a non-empty string");
    free(*out);
    *out = xstrdup(scalar(n));
    return 0;
}

static int read_int(const parser_t *p, const yaml_node_t *n, const char *path, long long *out)
{
    if (n->type != YAML_SCALAR_NODE || !is_plain(n))
        return fail(p, n, path, "expected an integer, got %s", node_kind(n));
    const char *s = scalar(n);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno) return fail(p, n, path, "expected an integer, got '%s'", s);
    *out = v;
    return 0;
}

static int read_bool(const parser_t *p, const yaml_node_t *n, const char *path, int *out)
{
    const char *s = n->type == YAML_SCALAR_NODE && is_plain(n) ? scalar(n) : "";
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        *out = 1;
    else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        *out = 0;
    else if (n->type == YAML_SCALAR_NODE)
        return fail(p, n, path, "expected true or false, got '%s'", scalar(n));
    else
        return fail(p, n, path, "expected true or false, got %s", node_kind(n));
    return 0;
}

static int read_double(const parser_t *p, const yaml_node_t *n, const char *path, double *out)
{
    if (n->type != YAML_SCALAR_NODE || !is_plain(n))
        return fail(p, n, path, "expected a number, got %s", node_kind(n));
    const char *s = scalar(n);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) return fail(p, n, path, "expected a number, got '%s'", s);
    *out = v;
    return 0;
}

static int read_u64(const parser_t *p, const yaml_node_t *n, const char *path, uint64_t *out)
{
    if (n->type != YAML_SCALAR_NODE || !is_plain(n))
        return fail(p, n, path, "expected a non-negative integer, got %s", node_kind(n));
    const char *s = scalar(n);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || strchr(s, '-'))
        return fail(p, n, path, "expected a non-negative integer, got '%s'", s);
    *out = v;
    return 0;
}

static int read_size(const parser_t *p, const yaml_node_t *n, const char *path, uint64_t *out)
{
    if (n->type != YAML_SCALAR_NODE) return fail(p, n, path, "expected a size such as 24GiB, got %s", node_kind(n));
    if (parse_size(scalar(n), out)) return fail(p, n, path, "%s", err_msg());
    return 0;
}

/* ------------------------------------------------------------------ size strings */

int parse_size(const char *s, uint64_t *out)
{
    static const struct { const char *unit; double mult; } units[] = {
        {"", 1}, {"b", 1},
        {"k", 1024.0}, {"kib", 1024.0}, {"kb", 1e3},
        {"m", 1048576.0}, {"mib", 1048576.0}, {"mb", 1e6},
        {"g", 1073741824.0}, {"gib", 1073741824.0}, {"gb", 1e9},
        {"t", 1099511627776.0}, {"tib", 1099511627776.0}, {"tb", 1e12},
    };
    if (!s) return err_set("invalid size (null)");
    const char *q = s;
    while (isspace((unsigned char)*q)) q++;
    if (*q == '-' || *q == '+') return err_set("invalid size '%s' (expected e.g. 24GiB, 512MB, 1e9)", s);
    char *end;
    errno = 0;
    double v = strtod(q, &end);
    if (end == q || errno || !isfinite(v) || v < 0)
        return err_set("invalid size '%s' (expected e.g. 24GiB, 512MB, 1e9)", s);
    while (isspace((unsigned char)*end)) end++;
    char unit[8] = {0};
    size_t n = 0;
    while (*end && !isspace((unsigned char)*end) && n < sizeof unit - 1) unit[n++] = (char)tolower((unsigned char)*end++);
    while (isspace((unsigned char)*end)) end++;
    if (*end) return err_set("invalid size '%s' (expected e.g. 24GiB, 512MB, 1e9)", s);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].unit)) continue;
        long double bytes = (long double)v * units[i].mult;
        if (bytes >= 18446744073709551615.0L) return err_set("size '%s' is too large", s);
        *out = (uint64_t)(bytes + 0.5L);
        return 0;
    }
    return err_set("invalid size '%s': unknown unit '%s' (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s, unit);
}

/* ------------------------------------------------------------------ field tables */

typedef enum { F_STR, F_ENUM, F_INT, F_BOOL, F_DOUBLE, F_U64, F_SIZE, F_SUB } field_kind;

typedef struct parser_field parser_field;
/* Nested section / list parser: value node, its key path, the struct being filled. */
typedef int (*sub_fn)(const parser_t *p, yaml_node_t *value, const char *path, void *target);
/* Range check: NULL if v is acceptable, else what was expected. */
typedef const char *(*check_fn)(double v);

struct parser_field {
    const char *key;
    field_kind kind;
    size_t off;                  /* offset of the destination in the target struct */
    int required;
    const char *const *choices;  /* F_ENUM: NULL-terminated */
    check_fn check;              /* F_INT / F_DOUBLE */
    sub_fn sub;                  /* F_SUB */
};

static const char *check_bits(double v)
{
    return (v == 2 || v == 3 || v == 4 || v == 8) ? NULL : "expected one of 2, 3, 4, 8";
}
static const char *check_group_size(double v)
{
    if (v == -1) return NULL;
    long long g = (long long)v;
    if (g >= 32 && g <= 1024 && (g & (g - 1)) == 0) return NULL;
    return "expected -1 (per channel) or a power of two from 32 to 1024";
}
static const char *check_positive(double v) { return v > 0 ? NULL : "expected a value > 0"; }
static const char *check_nonneg(double v) { return v >= 0 ? NULL : "expected a value >= 0"; }
static const char *check_damp(double v) { return (v > 0 && v < 1) ? NULL : "expected a value in (0, 1)"; }
static const char *check_increment(double v) { return (v >= 0 && v < 1) ? NULL : "expected a value in [0, 1)"; }

static const yaml_node_t *find_value(const parser_t *p, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(p, pr->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp(scalar(k), key)) return node_at(p, pr->value);
    }
    return NULL;
}

static void list_keys(const parser_field *fields, int n, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < n && at < cap; i++) at += (size_t)snprintf(buf + at, cap - at, "%s%s", i ? ", " : "", fields[i].key);
}

static int parse_field(const parser_t *p, const parser_field *f, yaml_node_t *v, const char *path, void *target)
{
    char *dst = (char *)target + f->off;
    long long iv = 0;
    double dv = 0;
    switch (f->kind) {
    case F_STR: return read_string(p, v, path, (char **)dst);
    case F_ENUM: {
        char *s = NULL;
        if (read_string(p, v, path, &s)) return -1;
        int ok = 0;
        for (const char *const *c = f->choices; *c; c++) ok |= !strcmp(*c, s);
        if (!ok) {
            char allowed[256];
            size_t at = 0;
            allowed[0] = 0;
            for (const char *const *c = f->choices; *c && at < sizeof allowed; c++)
                at += (size_t)snprintf(allowed + at, sizeof allowed - at, "%s%s", c == f->choices ? "" : ", ", *c);
            int rc = fail(p, v, path, "expected one of %s, got '%s'", allowed, s);
            free(s);
            return rc;
        }
        free(*(char **)dst);
        *(char **)dst = s;
        return 0;
    }
    case F_INT: {
        if (read_int(p, v, path, &iv)) return -1;
        if (iv < -2147483647LL || iv > 2147483647LL) return fail(p, v, path, "integer %lld out of range", iv);
        const char *why = f->check ? f->check((double)iv) : NULL;
        if (why) return fail(p, v, path, "%s, got %lld", why, iv);
        *(int *)dst = (int)iv;
        return 0;
    }
    case F_BOOL: return read_bool(p, v, path, (int *)dst);
    case F_DOUBLE: {
        if (read_double(p, v, path, &dv)) return -1;
        const char *why = f->check ? f->check(dv) : NULL;
        if (why) return fail(p, v, path, "%s, got %g", why, dv);
        *(double *)dst = dv;
        return 0;
    }
    case F_U64: return read_u64(p, v, path, (uint64_t *)dst);
    case F_SIZE: return read_size(p, v, path, (uint64_t *)dst);
    case F_SUB: return f->sub(p, v, path, target);
    }
    return fail(p, v, path, "internal: unknown field kind");
}

/* Check `map` against `fields` and fill `target`. `given` (optional, n entries) reports which
 * keys had a non-null value, for cross-field checks. */
static int parse_mapping(const parser_t *p, yaml_node_t *map, const char *path, const parser_field *fields, int n,
                         void *target, int *given)
{
    if (map->type != YAML_MAPPING_NODE) return fail(p, map, path, "expected a mapping, got %s", node_kind(map));
    int seen[32] = {0};
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
        if (k->type != YAML_SCALAR_NODE) return fail(p, k, path, "keys must be plain strings, got %s", node_kind(k));
        char kpath[256];
        join_path(kpath, sizeof kpath, path, scalar(k));
        int idx = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(fields[i].key, scalar(k))) idx = i;
        if (idx < 0) {
            char allowed[512];
            list_keys(fields, n, allowed, sizeof allowed);
            return fail(p, k, kpath, "unknown key (expected one of: %s)", allowed);
        }
        if (seen[idx]) return fail(p, k, kpath, "duplicate key");
        seen[idx] = 1;
        if (is_null(v)) {
            seen[idx] = 2; /* present but null: default applies */
            continue;
        }
        if (parse_field(p, &fields[idx], v, kpath, target)) return -1;
    }
    for (int i = 0; i < n; i++) {
        if (given) given[i] = seen[i] == 1;
        if (fields[i].required && seen[i] != 1) {
            char kpath[256];
            join_path(kpath, sizeof kpath, path, fields[i].key);
            return fail(p, map, kpath, "missing required key");
        }
    }
    return 0;
}

#define FIELD(k, kind, type, member, req, choices, check, sub) \
    {k, kind, offsetof(type, member), req, choices, check, sub}
#define N_FIELDS(fields) ((int)(sizeof(fields) / sizeof((fields)[0])))

static const char *const METHODS[] = {"gptq", "rtn", NULL};
static const char *const FORMATS[] = {"gptq", "gptq_v2", NULL};
static const char *const EORA_METHODS[] = {"cholesky", "eigen", NULL};
static const char *const EORA_SVDS[] = {"exact", "randomized", NULL};
static const char *const EORA_DTYPES[] = {"model", "f16", "bf16", "f32", NULL};
static const char *const SOURCE_FORMATS[] = {"jsonl", "text", "ids", NULL};
static const char *const WINDOWS[] = {"concat", "document", NULL};
static const char *const SPILL_DTYPES[] = {"bf16", "f32", NULL};
static const char *const PROPAGATE[] = {"quantized", "float", NULL};

/* ------------------------------------------------------------------ sections */

static int compile_rule(const parser_t *p, const yaml_node_t *at, const char *path, quant_rule *r)
{
    int code;
    PCRE2_SIZE off;
    r->re = pcre2_compile((PCRE2_SPTR)r->match, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                          &code, &off, NULL);
    if (!r->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return fail(p, at, path, "invalid regex '%s': %s at offset %zu", r->match, (const char *)msg, (size_t)off);
    }
    return 0;
}

static int parse_rule(const parser_t *p, yaml_node_t *v, const char *path, quant_rule *r)
{
    static const parser_field fields[] = {
        FIELD("match", F_STR, quant_rule, match, 1, NULL, NULL, NULL),
        FIELD("bits", F_INT, quant_rule, bits, 0, NULL, check_bits, NULL),
        FIELD("group_size", F_INT, quant_rule, group_size, 0, NULL, check_group_size, NULL),
        FIELD("eora_rank", F_INT, quant_rule, eora_rank, 0, NULL, check_nonneg, NULL),
        FIELD("skip", F_BOOL, quant_rule, skip, 0, NULL, NULL, NULL),
    };
    int given[N_FIELDS(fields)];
    r->eora_rank = -1;
    if (parse_mapping(p, v, path, fields, N_FIELDS(fields), r, given)) return -1;
    char kpath[256];
    join_path(kpath, sizeof kpath, path, "match");
    if (compile_rule(p, find_value(p, v, "match"), kpath, r)) return -1;
    if (r->skip && (given[1] || given[2] || given[3])) {
        join_path(kpath, sizeof kpath, path, "skip");
        return fail(p, find_value(p, v, "skip"), kpath, "a skipped module takes no bits, group_size or eora_rank");
    }
    if (!given[1] && !given[2] && !given[3] && !given[4])
        return fail(p, v, path, "a rule needs at least one of bits, group_size, eora_rank, skip");
    return 0;
}

static int parse_rules(const parser_t *p, yaml_node_t *v, const char *path, void *target)
{
    job_t *job = target;
    if (v->type != YAML_SEQUENCE_NODE) return fail(p, v, path, "expected a list of rules, got %s", node_kind(v));
    int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
    job->rules = xcalloc((size_t)n, sizeof *job->rules);
    for (int i = 0; i < n; i++) {
        char ipath[256];
        snprintf(ipath, sizeof ipath, "%s[%d]", path, i);
        job->n_rules = i + 1; /* so job_free releases what was filled */
        if (parse_rule(p, node_at(p, v->data.sequence.items.start[i]), ipath, &job->rules[i])) return -1;
    }
    return 0;
}

static int parse_source(const parser_t *p, yaml_node_t *v, const char *path, data_source *s, int with_weight)
{
    static const parser_field fields[] = {
        FIELD("path", F_STR, data_source, path, 1, NULL, NULL, NULL),
        FIELD("format", F_ENUM, data_source, format, 0, SOURCE_FORMATS, NULL, NULL),
        FIELD("field", F_STR, data_source, field, 0, NULL, NULL, NULL),
        FIELD("weight", F_DOUBLE, data_source, weight, 0, NULL, check_positive, NULL),
    };
    s->format = xstrdup("jsonl");
    s->field = xstrdup("text");
    s->weight = 1;
    /* "weight" is last: without it the table ends one entry early */
    return parse_mapping(p, v, path, fields, N_FIELDS(fields) - !with_weight, s, NULL);
}

static int parse_sources(const parser_t *p, yaml_node_t *v, const char *path, void *target)
{
    job_t *job = target;
    if (v->type != YAML_SEQUENCE_NODE) return fail(p, v, path, "expected a list of sources, got %s", node_kind(v));
    int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0) return fail(p, v, path, "expected at least one source");
    job->sources = xcalloc((size_t)n, sizeof *job->sources);
    for (int i = 0; i < n; i++) {
        char ipath[256];
        snprintf(ipath, sizeof ipath, "%s[%d]", path, i);
        job->n_sources = i + 1;
        if (parse_source(p, node_at(p, v->data.sequence.items.start[i]), ipath, &job->sources[i], 1)) return -1;
    }
    return 0;
}

static int parse_quantize(const parser_t *p, yaml_node_t *v, const char *path, void *target)
{
    static const parser_field fields[] = {
        FIELD("method", F_ENUM, job_t, method, 0, METHODS, NULL, NULL),
        FIELD("bits", F_INT, job_t, bits, 0, NULL, check_bits, NULL),
        FIELD("group_size", F_INT, job_t, group_size, 0, NULL, check_group_size, NULL),
        FIELD("desc_act", F_BOOL, job_t, desc_act, 0, NULL, NULL, NULL),
        FIELD("sym", F_BOOL, job_t, sym, 0, NULL, NULL, NULL),
        FIELD("act_group_aware", F_BOOL, job_t, act_group_aware, 0, NULL, NULL, NULL),
        FIELD("static_groups", F_BOOL, job_t, static_groups, 0, NULL, NULL, NULL),
        FIELD("true_sequential", F_BOOL, job_t, true_sequential, 0, NULL, NULL, NULL),
        FIELD("damp_percent", F_DOUBLE, job_t, damp_percent, 0, NULL, check_damp, NULL),
        FIELD("damp_auto_increment", F_DOUBLE, job_t, damp_auto_increment, 0, NULL, check_increment, NULL),
        FIELD("format", F_ENUM, job_t, format, 0, FORMATS, NULL, NULL),
        {"rules", F_SUB, 0, 0, NULL, NULL, parse_rules},
    };
    job_t *job = target;
    if (parse_mapping(p, v, path, fields, N_FIELDS(fields), job, NULL)) return -1;
    if (job->act_group_aware) {
        char kpath[256];
        join_path(kpath, sizeof kpath, path, "act_group_aware");
        const yaml_node_t *at = find_value(p, v, "act_group_aware");
        /* GPTQModel turns GAR off under desc_act; say so instead of silently ignoring it */
        if (job->desc_act) return fail(p, at, kpath, "act_group_aware needs desc_act: false");
        if (job->group_size <= 0) return fail(p, at, kpath, "act_group_aware needs group_size > 0");
    }
    return 0;
}

static int parse_eora(const parser_t *p, yaml_node_t *v, const char *path, void *target)
{
    static const parser_field fields[] = {
        FIELD("rank", F_INT, job_t, eora_rank, 0, NULL, check_nonneg, NULL),
        FIELD("method", F_ENUM, job_t, eora_method, 0, EORA_METHODS, NULL, NULL),
        FIELD("svd", F_ENUM, job_t, eora_svd, 0, EORA_SVDS, NULL, NULL),
        FIELD("dtype", F_ENUM, job_t, eora_dtype, 0, EORA_DTYPES, NULL, NULL),
    };
    return parse_mapping(p, v, path, fields, N_FIELDS(fields), target, NULL);
}

static int parse_calibration(const parser_t *p, yaml_node_t *v, const char *path, void *target)
{
    static const parser_field fields[] = {
        {"sources", F_SUB, 0, 1, NULL, NULL, parse_sources},
        FIELD("samples", F_INT, job_t, n_samples, 0, NULL, check_positive, NULL),
        FIELD("seq_len", F_INT, job_t, seq_len, 0, NULL, check_positive, NULL),
        FIELD("seed", F_U64, job_t, seed, 0, NULL, NULL, NULL),
        FIELD("windows", F_ENUM, job_t, windows, 0, WINDOWS, NULL, NULL),
        FIELD("allow_repeat", F_BOOL, job_t, allow_repeat, 0, NULL, NULL, NULL),
    };
    return parse_mapping(p, v, path, fields, N_FIELDS(fields), target, NULL);
}

static int parse_eval_source(const parser_t *p, yaml_node_t *v, const char *path, void *target)
{
    job_t *job = target;
    return parse_source(p, v, path, &job->eval_source, 0);
}

static int parse_eval(const parser_t *p, yaml_node_t *v, const char *path, void *target)
{
    static const parser_field fields[] = {
        {"source", F_SUB, 0, 1, NULL, NULL, parse_eval_source},
        FIELD("seq_len", F_INT, job_t, eval_seq_len, 0, NULL, check_positive, NULL),
        FIELD("windows", F_INT, job_t, eval_windows, 0, NULL, check_positive, NULL),
    };
    job_t *job = target;
    job->eval_seq_len = 512;
    job->eval_windows = 64;
    return parse_mapping(p, v, path, fields, N_FIELDS(fields), target, NULL);
}

static int parse_resources(const parser_t *p, yaml_node_t *v, const char *path, void *target)
{
    static const parser_field fields[] = {
        FIELD("memory_budget", F_SIZE, job_t, memory_budget, 0, NULL, NULL, NULL),
        FIELD("spill_dir", F_STR, job_t, spill_dir, 0, NULL, NULL, NULL),
        FIELD("spill_dtype", F_ENUM, job_t, spill_dtype, 0, SPILL_DTYPES, NULL, NULL),
        FIELD("batch_tokens", F_INT, job_t, batch_tokens, 0, NULL, check_positive, NULL),
        FIELD("threads", F_INT, job_t, threads, 0, NULL, check_nonneg, NULL),
        FIELD("propagate", F_ENUM, job_t, propagate, 0, PROPAGATE, NULL, NULL),
        FIELD("shard_size", F_SIZE, job_t, shard_size, 0, NULL, NULL, NULL),
    };
    job_t *job = target;
    if (parse_mapping(p, v, path, fields, N_FIELDS(fields), target, NULL)) return -1;
    if (job->shard_size == 0) {
        char kpath[256];
        join_path(kpath, sizeof kpath, path, "shard_size");
        return fail(p, find_value(p, v, "shard_size"), kpath, "expected a size > 0");
    }
    return 0;
}

static int parse_root(const parser_t *p, yaml_node_t *v, job_t *job)
{
    static const parser_field fields[] = {
        FIELD("model", F_STR, job_t, model, 1, NULL, NULL, NULL),
        FIELD("output", F_STR, job_t, output, 1, NULL, NULL, NULL),
        FIELD("tokenizer", F_STR, job_t, tokenizer, 0, NULL, NULL, NULL),
        {"quantize", F_SUB, 0, 0, NULL, NULL, parse_quantize},
        {"eora", F_SUB, 0, 0, NULL, NULL, parse_eora},
        {"calibration", F_SUB, 0, 1, NULL, NULL, parse_calibration},
        {"eval", F_SUB, 0, 0, NULL, NULL, parse_eval},
        {"resources", F_SUB, 0, 0, NULL, NULL, parse_resources},
    };
    return parse_mapping(p, v, "", fields, N_FIELDS(fields), job, NULL);
}

/* ------------------------------------------------------------------ public API */

/* GPTQModel's QuantizeConfig defaults; the rest are this toolkit's. */
static void set_defaults(job_t *job)
{
    job->method = xstrdup("gptq");
    job->bits = 4;
    job->group_size = 128;
    job->desc_act = 1;
    job->sym = 1;
    job->act_group_aware = 0;
    job->static_groups = 0;
    job->true_sequential = 1;
    job->damp_percent = 0.05;
    job->damp_auto_increment = 0.01;
    job->format = xstrdup("gptq");
    job->eora_rank = 0;
    job->eora_method = xstrdup("cholesky");
    job->eora_svd = xstrdup("exact");
    job->eora_dtype = xstrdup("model");
    job->n_samples = 128;
    job->seq_len = 512;
    job->seed = 0;
    job->windows = xstrdup("concat");
    job->allow_repeat = 0;
    job->eval_seq_len = 0;
    job->eval_windows = 0;
    job->memory_budget = 0;
    job->spill_dtype = xstrdup("bf16");
    job->batch_tokens = 8192;
    job->threads = 0;
    job->propagate = xstrdup("quantized");
    job->shard_size = 4ull << 30;
}

static int load_document(const char *path, FILE *f, job_t *job)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return err_set("%s: cannot initialise the YAML parser", path);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = err_set("%s:%zu:%zu: (yaml syntax): %s%s%s", path, parser.problem_mark.line + 1,
                         parser.problem_mark.column + 1, parser.problem ? parser.problem : "invalid YAML",
                         parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return rc;
    }
    parser_t p = {path, &doc};
    int rc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = err_set("%s:1:1: (top level): the job file is empty", path);
    } else {
        rc = parse_root(&p, root, job);
        if (rc == 0) {
            yaml_document_t next;
            if (!yaml_parser_load(&parser, &next)) {
                rc = err_set("%s:%zu:%zu: (yaml syntax): %s", path, parser.problem_mark.line + 1,
                             parser.problem_mark.column + 1, parser.problem ? parser.problem : "invalid YAML");
            } else {
                yaml_node_t *extra = yaml_document_get_root_node(&next);
                if (extra) rc = fail(&p, extra, "", "a job file holds one YAML document, found a second one");
                yaml_document_delete(&next);
            }
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int job_load(const char *path, job_t *job)
{
    memset(job, 0, sizeof *job);
    FILE *f = fopen(path, "rb");
    if (!f) return err_set("%s: cannot open job file: %s", path, strerror(errno));
    job->path = xstrdup(path);
    set_defaults(job);
    int rc = load_document(path, f, job);
    fclose(f);
    if (rc == 0) {
        if (!job->tokenizer) job->tokenizer = fs_join(job->model, "tokenizer.json");
        if (!job->spill_dir) job->spill_dir = fs_join(job->output, ".spill");
    } else {
        job_free(job);
    }
    return rc;
}

static void free_source(data_source *s)
{
    free(s->path);
    free(s->format);
    free(s->field);
    memset(s, 0, sizeof *s);
}

void job_free(job_t *job)
{
    if (!job) return;
    for (int i = 0; i < job->n_rules; i++) {
        free(job->rules[i].match);
        pcre2_code_free(job->rules[i].re);
    }
    free(job->rules);
    for (int i = 0; i < job->n_sources; i++) free_source(&job->sources[i]);
    free(job->sources);
    free_source(&job->eval_source);
    char **strings[] = {&job->path,      &job->model,     &job->output,      &job->tokenizer, &job->method,
                        &job->format,    &job->eora_method, &job->eora_svd,  &job->eora_dtype, &job->windows,
                        &job->spill_dir, &job->spill_dtype, &job->propagate};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) free(*strings[i]);
    memset(job, 0, sizeof *job);
}

const quant_rule *job_match_rule(const job_t *job, const char *module)
{
    for (int i = 0; i < job->n_rules; i++) {
        const quant_rule *r = &job->rules[i];
        if (!r->re) continue;
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
        if (!md) continue;
        int rc = pcre2_match(r->re, (PCRE2_SPTR)module, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL);
        pcre2_match_data_free(md);
        if (rc >= 0) return r;
    }
    return NULL;
}

void job_module_settings(const job_t *job, const char *module, module_settings *out)
{
    const quant_rule *r = job_match_rule(job, module);
    out->rule = r;
    out->quantize = !(r && r->skip);
    out->bits = r && r->bits ? r->bits : job->bits;
    out->group_size = r && r->group_size ? r->group_size : job->group_size;
    out->eora_rank = r && r->eora_rank >= 0 ? r->eora_rank : job->eora_rank;
    if (!out->quantize) out->eora_rank = 0;
}
