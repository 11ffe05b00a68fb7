//! Tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata, matching llama.cpp's ids.

pub mod bpe;
pub mod pretokenize;
pub mod spm;

use crate::gguf::{Gguf, Value};
use pretokenize::PreTokenizer;
use std::collections::HashMap;

/// GGUF token types (`tokenizer.ggml.token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_UNKNOWN: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("the model has no '{0}' metadata, so it carries no tokenizer")]
    Missing(&'static str),
    #[error("tokenizer model '{0}' is not supported (supported: gpt2 byte-level BPE, llama SentencePiece)")]
    UnsupportedModel(String),
    #[error("pre-tokenizer '{0}' is not supported yet (supported: default, gpt2, smollm and the GPT-2-regex family); its splitting rules are needed for token ids to match llama.cpp")]
    UnsupportedPre(String),
    #[error("tokenizer metadata is malformed: {0}")]
    Malformed(String),
}

enum Model {
    Bpe(bpe::Bpe),
    Spm(spm::Spm),
}

pub struct Tokenizer {
    model: Model,
    tokens: Vec<String>,
    types: Vec<i32>,
    scores: Vec<f32>,
    token_to_id: HashMap<String, u32>,
    /// Control, user-defined and unknown tokens, longest text first, as llama.cpp partitions them.
    specials: Vec<(String, u32, i32)>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    pub add_bos: bool,
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let model_name = g
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .ok_or(TokenizerError::Missing("tokenizer.ggml.model"))?;
        let tokens: Vec<String> = g
            .get("tokenizer.ggml.tokens")
            .and_then(Value::as_array)
            .ok_or(TokenizerError::Missing("tokenizer.ggml.tokens"))?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                TokenizerError::Malformed("tokenizer.ggml.tokens holds a non-string".into())
            })?;
        let n = tokens.len();
        let types: Vec<i32> = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1) as i32).collect(),
            None => vec![1; n],
        };
        let scores: Vec<f32> = match g.get("tokenizer.ggml.scores").and_then(Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
            None => vec![0.0; n],
        };
        if types.len() != n || scores.len() != n {
            return Err(TokenizerError::Malformed(format!(
                "{n} tokens but {} token types and {} scores",
                types.len(),
                scores.len()
            )));
        }
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            // On duplicate texts the first id wins, as in llama.cpp.
            token_to_id.entry(t.clone()).or_insert(i as u32);
        }
        let id_key = |k: &str| {
            g.get(k)
                .and_then(Value::as_u64)
                .map(|v| v as u32)
                .filter(|&v| (v as usize) < n)
        };
        let bool_key = |k: &str| g.get(k).and_then(Value::as_bool);
        let (model, default_add_bos) = match model_name {
            "gpt2" => {
                let pre_name = g
                    .get("tokenizer.ggml.pre")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                let pre = PreTokenizer::from_gguf_name(pre_name)
                    .ok_or_else(|| TokenizerError::UnsupportedPre(pre_name.to_string()))?;
                let merges: Vec<String> = g
                    .get("tokenizer.ggml.merges")
                    .and_then(Value::as_array)
                    .ok_or(TokenizerError::Missing("tokenizer.ggml.merges"))?
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                (
                    Model::Bpe(
                        bpe::Bpe::new(pre, &token_to_id, &merges)
                            .map_err(TokenizerError::Malformed)?,
                    ),
                    false,
                )
            }
            "llama" => {
                let prefix = bool_key("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                (Model::Spm(spm::Spm::new(&token_to_id, prefix)), true)
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let mut specials: Vec<(String, u32, i32)> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types[*i], TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNKNOWN))
            .filter(|(_, t)| !t.is_empty())
            .map(|(i, t)| (t.clone(), i as u32, types[i]))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let eot = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"]
            .iter()
            .find_map(|t| token_to_id.get(*t).copied())
            .or_else(|| id_key("tokenizer.ggml.eot_token_id"));
        Ok(Tokenizer {
            model,
            specials,
            bos: id_key("tokenizer.ggml.bos_token_id"),
            eos: id_key("tokenizer.ggml.eos_token_id"),
            eot,
            unk: id_key("tokenizer.ggml.unknown_token_id"),
            add_bos: bool_key("tokenizer.ggml.add_bos_token").unwrap_or(default_add_bos),
            tokens,
            types,
            scores,
            token_to_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token ids for `text`. `add_special` adds BOS when the model asks for it; with
    /// `parse_special`, control tokens written in the text (e.g. `<|im_start|>`) become their ids,
    /// otherwise only user-defined tokens are recognised (llama.cpp's rules).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut first = true;
        for (piece, special) in self.partition(text, parse_special) {
            match special {
                Some(id) => out.push(id),
                None => match &self.model {
                    Model::Bpe(b) => b.encode(piece, &mut out),
                    Model::Spm(s) => s.encode(
                        piece,
                        first,
                        &self.token_to_id,
                        &self.scores,
                        self.unk,
                        &mut out,
                    ),
                },
            }
            first = false;
        }
        out
    }

    /// Splits out the special tokens that appear literally in `text`.
    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<(&'t str, Option<u32>)> {
        let mut parts = Vec::new();
        let mut rest = text;
        'outer: while !rest.is_empty() {
            // The earliest occurrence wins; among tokens at the same place, the longest.
            let mut hit: Option<(usize, &str, u32)> = None;
            for (t, id, ty) in &self.specials {
                if !parse_special && *ty != TYPE_USER_DEFINED {
                    continue;
                }
                if let Some(p) = rest.find(t.as_str()) {
                    if hit.is_none_or(|(hp, _, _)| p < hp) {
                        hit = Some((p, t, *id));
                    }
                }
            }
            match hit {
                Some((p, t, id)) => {
                    if p > 0 {
                        parts.push((&rest[..p], None));
                    }
                    parts.push((&rest[p..p + t.len()], Some(id)));
                    rest = &rest[p + t.len()..];
                }
                None => {
                    parts.push((rest, None));
                    break 'outer;
                }
            }
        }
        parts
    }

    /// The bytes token `id` stands for; control tokens render as nothing unless `special`.
    pub fn token_bytes(&self, id: u32, special: bool, out: &mut Vec<u8>) {
        let Some(text) = self.tokens.get(id as usize) else {
            return;
        };
        match self.types[id as usize] {
            TYPE_CONTROL | TYPE_UNKNOWN if !special => {}
            TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNKNOWN => {
                out.extend_from_slice(text.as_bytes())
            }
            _ => match &self.model {
                Model::Bpe(b) => b.token_bytes(text, out),
                Model::Spm(s) => s.token_bytes(text, out),
            },
        }
    }

    /// Text for a sequence of ids (invalid UTF-8 across a cut is replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            self.token_bytes(id, false, &mut bytes);
        }
        if let Model::Spm(s) = &self.model {
            if s.strips_leading_space() && bytes.first() == Some(&b' ') {
                bytes.remove(0);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// End of generation: EOS, or an end-of-turn token for chat models.
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        Some(id) == self.eos || Some(id) == self.eot
    }
}
