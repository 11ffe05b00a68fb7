//! The suite's `engines:`: which programs run each cell. Several engines make one more axis of
//! the matrix, and their sessions alternate on the device (see the agent's `arms.rs`).

use super::llama_cpp::{llama_cpp_tools, LlamaCppFile, LlamaCppTools};
use super::*;
use meltbench_protocol::agent::BUNDLED_ENGINE;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EngineFile {
    #[serde(default, deserialize_with = "present")]
    name: Field<String>,
    #[serde(default, deserialize_with = "present")]
    command: Field<String>,
    #[serde(default, deserialize_with = "present")]
    device_command: Field<String>,
    #[serde(default, deserialize_with = "present")]
    openai: Field<OpenAiFile>,
    #[serde(default, rename = "llama.cpp", deserialize_with = "present")]
    llama_cpp: Field<LlamaCppFile>,
}

/// `openai:` of an engine: an OpenAI-compatible endpoint the device reaches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenAiFile {
    #[serde(default, deserialize_with = "present")]
    url: Field<String>,
    #[serde(default, deserialize_with = "present")]
    model: Field<String>,
    #[serde(default, deserialize_with = "present")]
    memory_of: Field<String>,
}

/// An engine as a suite names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineDef {
    /// Its name in cell ids, reports and `gate --baseline-engine`.
    pub name: String,
    pub program: EngineProgramRef,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineProgramRef {
    /// `meltbench-engine` from the bundle (or this build, on the local device).
    Bundled,
    /// A program on this machine that speaks the bench contract (`docs/engine-contract.md`):
    /// pushed to each device through the push cache and checked by SHA-256 like the bundle.
    Local(PathBuf),
    /// A program already on the device, by its path there.
    OnDevice(String),
    /// An OpenAI-compatible endpoint, measured from the device by the agent's `openai` adapter.
    OpenAi(OpenAiEndpoint),
    /// llama.cpp's `llama-server` (or `llama-bench` where a build has no server), run and
    /// measured on the device by the agent's `llama.cpp` adapter.
    LlamaCpp(LlamaCppTools),
}

/// Where the `openai` adapter sends its requests (see `agent/src/adapter/openai.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAiEndpoint {
    /// Base URL as the device reaches it, e.g. `http://127.0.0.1:8080/v1`.
    pub url: String,
    /// The model name requests carry; `None`: the first the server lists.
    pub model: Option<String>,
    /// The server's process name or pid on the device, whose peak memory passes report.
    pub memory_of: Option<String>,
}

impl OpenAiEndpoint {
    /// The adapter's settings: the words between `meltbench-agent` and `bench`.
    pub fn adapter_args(&self) -> Vec<String> {
        let mut args = vec![
            "adapter".into(),
            "openai".into(),
            "--url".into(),
            self.url.clone(),
        ];
        if let Some(m) = &self.model {
            args.extend(["--model".into(), m.clone()]);
        }
        if let Some(m) = &self.memory_of {
            args.extend(["--memory-of".into(), m.clone()]);
        }
        args
    }
}

impl EngineDef {
    pub fn bundled() -> EngineDef {
        EngineDef {
            name: BUNDLED_ENGINE.to_string(),
            program: EngineProgramRef::Bundled,
        }
    }

    /// Cold starts of this engine's cells: none for a server, which is already running when
    /// the adapter starts (a cold start would time the adapter, not the model's load).
    pub fn cold_start_runs(&self, suite: usize) -> usize {
        match self.program {
            EngineProgramRef::OpenAi(_) => 0,
            _ => suite,
        }
    }
}

const FORMS: &str = "`- name: bundled`, `- {name: NAME, command: PATH}` (a program here, pushed \
                     to each device), `- {name: NAME, device_command: PATH}` (already on the \
                     device), `- {name: NAME, llama.cpp: {dir: BUILD/bin}}` (llama.cpp's \
                     llama-server or llama-bench, pushed or `device_dir:`) or `- {name: NAME, openai: \
                     {url: http://HOST:PORT/v1}}` (an OpenAI-compatible server the device \
                     reaches)";
const ONE_OF: &str = "give one of 'command', 'device_command', 'llama.cpp' and 'openai'";

pub(super) fn check_engines(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<EngineFile>>>>,
    base: &Path,
) -> Vec<EngineDef> {
    let Some(list) = list else {
        return vec![EngineDef::bundled()];
    };
    r.non_empty(list, "engines", format!("list at least one: {FORMS}"));
    let mut out: Vec<EngineDef> = Vec::new();
    let mut seen: BTreeMap<String, Pos> = BTreeMap::new();
    for entry in &list.value {
        let e = &entry.value;
        let Some(name) = &e.name else {
            r.on(entry, format!("engine has no 'name' ({FORMS})"));
            continue;
        };
        let n = name.value.trim();
        if !yaml::is_simple_name(n) {
            r.on(
                name,
                format!(
                    "invalid engine name '{n}' (allowed: {})",
                    yaml::SIMPLE_NAME_RULE
                ),
            );
            continue;
        }
        if let Some(first) = seen.get(n) {
            r.on(
                name,
                format!(
                    "engine '{n}' is listed twice (first at line {})",
                    first.line
                ),
            );
            continue;
        }
        seen.insert(n.to_string(), Pos::of(name));
        if e.openai.is_some() || e.llama_cpp.is_some() {
            if let Some(c) = e.command.as_ref().or(e.device_command.as_ref()) {
                r.on(c, ONE_OF);
                continue;
            }
            if n == BUNDLED_ENGINE {
                r.on(
                    name,
                    format!(
                        "'{BUNDLED_ENGINE}' is the engine of the bundle; name this one otherwise"
                    ),
                );
                continue;
            }
            let program = if let Some(o) = &e.openai {
                if e.llama_cpp.is_some() {
                    r.on(o, ONE_OF);
                    None
                } else {
                    openai_endpoint(r, o).map(EngineProgramRef::OpenAi)
                }
            } else {
                (e.llama_cpp.as_ref())
                    .and_then(|l| llama_cpp_tools(r, l, base).map(EngineProgramRef::LlamaCpp))
            };
            if let Some(program) = program {
                out.push(EngineDef {
                    name: n.to_string(),
                    program,
                });
            }
            continue;
        }
        let program = match (&e.command, &e.device_command) {
            (Some(c), Some(_)) => {
                r.on(c, ONE_OF);
                continue;
            }
            (None, None) if n == BUNDLED_ENGINE => EngineProgramRef::Bundled,
            (None, None) => {
                r.on(
                    name,
                    format!(
                        "engine '{n}' says no program: only '{BUNDLED_ENGINE}' needs none ({FORMS})"
                    ),
                );
                continue;
            }
            (Some(c), None) | (None, Some(c)) if n == BUNDLED_ENGINE => {
                r.on(
                    c,
                    format!(
                        "'{BUNDLED_ENGINE}' is the engine of the bundle; give another build a name \
                         of its own (e.g. `- {{name: baseline, command: {}}}`)",
                        c.value
                    ),
                );
                continue;
            }
            (Some(c), None) => match local_program(&c.value, base) {
                Ok(p) => EngineProgramRef::Local(p),
                Err(message) => {
                    r.on(c, message);
                    continue;
                }
            },
            (None, Some(d)) => {
                if !d.value.starts_with('/') {
                    r.on(
                        d,
                        format!(
                            "device_command '{}' must be an absolute path on the device",
                            d.value
                        ),
                    );
                    continue;
                }
                EngineProgramRef::OnDevice(d.value.clone())
            }
        };
        out.push(EngineDef {
            name: n.to_string(),
            program,
        });
    }
    out
}

/// An `openai:` mapping, checked: a plain-HTTP base URL (the adapter speaks no TLS).
fn openai_endpoint(r: &mut Report, o: &Spanned<OpenAiFile>) -> Option<OpenAiEndpoint> {
    let Some(url) = &o.value.url else {
        r.on(o, "openai needs 'url', the server's base URL as the device reaches it (e.g. http://127.0.0.1:8080/v1)");
        return None;
    };
    let u = url.value.trim();
    if u.starts_with("https://") {
        r.on(url, format!("'{u}': the openai adapter speaks plain HTTP only (a server on the device or its LAN); use http://"));
        return None;
    }
    if !u.starts_with("http://") || u.len() <= "http://".len() {
        r.on(
            url,
            format!("'{u}' is not an http:// URL (e.g. http://127.0.0.1:8080/v1)"),
        );
        return None;
    }
    let text = |f: &Field<String>| {
        f.as_ref()
            .map(|s| s.value.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    Some(OpenAiEndpoint {
        url: u.trim_end_matches('/').to_string(),
        model: text(&o.value.model),
        memory_of: text(&o.value.memory_of),
    })
}

/// The program file a `command:` names (relative to the suite file): an executable file.
fn local_program(written: &str, base: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = suite_relative(written, base);
    let meta = std::fs::metadata(&path).map_err(|e| {
        format!(
            "command '{written}' cannot be used ({}: {e}; paths are relative to the suite file)",
            path.display()
        )
    })?;
    if !meta.is_file() {
        return Err(format!(
            "command '{written}' is not a file ({})",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "command '{written}' is not executable (chmod +x {})",
            path.display()
        ));
    }
    Ok(path)
}
