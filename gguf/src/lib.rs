//! `meltbench-gguf`: GGUF v2/v3 files (metadata, tensor table, writing) and the tensor element
//! types with their block layouts. Its own crate so the controller can read a model's header
//! without linking the engine.

pub mod dtype;
mod reader;

pub use reader::*;
