/* blas_env — re-exec once with OPENBLAS_CORETYPE / OMP_WAIT_POLICY (see the header). */
#include "tools/blas_env.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The kernel set to ask for when OpenBLAS's detection fell back to Prescott, or NULL. */
static const char *better_core(void)
{
    if (getenv("OPENBLAS_CORETYPE")) return NULL;
    const char *core = openblas_get_corename();
    if (!core || strcasecmp(core, "Prescott") != 0) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

void blas_env_reexec(char **argv)
{
    if (getenv("GPTQ_EORA_REEXECED")) return; /* once */
    const char *core = better_core();
    int wait = !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT");
    int timeout = !getenv("OPENBLAS_THREAD_TIMEOUT");
    if (!core && !wait && !timeout) return;
    setenv("GPTQ_EORA_REEXECED", "1", 1);
    if (core) setenv("OPENBLAS_CORETYPE", core, 1);
    if (wait) setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    if (timeout) setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1); /* 2^4 cycles: the minimum */
    execv("/proc/self/exe", argv);
    /* exec failed: carry on as we are */
    if (core) unsetenv("OPENBLAS_CORETYPE");
    if (wait) unsetenv("OMP_WAIT_POLICY");
    if (timeout) unsetenv("OPENBLAS_THREAD_TIMEOUT");
}
