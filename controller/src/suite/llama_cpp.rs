//! `llama.cpp:` of an engine: llama.cpp's tools, pushed from a build here or already on the
//! device, run by the agent's `llama.cpp` adapter (`agent/src/adapter/llama_cpp.rs`).

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LlamaCppFile {
    #[serde(default, deserialize_with = "present")]
    dir: Field<String>,
    #[serde(default, deserialize_with = "present")]
    device_dir: Field<String>,
    #[serde(default, deserialize_with = "present")]
    tool: Field<String>,
    #[serde(default, deserialize_with = "present")]
    args: Field<Vec<Spanned<Raw>>>,
}

/// llama.cpp's tools for an engine, and the words its `llama-server` gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlamaCppTools {
    pub place: ToolsPlace,
    /// The tool the adapter runs: `llama-server` or `llama-bench`. `None` (a device directory
    /// without `tool:`): the adapter takes llama-server where the device has it.
    pub tool: Option<String>,
    /// Added to the tool's command line, e.g. `-ngl 99` for a GPU build.
    pub args: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolsPlace {
    /// A build on this machine: the files pushed to each device (the tool and the shared
    /// libraries beside it), by their names in the build.
    Local(Vec<(String, PathBuf)>),
    /// A directory on the device holding `llama-server` or `llama-bench`.
    OnDevice(String),
}

/// The program of a build the adapter prefers: every figure of a pass, from token arrival.
pub const LLAMA_SERVER: &str = "llama-server";
/// The one it runs where a build has no server: prefill and the decode as a whole.
pub const LLAMA_BENCH: &str = "llama-bench";

impl LlamaCppTools {
    /// The adapter's settings: the words between `meltbench-agent` and `bench`. `files` are
    /// where the build's files are as the device sees them (ignored for a device directory).
    pub fn adapter_args(&self, files: &[(String, String)]) -> Vec<String> {
        let mut args: Vec<String> = vec!["adapter".into(), "llama.cpp".into()];
        match &self.place {
            ToolsPlace::OnDevice(dir) => args.extend(["--dir".into(), dir.clone()]),
            ToolsPlace::Local(_) => {
                for (name, path) in files {
                    args.extend(["--file".into(), format!("{name}={path}")]);
                }
            }
        }
        if let Some(tool) = &self.tool {
            args.extend(["--tool".into(), tool.clone()]);
        }
        for w in &self.args {
            args.extend(["--arg".into(), w.clone()]);
        }
        args
    }
}

pub(super) fn llama_cpp_tools(
    r: &mut Report,
    l: &Spanned<LlamaCppFile>,
    base: &Path,
) -> Option<LlamaCppTools> {
    let mut tool = None;
    if let Some(t) = &l.value.tool {
        if t.value != LLAMA_SERVER && t.value != LLAMA_BENCH {
            r.on(
                t,
                format!(
                    "tool '{}' is not one the adapter runs: give {LLAMA_SERVER} (every figure \
                     of a pass) or {LLAMA_BENCH} (prefill and the decode as a whole)",
                    t.value
                ),
            );
            return None;
        }
        tool = Some(t.value.clone());
    }
    let place = match (&l.value.dir, &l.value.device_dir) {
        (Some(d), Some(_)) => {
            r.on(
                d,
                "give one of 'dir' (a build here, pushed) and 'device_dir' (on the device)",
            );
            return None;
        }
        (None, None) => {
            r.on(
                l,
                "llama.cpp needs 'dir' (a build's bin directory here, pushed to each device) or \
                 'device_dir' (the directory of llama-server or llama-bench on the device)",
            );
            return None;
        }
        (Some(d), None) => match build_files(&d.value, base, tool.as_deref()) {
            Ok((chosen, files)) => {
                tool = Some(chosen);
                ToolsPlace::Local(files)
            }
            Err(message) => {
                r.on(d, message);
                return None;
            }
        },
        (None, Some(d)) => {
            if !d.value.starts_with('/') {
                r.on(
                    d,
                    format!(
                        "device_dir '{}' must be an absolute path on the device",
                        d.value
                    ),
                );
                return None;
            }
            ToolsPlace::OnDevice(d.value.trim_end_matches('/').to_string())
        }
    };
    let mut args = Vec::new();
    for a in l.value.args.iter().flat_map(|a| &a.value) {
        match &a.value {
            Raw::Str(s) => args.push(s.clone()),
            Raw::Int(i) => args.push(i.to_string()),
            Raw::Float(f) => args.push(f.to_string()),
            _ => {
                r.on(
                    a,
                    "each of 'args' is one word of the tool's command line (e.g. args: \
                     [-ngl, 99])",
                );
                return None;
            }
        }
    }
    Some(LlamaCppTools { place, tool, args })
}

/// The tool of the build in `written` (relative to the suite file) the adapter runs (`tool`,
/// or llama-server where the build has it, else llama-bench) and the files a device needs: that
/// tool and every shared library beside it (a `-DBUILD_SHARED_LIBS=ON` build puts them in
/// bin/), not the other tools.
fn build_files(
    written: &str,
    base: &Path,
    tool: Option<&str>,
) -> Result<(String, Vec<(String, PathBuf)>), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = suite_relative(written, base);
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        format!(
            "dir '{written}' cannot be read ({}: {e}; paths are relative to the suite file)",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    let mut tools = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        // A library's versioned names are symbolic links to one file; metadata follows them.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        if name.contains(".so") {
            files.push((name, path));
        } else if name == LLAMA_SERVER || name == LLAMA_BENCH {
            tools.push((name, path));
        }
    }
    let pick = |want: &str| tools.iter().find(|(n, _)| n == want).cloned();
    let chosen = match tool {
        Some(t) => pick(t),
        None => pick(LLAMA_SERVER).or_else(|| pick(LLAMA_BENCH)),
    };
    let Some((name, program)) = chosen else {
        let wanted = tool.map_or(format!("{LLAMA_SERVER} or {LLAMA_BENCH}"), str::to_string);
        return Err(format!(
            "dir '{written}' ({}) has no {wanted}: give the bin directory of a llama.cpp build \
             (cmake --build build --target {LLAMA_SERVER} {LLAMA_BENCH})",
            dir.display()
        ));
    };
    let mode = std::fs::metadata(&program).map(|m| m.permissions().mode());
    if mode.is_ok_and(|m| m & 0o111 == 0) {
        return Err(format!(
            "{} is not executable (chmod +x {})",
            program.display(),
            program.display()
        ));
    }
    files.push((name.clone(), program));
    files.sort();
    Ok((name, files))
}
