/* blas_env — run OpenBLAS and OpenMP the way this kind of machine needs.
 *
 * Three settings are read only when the libraries load, from the environment, so the fix is
 * to re-execute the program once with them set (never when the user set them):
 * - OPENBLAS_CORETYPE: the distribution's OpenBLAS (DYNAMIC_ARCH) does not recognise some
 *   recent Xeons and falls back to its "Prescott" (SSE3) kernels — sgemm ~5x slower
 *   (measured here: 31 vs 155 GFLOP/s on 2 cores). Set to SkylakeX when the CPU has AVX-512
 *   F/VL/BW/DQ, Haswell with AVX2+FMA, only when detection fell back to Prescott.
 * - OMP_WAIT_POLICY=PASSIVE: OpenMP worker threads otherwise spin between parallel regions
 *   and steal the cores OpenBLAS's own threads (the pthread build) compute on; measured on
 *   the tiny job: 40.8 s → 15.5 s wall. Numerics do not depend on it.
 * - OPENBLAS_THREAD_TIMEOUT=4: OpenBLAS's idle threads otherwise keep polling (sched_yield)
 *   for 2^28 cycles (~0.1 s) after each BLAS call, taking the cores from the OpenMP loops that
 *   follow. Measured on 16 cores, T 4096, 9B layer: attention core 176 → 130 ms, delta rule
 *   95 → 40 ms, conv 32 → 9 ms; GPTQ 4096×12288 5.47 → 4.15 s (its block loop 1.92 → 0.89 s). */
#ifndef TOOLS_BLAS_ENV_H
#define TOOLS_BLAS_ENV_H

/* argv: the full command line (argv[0] = program). Returns only when no re-exec was needed
 * or it failed (then the run goes on as it is). */
void blas_env_reexec(char **argv);

#endif
