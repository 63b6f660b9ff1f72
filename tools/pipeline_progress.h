/* pipeline_progress — what a running job tells its user: one line per step on stderr
 * ("[layer 3/32] stage 2/5 o_proj: 1.2M tok/s, elapsed 12m03s, ETA 1h10m"), nothing with
 * --quiet, and with --log FILE every event as one JSON object per line. */
#ifndef TOOLS_PIPELINE_PROGRESS_H
#define TOOLS_PIPELINE_PROGRESS_H

#include <cjson/cJSON.h>
#include <stdio.h>

typedef struct {
    int quiet;
    FILE *log;
    double t0;          /* start of the run (monotonic seconds) */
    int n_layers;
    int layers_done_here; /* layers finished by this process (for the ETA) */
    double t_layers;      /* seconds they took */
} progress;

double progress_now(void);
int progress_init(progress *p, int quiet, const char *log_path, int n_layers);
void progress_close(progress *p);

/* A free-form message line (also logged as {"event":"message"}). */
void progress_msg(progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Stage of a layer finished its calibration pass (stage == n_stages: the propagation pass). */
void progress_stage(progress *p, int layer, int stage, int n_stages, const char *what, double tokens,
                    double seconds);
/* Layer finished: updates the ETA. */
void progress_layer(progress *p, int layer, double seconds, double tokens_per_s);
/* Log one JSON event (the object is consumed); adds "t" (elapsed seconds). */
void progress_event(progress *p, cJSON *ev);

#endif
