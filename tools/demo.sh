#!/bin/sh
# make demo — quantize the bundled tiny Qwen3.5 three ways with the published recipe
# (configs/tiny-qwen35.yaml: attention INT8, DeltaNet projections and MLP INT4, g128, desc_act,
# sym) and print one evaluation table: base, RTN, GPTQ, GPTQ + EoRA-64 on tests/data/text/eval.jsonl.
#
# The variants are small job files derived from the shipped config and written to demo-out/:
#   rtn.yaml        method: rtn, EoRA off     -> demo-out/rtn
#   gptq.yaml       method: gptq, EoRA off    -> demo-out/gptq
#   gptq-eora.yaml  the config as shipped     -> demo-out/gptq-eora (+ eora/ adapter)
# Environment: GPTQ_EORA (binary, default bin/gptq-eora), DEMO_WINDOWS (eval windows, default
# 64 = the full protocol), DEMO_OUT (default demo-out).
set -eu

BIN=${GPTQ_EORA:-bin/gptq-eora}
JOB=configs/tiny-qwen35.yaml
OUT=${DEMO_OUT:-demo-out}
WINDOWS=${DEMO_WINDOWS:-64}
BASE=tests/data/tiny-qwen35
DATA=tests/data/text/eval.jsonl
# With 2 cores shared by OpenMP and OpenBLAS threads, spinning OpenMP workers steal the cores
# OpenBLAS needs; passive waiting is ~2x faster here.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export OMP_WAIT_POLICY

die() { echo "demo: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (make)"
[ -f "$JOB" ] || die "$JOB missing"
mkdir -p "$OUT"
start=$(date +%s)

# derive NAME SED-SCRIPT: writes $OUT/NAME.yaml with output: $OUT/NAME and the edits applied;
# fails when an edit did not apply (the shipped config changed shape).
derive() {
    name=$1; shift
    sed -e "s#^output:.*#output: $OUT/$name#" "$@" "$JOB" > "$OUT/$name.yaml.tmp"
    grep -q "^output: $OUT/$name\$" "$OUT/$name.yaml.tmp" || die "could not set output: in $OUT/$name.yaml"
    mv "$OUT/$name.yaml.tmp" "$OUT/$name.yaml"
}
derive rtn -e 's/^\(  method:\) gptq/\1 rtn/' -e 's/^\(  rank:\) [0-9][0-9]*/\1 0/'
derive gptq -e 's/^\(  rank:\) [0-9][0-9]*/\1 0/'
derive gptq-eora
grep -q '^  method: rtn' "$OUT/rtn.yaml" || die "could not switch $OUT/rtn.yaml to method: rtn"
grep -q '^  rank: 0' "$OUT/gptq.yaml" || die "could not turn EoRA off in $OUT/gptq.yaml"
grep -q '^  rank: [1-9]' "$OUT/gptq-eora.yaml" || die "$JOB has no EoRA rank"
rank=$(sed -n 's/^  rank: \([0-9]*\).*/\1/p' "$OUT/gptq-eora.yaml")

for v in rtn gptq gptq-eora; do
    t0=$(date +%s)
    rm -rf "$OUT/$v"
    "$BIN" quantize "$OUT/$v.yaml" --quiet || die "quantize $OUT/$v.yaml failed"
    echo "demo: quantized $v in $(( $(date +%s) - t0 ))s" >&2
done

# One eval for the three checkpoints: the base forward pass is shared (4 forward passes instead
# of 6); one JSON line per checkpoint, in command-line order.
t0=$(date +%s)
"$BIN" eval --base "$BASE" --quant "$OUT/rtn" --quant "$OUT/gptq" --quant "$OUT/gptq-eora" \
    --adapter "$OUT/gptq-eora/eora" --data "$DATA" --windows "$WINDOWS" --json --quiet \
    > "$OUT/eval.jsonl.tmp" || die "eval failed"
[ "$(wc -l < "$OUT/eval.jsonl.tmp")" -eq 3 ] || die "eval printed $(wc -l < "$OUT/eval.jsonl.tmp") lines, expected 3"
mv "$OUT/eval.jsonl.tmp" "$OUT/eval.jsonl"
i=1
for v in rtn gptq gptq-eora; do
    sed -n "${i}p" "$OUT/eval.jsonl" > "$OUT/$v.eval.json"
    i=$((i + 1))
done
echo "demo: evaluated the three checkpoints in $(( $(date +%s) - t0 ))s" >&2

# field FILE SECTION KEY (SECTION "-" = top level) — the JSON is one cJSON line without nesting
# inside the sections, so a sed pattern is enough.
field() {
    if [ "$2" = - ]; then
        sed -n "s/.*\"$3\":\([-0-9.eE+]*\).*/\1/p" "$1"
    else
        sed -n "s/.*\"$2\":{[^}]*\"$3\":\([-0-9.eE+]*\).*/\1/p" "$1"
    fi
}

row() { # label file
    awk -v label="$1" -v ppl="$(field "$2" quant ppl)" -v base="$(field "$2" base ppl)" \
        -v kmean="$(field "$2" kld mean)" -v k999="$(field "$2" kld p99_9)" -v top="$(field "$2" - same_top1)" \
        'BEGIN { printf "| %-22s | %8.4f | %+7.2f%% | %9.5f | %9.4f | %9.2f%% |\n", label, ppl, 100 * (ppl / base - 1), kmean, k999, 100 * top }'
}

table=$OUT/table.md
{
    echo "tiny-qwen35 on eval.jsonl, $WINDOWS windows x 512 tokens ($(field "$OUT/gptq.eval.json" - tokens) scored positions); recipe: attention INT8, DeltaNet + MLP INT4, g128, desc_act, sym"
    echo
    echo "| model                  |      PPL |    dPPL  |  KLD mean | KLD p99.9 | same top-1 |"
    echo "|------------------------|---------:|---------:|----------:|----------:|-----------:|"
    awk -v ppl="$(field "$OUT/gptq.eval.json" base ppl)" \
        'BEGIN { printf "| %-22s | %8.4f | %8s | %9s | %9s | %10s |\n", "base (bf16 weights)", ppl, "-", "-", "-", "-" }'
    row "RTN (recipe bits)" "$OUT/rtn.eval.json"
    row "GPTQ (recipe)" "$OUT/gptq.eval.json"
    row "GPTQ + EoRA-$rank" "$OUT/gptq-eora.eval.json"
} > "$table"
cat "$table"
echo "demo: done in $(( $(date +%s) - start ))s; outputs and table in $OUT/" >&2
