//! The architectures the engine runs, by their `general.architecture` name.

use super::arch::Architecture;
use super::{gemma3, llama, qwen2, qwen3};

/// Every architecture the engine runs.
pub const ARCHITECTURES: &[Architecture] = &[llama::ARCH, qwen2::ARCH, qwen3::ARCH, gemma3::ARCH];

/// The registry entry for `name`.
pub fn find(name: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|a| a.name == name)
}

/// The names the registry knows, for error messages.
pub fn names() -> String {
    ARCHITECTURES
        .iter()
        .map(|a| a.name)
        .collect::<Vec<_>>()
        .join(", ")
}
