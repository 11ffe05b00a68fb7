#!/usr/bin/env bash
# Cold start and peak memory of meltbench-engine and llama.cpp on the same GGUF files: each run
# is a fresh process that loads the model, reads a one-word prompt and produces one token, so
# its wall time is process start to first token. The page cache is warm (a first, discarded
# run of each reads the file). Runs alternate and the table reports medians.
#
# Both sides allocate the same KV cache (CTX positions) and neither warms up: llama-completion's
# defaults (a 4k-8k context and a warm-up decode) would be measured against a few positions
# of ours otherwise, and the difference would be the settings, not the engines.
#
#   engine/scripts/compare-cold-start.sh LLAMA_COMPLETION MODEL.gguf [MODEL.gguf ...]
#
# LLAMA_COMPLETION is the path of a llama-completion binary you built; this script never builds
# llama.cpp. Environment: ROUNDS (default 7), THREADS (default 2), CTX (default 256), ENGINE
# (default target/release/meltbench-engine), LLAMA_ARGS (extra flags, e.g. "--no-repack").
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
LLAMA=$1
shift
ROUNDS=${ROUNDS:-7}
THREADS=${THREADS:-2}
CTX=${CTX:-256}
ENGINE=${ENGINE:-target/release/meltbench-engine}
LLAMA_ARGS=${LLAMA_ARGS:-}
[[ -x $ENGINE ]] || { echo "error: $ENGINE not found; run: cargo build --release -p meltbench-engine" >&2; exit 2; }
[[ -x $LLAMA ]] || { echo "error: $LLAMA is not an executable llama-completion" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time is needed for peak RSS (Debian package time)" >&2; exit 2; }

samples=$(mktemp)
timing=$(mktemp)
trap 'rm -f "$samples" "$timing"' EXIT

# Prints "<wall ms> <peak RSS KiB>" for one run of the given command.
measure() {
    /usr/bin/time -o "$timing" -f '%e %M' "$@" >/dev/null 2>&1 ||
        { echo "error: $* failed" >&2; exit 1; }
    awk '{printf "%.1f %d\n", $1 * 1000, $2}' "$timing"
}

ours() { measure "$ENGINE" generate "$1" -p Hello -n 1 -t "$THREADS" --ctx "$CTX"; }
# shellcheck disable=SC2086
theirs() { measure "$LLAMA" -m "$1" -p Hello -n 1 -t "$THREADS" -c "$CTX" --no-warmup -no-cnv $LLAMA_ARGS; }

for model in "$@"; do
    ours "$model" >/dev/null
    theirs "$model" >/dev/null
    for ((r = 0; r < ROUNDS; r++)); do
        printf '%s\tours\t%s\n' "$(basename "$model")" "$(ours "$model")" >>"$samples"
        printf '%s\tllama\t%s\n' "$(basename "$model")" "$(theirs "$model")" >>"$samples"
    done
    echo "done: $(basename "$model")" >&2
done

python3 - "$samples" "$ROUNDS" "$THREADS" "$CTX" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    model, who, vals = line.rstrip("\n").split("\t")
    ms, kib = vals.split()
    rows[model][who].append((float(ms), int(kib)))
print(f"Medians of {sys.argv[2]} alternating runs each, {sys.argv[3]} threads, "
      f"{sys.argv[4]} positions of KV cache, no warm-up, page cache warm.\n")
print("| model | cold start ours | llama.cpp | peak RSS ours | llama.cpp |")
print("|---|---:|---:|---:|---:|")
for model, d in rows.items():
    med = lambda who, i: statistics.median(v[i] for v in d[who])
    print(f"| {model} | {med('ours', 0):.0f} ms | {med('llama', 0):.0f} ms "
          f"| {med('ours', 1) / 1024:.1f} MiB | {med('llama', 1) / 1024:.1f} MiB |")
PY
