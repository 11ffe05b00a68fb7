//! The programs of a suite's engines other than the bundled one, for one device: which file
//! each is, whether it can run there, and (for a remote device) the push-cache artifact that
//! carries it.

use crate::device_error::DeviceError;
use crate::push::Artifact;
use crate::suite::{EngineDef, EngineProgramRef, LlamaCppTools, ToolsPlace};
use std::io::Read;
use std::path::Path;

/// An engine program on this machine (`Local`), already on the device (`OnDevice`), or the
/// agent as an adapter (`Agent`).
pub enum Program {
    Local {
        name: String,
        path: std::path::PathBuf,
    },
    OnDevice {
        name: String,
        path: String,
    },
    /// The agent itself, started with these arguments before `bench` (an adapter).
    Agent {
        name: String,
        args: Vec<String>,
    },
    /// The agent as the adapter of files on this machine (llama.cpp's build): pushed to a
    /// remote device, used in place on the local one; `tools` gives the adapter's arguments
    /// once the files' paths on the device are known.
    AgentWithFiles {
        name: String,
        files: Vec<(String, std::path::PathBuf)>,
        tools: LlamaCppTools,
    },
}

impl Program {
    /// The adapter's arguments when the files are used where they are (the local device).
    pub fn in_place(tools: &LlamaCppTools, files: &[(String, std::path::PathBuf)]) -> Vec<String> {
        let here: Vec<(String, String)> = files
            .iter()
            .map(|(n, p)| (n.clone(), p.display().to_string()))
            .collect();
        tools.adapter_args(&here)
    }
}

/// The non-bundled engines of `engines` for a device of `target` (a Rust target triple, e.g.
/// `aarch64-unknown-linux-musl`): a local program is refused when it is an ELF binary built
/// for another machine.
pub fn for_device(engines: &[EngineDef], target: &str) -> Result<Vec<Program>, DeviceError> {
    let mut out = Vec::new();
    for e in engines {
        match &e.program {
            EngineProgramRef::Bundled => {}
            EngineProgramRef::OnDevice(path) => out.push(Program::OnDevice {
                name: e.name.clone(),
                path: path.clone(),
            }),
            EngineProgramRef::OpenAi(endpoint) => out.push(Program::Agent {
                name: e.name.clone(),
                args: endpoint.adapter_args(),
            }),
            EngineProgramRef::LlamaCpp(tools) => match &tools.place {
                ToolsPlace::OnDevice(_) => out.push(Program::Agent {
                    name: e.name.clone(),
                    args: tools.adapter_args(&[]),
                }),
                ToolsPlace::Local(files) => {
                    for (_, path) in files {
                        check_abi(&e.name, path, target)?;
                    }
                    out.push(Program::AgentWithFiles {
                        name: e.name.clone(),
                        files: files.clone(),
                        tools: tools.clone(),
                    });
                }
            },
            EngineProgramRef::Local(path) => {
                check_abi(&e.name, path, target)?;
                out.push(Program::Local {
                    name: e.name.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The push-cache artifact of engine `name`'s local program at `path` (hashed here: only a
/// remote device needs it).
pub fn artifact(name: &str, path: &Path) -> Result<Artifact, DeviceError> {
    let (sha256, bytes) = crate::sha::hash_file(path).map_err(|err| {
        DeviceError::Setup(format!(
            "engine '{name}': cannot read {}: {err}",
            path.display()
        ))
    })?;
    Ok(Artifact {
        local: path.to_path_buf(),
        sha256,
        bytes,
        mode: 0o755,
    })
}

/// The machine an ELF file is built for, by its `e_machine`; `None` for anything else (a
/// script, which runs wherever its interpreter does).
fn elf_machine(path: &Path) -> std::io::Result<Option<&'static str>> {
    let mut head = [0u8; 20];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    if n < 20 || &head[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let machine = match head[5] {
        1 => u16::from_le_bytes([head[18], head[19]]),
        _ => u16::from_be_bytes([head[18], head[19]]),
    };
    Ok(Some(match machine {
        3 => "x86",
        40 => "arm",
        62 => "x86_64",
        183 => "aarch64",
        243 => "riscv",
        _ => "another machine",
    }))
}

fn check_abi(name: &str, path: &Path, target: &str) -> Result<(), DeviceError> {
    let want = target.split('-').next().unwrap_or(target);
    let want = if want.starts_with("armv7") || want == "arm" {
        "arm"
    } else if want.starts_with("riscv") {
        "riscv"
    } else {
        want
    };
    match elf_machine(path) {
        Ok(Some(machine)) if machine != want => Err(DeviceError::Setup(format!(
            "engine '{name}': {} is an ELF binary for {machine}, but the device runs {target} \
             programs; build it for {target} or give the device's own build as \
             `device_command:`",
            path.display()
        ))),
        Ok(_) => Ok(()),
        Err(err) => Err(DeviceError::Setup(format!(
            "engine '{name}': cannot read {}: {err}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(name: &str, path: &Path) -> EngineDef {
        EngineDef {
            name: name.into(),
            program: EngineProgramRef::Local(path.to_path_buf()),
        }
    }

    #[test]
    fn a_binary_for_another_machine_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("engine");
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[5] = 1;
        bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
        std::fs::write(&elf, &bytes).unwrap();
        let err = for_device(&[engine("old", &elf)], "x86_64-unknown-linux-musl")
            .err()
            .expect("an aarch64 binary on an x86_64 device")
            .to_string();
        assert!(err.contains("ELF binary for aarch64"), "{err}");
        assert!(for_device(&[engine("old", &elf)], "aarch64-unknown-linux-musl").is_ok());

        let script = dir.path().join("shim.sh");
        std::fs::write(&script, "#!/bin/sh\nexec true\n").unwrap();
        let programs = for_device(&[engine("shim", &script)], "armv7-unknown-linux-gnueabihf")
            .expect("a script runs wherever its interpreter does");
        assert!(matches!(&programs[..], [Program::Local { name, .. }] if name == "shim"));
    }
}
