//! Reading a model's hyper-parameters (`<arch>.*` metadata keys) and the errors of loading one.

use crate::gguf::{Gguf, GgufError, Value};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("architecture '{name}' is not supported (supported: {supported}); `meltbench-engine info MODEL` lists what the file needs")]
    UnsupportedArchitecture { name: String, supported: String },
    #[error("the model has no '{0}' metadata, which a {1} model needs")]
    MissingKey(String, &'static str),
    #[error("the model has no tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("the model's hyper-parameters are inconsistent: {0}")]
    Inconsistent(String),
    #[error("rope scaling '{0}' is not supported yet (supported: none, linear, llama3 frequency factors)")]
    UnsupportedRope(String),
}

/// The generic hyper-parameters every architecture has, and typed access to its other
/// `<arch>.*` keys for the architecture files.
pub struct Hparams<'g> {
    g: &'g Gguf,
    pub arch: String,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub head_dim: usize,
}

impl<'g> Hparams<'g> {
    /// The keys of architecture `arch` in `g`, with the generic sizes still to be read.
    pub fn new(g: &'g Gguf, arch: String) -> Self {
        Hparams {
            g,
            arch,
            dim: 0,
            n_layers: 0,
            n_heads: 0,
            head_dim: 0,
        }
    }

    /// The full metadata key of `<arch>.k`.
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    /// `<arch>.k` as an integer, if present.
    pub fn int(&self, k: &str) -> Option<usize> {
        self.g
            .get(&self.key(k))
            .and_then(Value::as_u64)
            .map(|v| v as usize)
    }

    /// `<arch>.k` as a float, if present.
    pub fn float(&self, k: &str) -> Option<f64> {
        self.g.get(&self.key(k)).and_then(Value::as_f64)
    }

    /// `<arch>.k` as an array of booleans, if it is one.
    pub fn bools(&self, k: &str) -> Option<Vec<bool>> {
        let a = self.g.get(&self.key(k)).and_then(Value::as_array)?;
        a.iter().map(Value::as_bool).collect()
    }

    /// `<arch>.k` as an integer, which the model cannot do without.
    pub fn required(&self, k: &str) -> Result<usize, ModelError> {
        self.int(k)
            .ok_or_else(|| ModelError::MissingKey(self.key(k), "transformer"))
    }
}
