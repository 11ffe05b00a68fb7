//! Where the engine and agent binaries for the local device are.
//!
//! They are built with the controller (`cargo build --release` builds the whole workspace), so
//! they sit next to the `meltbench` executable; `MELTBENCH_BIN_DIR` points elsewhere.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BinError {
    #[error("cannot find {name} in {dir}; build the workspace with `cargo build --release` (or set MELTBENCH_BIN_DIR to the folder that holds it)")]
    Missing { name: &'static str, dir: String },
    #[error("cannot locate the meltbench executable: {0}")]
    CurrentExe(std::io::Error),
}

pub fn bin_dir() -> Result<PathBuf, BinError> {
    if let Some(d) = std::env::var_os("MELTBENCH_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe().map_err(BinError::CurrentExe)?;
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    // Test binaries live in target/<profile>/deps; the real binaries one level up.
    if dir.ends_with("deps") {
        return Ok(dir.parent().map(PathBuf::from).unwrap_or(dir));
    }
    Ok(dir)
}

fn find(name: &'static str) -> Result<PathBuf, BinError> {
    let dir = bin_dir()?;
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(BinError::Missing {
            name,
            dir: dir.display().to_string(),
        })
    }
}

pub fn engine() -> Result<PathBuf, BinError> {
    find("meltbench-engine")
}

pub fn agent() -> Result<PathBuf, BinError> {
    find("meltbench-agent")
}
