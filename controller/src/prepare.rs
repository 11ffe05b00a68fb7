//! Models in the precisions a suite asks for: the source model is resolved (pulled when needed)
//! and converted once per type by the engine's `quantize`, cached by source SHA-256 and type so
//! a second run converts nothing.

use crate::models;
use crate::sha;
use meltbench_engine::dtype::DType;
use meltbench_engine::gguf::Gguf;
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
    let source = if name == SYNTH {
        synth(engine)?
    } else {
        models::resolve_model(name)?
    };
    let native = native_type(&source)?;
    if precision == "native" || precision == native {
        return Ok(PreparedModel {
            sha256: hash(&source)?,
            path: source,
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
    let src_sha = hash(&source)?;
    let dir = converted_dir()?;
    let out = dir.join(format!("{src_sha}-{target}.gguf"));
    if !out.exists() {
        let partial = dir.join(format!("{src_sha}-{target}.gguf.converting"));
        let o = Command::new(engine)
            .arg("quantize")
            .arg(&source)
            .arg(&partial)
            .args(["--type", target.name()])
            .output()
            .map_err(|e| PrepareError::Io(format!("cannot run {}: {e}", engine.display())))?;
        if !o.status.success() {
            let _ = std::fs::remove_file(&partial);
            return Err(PrepareError::Convert {
                model: name.into(),
                precision: precision.into(),
                message: String::from_utf8_lossy(&o.stderr).trim().to_string(),
            });
        }
        std::fs::rename(&partial, &out)
            .map_err(|e| PrepareError::Io(format!("cannot move {}: {e}", partial.display())))?;
    }
    Ok(PreparedModel {
        sha256: hash(&out)?,
        path: out,
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

fn converted_dir() -> Result<PathBuf, PrepareError> {
    let dir = models::cache_dir()?.join("converted");
    std::fs::create_dir_all(&dir)
        .map_err(|e| PrepareError::Io(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

fn synth(engine: &Path) -> Result<PathBuf, PrepareError> {
    let out = converted_dir()?.join("synth-seed1-f32.gguf");
    if !out.exists() {
        let st = Command::new(engine)
            .arg("synth")
            .arg(&out)
            .output()
            .map_err(|e| PrepareError::Io(format!("cannot run {}: {e}", engine.display())))?;
        if !st.status.success() {
            return Err(PrepareError::Io(format!(
                "meltbench-engine synth failed: {}",
                String::from_utf8_lossy(&st.stderr)
            )));
        }
    }
    Ok(out)
}

fn hash(path: &Path) -> Result<String, PrepareError> {
    sha::hash_file(path)
        .map(|(hex, _)| hex)
        .map_err(|e| PrepareError::Io(format!("cannot hash {}: {e}", path.display())))
}
