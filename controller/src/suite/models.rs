//! The suite's `models:` and `precisions:` checked: registry names, files, precisions each model
//! can take.

use super::*;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelFile {
    #[serde(default, deserialize_with = "present")]
    name: Field<String>,
}

pub(super) fn check_models(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<ModelFile>>>>,
    base: &Path,
) -> Vec<ModelRef> {
    let Some(list) = r.required(list, "models", "`models: [{name: smollm2-135m}]`") else {
        return Vec::new();
    };
    r.non_empty(
        list,
        "models",
        "list at least one model (e.g. `- name: smollm2-135m`)",
    );
    let mut out = Vec::new();
    let mut labels: BTreeMap<String, Pos> = BTreeMap::new();
    for entry in &list.value {
        let Some(name) = &entry.value.name else {
            r.on(entry, "model has no 'name' (a registry name such as smollm2-135m, synth, or a path to a .gguf file)");
            continue;
        };
        let Some(model) = check_model(r, name, base) else {
            continue;
        };
        let label = model.label();
        if let Some(first) = labels.get(&label) {
            r.on(
                name,
                format!(
                    "model '{}' has the same name in cell ids, '{label}', as the model at line {}",
                    name.value, first.line
                ),
            );
            continue;
        }
        labels.insert(label, Pos::of(name));
        out.push(model);
    }
    out
}

pub(super) fn check_model(r: &mut Report, name: &Spanned<String>, base: &Path) -> Option<ModelRef> {
    let n = name.value.trim();
    if n == SYNTH_MODEL {
        return Some(ModelRef::Synth);
    }
    if REGISTRY.iter().any(|m| m.name == n) {
        return Some(ModelRef::Registry(n.to_string()));
    }
    if n.contains('/') || n.contains('\\') || n.to_ascii_lowercase().ends_with(".gguf") {
        let path = suite_relative(n, base);
        if path.exists() {
            // The header is read now (a memory map, nothing loaded), so a directory, a text
            // file or a truncated download is named here rather than on the device.
            return match meltbench_gguf::Gguf::open(&path) {
                Ok(_) => Some(ModelRef::File(path)),
                Err(e) => {
                    r.on(name, format!("model file '{n}' cannot be used: {e}"));
                    None
                }
            };
        }
        r.on(
            name,
            format!(
                "model file '{n}' does not exist (looked for {}; paths are relative to the suite file)",
                path.display()
            ),
        );
        return None;
    }
    if crate::cache::is_valid_name(n)
        && matches!(
            crate::cache::ModelCache::from_env().map(|c| c.lookup_name(n)),
            Ok(Ok(Some(_)))
        )
    {
        return Some(ModelRef::Cached(n.to_string()));
    }
    let registry: Vec<&str> = REGISTRY.iter().map(|m| m.name).collect();
    r.on(
        name,
        format!(
            "unknown model '{n}' (registry: {}; also allowed: {SYNTH_MODEL}, a name given to \
             `meltbench models pull --name`, or a path to a .gguf file)",
            registry.join(", ")
        ),
    );
    None
}

pub(super) fn listable() -> String {
    Precision::LISTABLE.map(|p| p.as_str()).join(", ")
}

pub(super) fn check_precisions(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<String>>>>,
) -> Vec<Precision> {
    let Some(list) = list else {
        return vec![Precision::Native];
    };
    r.non_empty(
        list,
        "precisions",
        format!(
            "list some of {} or omit it to use the model's own type",
            listable()
        ),
    );
    let mut out = Vec::new();
    for p in &list.value {
        match Precision::parse(p.value.trim()) {
            Some(prec) if out.contains(&prec) => {
                r.on(p, format!("precision '{}' is listed twice", p.value));
            }
            Some(prec) => out.push(prec),
            None => r.on(
                p,
                format!("unknown precision '{}' (allowed: {})", p.value, listable()),
            ),
        }
    }
    out
}

/// The context length a model's file declares (`<arch>.context_length`), when the file is at
/// hand: a path, or a registry or named model already in the cache. `None` otherwise (a model
/// not pulled yet, `synth`): the engine still refuses an overflow at run time.
pub(super) fn context_length(model: &ModelRef) -> Option<u64> {
    let in_cache = |sha256: Option<String>| -> Option<PathBuf> {
        let path = crate::cache::ModelCache::from_env()
            .ok()?
            .blob_path(&sha256?);
        path.is_file().then_some(path)
    };
    let path = match model {
        ModelRef::File(path) => Some(path.clone()),
        ModelRef::Registry(name) => in_cache(
            REGISTRY
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.sha256.to_string()),
        ),
        ModelRef::Cached(name) => in_cache(
            crate::cache::ModelCache::from_env()
                .ok()
                .and_then(|c| c.lookup_name(name).ok().flatten())
                .map(|record| record.sha256),
        ),
        ModelRef::Synth => None,
    };
    file_context_length(&path?)
}

/// Parsing a header reads the whole vocabulary (262,144 strings for Gemma 3), so each file is
/// read once per process and size/modification time.
fn file_context_length(path: &Path) -> Option<u64> {
    type Seen = HashMap<(PathBuf, u64, Option<SystemTime>), Option<u64>>;
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    let meta = std::fs::metadata(path).ok()?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let seen = SEEN.get_or_init(Default::default);
    if let Some(known) = seen.lock().ok()?.get(&key) {
        return *known;
    }
    let read = || -> Option<u64> {
        let gguf = meltbench_gguf::Gguf::open(path).ok()?;
        let arch = gguf.get("general.architecture")?.as_str()?.to_string();
        gguf.get(&format!("{arch}.context_length"))?.as_u64()
    };
    let found = read();
    seen.lock().ok()?.insert(key, found);
    found
}
