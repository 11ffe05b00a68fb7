//! meltbench-engine: a small, readable quantized inference engine for GGUF models of the llama,
//! qwen2, qwen3 and gemma3 architectures.
//!
//! Reading order: [`gguf`] (the file), [`tokenizer`], [`model`] (weights) and
//! [`session::Session::forward`] (the network, every architecture), [`ops`] and [`kernels`] (the arithmetic),
//! [`sampler`], then the tools built on them: [`generate`], [`bench`], [`perplexity`],
//! [`quantize`], [`synth`], and [`bandwidth`], the memory ceiling decode runs against.

pub use meltbench_gguf as gguf;
pub use meltbench_gguf::dtype;

pub mod bandwidth;
pub mod bench;
pub mod chat;
pub mod generate;
pub mod info;
pub mod kernels;
pub mod kquants_quantize;
pub mod kv_cache;
pub mod load;
pub mod logits_file;
pub mod model;
pub mod ops;
pub mod perplexity;
pub mod pool;
pub mod quantize;
pub mod sampler;
pub mod session;
pub mod synth;
pub mod tasks;
pub mod tokenizer;
pub mod topology;
