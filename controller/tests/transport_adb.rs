//! The adb transport against a real adb server (Debian package `adb`) and the ADB device
//! simulator (`meltbench_testbed::adb_device`, the one stand-in: a phone's adbd cannot run
//! here). Every test starts its own server on a free port and its own device.
//!
//! Without adb these tests fail on CI (`CI=true`) and are skipped loudly elsewhere.

use meltbench::sha::to_hex;
use meltbench::transport::adb::AdbTransport;
use meltbench::transport::{quote, Transport, TransportError};
use meltbench_testbed::adb_device::{host_abi, AdbDevice, AdbDeviceOptions, AdbServer};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Fields drop in order: the transport, then the device, then the server.
struct Rig {
    t: AdbTransport,
    dev: AdbDevice,
    server: AdbServer,
}

fn adb_or_skip() -> bool {
    match AdbServer::available() {
        Ok(()) => true,
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the adb transport tests need the real adb on CI: {reason}")
        }
        Err(reason) => {
            // Straight to stderr, past the test harness's capture, so that the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIP: the adb transport tests need the real adb: {reason} ***\n"
            );
            false
        }
    }
}

fn rig(shell_v2: bool) -> Option<Rig> {
    if !adb_or_skip() {
        return None;
    }
    let server = AdbServer::start().unwrap();
    let dev = AdbDevice::start(AdbDeviceOptions {
        shell_v2,
        ..Default::default()
    })
    .unwrap();
    server.connect(&dev).unwrap();
    let t = AdbTransport::connect(&dev.serial, &server.address(), Duration::from_secs(10)).unwrap();
    assert_eq!(t.has_shell_v2(), shell_v2, "features: {:?}", t.features());
    Some(Rig { t, dev, server })
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn check_exec(mut r: Rig) {
    let t = &mut r.t;
    let ten = Duration::from_secs(10);
    let o = t
        .exec(&["sh", "-c", "echo out; echo err >&2; exit 3"], ten)
        .unwrap();
    assert_eq!(o.status, Some(3));
    assert_eq!(o.stdout_text(), "out\n");
    assert_eq!(o.stderr_text(), "err\n");

    let o = t.exec(&["printf", "no newline"], ten).unwrap();
    assert_eq!(
        (o.status, o.stdout_text(), o.stderr_text()),
        (Some(0), "no newline".into(), String::new())
    );

    let o = t.exec(&["getprop", "ro.product.cpu.abi"], ten).unwrap();
    assert_eq!(o.stdout_text(), format!("{}\n", host_abi()));

    let o = t.exec(&["false"], ten).unwrap();
    assert_eq!(o.status, Some(1));
    let o = t.exec(&["meltbench-no-such-command"], ten).unwrap();
    assert_eq!(o.status, Some(127), "{}", o.stderr_text());
    assert!(o.stderr_text().contains("not found"), "{}", o.stderr_text());
    // Killed by a signal: 128 + 9, as both adbd and a shell report it.
    let o = t.exec(&["sh", "-c", "kill -9 $$"], ten).unwrap();
    assert_eq!(o.status, Some(137));

    // Several megabytes: many WRTE messages, each waiting for the host's OKAY.
    let o = t
        .exec(&["sh", "-c", "head -c 3000001 /dev/zero | tr '\\0' x"], ten)
        .unwrap();
    assert_eq!(o.status, Some(0));
    assert_eq!(o.stdout.len(), 3_000_001);
    assert!(o.stdout.iter().all(|&b| b == b'x'));
}

#[test]
fn exec_reports_status_stdout_and_stderr_over_shell_v2() {
    let Some(mut r) = rig(true) else { return };
    // stdin is closed for commands: `cat` ends at once.
    let o = r.t.exec(&["cat"], Duration::from_secs(5)).unwrap();
    assert_eq!((o.status, o.stdout.len()), (Some(0), 0));
    check_exec(r);
}

#[test]
fn exec_falls_back_to_v1_with_a_marker_for_the_exit_status() {
    let Some(r) = rig(false) else { return };
    check_exec(r);
}

fn check_timeout(mut r: Rig) {
    let late = r.dev.sandbox.join("late");
    let script = format!("sleep 3; touch {}", quote::arg(path_str(&late)));
    let started = Instant::now();
    let e =
        r.t.exec(&["sh", "-c", &script], Duration::from_millis(500))
            .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(e, TransportError::Timeout(_)), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with(&r.t.describe()), "{msg}");
    assert!(msg.contains("did not finish within 0.5 s"), "{msg}");
    assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
    // Closing the shell hung the command up: it never gets to touch the file.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !late.exists(),
        "the timed-out command kept running on the device"
    );
    // And the device is still usable.
    let o =
        r.t.exec(&["echo", "again"], Duration::from_secs(10))
            .unwrap();
    assert_eq!(o.stdout_text(), "again\n");
}

#[test]
fn exec_timeout_is_bounded_and_hangs_the_command_up() {
    let Some(r) = rig(true) else { return };
    check_timeout(r);
}

#[test]
fn exec_timeout_is_bounded_on_a_v1_device_too() {
    let Some(r) = rig(false) else { return };
    check_timeout(r);
}

fn check_stream(mut r: Rig) {
    let started = Instant::now();
    let mut lines: Vec<(String, Duration)> = Vec::new();
    let (status, stderr) =
        r.t.stream(
            &[
                "sh",
                "-c",
                "echo first; sleep 1; echo second; echo oops >&2; printf partial; exit 4",
            ],
            &mut |l| lines.push((l.to_string(), started.elapsed())),
        )
        .unwrap();
    let texts: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(texts, ["first", "second", "partial"]);
    assert_eq!(status, Some(4));
    assert_eq!(stderr, "oops");
    // Buffered output would hand both lines over together, at the end.
    let gap = lines[1].1.saturating_sub(lines[0].1);
    assert!(
        gap >= Duration::from_millis(500),
        "lines came {gap:?} apart for a command that sleeps 1 s between them: not streamed"
    );
}

#[test]
fn stream_hands_over_lines_as_they_arrive() {
    let Some(r) = rig(true) else { return };
    check_stream(r);
}

#[test]
fn stream_hands_over_lines_on_a_v1_device_too() {
    let Some(r) = rig(false) else { return };
    check_stream(r);
}

fn check_files(mut r: Rig) {
    let t = &mut r.t;
    let local = tempfile::tempdir().unwrap();
    // Several sync DATA chunks, not a round size.
    let content: Vec<u8> = (0..1_234_567u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let src = local.path().join("agent");
    std::fs::write(&src, &content).unwrap();
    let workdir = r.dev.sandbox.join("data/local/tmp/mb");
    std::fs::create_dir_all(&workdir).unwrap();
    let remote = workdir.join("agent");
    let remote_s = path_str(&remote);

    assert_eq!(t.push(&src, remote_s, 0o755).unwrap(), content.len() as u64);
    assert_eq!(std::fs::read(&remote).unwrap(), content);
    let mode = std::fs::metadata(&remote).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "the mode is exactly the one asked for");
    let o = t
        .exec(
            &["sh", "-c", "test -x \"$1\"", "sh", remote_s],
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(o.status, Some(0));

    let private = workdir.join("key");
    std::fs::write(local.path().join("key"), b"secret").unwrap();
    t.push(&local.path().join("key"), path_str(&private), 0o640)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&private).unwrap().permissions().mode() & 0o7777,
        0o640
    );

    let missing = workdir.join("missing");
    let sums = t.sha256(&[remote_s, path_str(&missing)]).unwrap();
    let want = to_hex(&Sha256::digest(&content));
    assert_eq!(sums, vec![Some(want), None]);

    let back = local.path().join("back");
    assert_eq!(t.pull(remote_s, &back).unwrap(), content.len() as u64);
    assert_eq!(std::fs::read(&back).unwrap(), content);

    // Empty files both ways.
    let empty = local.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let remote_empty = workdir.join("empty");
    assert_eq!(t.push(&empty, path_str(&remote_empty), 0o644).unwrap(), 0);
    let empty_back = local.path().join("empty-back");
    assert_eq!(t.pull(path_str(&remote_empty), &empty_back).unwrap(), 0);
    assert_eq!(std::fs::read(&empty_back).unwrap(), b"");

    // Failures say what and why, and leave nothing behind.
    let nothing = local.path().join("nothing");
    let e = t
        .pull(path_str(&missing), &nothing)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(path_str(&missing)) && e.contains("No such file or directory"),
        "{e}"
    );
    assert!(!nothing.exists());
    let e = t.pull("/etc/hostname", &nothing).unwrap_err().to_string();
    assert!(e.contains("Permission denied"), "{e}");
    assert!(!nothing.exists());
    let e = t
        .push(&src, "/etc/meltbench-must-not-exist", 0o644)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&t.describe()) && e.contains("Permission denied"),
        "{e}"
    );
    assert!(!Path::new("/etc/meltbench-must-not-exist").exists());
    let e = t
        .push(&local.path().join("no-such-local"), remote_s, 0o644)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-local"), "{e}");
}

#[test]
fn push_pull_and_sha256_round_trip() {
    let Some(r) = rig(true) else { return };
    check_files(r);
}

#[test]
fn push_pull_and_sha256_round_trip_on_a_v1_device() {
    let Some(r) = rig(false) else { return };
    check_files(r);
}

#[test]
fn describe_names_the_serial_and_the_server() {
    let Some(r) = rig(true) else { return };
    assert_eq!(
        r.t.describe(),
        format!("adb {}@127.0.0.1:{}", r.dev.serial, r.server.port)
    );
}

#[test]
fn an_unknown_serial_is_reported_with_the_attached_ones() {
    let Some(r) = rig(true) else { return };
    let started = Instant::now();
    let e = AdbTransport::connect("no-such-phone", &r.server.address(), Duration::from_secs(5))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(e, TransportError::Connect(_)), "{e}");
    let msg = e.to_string();
    for part in [
        "no-such-phone",
        &r.server.address(),
        &format!("{} (device)", r.dev.serial),
        "adb connect",
        "adb devices",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
}

#[test]
fn a_server_that_is_not_running_is_reported_fast() {
    // Needs no adb: nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let e = AdbTransport::connect("37211FDJH000AB", &server, Duration::from_secs(5)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(e, TransportError::Connect(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&server) && msg.contains("adb start-server"),
        "{msg}"
    );

    let e = AdbTransport::connect("x", "no-port-here", Duration::from_secs(5)).unwrap_err();
    assert!(e.to_string().contains("adb_server in devices.yaml"), "{e}");
}

#[test]
fn a_device_that_went_away_is_reported_not_waited_for() {
    let Some(r) = rig(true) else { return };
    let Rig { mut t, dev, server } = r;
    let serial = dev.serial.clone();
    drop(dev);
    let started = Instant::now();
    let e = t.exec(&["echo", "hi"], Duration::from_secs(5)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&serial) && msg.contains("adb devices"),
        "{msg}"
    );
    drop(server);
}

fn check_metacharacters(mut r: Rig) {
    let sandbox = r.dev.sandbox.clone();
    let pwned = sandbox.join("pwned");
    let pwned2 = sandbox.join("pwned2");
    let a1 = format!("x; touch {}", pwned.display());
    let a2 = format!("$(touch {})", pwned2.display());
    let o =
        r.t.exec(
            &["echo", &a1, &a2, "`touch pwned`", "it's"],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(o.stdout_text(), format!("{a1} {a2} `touch pwned` it's\n"));

    let dir = sandbox.join("data/local/tmp/odd");
    std::fs::create_dir_all(&dir).unwrap();
    let odd = dir.join("name; touch pwned3");
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src");
    std::fs::write(&src, b"odd").unwrap();
    r.t.push(&src, path_str(&odd), 0o644).unwrap();
    assert_eq!(std::fs::read(&odd).unwrap(), b"odd");
    assert_eq!(
        r.t.sha256(&[path_str(&odd)]).unwrap()[0].as_deref(),
        Some(to_hex(&Sha256::digest(b"odd")).as_str())
    );
    r.t.pull(path_str(&odd), &local.path().join("back"))
        .unwrap();

    for p in [pwned, pwned2, sandbox.join("pwned3"), dir.join("pwned3")] {
        assert!(
            !p.exists(),
            "{} exists: an argument ran as a command",
            p.display()
        );
    }
    assert!(!sandbox.join("pwned").exists());
}

#[test]
fn shell_metacharacters_stay_arguments() {
    let Some(r) = rig(true) else { return };
    check_metacharacters(r);
}

#[test]
fn shell_metacharacters_stay_arguments_on_a_v1_device() {
    let Some(r) = rig(false) else { return };
    check_metacharacters(r);
}
