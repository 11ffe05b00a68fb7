use super::server::{answers_as_adb_server, wait_timeout};
use super::*;

/// The real adb is needed; on CI its absence is a failure, elsewhere a loud skip.
fn adb_or_skip() -> bool {
    match AdbServer::available() {
        Ok(()) => true,
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => panic!("{reason}"),
        Err(reason) => {
            // Straight to stderr, past the test harness's capture, so that the skip is seen.
            let _ = writeln!(
                io::stderr(),
                "*** SKIP: the adb device simulator tests need the real adb: {reason} ***"
            );
            false
        }
    }
}

fn attached(opts: AdbDeviceOptions) -> (AdbServer, AdbDevice) {
    let server = AdbServer::start().unwrap();
    let dev = AdbDevice::start(opts).unwrap();
    server.connect(&dev).unwrap();
    (server, dev)
}

fn adb(server: &AdbServer, dev: &AdbDevice, args: &[&str]) -> Output {
    let mut all = vec!["-s", dev.serial.as_str()];
    all.extend_from_slice(args);
    server.run(&all, Duration::from_secs(30)).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn service_names_parse_like_adbd() {
    let shell = |name: &str| match parse_service(name) {
        Some(Service::Shell { command, v2, pty }) => Some((command, v2, pty)),
        _ => None,
    };
    assert_eq!(
        shell("shell:echo hi"),
        Some(("echo hi".into(), false, false))
    );
    assert_eq!(
        shell("shell,v2,TERM=xterm,raw:a:b,c"),
        Some(("a:b,c".into(), true, false))
    );
    assert_eq!(shell("shell,v2,pty:ls"), Some(("ls".into(), true, true)));
    assert_eq!(shell("shell:"), Some((String::new(), false, true)));
    assert_eq!(shell("shell,raw:"), Some((String::new(), false, false)));
    assert_eq!(shell("exec:cat x"), Some(("cat x".into(), false, false)));
    assert!(matches!(parse_service("sync:"), Some(Service::Sync)));
    assert!(parse_service("framebuffer:").is_none());
    assert!(parse_service("shellfoo").is_none());
    assert_eq!(parse_mode("33261"), Some(0o100755));
    assert_eq!(parse_mode("0777"), Some(0o777));
    assert_eq!(parse_mode("0x1ed"), Some(0o755));
}

#[test]
fn paths_outside_the_sandbox_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().canonicalize().unwrap();
    fs::create_dir(sandbox.join("d")).unwrap();
    std::os::unix::fs::symlink("/etc", sandbox.join("d/out")).unwrap();
    let inside = format!("{}/d/new/file", sandbox.display());
    assert_eq!(
        confine(&sandbox, &inside, false).unwrap(),
        sandbox.join("d/new/file")
    );
    let dotdot = format!("{}/d/../../x", sandbox.display());
    assert!(confine(&sandbox, &dotdot, false).is_err());
    assert!(confine(&sandbox, "/etc/passwd", true).is_err());
    assert!(confine(&sandbox, "relative", true).is_err());
    let via_link = format!("{}/d/out/passwd", sandbox.display());
    assert!(confine(&sandbox, &via_link, true).is_err());
    let link_itself = format!("{}/d/out", sandbox.display());
    assert!(confine(&sandbox, &link_itself, true).is_err());
    assert!(
        confine(&sandbox, &link_itself, false).is_ok(),
        "lstat of the link itself is fine"
    );
}

#[test]
fn the_adb_cli_runs_shell_v2_commands_with_status_and_stderr() {
    if !adb_or_skip() {
        return;
    }
    let (server, dev) = attached(AdbDeviceOptions::default());
    let o = adb(&server, &dev, &["shell", "echo", "hi"]);
    assert_eq!(
        (o.status.code(), text(&o.stdout)),
        (Some(0), "hi\n".into()),
        "{}",
        text(&o.stderr)
    );

    let o = adb(&server, &dev, &["shell", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "shell_v2 carries the exit status");
    assert_eq!(text(&o.stdout), "out\n");
    assert_eq!(text(&o.stderr), "err\n");

    let o = adb(&server, &dev, &["shell", "getprop", "ro.product.cpu.abi"]);
    assert_eq!(text(&o.stdout), format!("{}\n", host_abi()));
    let o = adb(&server, &dev, &["shell", "getprop"]);
    assert!(
        text(&o.stdout).contains("[ro.product.model]: [meltbench-sim]\n"),
        "{}",
        text(&o.stdout)
    );
    let o = adb(&server, &dev, &["shell", "getprop", "no.such.prop"]);
    assert_eq!(text(&o.stdout), "\n");

    let o = adb(&server, &dev, &["shell", "pwd"]);
    assert_eq!(text(&o.stdout), format!("{}\n", dev.sandbox.display()));

    let o = adb(&server, &dev, &["exec-out", "printf", "raw"]);
    assert_eq!(text(&o.stdout), "raw");

    // stdin reaches the command, and closing it ends `cat`.
    let mut cmd = server.command();
    cmd.args(["-s", &dev.serial, "shell", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let mut got = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert!(wait_timeout(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert_eq!(got, "through stdin\n");

    let o = adb(&server, &dev, &["devices", "-l"]);
    assert!(
        text(&o.stdout).contains("model:meltbench_sim"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn the_adb_cli_pushes_and_pulls_files_inside_the_sandbox_only() {
    if !adb_or_skip() {
        return;
    }
    let (server, dev) = attached(AdbDeviceOptions::default());
    let local = tempfile::tempdir().unwrap();
    // Several sync DATA chunks and several WRTE messages, not a round size.
    let content: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let src = local.path().join("blob");
    fs::write(&src, &content).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();

    let remote = format!("{}/data/local/tmp/new/dir/blob", dev.sandbox.display());
    let o = adb(&server, &dev, &["push", src.to_str().unwrap(), &remote]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let on_device = dev.sandbox.join("data/local/tmp/new/dir/blob");
    assert_eq!(fs::read(&on_device).unwrap(), content);
    let mode = fs::metadata(&on_device).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o777, "adbd copies the user bits to group and other");

    let back = local.path().join("back");
    let o = adb(&server, &dev, &["pull", &remote, back.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(fs::read(&back).unwrap(), content);

    let o = adb(
        &server,
        &dev,
        &[
            "shell",
            "ls",
            &format!("{}/data/local/tmp/new/dir", dev.sandbox.display()),
        ],
    );
    assert_eq!(text(&o.stdout), "blob\n");

    let o = adb(
        &server,
        &dev,
        &[
            "push",
            src.to_str().unwrap(),
            "/etc/meltbench-should-not-exist",
        ],
    );
    assert!(!o.status.success());
    let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        said.contains("couldn't create file: Permission denied"),
        "{said}"
    );
    assert!(!Path::new("/etc/meltbench-should-not-exist").exists());
    let o = adb(
        &server,
        &dev,
        &["pull", "/etc/hostname", back.to_str().unwrap()],
    );
    let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("No such file or directory"), "{said}");
    let missing = format!("{}/missing", dev.sandbox.display());
    let o = adb(&server, &dev, &["pull", &missing, back.to_str().unwrap()]);
    let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("No such file or directory"), "{said}");
}

#[test]
fn a_device_without_shell_v2_serves_the_v1_shell_and_sync() {
    if !adb_or_skip() {
        return;
    }
    let (server, dev) = attached(AdbDeviceOptions {
        shell_v2: false,
        ..Default::default()
    });
    let o = adb(&server, &dev, &["shell", "echo out; echo err >&2; exit 3"]);
    // v1 has one stream and no exit status.
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout), "out\nerr\n");

    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("small");
    fs::write(&src, b"hello").unwrap();
    let remote = format!("{}/data/local/tmp/small", dev.sandbox.display());
    let o = adb(&server, &dev, &["push", src.to_str().unwrap(), &remote]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let back = local.path().join("back");
    let o = adb(&server, &dev, &["pull", &remote, back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(fs::read(back).unwrap(), b"hello");
}

#[test]
fn several_devices_and_servers_run_at_once_and_drop_cleanly() {
    if !adb_or_skip() {
        return;
    }
    let (server_a, dev_a) = attached(AdbDeviceOptions::default());
    let dev_b = AdbDevice::start(AdbDeviceOptions {
        props: [("ro.product.model".to_string(), "second".to_string())].into(),
        ..Default::default()
    })
    .unwrap();
    server_a.connect(&dev_b).unwrap();
    let server_b = AdbServer::start().unwrap();
    assert_ne!(server_a.port, server_b.port);
    server_b.connect(&dev_b).unwrap();

    let o = server_a.run(&["devices"], Duration::from_secs(10)).unwrap();
    let listing = text(&o.stdout);
    assert!(
        listing.contains(&format!("{}\tdevice", dev_a.serial)),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("{}\tdevice", dev_b.serial)),
        "{listing}"
    );
    let o = adb(&server_b, &dev_b, &["shell", "getprop", "ro.product.model"]);
    assert_eq!(text(&o.stdout), "second\n");

    // A shell still running when the device goes away is hung up, and the port closes.
    let mut cmd = server_a.command();
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("survived");
    cmd.args([
        "-s",
        &dev_a.serial,
        "shell",
        &format!("sleep 2; touch {}", marker.display()),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    thread::sleep(Duration::from_millis(500));
    let port = dev_a.port;
    let sandbox = dev_a.sandbox.clone();
    let started = Instant::now();
    drop(dev_a);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener is closed"
    );
    assert!(
        wait_timeout(&mut child, Duration::from_secs(10)).is_some(),
        "adb shell ends with the device"
    );
    assert!(!sandbox.exists(), "the sandbox is removed");
    thread::sleep(Duration::from_secs(2));
    assert!(!marker.exists(), "the shell was hung up, not left running");

    let port_b = server_b.port;
    drop(server_b);
    assert!(!answers_as_adb_server(port_b), "the server is stopped");
}
