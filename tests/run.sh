#!/bin/sh
# Runs every test binary given on the command line from the repository root, sums their
# counts and ends with one line "N passed, N failed". Exit status 1 if anything failed.
# Idle OpenMP workers otherwise spin and steal the cores OpenBLAS's threads compute on (see
# tools/blas_env.h); numerics do not depend on it.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}; export OMP_WAIT_POLICY
passed=0; failed=0; crashed=0
for t in "$@"; do
    echo "== $t"
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $t exited with status $rc before reporting"
        crashed=$((crashed + 1))
        continue
    fi
    p=$(echo "$line" | cut -d' ' -f1); f=$(echo "$line" | cut -d' ' -f3)
    passed=$((passed + p)); failed=$((failed + f))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && crashed=$((crashed + 1))
done
failed=$((failed + crashed))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
