#!/bin/sh
# Runs every test binary given on the command line from the repository root (output streamed
# as it comes), sums their counts and ends with one line "N passed, N failed" (", N skipped"
# when slow tests were skipped). Exit status 1 if anything failed or a binary crashed.
# Idle OpenMP (and OpenBLAS) workers otherwise spin and steal the cores the other pool computes on (see
# tools/blas_env.h); numerics do not depend on it.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}; export OMP_WAIT_POLICY
OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}; export OPENBLAS_THREAD_TIMEOUT
summary='^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$'
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
passed=0; failed=0; skipped=0; crashed=0
for t in "$@"; do
    echo "== $t"
    "$t" > "$log" 2>&1 &
    pid=$!
    tail -n +1 -f --pid=$pid "$log" 2>/dev/null | grep --line-buffered -v -E "$summary"
    wait $pid; rc=$?
    line=$(grep -E "$summary" "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $t exited with status $rc before reporting"
        crashed=$((crashed + 1))
        continue
    fi
    p=$(echo "$line" | cut -d' ' -f1); f=$(echo "$line" | cut -d' ' -f3)
    s=$(echo "$line" | sed -n 's/.*, \([0-9]*\) skipped$/\1/p')
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && crashed=$((crashed + 1))
done
failed=$((failed + crashed))
if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"
else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ]
