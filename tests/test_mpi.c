/* Multi-process quantization (tools/dist, the MPI paths of tools/pipeline*): built only with
 * `make MPI=1` and run by `make test-mpi`, which passes
 *   BIN      the MPI build's bin directory (runs under $MPIRUN -np R)
 *   REF_BIN  the plain (MPI-free) build's bin directory (the single-process reference)
 *   MPIRUN   the launcher (default "mpirun --allow-run-as-root --oversubscribe").
 * Scenarios: the collectives across 2 ranks; 1 rank under MPI byte-identical to the plain
 * build; 2 ranks ≈ 1 rank (codes ≥ 99.9% equal, KLD within 1%); a 2-rank run killed after a
 * layer resumes byte-identically (in RAM and spilled); an error on one rank ends every rank. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gptq/pack.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/safetensors.h"
#include "tests/testlib.h"
#include "tests/testutil.h"
#include "tools/dist.h"
#include "tools/eval.h"

#define TINY TEST_DATA "/tiny-qwen35"
#define CALIB TEST_DATA "/text/calib.jsonl"
#define EVAL TEST_DATA "/text/eval.jsonl"

/* ------------------------------------------------------------------ worker mode */

/* `TEST_MPI_WORKER=1 mpirun -np 2 test_mpi`: each rank checks the collectives, exits 0 when
 * they gave the expected values (before the test harness's main runs). */
__attribute__((constructor)) static void collectives_worker(void)
{
    if (!getenv("TEST_MPI_WORKER")) return;
    int argc = 0;
    char **argv = NULL;
    dist_init(&argc, &argv);
    int r = dist_rank(), R = dist_size(), bad = 0;
    double f[3] = {r + 1.0, 0.25, 1e300 * (r == 0)};
    dist_allreduce_f64(f, 3);
    bad |= f[0] != R * (R + 1) / 2.0 || f[1] != 0.25 * R || f[2] != 1e300;
    int64_t c[2] = {(int64_t)1 << 40, r};
    dist_allreduce_i64(c, 2);
    bad |= c[0] != ((int64_t)R << 40) || c[1] != (int64_t)R * (R - 1) / 2;
    unsigned char b[1000];
    for (int i = 0; i < 1000; i++) b[i] = r == R - 1 ? (unsigned char)(i * 7) : 0;
    dist_bcast(b, sizeof b, R - 1);
    for (int i = 0; i < 1000; i++) bad |= b[i] != (unsigned char)(i * 7);
    dist_barrier();
    if (bad) fprintf(stderr, "rank %d of %d: wrong collective results\n", r, R);
    dist_finalize();
    _exit(R == 2 && !bad ? 0 : 3);
}

/* ------------------------------------------------------------------ helpers */

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

static char *tmp_path(const char *name)
{
    return fs_join(test_tmpdir(), name);
}

static void rm_rf(const char *path)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The end-to-end recipe of tests/test_pipeline.c (layers 0 and 3 quantized, EoRA on all),
 * batches of 2 sequences (256 tokens) so that 10 samples make 5 batches: 3 + 2 on 2 ranks. */
static char *write_job(const char *name, const char *output, int samples, const char *budget)
{
    char *path = tmp_path(name);
    FILE *f = fopen(path, "w");
    if (!f) return path;
    fprintf(f, "model: %s\noutput: %s\n", TINY, output);
    fprintf(f, "quantize:\n  method: gptq\n  bits: 4\n  group_size: 128\n  desc_act: true\n  sym: true\n"
               "  rules:\n"
               "    - match: '.*\\.layers\\.[124-7]\\..*'\n      skip: true\n"
               "    - match: '.*\\.self_attn\\.(q|k|v|o)_proj'\n      bits: 8\n"
               "    - match: '.*\\.mlp\\.down_proj'\n      eora_rank: 16\n");
    fprintf(f, "eora:\n  rank: 32\n");
    fprintf(f, "calibration:\n  sources:\n    - path: %s\n      format: jsonl\n  samples: %d\n  seq_len: 128\n"
               "  seed: 7\n", CALIB, samples);
    fprintf(f, "resources:\n  threads: 1\n  batch_tokens: 256\n  shard_size: 4MiB\n  memory_budget: %s\n"
               "  spill_dtype: f32\n",
            budget ? budget : "0");
    fclose(f);
    return path;
}

/* Runs `[MPIRUN -np ranks] BIN/gptq-eora quantize JOB --quiet [extra]` (ranks 0: no launcher,
 * the plain reference build), stderr to err_file. env: "NAME=VALUE" or NULL. Returns the exit
 * status (-1 when it did not exit normally). */
static int quantize(int ranks, const char *job, const char *extra, const char *env, const char *err_file)
{
    char cmd[4096];
    const char *bin = ranks ? env_or("BIN", "build/mpi/bin") : env_or("REF_BIN", "bin");
    int n = 0;
    if (ranks) {
        n = snprintf(cmd, sizeof cmd, "%s -np %d ", env_or("MPIRUN", "mpirun --allow-run-as-root --oversubscribe"),
                     ranks);
        if (env) n += snprintf(cmd + n, sizeof cmd - (size_t)n, "-x %s ", env);
    } else if (env) {
        n = snprintf(cmd, sizeof cmd, "env %s ", env);
    }
    snprintf(cmd + n, sizeof cmd - (size_t)n, "%s/gptq-eora quantize '%s' --quiet %s 2>'%s' >/dev/null", bin, job,
             extra ? extra : "", err_file);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void show_err(const char *err_file)
{
    size_t n;
    char *t = fs_read_file(err_file, &n);
    if (t) printf("    stderr: %.2000s\n", t);
    free(t);
    err_clear();
}


/* Runs job into its output dir and renames that to `keep` (the adapter config names the
 * output path, so runs that are compared byte for byte use the same output path). */
static int run_and_keep(int ranks, const char *job, const char *out, const char *keep, const char *extra,
                        const char *env, const char *err)
{
    rm_rf(out);
    int rc = quantize(ranks, job, extra, env, err);
    rm_rf(keep);
    if (rename(out, keep) != 0 && rc == 0) rc = 99;
    return rc;
}

/* Codes of every quantized module of two checkpoints: *same / *total. */
static int compare_codes(const char *a, const char *b, int64_t *same, int64_t *total, int *n_mods)
{
    st_set *x = st_open(a), *y = st_open(b);
    *same = *total = 0;
    *n_mods = 0;
    int rc = x && y ? 0 : -1;
    for (size_t i = 0; x && y && i < st_count(x) && !rc; i++) {
        const st_tensor *t = st_get(x, i);
        size_t l = strlen(t->name);
        if (l < 8 || strcmp(t->name + l - 8, ".qweight")) continue;
        char gname[300];
        snprintf(gname, sizeof gname, "%.*s.g_idx", (int)(l - 8), t->name);
        const st_tensor *u = st_find(y, t->name), *gx = st_find(x, gname), *gy = st_find(y, gname);
        if (!u || !gx || !gy || u->nbytes != t->nbytes || gx->numel != gy->numel) {
            rc = -1;
            break;
        }
        gptq_packed p[2];
        const st_tensor *qs[2] = {t, u}, *gs[2] = {gx, gy};
        uint8_t *codes[2];
        for (int k = 0; k < 2; k++) {
            memset(&p[k], 0, sizeof p[k]);
            p[k].in = (int)gs[k]->numel;
            p[k].out = (int)qs[k]->shape[1];
            p[k].qw_rows = (int)qs[k]->shape[0];
            p[k].bits = p[k].qw_rows * 32 / p[k].in;
            p[k].qweight = (int32_t *)qs[k]->data;
            codes[k] = xmalloc((size_t)p[k].in * p[k].out);
            gptq_unpack_codes(&p[k], codes[k]);
        }
        int64_t n = (int64_t)p[0].in * p[0].out;
        for (int64_t j = 0; j < n; j++) *same += codes[0][j] == codes[1][j];
        *total += n;
        (*n_mods)++;
        free(codes[0]);
        free(codes[1]);
    }
    st_close(x);
    st_close(y);
    return rc;
}

/* ------------------------------------------------------------------ tests */

TEST(dist_shard_is_contiguous_and_balanced)
{
    for (int R = 1; R <= 5; R++)
        for (int64_t n = R; n <= 23; n++) {
            int64_t next = 0, lo = n, hi = 0;
            for (int r = 0; r < R; r++) {
                int64_t f, c;
                dist_shard(n, r, R, &f, &c);
                CHECK_MSG(f == next, "n %lld R %d rank %d starts at %lld, expected %lld", (long long)n, R, r,
                          (long long)f, (long long)next);
                next = f + c;
                lo = c < lo ? c : lo;
                hi = c > hi ? c : hi;
            }
            CHECK(next == n && hi - lo <= 1);
        }
}

TEST(collectives_across_two_ranks)
{
    char *err = tmp_path("worker.err");
    char cmd[2048];
    /* the workers run this very binary */
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0);
    self[n] = 0;
    snprintf(cmd, sizeof cmd, "%s -np 2 -x TEST_MPI_WORKER=1 '%s' 2>'%s' >/dev/null",
             env_or("MPIRUN", "mpirun --allow-run-as-root --oversubscribe"), self, err);
    int st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "workers exited with %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) show_err(err);
    free(err);
}

static char *ref8, *ref10; /* plain single-process outputs of the 8- and 10-sample jobs */

TEST(one_rank_under_mpi_is_byte_identical_to_plain_build)
{
    char *out = tmp_path("out"), *job = write_job("j8.yaml", out, 8, NULL), *err = tmp_path("j8.err");
    ref8 = tmp_path("ref8");
    char *got = tmp_path("mpi1");
    int rc = run_and_keep(0, job, out, ref8, NULL, NULL, err);
    if (rc) show_err(err);
    REQUIRE(rc == 0);
    rc = run_and_keep(1, job, out, got, NULL, NULL, err);
    if (rc) show_err(err);
    REQUIRE(rc == 0);
    int n_files = 0, diffs = test_compare_outputs(ref8, got, &n_files);
    CHECK_MSG(diffs == 0 && n_files >= 10, "%d of %d files differ", diffs, n_files);
    free(out);
    free(job);
    free(err);
    free(got);
}

TEST(two_ranks_match_one_rank)
{
    /* 10 samples in 5 batches: rank 0 sums batches 0-2, rank 1 batches 3-4, then the two sums
     * are added: the Hessians differ from the single process's in their fp64 summation order */
    char *out = tmp_path("out"), *job = write_job("j10.yaml", out, 10, NULL), *err = tmp_path("j10.err");
    ref10 = tmp_path("ref10");
    char *got = tmp_path("mpi2");
    int rc = run_and_keep(0, job, out, ref10, NULL, NULL, err);
    if (rc) show_err(err);
    REQUIRE(rc == 0);
    double t0 = now();
    rc = run_and_keep(2, job, out, got, NULL, NULL, err);
    double dt = now() - t0;
    if (rc) show_err(err);
    REQUIRE(rc == 0);
    printf("    2 ranks: %.2fs\n", dt);
    char *p = fs_join(got, "report.json"), *w = fs_join(got, ".gptq-eora-work"), *sp = fs_join(got, ".spill");
    CHECK_MSG(fs_exists(p), "no report.json");
    CHECK_MSG(!fs_exists(w) && !fs_exists(sp), "work or spill directory left behind");
    free(p);
    free(w);
    free(sp);
    /* the report counts every rank's tokens */
    char *ql = fs_join(got, "quant_log.csv");
    size_t n;
    char *t = fs_read_file(ql, &n);
    CHECK_MSG(t && strstr(t, ",1280,"), "quant_log.csv lacks the 1280-token sample count");
    free(t);
    free(ql);

    int64_t same = 0, total = 0;
    int n_mods = 0;
    REQUIRE(compare_codes(ref10, got, &same, &total, &n_mods) == 0);
    CHECK(n_mods == 13);
    double frac = total ? (double)same / (double)total : 0;
    printf("    codes equal: %.5f%% of %lld\n", 100 * frac, (long long)total);
    CHECK_MSG(frac >= 0.999, "only %.4f%% of the codes agree", 100 * frac);

    eval_opts eo;
    eval_opts_default(&eo);
    eo.base = TINY;
    eo.n_quant = 2;
    eo.quants[0] = ref10;
    eo.quants[1] = got;
    char *ad0 = fs_join(ref10, "eora"), *ad1 = fs_join(got, "eora");
    eo.adapters[0] = ad0;
    eo.adapters[1] = ad1;
    eo.data = EVAL;
    eo.seq_len = 128;
    eo.windows = 8;
    eo.batch_tokens = 1024;
    eval_result r[2];
    memset(r, 0, sizeof r);
    rc = eval_run(&eo, r);
    if (rc) printf("    eval: %s\n", err_msg());
    REQUIRE(rc == 0);
    printf("    KLD 1 process %.6f, 2 ranks %.6f\n", r[0].kld_mean, r[1].kld_mean);
    CHECK(r[0].kld_mean > 0);
    CHECK_MSG(fabs(r[1].kld_mean - r[0].kld_mean) <= 0.01 * r[0].kld_mean, "KLD %.6f vs %.6f: more than 1%% apart",
              r[1].kld_mean, r[0].kld_mean);
    free(ad0);
    free(ad1);
    free(out);
    free(job);
    free(err);
    free(got);
}

/* Kill both ranks after layer 0's journal entry, check each rank's resume point, resume,
 * compare with an uninterrupted 2-rank run. */
static void kill_and_resume(const char *tag, const char *budget, const char *act_file)
{
    char name[64];
    snprintf(name, sizeof name, "jr-%s.yaml", tag);
    char *out = tmp_path("out"), *job = write_job(name, out, 10, budget), *err = tmp_path("jr.err");
    snprintf(name, sizeof name, "full-%s", tag);
    char *full = tmp_path(name);
    snprintf(name, sizeof name, "resumed-%s", tag);
    char *resumed = tmp_path(name);
    int rc = run_and_keep(2, job, out, full, NULL, NULL, err);
    if (rc) show_err(err);
    REQUIRE(rc == 0);
    rm_rf(out);
    rc = quantize(2, job, NULL, "GPTQ_EORA_FAIL_AFTER_LAYER=0", err);
    CHECK_MSG(rc != 0, "the killed run exited 0");
    for (int k = 0; k < 2; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, ".spill/rank%d/%s", k, act_file);
        char *p = fs_join(out, rel);
        CHECK_MSG(fs_exists(p), "no resume point %s", p);
        free(p);
    }
    char *cfg = fs_join(out, "config.json");
    CHECK_MSG(!fs_exists(cfg), "config.json written by a killed run");
    free(cfg);
    rc = quantize(2, job, "--resume", NULL, err);
    if (rc) show_err(err);
    CHECK(rc == 0);
    rm_rf(resumed);
    REQUIRE(rename(out, resumed) == 0);
    int n_files = 0, diffs = test_compare_outputs(full, resumed, &n_files);
    CHECK_MSG(diffs == 0 && n_files >= 10, "%d of %d files differ", diffs, n_files);
    /* the same bytes as the 2-rank run without spilling (f32 spill files are exact) */
    if (budget) {
        char *ram = tmp_path("full-ram");
        if (fs_exists(ram)) {
            diffs = test_compare_outputs(ram, full, &n_files);
            CHECK_MSG(diffs == 0, "spilled 2-rank run differs from the in-RAM one in %d files", diffs);
        }
        free(ram);
    }
    free(out);
    free(job);
    free(err);
    free(full);
    free(resumed);
}

TEST(two_rank_resume_after_kill_is_byte_identical_in_ram)
{
    kill_and_resume("ram", NULL, "x-b.act"); /* X_1 after layer 0: odd layer → x-b.act */
}

TEST(two_rank_resume_after_kill_is_byte_identical_spilled)
{
    kill_and_resume("spill", "1MiB", "x-b.spill");
}

TEST(error_on_one_rank_ends_every_rank)
{
    /* rank 1 alone cannot create its spill directory: a regular file is in the way */
    char *out = tmp_path("out"), *job = write_job("je.yaml", out, 10, NULL), *err = tmp_path("je.err");
    rm_rf(out);
    char *blocker = fs_join(out, ".spill/rank1");
    char *sp = fs_join(out, ".spill");
    REQUIRE(fs_mkdir_p(sp) == 0);
    FILE *f = fopen(blocker, "w");
    REQUIRE(f);
    fclose(f);
    double t0 = now();
    int rc = quantize(2, job, NULL, NULL, err);
    double dt = now() - t0;
    CHECK_MSG(rc != 0, "exit status 0");
    CHECK_MSG(dt < 60, "took %.0fs (a rank kept waiting?)", dt);
    size_t n;
    char *t = fs_read_file(err, &n);
    CHECK_MSG(t && strstr(t, "gptq-eora: error: rank 1 of 2: ") && strstr(t, "rank1"), "stderr: %s", t ? t : "");
    free(t);
    char *cfg = fs_join(out, "config.json");
    CHECK_MSG(!fs_exists(cfg), "config.json written by a failed run");
    free(cfg);

    /* fewer batches than ranks: every rank refuses, with the one-line reason */
    char *job2 = write_job("je2.yaml", out, 2, NULL);
    rc = quantize(3, job2, NULL, NULL, err);
    CHECK(rc != 0);
    t = fs_read_file(err, &n);
    CHECK_MSG(t && strstr(t, "calibration.samples 2 make 1 batches of 2 for 3 MPI ranks"), "stderr: %s", t ? t : "");
    free(t);
    err_clear();
    free(job2);
    free(blocker);
    free(sp);
    free(out);
    free(job);
    free(err);
}
