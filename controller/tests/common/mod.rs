//! What the controller's integration tests share: the workspace binaries, an isolated cache,
//! running a suite, and finding the real model.
#![allow(dead_code)]

pub mod farm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace's binaries (`cargo test` builds them all in the same target directory); built
/// here once if missing, so `cargo test -p meltbench` alone also works.
pub fn bin_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_meltbench"))
        .parent()
        .unwrap()
        .to_path_buf();
    if !dir.join("meltbench-agent").is_file() || !dir.join("meltbench-engine").is_file() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "meltbench-agent", "-p", "meltbench-engine"])
            .status()
            .unwrap();
        assert!(st.success(), "building the agent and engine");
    }
    dir
}

/// `meltbench` with its agent and engine from this build and its cache under `cache`.
pub fn meltbench(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meltbench"));
    c.env("MELTBENCH_BIN_DIR", bin_dir())
        .env("XDG_CACHE_HOME", cache);
    c
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `suite_text` (written to `dir/<name>.yaml`) with runs under `dir/runs-<name>`, and
/// returns the run directory.
pub fn run_suite(cache: &Path, dir: &Path, name: &str, suite_text: &str) -> PathBuf {
    let suite = dir.join(format!("{name}.yaml"));
    std::fs::write(&suite, suite_text).unwrap();
    let out = dir.join(format!("runs-{name}"));
    let o = meltbench(cache)
        .arg("run")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "meltbench run {name}: {}", text(&o));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one run directory in {}", out.display());
    dirs.pop().unwrap()
}

/// SmolLM2-135M-Instruct Q4_1, as `meltbench models pull smollm2-135m` caches it (ci/test.sh
/// pulls it first), or `MELTBENCH_SMOLLM2`. Missing: a loud skip locally, a failure in CI.
pub fn smollm2() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MELTBENCH_SMOLLM2") {
        return Some(PathBuf::from(p));
    }
    let sha = meltbench::models::REGISTRY[0].sha256;
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let p = cache.join("meltbench/models").join(format!("{sha}.gguf"));
    if p.exists() {
        return Some(p);
    }
    let msg = format!(
        "the SmolLM2 model is not at {}; run `meltbench models pull smollm2-135m` (ci/test.sh \
         does) or set MELTBENCH_SMOLLM2",
        p.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED (model missing): {msg}");
    None
}

/// The bin directory of a llama.cpp build with `llama-server`, from `MELTBENCH_LLAMA_CPP_DIR`.
/// Unset: a loud skip, in CI too — the pip package CI installs (`llama-cpp-python[server]`)
/// builds llama.cpp's libraries but no `llama-server`, and the project ships no script that
/// builds llama.cpp; CI tests the adapter's parsers on outputs captured from a real
/// llama-server (`agent/tests/fixtures/llama-server/`) instead.
pub fn llama_cpp_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("MELTBENCH_LLAMA_CPP_DIR") {
        Some(d) if PathBuf::from(&d).join("llama-server").is_file() => Some(PathBuf::from(d)),
        Some(d) => panic!(
            "{test}: MELTBENCH_LLAMA_CPP_DIR={} has no llama-server",
            PathBuf::from(d).display()
        ),
        None => {
            eprintln!(
                "SKIPPED (no llama.cpp build): {test}: set MELTBENCH_LLAMA_CPP_DIR to the bin \
                 directory of a llama.cpp build with llama-server"
            );
            None
        }
    }
}
