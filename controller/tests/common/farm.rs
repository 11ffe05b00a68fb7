//! The device farm the farm and fault tests share: prerequisites (a failure under CI=true, a
//! loud skip elsewhere), a scratch directory with its own cache, `meltbench run` on an
//! inventory, and inventory entries for the test bed's sshd and ADB device simulator.

use super::meltbench;
use meltbench_testbed::adb_device::{AdbDevice, AdbServer};
use meltbench_testbed::sshd::Sshd;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A missing prerequisite: a failure in CI, a loud skip elsewhere.
pub fn skip(why: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    true
}

pub fn bundles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bundles")
}

/// The bundle for `target`, or a skip that names the command that builds it.
pub fn have_bundle(target: &str) -> bool {
    if bundles_dir().join(target).join("manifest.json").is_file() {
        return true;
    }
    !skip(&format!(
        "no {target} bundle in {}; run `cargo run -p meltbench -- bundle --target {target}` (ci/test.sh does)",
        bundles_dir().display()
    ))
}

/// Whether a test can run: its peer is available and the bundle it pushes is built.
pub fn ready(peer: Result<(), String>, bundle: &str) -> bool {
    match peer {
        Err(why) => !skip(&why),
        Ok(()) => have_bundle(bundle),
    }
}

pub fn host_bundle() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "aarch64-unknown-linux-musl"
    } else {
        "x86_64-unknown-linux-musl"
    }
}

pub struct Farm {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub cache: PathBuf,
}

impl Farm {
    pub fn new() -> Farm {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        Farm {
            cache: root.join("cache"),
            root,
            _tmp: tmp,
        }
    }

    /// `meltbench run` of `suite` on every device of `devices_yaml` (the suite names none);
    /// returns the run directory and the process output.
    pub fn run(
        &self,
        name: &str,
        suite: &str,
        devices_yaml: &str,
    ) -> (PathBuf, std::process::Output) {
        let suite_path = self.root.join(format!("{name}.yaml"));
        std::fs::write(&suite_path, suite).unwrap();
        self.run_file(name, &suite_path, devices_yaml, &[])
    }

    /// `meltbench run SUITE_PATH --devices <devices_yaml> EXTRA...`.
    pub fn run_file(
        &self,
        name: &str,
        suite_path: &Path,
        devices_yaml: &str,
        extra: &[&str],
    ) -> (PathBuf, std::process::Output) {
        let devices = self.root.join(format!("{name}-devices.yaml"));
        std::fs::write(&devices, devices_yaml).unwrap();
        let out = self.root.join(format!("runs-{name}"));
        let o = meltbench(&self.cache)
            .env("MELTBENCH_BUNDLE_DIR", bundles_dir())
            .arg("run")
            .arg(suite_path)
            .arg("--devices")
            .arg(&devices)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        let dir = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path())
            .unwrap_or_default();
        (dir, o)
    }
}

pub fn ssh_entry(name: &str, s: &Sshd, workdir: &Path) -> String {
    format!(
        "  - name: {name}\n    transport: ssh\n    host: 127.0.0.1\n    port: {}\n    user: {}\n    identity: {}\n    known_hosts_file: {}\n    workdir: {}\n",
        s.port,
        s.user,
        yaml_str(&s.identity.display().to_string()),
        yaml_str(&s.known_hosts.display().to_string()),
        yaml_str(&workdir.display().to_string()),
    )
}

pub fn adb_entry(name: &str, server: &AdbServer, dev: &AdbDevice, workdir: &Path) -> String {
    format!(
        "  - name: {name}\n    transport: adb\n    serial: {}\n    adb_server: 127.0.0.1:{}\n    workdir: {}\n",
        yaml_str(&dev.serial),
        server.port,
        yaml_str(&workdir.display().to_string()),
    )
}

/// A YAML double-quoted string (paths with `;`, spaces or quotes stay one value).
pub fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

pub fn json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}
