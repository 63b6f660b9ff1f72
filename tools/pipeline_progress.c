/* pipeline_progress — stderr progress lines and JSON-lines log. */
#include "tools/pipeline_progress.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "io/err.h"

double progress_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int progress_init(progress *p, int quiet, const char *log_path, int n_layers)
{
    memset(p, 0, sizeof *p);
    p->quiet = quiet;
    p->t0 = progress_now();
    p->n_layers = n_layers;
    if (log_path) {
        p->log = fopen(log_path, "a");
        if (!p->log) return err_set("%s: cannot open log file: %s", log_path, strerror(errno));
    }
    return 0;
}

void progress_close(progress *p)
{
    if (p->log) fclose(p->log);
    p->log = NULL;
}

static void fmt_duration(double s, char *buf, size_t len)
{
    if (s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, len, "%.1fs", s);
}

static void fmt_rate(double r, char *buf, size_t len)
{
    if (r >= 1e6) snprintf(buf, len, "%.2fM", r / 1e6);
    else if (r >= 1e3) snprintf(buf, len, "%.1fk", r / 1e3);
    else snprintf(buf, len, "%.0f", r);
}

void progress_event(progress *p, cJSON *ev)
{
    if (p->log) {
        cJSON_AddNumberToObject(ev, "t", progress_now() - p->t0);
        char *s = cJSON_PrintUnformatted(ev);
        fprintf(p->log, "%s\n", s);
        fflush(p->log);
        cJSON_free(s);
    }
    cJSON_Delete(ev);
}

void progress_msg(progress *p, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (!p->quiet) fprintf(stderr, "%s\n", line);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", "message");
    cJSON_AddStringToObject(ev, "text", line);
    progress_event(p, ev);
}

void progress_stage(progress *p, int layer, int stage, int n_stages, const char *what, double tokens,
                    double seconds)
{
    double rate = seconds > 0 ? tokens / seconds : 0;
    char r[32], el[32];
    fmt_rate(rate, r, sizeof r);
    fmt_duration(progress_now() - p->t0, el, sizeof el);
    if (!p->quiet && stage < n_stages)
        fprintf(stderr, "[layer %d/%d] stage %d/%d %s: %s tok/s, elapsed %s\n", layer + 1, p->n_layers, stage + 1,
                n_stages, what, r, el);
    else if (!p->quiet)
        fprintf(stderr, "[layer %d/%d] %s: %s tok/s, elapsed %s\n", layer + 1, p->n_layers, what, r, el);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", "stage");
    cJSON_AddNumberToObject(ev, "layer", layer);
    cJSON_AddNumberToObject(ev, "stage", stage);
    cJSON_AddStringToObject(ev, "modules", what);
    cJSON_AddNumberToObject(ev, "tokens_per_s", rate);
    cJSON_AddNumberToObject(ev, "seconds", seconds);
    progress_event(p, ev);
}

void progress_layer(progress *p, int layer, double seconds, double tokens_per_s)
{
    p->layers_done_here++;
    p->t_layers += seconds;
    int left = p->n_layers - layer - 1;
    double eta = left * (p->t_layers / p->layers_done_here);
    char r[32], el[32], et[32];
    fmt_rate(tokens_per_s, r, sizeof r);
    fmt_duration(progress_now() - p->t0, el, sizeof el);
    fmt_duration(eta, et, sizeof et);
    if (!p->quiet)
        fprintf(stderr, "[layer %d/%d] done in %.2fs: %s tok/s, elapsed %s, ETA %s\n", layer + 1, p->n_layers,
                seconds, r, el, et);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", "layer");
    cJSON_AddNumberToObject(ev, "layer", layer);
    cJSON_AddNumberToObject(ev, "seconds", seconds);
    cJSON_AddNumberToObject(ev, "tokens_per_s", tokens_per_s);
    cJSON_AddNumberToObject(ev, "eta_seconds", eta);
    progress_event(p, ev);
}
