//! Bundles: the agent and engine cross-built for one target triple, with a manifest of their
//! SHA-256s. `meltbench bundle` builds them; a run picks the one matching the device's ABI.
//!
//! Layout: `<bundles>/<triple>/{meltbench-agent, meltbench-engine, manifest.json}`, where
//! `<bundles>` is `target/bundles` next to the controller's own build (or `MELTBENCH_BUNDLE_DIR`).
//! musl targets are linked statically with rust-lld (see `.cargo/config.toml`), so one file runs
//! on any Android phone or Linux board of that architecture, whatever its libc.

use crate::sha;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The two programs every device runs.
pub const PROGRAMS: [&str; 2] = ["meltbench-agent", "meltbench-engine"];

/// Targets `meltbench bundle` builds when none is named: Android phones and 64-bit ARM boards,
/// and x86_64 Linux machines.
pub const DEFAULT_TARGETS: [&str; 2] = ["aarch64-unknown-linux-musl", "x86_64-unknown-linux-musl"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// `manifest.json` of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub target: String,
    pub meltbench_version: String,
    pub meltbench_commit: String,
    /// The agent protocol its agent speaks; empty in bundles from before it was recorded.
    #[serde(default)]
    pub protocol_version: String,
    pub built_utc: String,
    pub files: Vec<BundleFile>,
}

/// A bundle found on disk, its files checked against the manifest.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Bundle {
    pub fn path(&self, program: &str) -> PathBuf {
        self.dir.join(program)
    }

    pub fn file(&self, program: &str) -> Option<&BundleFile> {
        self.manifest.files.iter().find(|f| f.name == program)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("no bundle for {target} in {dir}; build it with `meltbench bundle --target {target}`")]
    Missing { target: String, dir: String },
    #[error("the bundle in {dir} is damaged or stale ({reason}); rebuild it with `meltbench bundle --target {target}`")]
    Damaged {
        target: String,
        dir: String,
        reason: String,
    },
    #[error(
        "the bundle in {dir} was {builds}: its agent and engine are not the ones this \
         controller would measure with; rebuild it with `meltbench bundle --target {target}`"
    )]
    Stale {
        target: String,
        dir: String,
        /// "built by meltbench <commit and protocol> and this meltbench is <its own>".
        builds: String,
    },
    #[error("{0}")]
    Build(String),
}

/// Where bundles live: `MELTBENCH_BUNDLE_DIR`, else `target/bundles` beside the build the
/// controller runs from (`target/release/meltbench` -> `target/bundles`).
pub fn bundles_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MELTBENCH_BUNDLE_DIR") {
        return PathBuf::from(d);
    }
    let bin = crate::bins::bin_dir().unwrap_or_default();
    bin.parent().unwrap_or(&bin).join("bundles")
}

/// The bundle for `target`, with every file's size and SHA-256 checked against its manifest,
/// so a half-copied or rebuilt-but-not-rebundled binary never reaches a device.
pub fn find(dir: &Path, target: &str) -> Result<Bundle, BundleError> {
    let bdir = dir.join(target);
    let missing = || BundleError::Missing {
        target: target.into(),
        dir: dir.display().to_string(),
    };
    let damaged = |reason: String| BundleError::Damaged {
        target: target.into(),
        dir: bdir.display().to_string(),
        reason,
    };
    let text = std::fs::read(bdir.join("manifest.json")).map_err(|_| missing())?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| damaged(format!("manifest.json does not parse: {e}")))?;
    for program in PROGRAMS {
        let f = manifest
            .files
            .iter()
            .find(|f| f.name == program)
            .ok_or_else(|| damaged(format!("the manifest lists no {program}")))?;
        let (sum, bytes) =
            sha::hash_file(&bdir.join(program)).map_err(|e| damaged(format!("{program}: {e}")))?;
        if sum != f.sha256 || bytes != f.bytes {
            return Err(damaged(format!(
                "{program} has SHA-256 {sum}, the manifest says {}",
                f.sha256
            )));
        }
    }
    let own = Build::this();
    let built_by = Build {
        commit: &manifest.meltbench_commit,
        protocol: &manifest.protocol_version,
    };
    if built_by != own {
        return Err(BundleError::Stale {
            target: target.into(),
            dir: bdir.display().to_string(),
            builds: format!("built by meltbench {built_by} and this meltbench is {own}"),
        });
    }
    Ok(Bundle {
        dir: bdir,
        manifest,
    })
}

/// What a bundle must have been built by: this controller's commit, speaking its protocol. A
/// `-dirty` commit on both sides matches, since the uncommitted changes are not recorded.
#[derive(PartialEq, Eq)]
struct Build<'a> {
    commit: &'a str,
    protocol: &'a str,
}

impl Build<'static> {
    fn this() -> Self {
        Build {
            commit: env!("MELTBENCH_GIT_COMMIT"),
            protocol: meltbench_protocol::PROTOCOL_VERSION,
        }
    }
}

impl std::fmt::Display for Build<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = if self.protocol.is_empty() {
            "not recorded"
        } else {
            self.protocol
        };
        write!(f, "{} (agent protocol {protocol})", self.commit)
    }
}

/// The bundle target for a Linux machine, from `uname -m`.
pub fn target_for_uname(machine: &str) -> Result<&'static str, String> {
    match machine.trim() {
        "aarch64" | "arm64" | "armv8l" => Ok("aarch64-unknown-linux-musl"),
        "x86_64" | "amd64" => Ok("x86_64-unknown-linux-musl"),
        "armv7l" | "armv7" | "armv6l" => Err(format!(
            "32-bit ARM ({}) is not supported yet: Rust has no prebuilt armv7 musl target here; \
             run the device's 64-bit OS if it has one",
            machine.trim()
        )),
        other => Err(format!(
            "no bundle target for machine type '{other}' (supported: aarch64, x86_64)"
        )),
    }
}

/// The bundle target for an Android device, from `getprop ro.product.cpu.abi`.
pub fn target_for_android_abi(abi: &str) -> Result<&'static str, String> {
    match abi.trim() {
        "arm64-v8a" => Ok("aarch64-unknown-linux-musl"),
        "x86_64" => Ok("x86_64-unknown-linux-musl"),
        other => Err(format!(
            "no bundle target for Android ABI '{other}' (supported: arm64-v8a, x86_64)"
        )),
    }
}

/// The workspace the controller was built from: `meltbench bundle` builds there.
fn workspace() -> Result<PathBuf, BundleError> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for candidate in [built_from, std::env::current_dir().unwrap_or_default()] {
        if candidate.join("agent/Cargo.toml").is_file()
            && candidate.join("engine/Cargo.toml").is_file()
        {
            return Ok(candidate);
        }
    }
    Err(BundleError::Build(
        "cannot find the meltbench source tree (agent/ and engine/); run `meltbench bundle` from \
         the checkout the controller was built from"
            .into(),
    ))
}

/// A gnu target links against the device's glibc through a cross gcc; musl targets need none.
fn gnu_linker(target: &str) -> Result<Option<String>, BundleError> {
    if !target.ends_with("-gnu") && !target.ends_with("-gnueabihf") {
        return Ok(None);
    }
    let arch = target.split('-').next().unwrap_or_default();
    let gcc = match arch {
        "aarch64" => "aarch64-linux-gnu-gcc",
        "armv7" => "arm-linux-gnueabihf-gcc",
        "x86_64" => "x86_64-linux-gnu-gcc",
        _ => {
            return Err(BundleError::Build(format!(
                "no known cross compiler for {target}"
            )))
        }
    };
    let found = Command::new(gcc).arg("--version").output().is_ok();
    if !found {
        return Err(BundleError::Build(format!(
            "{target} needs the cross compiler {gcc}: install it (Debian: `apt-get install gcc-{}`), \
             or use the static {arch}-unknown-linux-musl bundle, which needs none",
            gcc.trim_end_matches("-gcc")
        )));
    }
    Ok(Some(gcc.to_string()))
}

/// Whether rustup has the target's standard library (when rustup is what provides Rust).
fn check_rust_target(target: &str) -> Result<(), BundleError> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // not a rustup toolchain: cargo will say what is missing
    };
    let installed = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && !installed.lines().any(|l| l.trim() == target) {
        return Err(BundleError::Build(format!(
            "the Rust standard library for {target} is not installed; run `rustup target add {target}`"
        )));
    }
    Ok(())
}

/// Cross-builds agent and engine for `target` and writes the bundle into `out/<target>`.
/// cargo's own output goes to the terminal, so a long build shows its progress.
pub fn build(target: &str, out: &Path) -> Result<Manifest, BundleError> {
    let ws = workspace()?;
    check_rust_target(target)?;
    let linker = gnu_linker(target)?;
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&ws).args([
        "build",
        "--release",
        "--target",
        target,
        "-p",
        "meltbench-agent",
        "-p",
        "meltbench-engine",
    ]);
    if let Some(gcc) = &linker {
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            target.to_uppercase().replace('-', "_")
        );
        // Static glibc too, so the bundle does not depend on the board's glibc version.
        cmd.env(var, gcc)
            .env("RUSTFLAGS", "-C target-feature=+crt-static");
    }
    eprintln!("building the {target} bundle in {}", ws.display());
    let status = cmd
        .status()
        .map_err(|e| BundleError::Build(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(BundleError::Build(format!(
            "cargo build for {target} failed ({status}); see its output above"
        )));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let built = target_dir.join(target).join("release");
    let dest = out.join(target);
    std::fs::create_dir_all(&dest)
        .map_err(|e| BundleError::Build(format!("creating {}: {e}", dest.display())))?;
    let mut files = Vec::new();
    for program in PROGRAMS {
        let src = built.join(program);
        let dst = dest.join(program);
        // Copy to a temporary name and rename, so a device never sees half a binary.
        let tmp = dest.join(format!(".{program}.tmp"));
        std::fs::copy(&src, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &dst))
            .map_err(|e| BundleError::Build(format!("copying {}: {e}", src.display())))?;
        let (sha256, bytes) = sha::hash_file(&dst)
            .map_err(|e| BundleError::Build(format!("{}: {e}", dst.display())))?;
        files.push(BundleFile {
            name: program.to_string(),
            sha256,
            bytes,
        });
    }
    let manifest = Manifest {
        target: target.to_string(),
        meltbench_version: env!("CARGO_PKG_VERSION").to_string(),
        meltbench_commit: env!("MELTBENCH_GIT_COMMIT").to_string(),
        protocol_version: meltbench_protocol::PROTOCOL_VERSION.to_string(),
        built_utc: jiff::Timestamp::now().to_string(),
        files,
    };
    std::fs::write(
        dest.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).expect("serialisable"),
    )
    .map_err(|e| BundleError::Build(format!("writing the manifest: {e}")))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abis_map_to_targets() {
        assert_eq!(
            target_for_uname("aarch64\n").unwrap(),
            "aarch64-unknown-linux-musl"
        );
        assert_eq!(
            target_for_uname("x86_64").unwrap(),
            "x86_64-unknown-linux-musl"
        );
        assert!(target_for_uname("armv7l")
            .unwrap_err()
            .contains("32-bit ARM"));
        assert!(target_for_uname("riscv64").unwrap_err().contains("riscv64"));
        assert_eq!(
            target_for_android_abi("arm64-v8a").unwrap(),
            "aarch64-unknown-linux-musl"
        );
        assert!(target_for_android_abi("armeabi-v7a").is_err());
    }

    #[test]
    fn a_missing_or_tampered_bundle_names_the_command_that_fixes_it() {
        let dir = tempfile::tempdir().unwrap();
        let t = "aarch64-unknown-linux-musl";
        let e = find(dir.path(), t).unwrap_err().to_string();
        assert!(
            e.contains("meltbench bundle --target aarch64-unknown-linux-musl"),
            "{e}"
        );

        let b = dir.path().join(t);
        std::fs::create_dir_all(&b).unwrap();
        let mut files = Vec::new();
        for p in PROGRAMS {
            std::fs::write(b.join(p), p.as_bytes()).unwrap();
            let (sha256, bytes) = sha::hash_file(&b.join(p)).unwrap();
            files.push(BundleFile {
                name: p.into(),
                sha256,
                bytes,
            });
        }
        let mut m = Manifest {
            target: t.into(),
            meltbench_version: "0".into(),
            meltbench_commit: env!("MELTBENCH_GIT_COMMIT").into(),
            protocol_version: meltbench_protocol::PROTOCOL_VERSION.into(),
            built_utc: "now".into(),
            files,
        };
        std::fs::write(b.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        let found = find(dir.path(), t).unwrap();
        assert_eq!(found.manifest, m);

        // Built by another commit, or before the protocol changed: refused with the command.
        let ours = env!("MELTBENCH_GIT_COMMIT");
        for (commit, protocol, says) in [
            (
                "0123abc",
                meltbench_protocol::PROTOCOL_VERSION,
                "0123abc (agent protocol",
            ),
            (ours, "0.9", "(agent protocol 0.9)"),
            (ours, "", "(agent protocol not recorded)"),
        ] {
            m.meltbench_commit = commit.into();
            m.protocol_version = protocol.into();
            std::fs::write(b.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
            let e = find(dir.path(), t).unwrap_err().to_string();
            assert!(
                e.contains(says)
                    && e.contains(&format!("this meltbench is {ours} (agent protocol "))
                    && e.contains(
                        "rebuild it with `meltbench bundle --target aarch64-unknown-linux-musl`"
                    ),
                "{e}"
            );
        }
        m.meltbench_commit = ours.into();
        m.protocol_version = meltbench_protocol::PROTOCOL_VERSION.into();
        std::fs::write(b.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        std::fs::write(b.join("meltbench-engine"), b"rebuilt").unwrap();
        let e = find(dir.path(), t).unwrap_err().to_string();
        assert!(
            e.contains("damaged or stale") && e.contains("meltbench-engine"),
            "{e}"
        );
    }
}
