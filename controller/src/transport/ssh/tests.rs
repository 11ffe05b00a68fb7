use super::*;

#[test]
fn base64_matches_the_rfc_4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, encoded) in cases {
        assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
    }
    assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
}

#[test]
fn fingerprints_are_what_ssh_keygen_prints() {
    // A public key and what `ssh-keygen -lf` printed for it.
    let key = "AAAAC3NzaC1lZDI1NTE5AAAAIHK+Npi03pVR37SUTsQwmychwf07srEA1hy34DUYQ5dp";
    let blob = decode(key);
    assert_eq!(base64(&blob), key);
    assert_eq!(key_type_of(&blob).as_deref(), Some("ssh-ed25519"));
    assert_eq!(
        fingerprint(&blob),
        "SHA256:HMWDVuCI1a5gI2Dm9gHRbww2UGJp0xyu09oTUHu1dr8"
    );
    assert_eq!(key_type_of(&[0, 0, 0, 9, b'x']), None);
}

fn decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        bits = bits << 6 | ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
fn the_pid_line_is_taken_out_of_stderr_in_any_chunking() {
    let text = b"meltbench-pid 4242\nreal error\n";
    for split in 0..text.len() {
        let mut f = PidFilter::default();
        f.push(&text[..split]);
        f.push(&text[split..]);
        assert_eq!(f.pid, Some(4242));
        assert_eq!(f.finish(), b"real error\n");
    }
    // Startup-file chatter before the line is kept; so is stderr without the line.
    let mut f = PidFilter::default();
    f.push(b"bashrc says hi\nmeltbench-pid 17\nerr\nmeltbench-pid 18\n");
    assert_eq!(f.pid, Some(17));
    assert_eq!(f.finish(), b"bashrc says hi\nerr\nmeltbench-pid 18\n");
    let mut f = PidFilter::default();
    f.push(b"no marker\npartial");
    assert_eq!(f.pid, None);
    assert_eq!(f.finish(), b"no marker\npartial");
    let mut f = PidFilter::default();
    f.push(&vec![b'x'; PID_SEARCH + 1]);
    f.push(b"\nmeltbench-pid 5\n");
    assert_eq!(f.pid, None, "searched too far");
}

#[test]
fn tilde_is_expanded_from_home_only_at_the_start() {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap());
    assert_eq!(expand_tilde("~/.ssh/id").unwrap(), home.join(".ssh/id"));
    assert_eq!(expand_tilde("~").unwrap(), home);
    assert_eq!(expand_tilde("/etc/x~").unwrap(), PathBuf::from("/etc/x~"));
    assert_eq!(expand_tilde("~bob/x").unwrap(), PathBuf::from("~bob/x"));
}

#[test]
fn known_hosts_lines_are_matched_by_libssh2_and_odd_lines_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    fs::write(
        &path,
        format!(
            "# comment\n\
                 \n\
                 @cert-authority *.example.com ssh-ed25519 {key}\n\
                 @revoked * ssh-ed25519 {key}\n\
                 other.example,[rpi5.local]:2222 ssh-ed25519 {key}\n\
                 rpi5.local ecdsa-sha2-nistp256 {key}\n\
                 garbage\n\
                 [rpi5.local]:2222 sk-ssh-ed25519@openssh.com {key}"
        ),
    )
    .unwrap();
    let session = Session::new().unwrap();
    let known = read_known_hosts(&session, &path, "[rpi5.local]:2222").unwrap();
    let lines: Vec<(usize, &str)> = known
        .keys
        .iter()
        .map(|k| (k.line, k.key_type.as_str()))
        .collect();
    assert_eq!(
        lines,
        [(5, "ssh-ed25519"), (8, "sk-ssh-ed25519@openssh.com")]
    );
    assert_eq!(known.revoked, [key]);
    assert!(!known.ends_with_newline);
    let port22 = read_known_hosts(&session, &path, "rpi5.local").unwrap();
    assert_eq!(port22.keys.len(), 1);
    assert_eq!(port22.keys[0].key_type, "ecdsa-sha2-nistp256");
    let prefs = host_key_preference(&session, &port22).unwrap();
    assert!(
        prefs.starts_with("ecdsa-sha2-nistp256,ssh-ed25519"),
        "{prefs}"
    );
    let missing = read_known_hosts(&session, &dir.path().join("none"), "x").unwrap();
    assert!(missing.keys.is_empty() && missing.ends_with_newline);
}
