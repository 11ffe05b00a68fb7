#!/usr/bin/env bash
# Side-by-side speed of meltbench-engine and llama.cpp's llama-bench on the same GGUF files,
# same thread counts, same machine: runs alternate (ours, theirs, ours, ...) so drift in clock
# speed or background load hits both alike. The table reports each side's median and the
# median of the rounds' ratios, with the lowest and highest round beside it.
#
#   engine/scripts/compare-llama-cpp.sh LLAMA_BENCH MODEL.gguf [MODEL.gguf ...]
#
# LLAMA_BENCH is the path of a llama-bench binary you built; this script never builds llama.cpp.
# Environment: ROUNDS (default 4), THREADS (default "1 2"), TESTS (default "tg128 pp64 pp256"),
# ENGINE (default target/release/meltbench-engine), LLAMA_ARGS (extra llama-bench flags, e.g.
# "--repack 0" on a machine whose CPU advertises AMX that the hypervisor does not allow), DEPTH
# (default 0: tokens already in the KV cache before each test, llama-bench's -d; our engine's
# bench --depth), MELTBENCH_KERNELS (our kernel table, e.g. avx2 against an AVX2-only build).
# ALSO_BENCH: a second llama-bench (e.g. ik_llama.cpp's) run in the same rounds, right after
# llama.cpp, for two more columns; ALSO_ARGS its extra flags (e.g. "-rtr 1"), ALSO_NAME its
# column's name (default ik_llama.cpp).
#
# On a board over ssh: SSH=user@host runs both benchmarks there (SSH_ARGS: extra ssh flags,
# e.g. "-p 2222 -i key"). LLAMA_BENCH, the models and ENGINE are then paths on the board; only
# ssh runs here, the board needs nothing but a shell. REMOTE_ENV sets variables for both
# commands there (e.g. "LD_LIBRARY_PATH=/home/pi/llama/bin"). Copy the engine from
# `meltbench bundle --target aarch64-unknown-linux-musl` (or cargo build --release --target ...).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
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
ALSO_BENCH=${ALSO_BENCH:-}
ALSO_ARGS=${ALSO_ARGS:-}
ALSO_NAME=${ALSO_NAME:-ik_llama.cpp}
SSH=${SSH:-}
SSH_ARGS=${SSH_ARGS:-}
REMOTE_ENV=${REMOTE_ENV:-}

# Runs a command here, or on the board when SSH is set (words quoted for the remote shell;
# MELTBENCH_KERNELS travels with it, since ssh does not pass the environment).
on_device() {
    if [[ -z $SSH ]]; then
        "$@"
        return
    fi
    local cmd=(env)
    # shellcheck disable=SC2206
    [[ -n $REMOTE_ENV ]] && cmd+=($REMOTE_ENV)
    [[ -n ${MELTBENCH_KERNELS:-} ]] && cmd+=("MELTBENCH_KERNELS=$MELTBENCH_KERNELS")
    # shellcheck disable=SC2086
    ssh -o BatchMode=yes $SSH_ARGS "$SSH" "$(printf '%q ' "${cmd[@]}" "$@")"
}

where=${SSH:+" on $SSH"}
if [[ -n $SSH ]] && ! on_device true; then
    echo "error: cannot run a command on $SSH over ssh (SSH_ARGS: '$SSH_ARGS'); check that 'ssh $SSH_ARGS $SSH true' works without a password prompt" >&2
    exit 2
fi
on_device test -x "$ENGINE" || {
    if [[ -n $SSH ]]; then
        echo "error: $ENGINE is not an executable$where; copy the engine there (meltbench bundle --target aarch64-unknown-linux-musl) and set ENGINE to its path" >&2
    else
        echo "error: $ENGINE not found; run: cargo build --release -p meltbench-engine" >&2
    fi
    exit 2
}
benches=("$LLAMA_BENCH")
[[ -n $ALSO_BENCH ]] && benches+=("$ALSO_BENCH")
for bench in "${benches[@]}"; do
    on_device test -x "$bench" || { echo "error: $bench is not an executable llama-bench$where" >&2; exit 2; }
done
for model in "$@"; do
    on_device test -r "$model" || { echo "error: $model is not a readable file$where" >&2; exit 2; }
done

samples=$(mktemp)
trap 'rm -f "$samples"' EXIT

# One measurement of ours in tokens/s. tgN: N single-token decode steps after a 1-token prompt
# (llama-bench's tgN decodes N tokens from an empty context); ppN: a prompt of N tokens.
ours() { # model test threads
    local model=$1 test=$2 t=$3 n=${2:2}
    if [[ $test == tg* ]]; then
        on_device "$ENGINE" bench "$model" --prompt-tokens 1 -n $((n + 1)) --passes 1 --warmup 1 -t "$t" --depth "$DEPTH" |
            python3 -c 'import json,sys
r=[json.loads(l) for l in sys.stdin if "\"pass\"" in l][-1]
print(len(r["decode_ns"])/ (sum(r["decode_ns"])/1e9))'
    else
        on_device "$ENGINE" bench "$model" --prompt-tokens "$n" -n 1 --passes 1 --warmup 1 -t "$t" --depth "$DEPTH" |
            python3 -c 'import json,sys
r=[json.loads(l) for l in sys.stdin if "\"pass\"" in l][-1]
print(r["prompt_tokens"]/(r["prefill_ns"]/1e9))'
    fi
}

theirs() { # bench extra-args model test threads
    local bench=$1 extra=$2
    shift 2
    local model=$1 test=$2 t=$3 n=${2:2} args
    if [[ $test == tg* ]]; then args=(-p 0 -n "$n"); else args=(-p "$n" -n 0); fi
    # -d only when asked: older llama-bench builds and ik_llama.cpp's do not know it.
    if [[ $DEPTH != 0 ]]; then args+=(-d "$DEPTH"); fi
    # shellcheck disable=SC2086
    on_device "$bench" -m "$model" "${args[@]}" -t "$t" -r 1 -o json $extra 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])'
}

# One sample; an engine that printed no number stops the run with what to try.
record() { # model test threads who value
    if [[ -z $5 ]]; then
        local name
        case $4 in ours) name=$ENGINE ;; llama) name=$LLAMA_BENCH ;; *) name=$ALSO_BENCH ;; esac
        echo "error: $name gave no result for $(basename "$1") $2 at $3 threads; run it by hand to see why" >&2
        exit 1
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$(basename "$1")" "$2" "$3" "$4" "$5" >>"$samples"
}

for model in "$@"; do
    for t in $THREADS; do
        for test in $TESTS; do
            for ((r = 0; r < ROUNDS; r++)); do
                record "$model" "$test" "$t" ours "$(ours "$model" "$test" "$t")"
                record "$model" "$test" "$t" llama "$(theirs "$LLAMA_BENCH" "$LLAMA_ARGS" "$model" "$test" "$t")"
                if [[ -n $ALSO_BENCH ]]; then
                    record "$model" "$test" "$t" also "$(theirs "$ALSO_BENCH" "$ALSO_ARGS" "$model" "$test" "$t")"
                fi
            done
            echo "done: $(basename "$model") $test t=$t" >&2
        done
    done
done

python3 - "$samples" "$ROUNDS" "$DEPTH" "$SSH" "$ALSO_NAME" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    model, test, t, who, v = line.rstrip("\n").split("\t")
    rows[(model, test, int(t))][who].append(float(v))
depth = f", {sys.argv[3]} tokens in the KV cache first" if sys.argv[3] != "0" else ""
on = f" on {sys.argv[4]}" if sys.argv[4] else ""
print(f"Medians of {sys.argv[2]} alternating runs each{depth}{on}, tokens/s. Ratio: the median of")
print("the rounds' ratios (each round runs ours, then the others, back to back, so a slow spell of")
print("the machine hits both sides of a ratio); range: the lowest and highest of them.\n")
also = sys.argv[5] if any("also" in d for d in rows.values()) else None
head = "| model | test | threads | meltbench-engine | llama.cpp | ratio | range |"
rule = "|---|---|---:|---:|---:|---:|---:|"
if also:
    head += f" {also} | ratio | range |"
    rule += "---:|---:|---:|"
print(head)
print(rule)

def paired(ours, theirs):
    """The median and range of the rounds' ratios, as table cells."""
    ratios = [x / y for x, y in zip(ours, theirs)]
    return f"{statistics.median(theirs):.1f} | {statistics.median(ratios):.2f}x | {min(ratios):.2f}-{max(ratios):.2f} |"

for (model, test, t), d in rows.items():
    line = f"| {model} | {test} | {t} | {statistics.median(d['ours']):.1f} | " + paired(d["ours"], d["llama"])
    if also:
        line += " " + paired(d["ours"], d["also"])
    print(line)
PY
