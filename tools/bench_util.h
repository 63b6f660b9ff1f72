/* bench_util — shared helpers of the `make bench` programs: wall clock, the machine's
 * measured OpenBLAS sgemm peak (the yardstick every benchmark reports against), thread
 * control, and one result line format. */
#ifndef TOOLS_BENCH_UTIL_H
#define TOOLS_BENCH_UTIL_H

double bench_now(void); /* seconds, monotonic */
/* Best-of-`reps` GFLOP/s of one square n×n×n sgemm (after one warm-up call), `threads` threads
 * (0 = all). Not cached. */
double bench_sgemm_gflops(int threads, int n, int reps);
/* The common yardstick: bench_sgemm_gflops(threads, 2048, 3), cached per thread count. */
double bench_sgemm_peak(int threads);
/* Set OpenBLAS and OpenMP thread counts (0 = all cores). Returns the count in effect. */
int bench_set_threads(int threads);
/* "bench <name>: <seconds> s, <gflops> GFLOP/s, <pct>% of sgemm peak (<threads> threads) <extra>" */
void bench_report(const char *name, double seconds, double flops, int threads, const char *extra);

#endif
