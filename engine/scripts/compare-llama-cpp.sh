#!/usr/bin/env bash
# Side-by-side speed of meltbench-engine and llama.cpp's llama-bench on the same GGUF files,
# same thread counts, same machine: runs alternate (ours, theirs, ours, ...) so drift in clock
# speed or background load hits both alike, and the table reports medians.
#
#   engine/scripts/compare-llama-cpp.sh LLAMA_BENCH MODEL.gguf [MODEL.gguf ...]
#
# LLAMA_BENCH is the path of a llama-bench binary you built; this script never builds llama.cpp.
# Environment: ROUNDS (default 4), THREADS (default "1 2"), TESTS (default "tg128 pp64 pp256"),
# ENGINE (default target/release/meltbench-engine), LLAMA_ARGS (extra llama-bench flags, e.g.
# "--repack 0" on a machine whose CPU advertises AMX that the hypervisor does not allow), DEPTH
# (default 0: tokens already in the KV cache before each test, llama-bench's -d; our engine's
# bench --depth), MELTBENCH_KERNELS (our kernel table, e.g. avx2 against an AVX2-only build).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
LLAMA_BENCH=$1
shift
ROUNDS=${ROUNDS:-4}
THREADS=${THREADS:-"1 2"}
TESTS=${TESTS:-"tg128 pp64 pp256"}
ENGINE=${ENGINE:-target/release/meltbench-engine}
LLAMA_ARGS=${LLAMA_ARGS:-}
DEPTH=${DEPTH:-0}
[[ -x $ENGINE ]] || { echo "error: $ENGINE not found; run: cargo build --release -p meltbench-engine" >&2; exit 2; }
[[ -x $LLAMA_BENCH ]] || { echo "error: $LLAMA_BENCH is not an executable llama-bench" >&2; exit 2; }

samples=$(mktemp)
trap 'rm -f "$samples"' EXIT

# One measurement of ours in tokens/s. tgN: N single-token decode steps after a 1-token prompt
# (llama-bench's tgN decodes N tokens from an empty context); ppN: a prompt of N tokens.
ours() { # model test threads
    local model=$1 test=$2 t=$3 n=${2:2}
    if [[ $test == tg* ]]; then
        "$ENGINE" bench "$model" --prompt-tokens 1 -n $((n + 1)) --passes 1 --warmup 1 -t "$t" --depth "$DEPTH" |
            python3 -c 'import json,sys
r=[json.loads(l) for l in sys.stdin if "\"pass\"" in l][-1]
print(len(r["decode_ns"])/ (sum(r["decode_ns"])/1e9))'
    else
        "$ENGINE" bench "$model" --prompt-tokens "$n" -n 1 --passes 1 --warmup 1 -t "$t" --depth "$DEPTH" |
            python3 -c 'import json,sys
r=[json.loads(l) for l in sys.stdin if "\"pass\"" in l][-1]
print(r["prompt_tokens"]/(r["prefill_ns"]/1e9))'
    fi
}

theirs() { # model test threads
    local model=$1 test=$2 t=$3 n=${2:2} args
    if [[ $test == tg* ]]; then args=(-p 0 -n "$n"); else args=(-p "$n" -n 0); fi
    # -d only when asked: older llama-bench builds and ik_llama.cpp's do not know it.
    if [[ $DEPTH != 0 ]]; then args+=(-d "$DEPTH"); fi
    # shellcheck disable=SC2086
    "$LLAMA_BENCH" -m "$model" "${args[@]}" -t "$t" -r 1 -o json $LLAMA_ARGS 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])'
}

for model in "$@"; do
    for t in $THREADS; do
        for test in $TESTS; do
            for ((r = 0; r < ROUNDS; r++)); do
                printf '%s\t%s\t%s\tours\t%s\n' "$(basename "$model")" "$test" "$t" "$(ours "$model" "$test" "$t")" >>"$samples"
                printf '%s\t%s\t%s\tllama\t%s\n' "$(basename "$model")" "$test" "$t" "$(theirs "$model" "$test" "$t")" >>"$samples"
            done
            echo "done: $(basename "$model") $test t=$t" >&2
        done
    done
done

python3 - "$samples" "$ROUNDS" "$DEPTH" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    model, test, t, who, v = line.rstrip("\n").split("\t")
    rows[(model, test, int(t))][who].append(float(v))
depth = f", {sys.argv[3]} tokens in the KV cache first" if sys.argv[3] != "0" else ""
print(f"Medians of {sys.argv[2]} alternating runs each{depth}, tokens/s.\n")
print("| model | test | threads | meltbench-engine | llama.cpp | ratio |")
print("|---|---|---:|---:|---:|---:|")
for (model, test, t), d in rows.items():
    a, b = statistics.median(d["ours"]), statistics.median(d["llama"])
    print(f"| {model} | {test} | {t} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
PY
