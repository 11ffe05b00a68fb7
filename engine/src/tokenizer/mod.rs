//! Tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata, matching llama.cpp's ids.

pub mod bpe;
pub mod pretokenize;
pub mod special;
pub mod spm;

use crate::gguf::{Gguf, Value};
use pretokenize::PreTokenizer;
use special::{attr, Fragment, Specials};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("the model has no '{0}' metadata, so it carries no tokenizer")]
    Missing(&'static str),
    #[error("tokenizer model '{0}' is not supported (supported: gpt2 byte-level BPE, llama SentencePiece)")]
    UnsupportedModel(String),
    #[error("pre-tokenizer '{0}' is not supported yet (supported: gpt-2, llama-bpe, qwen2, smollm and the names llama.cpp maps to them); its splitting rules are needed for token ids to match llama.cpp")]
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
    attrs: Vec<u32>,
    scores: Vec<f32>,
    token_to_id: HashMap<String, u32>,
    specials: Specials,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let model_name = g
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .ok_or(TokenizerError::Missing("tokenizer.ggml.model"))?;
        let mut tokens: Vec<String> = g
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
        for (i, t) in tokens.iter_mut().enumerate() {
            // llama.cpp renames empty entries, so they can never match text.
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
        }
        let mut attrs: Vec<u32> = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array)
        {
            Some(a) => a
                .iter()
                .map(|v| {
                    special::attr::from_gguf_type(match v {
                        Value::I32(t) => *t as i64,
                        v => v.as_u64().map_or(-1, |t| t as i64),
                    })
                })
                .collect(),
            None => vec![special::attr::NORMAL; n],
        };
        let scores: Vec<f32> = match g.get("tokenizer.ggml.scores").and_then(Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
            None => vec![0.0; n],
        };
        if attrs.len() < n || scores.len() < n {
            return Err(TokenizerError::Malformed(format!(
                "{n} tokens but {} token types and {} scores",
                attrs.len(),
                scores.len()
            )));
        }
        attrs.truncate(n);
        special::apply_name_rules(&tokens, &mut attrs);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            // On duplicate texts the last id wins, as in llama.cpp's loader.
            token_to_id.insert(t.clone(), i as u32);
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
                let merges: Vec<&str> = g
                    .get("tokenizer.ggml.merges")
                    .and_then(Value::as_array)
                    .ok_or(TokenizerError::Missing("tokenizer.ggml.merges"))?
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                (
                    Model::Bpe(
                        bpe::Bpe::new(pre, &token_to_id, n, &merges)
                            .map_err(TokenizerError::Malformed)?,
                    ),
                    pre.default_add_bos,
                )
            }
            "llama" => {
                let prefix = bool_key("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                (Model::Spm(spm::Spm::new(&token_to_id, prefix)), true)
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let specials = Specials::new(&tokens, &attrs);
        let eot = id_key("tokenizer.ggml.eot_token_id").or_else(|| {
            ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"]
                .iter()
                .find_map(|t| token_to_id.get(*t).copied())
        });
        let is_spm = matches!(model, Model::Spm(_));
        Ok(Tokenizer {
            model,
            specials,
            // llama.cpp's defaults when the file names none: SentencePiece vocabularies put
            // <unk>, <s>, </s> at 0, 1, 2.
            bos: id_key("tokenizer.ggml.bos_token_id").or(is_spm.then_some(1)),
            eos: id_key("tokenizer.ggml.eos_token_id").or(is_spm.then_some(2)),
            eot,
            unk: id_key("tokenizer.ggml.unknown_token_id").or(is_spm.then_some(0)),
            add_bos: bool_key("tokenizer.ggml.add_bos_token").unwrap_or(default_add_bos),
            add_eos: bool_key("tokenizer.ggml.add_eos_token").unwrap_or(false),
            tokens,
            attrs,
            scores,
            token_to_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token ids for `text`, as llama.cpp's `llama_tokenize` gives them. `add_special` adds
    /// BOS (and EOS) where the vocabulary asks for them; with `parse_special`, control tokens
    /// written in the text (e.g. `<|im_start|>`) become their ids, otherwise only user-defined
    /// tokens are cut out (llama.cpp's rules).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        // SentencePiece puts its space prefix at the start of the text and after every special
        // token, whether or not BOS was added.
        let mut after_special = true;
        for frag in self.specials.partition(text, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(a, b) => {
                    let piece = &text[a..b];
                    match &self.model {
                        Model::Bpe(m) => m.encode(piece, &self.token_to_id, &mut out),
                        Model::Spm(m) => m.encode(
                            piece,
                            m.adds_space_prefix() && after_special,
                            &self.token_to_id,
                            &self.scores,
                            self.unk,
                            &mut out,
                        ),
                    }
                    after_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// The bytes token `id` stands for; control tokens render as nothing unless `special`.
    pub fn token_bytes(&self, id: u32, special: bool, out: &mut Vec<u8>) {
        let Some(text) = self.tokens.get(id as usize) else {
            return;
        };
        let a = self.attrs[id as usize];
        if a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            if special {
                out.extend_from_slice(text.as_bytes());
            }
        } else if a & attr::USER_DEFINED != 0 {
            out.extend_from_slice(text.as_bytes());
        } else {
            match &self.model {
                Model::Bpe(b) => b.token_bytes(text, out),
                Model::Spm(s) => s.token_bytes(text, out),
            }
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
