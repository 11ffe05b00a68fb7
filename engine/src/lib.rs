//! meltbench-engine: a small, readable quantized inference engine for llama-family GGUF models.

pub mod dtype;
pub mod kernels;
