/* `gptq-eora slurm` (tools/slurm, tools/cmd_slurm): the sbatch script's directives and
 * environment, option checks, and the script itself run by bash with stand-in srun/mpirun
 * that record their arguments (fresh start vs. Slurm requeue → --resume). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "io/err.h"
#include "io/fsutil.h"
#include "tests/testlib.h"
#include "tools/slurm.h"

static slurm_opts sample_opts(void)
{
    slurm_opts o;
    slurm_opts_default(&o);
    o.job_path = "/data/jobs/qwen.yaml";
    o.binary = "/opt/gptq-eora/bin/gptq-eora";
    o.nodes = 4;
    o.ntasks_per_node = 2;
    o.cpus_per_task = 8;
    o.time = "02:00:00";
    o.partition = "cpu";
    o.mem = "200G";
    return o;
}

TEST(script_has_directives_environment_and_requeue)
{
    slurm_opts o = sample_opts();
    char *s = slurm_script(&o);
    REQUIRE(s);
    static const char *want[] = {"#!/bin/bash\n", "#SBATCH --nodes=4\n", "#SBATCH --ntasks-per-node=2\n",
                                 "#SBATCH --cpus-per-task=8\n", "#SBATCH --time=02:00:00\n",
                                 "#SBATCH --partition=cpu\n", "#SBATCH --mem=200G\n", "#SBATCH --requeue\n",
                                 "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-8}\n",
                                 "export OMP_WAIT_POLICY=passive\n", "export OPENBLAS_THREAD_TIMEOUT=4\n", "SLURM_RESTART_COUNT", "srun ",
                                 "JOB='/data/jobs/qwen.yaml'", "GPTQ_EORA='/opt/gptq-eora/bin/gptq-eora'"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) CHECK_MSG(strstr(s, want[i]), "missing '%s'", want[i]);
    free(s);
    /* optional directives are left out when not given */
    slurm_opts_default(&o);
    o.job_path = "/j.yaml";
    o.binary = "/b";
    s = slurm_script(&o);
    REQUIRE(s);
    CHECK(!strstr(s, "--time=") && !strstr(s, "--partition=") && !strstr(s, "--mem="));
    CHECK(strstr(s, "#SBATCH --nodes=1\n") && strstr(s, "#SBATCH --cpus-per-task=1\n"));
    free(s);
}

TEST(bad_options_are_refused_with_the_option_named)
{
    struct {
        const char *what, *needle;
        int field;
    } cases[] = {{"0", "--nodes", 0},          {"0", "--cpus-per-task", 1},   {"2h", "--time", 2},
                 {"01:61:00", "--time", 2},    {"1-2:3", "--time", 2},        {"lots", "--mem", 3},
                 {"12GB", "--mem", 3},         {"a b", "--partition", 4},     {"ssh", "--launcher", 5},
                 {"0", "--ntasks-per-node", 6}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        slurm_opts o = sample_opts();
        switch (cases[i].field) {
        case 0: o.nodes = atoi(cases[i].what); break;
        case 1: o.cpus_per_task = atoi(cases[i].what); break;
        case 2: o.time = cases[i].what; break;
        case 3: o.mem = cases[i].what; break;
        case 4: o.partition = cases[i].what; break;
        case 5: o.launcher = cases[i].what; break;
        default: o.ntasks_per_node = atoi(cases[i].what); break;
        }
        err_clear();
        char *s = slurm_script(&o);
        CHECK_MSG(!s && strstr(err_msg(), cases[i].needle), "%s=%s: %s", cases[i].needle, cases[i].what,
                  s ? "accepted" : err_msg());
        free(s);
    }
    slurm_opts o = sample_opts();
    o.time = "3-12:00:00";
    char *s = slurm_script(&o);
    CHECK_MSG(s != NULL, "days-hours time refused: %s", err_msg());
    free(s);
}

/* The rank count nodes x tasks per node is an int (MPI ranks, the script's -np): each option is
 * accepted up to 10^6, so their product is checked, not computed into an overflow. */
TEST(rank_count_past_int_range_is_refused)
{
    slurm_opts o = sample_opts();
    o.nodes = 1000000;
    o.ntasks_per_node = 1000000;
    err_clear();
    char *s = slurm_script(&o);
    CHECK_MSG(!s && strstr(err_msg(), "MPI ranks") && strstr(err_msg(), "--nodes 1000000"), "%s",
              s ? "accepted" : err_msg());
    free(s);
    o.nodes = 46340; /* 46340 x 46340 < 2^31: still a valid script */
    o.ntasks_per_node = 46340;
    s = slurm_script(&o);
    CHECK_MSG(s && strstr(s, "#SBATCH --nodes=46340"), "%s", s ? s : err_msg());
    free(s);
}

/* Runs the script with bash, a stand-in `launcher` on PATH that writes its arguments to a
 * file, and the given Slurm environment. Returns the recorded arguments (malloc'd). */
static char *run_script(const slurm_opts *o, const char *launcher, const char *env)
{
    char *dir = fs_join(test_tmpdir(), "fakebin"), *fake = fs_join(dir, launcher);
    char *args = fs_join(test_tmpdir(), "launcher.args"), *script = fs_join(test_tmpdir(), "job.sbatch");
    fs_mkdir_p(dir);
    FILE *f = fopen(fake, "w");
    if (f) {
        fprintf(f, "#!/bin/sh\necho \"$@\" > '%s'\necho \"OMP=$OMP_NUM_THREADS $OMP_WAIT_POLICY\" >> '%s'\n", args, args);
        fclose(f);
    }
    chmod(fake, 0755);
    char *text = slurm_script(o);
    f = fopen(script, "w");
    if (f && text) fputs(text, f);
    if (f) fclose(f);
    free(text);
    unlink(args);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "env -u SLURM_RESTART_COUNT -u SLURM_CPUS_PER_TASK -u SLURM_NTASKS PATH='%s':\"$PATH\" %s bash '%s'",
             dir, env, script);
    int st = system(cmd);
    size_t n;
    char *out = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? fs_read_file(args, &n) : NULL;
    err_clear();
    free(dir);
    free(fake);
    free(args);
    free(script);
    return out;
}

TEST(script_resumes_only_when_requeued)
{
    slurm_opts o = sample_opts();
    char *a = run_script(&o, "srun", "");
    REQUIRE(a);
    CHECK_MSG(strstr(a, "/opt/gptq-eora/bin/gptq-eora quantize /data/jobs/qwen.yaml --threads 8") && !strstr(a, "--resume"),
              "fresh start ran: %s", a);
    CHECK_MSG(strstr(a, "OMP=8 passive"), "environment: %s", a);
    free(a);
    a = run_script(&o, "srun", "SLURM_RESTART_COUNT=0 SLURM_CPUS_PER_TASK=3");
    REQUIRE(a);
    CHECK_MSG(strstr(a, "--threads 3") && !strstr(a, "--resume") && strstr(a, "OMP=3 "), "restart 0: %s", a);
    free(a);
    a = run_script(&o, "srun", "SLURM_RESTART_COUNT=2");
    REQUIRE(a);
    CHECK_MSG(strstr(a, "quantize /data/jobs/qwen.yaml --threads 8 --resume"), "requeued run: %s", a);
    free(a);
    o.launcher = "mpirun";
    a = run_script(&o, "mpirun", "SLURM_RESTART_COUNT=1");
    REQUIRE(a);
    CHECK_MSG(strstr(a, "-np 8 ") && strstr(a, "--threads 8 --resume"), "mpirun: %s", a);
    free(a);
}

/* bin/gptq-eora slurm ...: exit status and stdout (malloc'd) */
static int cli(const char *args, char **out)
{
    const char *bin_dir = getenv("BIN");
    char *o = fs_join(test_tmpdir(), "cli.out");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/gptq-eora slurm %s >'%s' 2>/dev/null", bin_dir && *bin_dir ? bin_dir : "bin", args, o);
    int st = system(cmd);
    size_t n;
    *out = fs_read_file(o, &n);
    err_clear();
    free(o);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_prints_script_with_absolute_paths)
{
    char *job = fs_join(test_tmpdir(), "job.yaml");
    FILE *f = fopen(job, "w");
    REQUIRE(f);
    fprintf(f, "model: " TEST_DATA "/tiny-qwen35\noutput: %s/out\ncalibration:\n  sources:\n    - path: " TEST_DATA
               "/text/calib.jsonl\n  samples: 16\n  seq_len: 128\n",
            test_tmpdir());
    fclose(f);
    char args[1200], *out = NULL;
    snprintf(args, sizeof args, "'%s' --nodes 2 --cpus-per-task 4 --time 01:00:00", job);
    int rc = cli(args, &out);
    CHECK_MSG(rc == 0, "exit %d", rc);
    char *abs = realpath(job, NULL);
    char want[1200];
    snprintf(want, sizeof want, "JOB='%s'", abs ? abs : job);
    CHECK_MSG(out && strstr(out, want) && strstr(out, "GPTQ_EORA='/") && strstr(out, "#SBATCH --nodes=2"),
              "script: %s", out ? out : "");
    free(abs);
    free(out);
    snprintf(args, sizeof args, "'%s' --cpus-per-task 4", job);
    CHECK(cli(args, &out) == 2); /* --nodes is required */
    free(out);
    snprintf(args, sizeof args, "'%s' --nodes 2 --time 1h", job);
    CHECK(cli(args, &out) == 1);
    free(out);
    CHECK(cli("/nonexistent/job.yaml --nodes 2", &out) == 1);
    free(out);
    free(job);
}
