//! Models in the precisions a suite asks for: the source model is resolved (pulled when needed)
//! and converted once per type by the engine's `quantize`, cached by source SHA-256 and type so
//! a second run converts nothing.

use crate::models;
use crate::sha;
use meltbench_gguf::dtype::DType;
use meltbench_gguf::Gguf;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The suite's name for the built-in synthetic model (`meltbench-engine synth`).
pub const SYNTH: &str = "synth";

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Pull(#[from] models::PullError),
    #[error("{path}: {message}")]
    Model { path: String, message: String },
    #[error("converting {model} to {precision} failed: {message}")]
    Convert {
        model: String,
        precision: String,
        message: String,
    },
    #[error("{0}")]
    Io(String),
}

#[derive(Clone, Debug)]
pub struct PreparedModel {
    pub path: PathBuf,
    pub sha256: String,
    /// The type of most weight matrices in `path`.
    pub precision: String,
}

/// The model `name` (registry name, cached name, path, or `synth`) in `precision`
/// (`native` keeps the file as it is).
pub fn prepare(engine: &Path, name: &str, precision: &str) -> Result<PreparedModel, PrepareError> {
    // The pull verified the source's SHA-256 already; it is not hashed a second time here.
    let (source, src_sha) = if name == SYNTH {
        made_by_engine(engine, "synth-seed1-f32.gguf", |out| {
            vec!["synth".into(), out.into()]
        })?
    } else {
        let pulled = models::pull(name, &models::PullOptions::default())?;
        (pulled.path, pulled.sha256)
    };
    let native = native_type(&source)?;
    if precision == "native" || precision == native {
        return Ok(PreparedModel {
            path: source,
            sha256: src_sha,
            precision: native,
        });
    }
    let target: DType = precision
        .parse()
        .map_err(|e: String| PrepareError::Convert {
            model: name.into(),
            precision: precision.into(),
            message: e,
        })?;
    let (path, sha256) = made_by_engine(engine, &format!("{src_sha}-{target}.gguf"), |out| {
        vec![
            "quantize".into(),
            source.clone().into_os_string(),
            out.into(),
            "--type".into(),
            target.name().into(),
        ]
    })
    .map_err(|e| PrepareError::Convert {
        model: name.into(),
        precision: precision.into(),
        message: e.to_string(),
    })?;
    Ok(PreparedModel {
        path,
        sha256,
        precision: target.name().into(),
    })
}

fn native_type(path: &Path) -> Result<String, PrepareError> {
    let g = Gguf::open(path).map_err(|e| PrepareError::Model {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(g.tensor("blk.0.attn_q.weight")
        .map(|t| t.type_name())
        .unwrap_or_else(|| "unknown".into()))
}

/// A file the engine writes into the conversion cache (`file_name`), made once: the engine's
/// arguments come from `args(output path)`. Its SHA-256 is computed when it is made and kept
/// beside it, so later runs do not hash hundreds of megabytes again.
fn made_by_engine(
    engine: &Path,
    file_name: &str,
    args: impl FnOnce(&Path) -> Vec<std::ffi::OsString>,
) -> Result<(PathBuf, String), PrepareError> {
    let dir = models::cache_dir()?.join("converted");
    let io = |what: &str, p: &Path, e: std::io::Error| {
        PrepareError::Io(format!("cannot {what} {}: {e}", p.display()))
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
    let out = dir.join(file_name);
    let sha_file = dir.join(format!("{file_name}.sha256"));
    if out.exists() {
        if let Ok(sha) = std::fs::read_to_string(&sha_file) {
            return Ok((out, sha.trim().to_string()));
        }
    } else {
        let partial = dir.join(format!("{file_name}.making"));
        let o = Command::new(engine)
            .args(args(&partial))
            .output()
            .map_err(|e| io("run", engine, e))?;
        if !o.status.success() {
            let _ = std::fs::remove_file(&partial);
            return Err(PrepareError::Io(format!(
                "{} failed: {}",
                engine.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        std::fs::rename(&partial, &out).map_err(|e| io("move", &partial, e))?;
    }
    let (sha, _) = sha::hash_file(&out).map_err(|e| io("hash", &out, e))?;
    std::fs::write(&sha_file, &sha).map_err(|e| io("write", &sha_file, e))?;
    Ok((out, sha))
}
