//! The SSH transport against a real OpenSSH sshd on loopback (meltbench-testbed): commands,
//! streaming, transfers, host key trust, authentication failures, unreachable hosts and shell
//! metacharacters. Without sshd the tests print a loud SKIP locally and fail in CI (`CI=true`).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meltbench::devices::{KnownHosts, SshTarget};
use meltbench::transport::ssh::SshTransport;
use meltbench::transport::{FileChannel, Transport, TransportError};
use meltbench_testbed::sshd::Sshd;
use sha2::{Digest, Sha256};

const CONNECT: Duration = Duration::from_secs(15);

/// A target that logs into `sshd` with its key and checks its known_hosts file strictly.
fn target(sshd: &Sshd) -> SshTarget {
    SshTarget {
        host: "127.0.0.1".into(),
        port: sshd.port,
        user: Some(sshd.user.clone()),
        identity: Some(path_str(&sshd.identity)),
        known_hosts: KnownHosts::Strict,
        host_key_fingerprint: None,
        known_hosts_file: Some(path_str(&sshd.known_hosts)),
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn connect(sshd: &Sshd, t: &SshTarget) -> SshTransport {
    SshTransport::connect(t, CONNECT)
        .unwrap_or_else(|e| panic!("connect failed: {e}\nsshd log:\n{}", sshd.log()))
}

/// The connect error and how long it took to come back.
fn refused(t: &SshTarget, timeout: Duration) -> (String, Duration) {
    let start = Instant::now();
    match SshTransport::connect(t, timeout) {
        Ok(c) => panic!("{} connected, but should have been refused", c.describe()),
        Err(TransportError::Connect(msg)) => {
            // Shown with --nocapture: these messages are what users read.
            eprintln!("refused as expected: {msg}");
            (msg, start.elapsed())
        }
        Err(other) => panic!("expected a Connect error, got {other:?}"),
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "not-authorized",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("running ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `[127.0.0.1]:PORT ssh-ed25519 KEY` from the testbed's correct known_hosts file.
fn correct_line(sshd: &Sshd) -> String {
    fs::read_to_string(&sshd.known_hosts)
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn exec_reports_status_stdout_and_stderr() {
    let Some(sshd) = Sshd::for_test("exec_reports_status_stdout_and_stderr") else {
        return;
    };
    let mut t = connect(&sshd, &target(&sshd));
    assert_eq!(
        t.describe(),
        format!("ssh {}@127.0.0.1:{}", sshd.user, sshd.port)
    );
    let o = t
        .exec(
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(o.status, Some(3));
    assert_eq!(o.stdout_text(), "out\n");
    assert_eq!(o.stderr_text(), "err\n");

    // Arguments arrive as given, spaces and quotes included.
    let o = t
        .exec(
            &["printf", "%s|", "a b", "it's", ""],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(
        (o.status, o.stdout_text().as_str()),
        (Some(0), "a b|it's||")
    );

    // Megabytes on both streams at once: neither may stall the other.
    let o = t
        .exec(
            &[
                "sh",
                "-c",
                "head -c 3000000 /dev/zero | tr '\\0' e >&2 & head -c 4000000 /dev/zero | tr '\\0' o; wait",
            ],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(
        o.status,
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr[..100.min(o.stderr.len())])
    );
    assert_eq!(o.stdout.len(), 4_000_000);
    assert!(o.stdout.iter().all(|&b| b == b'o'));
    assert_eq!(o.stderr.len(), 3_000_000);
    assert!(o.stderr.iter().all(|&b| b == b'e'));

    // Death by signal has no exit status.
    let o = t
        .exec(&["sh", "-c", "kill -KILL $$"], Duration::from_secs(10))
        .unwrap();
    assert_eq!(o.status, None);
    let o = t.exec(&["true"], Duration::from_secs(10)).unwrap();
    assert!(o.success());
}

/// Whether a process is gone (or a zombie waiting to be reaped: it no longer runs).
fn process_ended(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) STATE ...`; comm may contain spaces, so look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[test]
fn exec_timeout_is_bounded_and_kills_the_command() {
    let Some(sshd) = Sshd::for_test("exec_timeout_is_bounded_and_kills_the_command") else {
        return;
    };
    let mut t = connect(&sshd, &target(&sshd));
    let pidfile = sshd.dir.join("sleeper.pid");
    let script = format!("echo $$ > {}; exec sleep 60", path_str(&pidfile));
    // 3 s: time for sshd to start the command even on a loaded machine, so the kill is what
    // is tested.
    let start = Instant::now();
    let e = t
        .exec(&["sh", "-c", &script], Duration::from_secs(3))
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, TransportError::Timeout(_)), "{e:?}");
    assert!(took < Duration::from_secs(9), "timing out took {took:?}");
    assert!(e.to_string().contains("did not finish within 3 s"), "{e}");

    // The command is killed on the device, not left running.
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap_or_else(|e| panic!("the command never started within 3 s: {e}"))
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process_ended(pid) {
        assert!(
            Instant::now() < deadline,
            "the timed-out `sleep 60` (pid {pid}) still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A silent command times out as well, and the connection stays usable afterwards.
    let e = t
        .exec(&["sleep", "30"], Duration::from_millis(300))
        .unwrap_err();
    assert!(matches!(e, TransportError::Timeout(_)), "{e:?}");
    let o = t
        .exec(&["echo", "still here"], Duration::from_secs(10))
        .unwrap();
    assert_eq!(o.stdout_text(), "still here\n");
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn stream_hands_over_lines_as_they_arrive_without_spinning() {
    let Some(sshd) = Sshd::for_test("stream_hands_over_lines_as_they_arrive_without_spinning")
    else {
        return;
    };
    let mut t = connect(&sshd, &target(&sshd));
    let start = Instant::now();
    let cpu_before = thread_cpu();
    let mut lines: Vec<(String, Duration)> = Vec::new();
    let (status, err) = t
        .stream(
            &[
                "sh",
                "-c",
                "echo first; sleep 2; printf 'second\\r\\nno newline'; echo oops >&2; exit 4",
            ],
            &mut |l| lines.push((l.to_string(), start.elapsed())),
        )
        .unwrap();
    let cpu = thread_cpu() - cpu_before;
    assert_eq!(status, Some(4));
    assert_eq!(err, "oops");
    let texts: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(texts, ["first", "second", "no newline"]);
    // The first line came while the command was still sleeping, not when it ended.
    assert!(
        lines[1].1 - lines[0].1 > Duration::from_millis(1500),
        "lines were not handed over as they arrived: {lines:?}"
    );
    // Two idle seconds must not cost two seconds of CPU.
    assert!(
        cpu < Duration::from_millis(400),
        "stream used {cpu:?} of CPU while idle"
    );

    // The tail keeps the last 20 lines of a long stderr.
    let (status, err) = t
        .stream(&["sh", "-c", "seq 1 100 >&2"], &mut |_| {})
        .unwrap();
    assert_eq!(status, Some(0));
    let expected: Vec<String> = (81..=100).map(|n| n.to_string()).collect();
    assert_eq!(err, expected.join("\n"));
}

#[test]
fn push_pull_and_sha256_round_trip() {
    let Some(sshd) = Sshd::for_test("push_pull_and_sha256_round_trip") else {
        return;
    };
    round_trip(&sshd, FileChannel::Sftp);
}

/// A server without the SFTP subsystem (dropbear, a minimal sshd_config): the same transfers,
/// over exec channels, with the same guarantees.
#[test]
fn without_sftp_files_travel_over_exec_channels() {
    if Sshd::for_test("without_sftp_files_travel_over_exec_channels").is_none() {
        return;
    }
    let sshd = Sshd::start_without_sftp().unwrap();
    round_trip(&sshd, FileChannel::SshExec);
}

/// A server that answers a transfer only after longer than the keepalive interval (30 s) is slow,
/// not dead: libssh2 with keepalives on fails such a blocking wait with "Timed out waiting on
/// socket" once a keepalive falls due, which failed a board in the 64-device load test. Here the
/// SFTP open of a FIFO answers only when a writer comes, 35 s later (reading it then fails:
/// sftp-server seeks before every read, which a FIFO refuses; what matters is the wait).
#[test]
fn a_server_slower_than_the_keepalive_interval_is_waited_for() {
    let Some(sshd) = Sshd::for_test("a_server_slower_than_the_keepalive_interval_is_waited_for")
    else {
        return;
    };
    let mut t = connect(&sshd, &target(&sshd));
    // A command first, so keepalives have run (they run while commands do).
    assert_eq!(t.exec(&["true"], CONNECT).unwrap().status, Some(0));
    let fifo = sshd.dir.join("slow.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut writer = Command::new("sh")
        .args(["-c", "sleep 35; printf late > \"$1\"", "sh"])
        .arg(&fifo)
        .spawn()
        .unwrap();
    let local = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let pulled = t.pull(&path_str(&fifo), &local.path().join("late"));
    let waited = start.elapsed();
    let _ = writer.kill();
    let _ = writer.wait();
    if let Err(TransportError::Timeout(e)) = pulled {
        panic!("gave up on a slow server after {waited:?}: {e}");
    }
    assert!(waited >= Duration::from_secs(34), "{waited:?}: {pulled:?}");
}

fn round_trip(sshd: &Sshd, channel: FileChannel) {
    use std::os::unix::fs::PermissionsExt;
    let mut t = connect(sshd, &target(sshd));
    assert_eq!(t.file_channel(), None, "decided before any transfer");
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("model.bin");
    // 3 MB of varied bytes, so a transfer that drops or repeats a chunk changes the digest.
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&src, &data).unwrap();
    let expected = meltbench::sha::to_hex(&Sha256::digest(&data));

    // A name a shell would act on: it must stay one path on both channels.
    let pwned = sshd.dir.join("pwned");
    let remote = sshd.dir.join("pushed model $(touch pwned); 'x'.bin");
    let remote = path_str(&remote);
    assert_eq!(t.push(&src, &remote, 0o750).unwrap(), data.len() as u64);
    assert_eq!(t.file_channel(), Some(channel));
    let mode = fs::metadata(&remote).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);
    let missing = path_str(&sshd.dir.join("missing"));
    assert_eq!(
        t.sha256(&[&remote, &missing]).unwrap(),
        vec![Some(expected.clone()), None]
    );

    let back = local.path().join("back.bin");
    assert_eq!(t.pull(&remote, &back).unwrap(), data.len() as u64);
    assert_eq!(fs::read(&back).unwrap(), data);

    // Pushing over an existing file replaces it and its mode.
    fs::write(&src, b"small").unwrap();
    assert_eq!(t.push(&src, &remote, 0o600).unwrap(), 5);
    assert_eq!(fs::read(&remote).unwrap(), b"small");
    let mode = fs::metadata(&remote).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);

    // Empty files arrive as empty files.
    fs::write(&src, b"").unwrap();
    assert_eq!(t.push(&src, &remote, 0o644).unwrap(), 0);
    assert_eq!(t.pull(&remote, &back).unwrap(), 0);
    assert_eq!(fs::read(&back).unwrap(), b"");

    // Missing remote files and directories are reported by path, and leave nothing behind.
    let nowhere = local.path().join("nowhere");
    let e = t.pull(&missing, &nowhere).unwrap_err().to_string();
    assert!(
        e.contains(&missing) && e.to_lowercase().contains("no such file"),
        "{e}"
    );
    assert!(!nowhere.exists());
    let in_missing_dir = path_str(&sshd.dir.join("no/such/dir/file"));
    let e = t
        .push(&src, &in_missing_dir, 0o644)
        .unwrap_err()
        .to_string();
    let says_why = match channel {
        FileChannel::Sftp => e.contains("does its directory exist"),
        // dash says "Directory nonexistent", bash "No such file or directory".
        _ => e.contains("nonexistent") || e.contains("No such file"),
    };
    assert!(e.contains(&in_missing_dir) && says_why, "{e}");
    assert!(!pwned.exists(), "a remote path ran a command");
    // The connection still works after the failures.
    assert_eq!(t.pull(&remote, &back).unwrap(), 0);
}

#[test]
fn a_changed_host_key_is_refused_with_the_presented_fingerprint() {
    let Some(sshd) = Sshd::for_test("a_changed_host_key_is_refused_with_the_presented_fingerprint")
    else {
        return;
    };
    let wrong = sshd.wrong_known_hosts();
    for policy in [KnownHosts::Strict, KnownHosts::AcceptNew] {
        let mut t = target(&sshd);
        t.known_hosts = policy;
        t.known_hosts_file = Some(path_str(&wrong));
        let (msg, _) = refused(&t, CONNECT);
        assert!(msg.contains("the host key changed"), "{msg}");
        assert!(msg.contains(&sshd.host_key_fingerprint), "{msg}");
        assert!(msg.contains(&path_str(&wrong)), "{msg}");
        assert!(msg.contains("ssh-keygen -R"), "{msg}");
    }
    // accept-new did not add the changed key.
    assert_eq!(fs::read_to_string(&wrong).unwrap().lines().count(), 1);
}

#[test]
fn strict_refuses_an_unknown_host_and_says_how_to_trust_it() {
    let Some(sshd) = Sshd::for_test("strict_refuses_an_unknown_host_and_says_how_to_trust_it")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("known_hosts");
    fs::write(&file, "# nothing here yet\n").unwrap();
    let mut t = target(&sshd);
    t.known_hosts_file = Some(path_str(&file));
    let (msg, _) = refused(&t, CONNECT);
    assert!(msg.contains("the host key is not known"), "{msg}");
    assert!(msg.contains(&sshd.host_key_fingerprint), "{msg}");
    assert!(
        msg.contains(&format!(
            "ssh-keyscan -p {} 127.0.0.1 >> {}",
            sshd.port,
            path_str(&file)
        )),
        "{msg}"
    );
    assert!(msg.contains("known_hosts: accept-new"), "{msg}");
    assert!(
        msg.contains(&format!(
            "host_key_fingerprint: {}",
            sshd.host_key_fingerprint
        )),
        "{msg}"
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "# nothing here yet\n",
        "strict mode must not write"
    );

    // A missing file is no different.
    t.known_hosts_file = Some(path_str(&dir.path().join("absent")));
    let (msg, _) = refused(&t, CONNECT);
    assert!(msg.contains(&sshd.host_key_fingerprint), "{msg}");
    assert!(!dir.path().join("absent").exists());
}

#[test]
fn accept_new_records_the_key_and_strict_trusts_it_afterwards() {
    let Some(sshd) = Sshd::for_test("accept_new_records_the_key_and_strict_trusts_it_afterwards")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fresh/.ssh/known_hosts");
    let mut t = target(&sshd);
    t.known_hosts = KnownHosts::AcceptNew;
    t.known_hosts_file = Some(path_str(&file));
    let mut c = connect(&sshd, &t);
    assert!(c
        .exec(&["true"], Duration::from_secs(10))
        .unwrap()
        .success());
    drop(c);
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("{}\n", correct_line(&sshd))
    );

    t.known_hosts = KnownHosts::Strict;
    let mut c = connect(&sshd, &t);
    assert!(c
        .exec(&["true"], Duration::from_secs(10))
        .unwrap()
        .success());
    drop(c);

    // Existing entries are kept, even without a final newline; the new one goes on its own line.
    let other = dir.path().join("known_hosts");
    fs::write(&other, "# mine\nexample.org ssh-ed25519 AAAA").unwrap();
    t.known_hosts = KnownHosts::AcceptNew;
    t.known_hosts_file = Some(path_str(&other));
    drop(connect(&sshd, &t));
    assert_eq!(
        fs::read_to_string(&other).unwrap(),
        format!(
            "# mine\nexample.org ssh-ed25519 AAAA\n{}\n",
            correct_line(&sshd)
        )
    );
}

#[test]
fn the_key_type_known_hosts_holds_is_the_one_negotiated() {
    let Some(sshd) = Sshd::for_test("the_key_type_known_hosts_holds_is_the_one_negotiated") else {
        return;
    };
    // The server has Ed25519 and ECDSA keys; known_hosts only the ECDSA one (as after
    // `ssh-keyscan -t ecdsa`). Offering Ed25519 first would look like a changed key.
    let mut t = target(&sshd);
    t.known_hosts_file = Some(path_str(&sshd.ecdsa_known_hosts));
    let mut c = connect(&sshd, &t);
    assert!(c
        .exec(&["true"], Duration::from_secs(10))
        .unwrap()
        .success());
}

#[test]
fn a_pinned_fingerprint_must_match() {
    let Some(sshd) = Sshd::for_test("a_pinned_fingerprint_must_match") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut t = target(&sshd);
    // The pin replaces known_hosts: an absent file does not matter.
    t.known_hosts_file = Some(path_str(&dir.path().join("absent")));
    t.host_key_fingerprint = Some(sshd.host_key_fingerprint.clone());
    let mut c = connect(&sshd, &t);
    assert!(c
        .exec(&["true"], Duration::from_secs(10))
        .unwrap()
        .success());
    drop(c);

    let wrong_pin = format!("SHA256:{}", "A".repeat(43));
    t.host_key_fingerprint = Some(wrong_pin.clone());
    let (msg, _) = refused(&t, CONNECT);
    assert!(msg.contains("does not match the pinned"), "{msg}");
    assert!(msg.contains(&sshd.host_key_fingerprint), "{msg}");
    assert!(msg.contains(&wrong_pin), "{msg}");
    assert!(!dir.path().join("absent").exists());
}

#[test]
fn a_missing_identity_file_is_named_before_any_network() {
    let Some(sshd) = Sshd::for_test("a_missing_identity_file_is_named_before_any_network") else {
        return;
    };
    let mut t = target(&sshd);
    t.identity = Some("/nonexistent/meltbench/id_ed25519".into());
    // A host that never answers: only an error found before connecting comes back at once.
    t.host = "10.255.255.1".into();
    let (msg, took) = refused(&t, Duration::from_secs(30));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(msg.contains("/nonexistent/meltbench/id_ed25519"), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");

    // `~` is expanded, and the message shows both forms.
    t.identity = Some("~/.meltbench-no-such-key".into());
    let (msg, took) = refused(&t, Duration::from_secs(30));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(msg.contains("~/.meltbench-no-such-key"), "{msg}");
    let home = std::env::var("HOME").unwrap();
    assert!(
        msg.contains(&format!("{home}/.meltbench-no-such-key")),
        "{msg}"
    );
}

#[test]
fn a_refused_key_is_explained_quickly() {
    let Some(sshd) = Sshd::for_test("a_refused_key_is_explained_quickly") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("id_stranger");
    keygen(&stranger);
    let mut t = target(&sshd);
    t.identity = Some(path_str(&stranger));
    let (msg, took) = refused(&t, CONNECT);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let who = format!("{}@127.0.0.1:{}", sshd.user, sshd.port);
    assert!(msg.contains(&who), "{msg}");
    assert!(msg.contains("refused the key"), "{msg}");
    assert!(msg.contains(&path_str(&stranger)), "{msg}");
    assert!(msg.contains("ssh-copy-id"), "{msg}");

    // An account that does not exist is refused the same way, not with a hang.
    t.identity = Some(path_str(&sshd.identity));
    t.user = Some("meltbench-nobody".into());
    let (msg, took) = refused(&t, CONNECT);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(msg.contains("meltbench-nobody@127.0.0.1"), "{msg}");
}

#[test]
fn unreachable_hosts_fail_within_the_timeout() {
    let Some(sshd) = Sshd::for_test("unreachable_hosts_fail_within_the_timeout") else {
        return;
    };
    // A loopback port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut t = target(&sshd);
    t.port = port;
    let (msg, took) = refused(&t, Duration::from_secs(10));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("refused"), "{msg}");

    // A non-routable address: either no answer until the timeout or an immediate "unreachable".
    let mut t = target(&sshd);
    t.host = "10.255.255.1".into();
    t.port = 22;
    let (msg, took) = refused(&t, Duration::from_secs(2));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(msg.contains("10.255.255.1"), "{msg}");

    // A port that accepts TCP but never speaks SSH: the handshake is bounded too.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut t = target(&sshd);
    t.port = silent.local_addr().unwrap().port();
    let (msg, took) = refused(&t, Duration::from_secs(2));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(msg.contains("handshake"), "{msg}");
}

#[test]
fn shell_metacharacters_stay_arguments() {
    let Some(sshd) = Sshd::for_test("shell_metacharacters_stay_arguments") else {
        return;
    };
    let mut t = connect(&sshd, &target(&sshd));
    let dir = path_str(&sshd.dir);
    let pwned: Vec<PathBuf> = (1..=4)
        .map(|n| sshd.dir.join(format!("pwned{n}")))
        .collect();
    let a = format!("x; touch {dir}/pwned1");
    let b = format!("$(touch {dir}/pwned2)");
    let c = format!("`touch {dir}/pwned4`");
    let o = t
        .exec(&["echo", &a, &b, &c], Duration::from_secs(10))
        .unwrap();
    assert_eq!(o.stdout_text(), format!("{a} {b} {c}\n"));

    // A remote path that a shell would split into a second command creating DIR/pwned3. Over
    // SFTP it is just a file named `pwned3` in a directory named `odd; touch DIR`.
    let odd_dir = sshd.dir.join(format!("odd; touch {dir}"));
    fs::create_dir_all(&odd_dir).unwrap();
    let remote = format!("{dir}/odd; touch {dir}/pwned3");
    let local = tempfile::NamedTempFile::new().unwrap();
    fs::write(local.path(), b"payload").unwrap();
    assert_eq!(t.push(local.path(), &remote, 0o644).unwrap(), 7);
    assert_eq!(fs::read(odd_dir.join("pwned3")).unwrap(), b"payload");
    assert_eq!(
        t.sha256(&[&remote]).unwrap()[0].as_deref().map(str::len),
        Some(64)
    );
    let back = tempfile::NamedTempFile::new().unwrap();
    assert_eq!(t.pull(&remote, back.path()).unwrap(), 7);

    for p in &pwned {
        assert!(
            !p.exists(),
            "{} exists: an argument ran as a command",
            p.display()
        );
    }
}

/// Runs `agent_child` (this test binary, in its own process, so SSH_AUTH_SOCK is not changed
/// under the other tests) against `sshd` with the given agent socket.
fn run_agent_child(sshd: &Sshd, sock: Option<&Path>, expect: &str) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "agent_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("MB_AGENT_PORT", sshd.port.to_string())
    .env("MB_AGENT_USER", &sshd.user)
    .env("MB_AGENT_KNOWN_HOSTS", &sshd.known_hosts)
    .env("MB_AGENT_EXPECT", expect);
    match sock {
        Some(s) => cmd.env("SSH_AUTH_SOCK", s),
        None => cmd.env_remove("SSH_AUTH_SOCK"),
    };
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "agent child ({expect}) failed:\n{text}"
    );
    assert!(
        text.contains(&format!("agent child checked: {expect}")),
        "{text}"
    );
}

#[test]
fn agent_keys_are_used_when_no_identity_is_set() {
    let Some(sshd) = Sshd::for_test("agent_keys_are_used_when_no_identity_is_set") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let mut agent = match Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(a) => a,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIP: agent_keys_are_used_when_no_identity_is_set: no ssh-agent ({e})");
            return;
        }
        Err(e) => panic!("ssh-agent is required in CI: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "ssh-agent did not create {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let add = |key: &Path| {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &sock)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let stranger = dir.path().join("id_stranger");
    keygen(&stranger);

    run_agent_child(&sshd, None, "no-agent");
    run_agent_child(&sshd, Some(&sock), "empty");
    add(&stranger);
    run_agent_child(&sshd, Some(&sock), "refused");
    // The right key comes second: every key is tried, not just the first.
    add(&sshd.identity);
    run_agent_child(&sshd, Some(&sock), "ok");

    let _ = agent.kill();
    let _ = agent.wait();
}

/// The half of `agent_keys_are_used_when_no_identity_is_set` that runs in a child process.
#[test]
#[ignore = "helper process of agent_keys_are_used_when_no_identity_is_set"]
fn agent_child() {
    let Ok(expect) = std::env::var("MB_AGENT_EXPECT") else {
        eprintln!("agent_child only runs under agent_keys_are_used_when_no_identity_is_set");
        return;
    };
    let t = SshTarget {
        host: "127.0.0.1".into(),
        port: std::env::var("MB_AGENT_PORT").unwrap().parse().unwrap(),
        user: Some(std::env::var("MB_AGENT_USER").unwrap()),
        identity: None,
        known_hosts: KnownHosts::Strict,
        host_key_fingerprint: None,
        known_hosts_file: Some(std::env::var("MB_AGENT_KNOWN_HOSTS").unwrap()),
    };
    let result = SshTransport::connect(&t, CONNECT);
    match expect.as_str() {
        "ok" => {
            let mut c = result.unwrap_or_else(|e| panic!("{e}"));
            let o = c
                .exec(&["echo", "via agent"], Duration::from_secs(10))
                .unwrap();
            assert_eq!(o.stdout_text(), "via agent\n");
        }
        "no-agent" | "empty" | "refused" => {
            let msg = match result {
                Err(TransportError::Connect(msg)) => msg,
                Err(e) => panic!("expected a Connect error, got {e:?}"),
                Ok(_) => panic!("connected without a usable agent key"),
            };
            let wanted = match expect.as_str() {
                "no-agent" => "SSH_AUTH_SOCK is not set",
                "empty" => "the agent holds no keys",
                _ => "refused all 1 keys from ssh-agent (not-authorized)",
            };
            assert!(msg.contains(wanted), "{msg}");
            assert!(msg.contains("identity:"), "{msg}");
        }
        other => panic!("unknown MB_AGENT_EXPECT {other}"),
    }
    println!("agent child checked: {expect}");
}
