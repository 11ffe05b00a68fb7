//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`): spaces become U+2581, adjacent
//! pieces merge by the highest vocabulary score, and anything left unknown falls back to
//! `<0xXX>` byte tokens.

use std::collections::HashMap;

const SPACE: char = '\u{2581}';

pub struct Spm {
    add_space_prefix: bool,
    byte_tokens: [Option<u32>; 256],
}

impl Spm {
    pub fn new(token_to_id: &HashMap<String, u32>, add_space_prefix: bool) -> Spm {
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = token_to_id.get(&format!("<0x{b:02X}>")).copied();
        }
        Spm {
            add_space_prefix,
            byte_tokens,
        }
    }

    pub fn encode(
        &self,
        text: &str,
        first_in_text: bool,
        token_to_id: &HashMap<String, u32>,
        scores: &[f32],
        unk: Option<u32>,
        out: &mut Vec<u32>,
    ) {
        let mut s = String::with_capacity(text.len() + 3);
        if self.add_space_prefix && first_in_text {
            s.push(SPACE);
        }
        s.extend(text.chars().map(|c| if c == ' ' { SPACE } else { c }));
        // Symbols as string slices of `s`, merged greedily by score.
        let mut syms: Vec<(usize, usize)> = s
            .char_indices()
            .map(|(i, c)| (i, i + c.len_utf8()))
            .collect();
        loop {
            let mut best: Option<(f32, usize)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                let merged = &s[syms[i].0..syms[i + 1].1];
                if let Some(&id) = token_to_id.get(merged) {
                    let score = scores.get(id as usize).copied().unwrap_or(0.0);
                    if best.is_none_or(|(bs, _)| score > bs) {
                        best = Some((score, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            syms[i].1 = syms[i + 1].1;
            syms.remove(i + 1);
        }
        for (a, b) in syms {
            let piece = &s[a..b];
            if let Some(&id) = token_to_id.get(piece) {
                out.push(id);
                continue;
            }
            for &byte in piece.as_bytes() {
                out.extend(self.byte_tokens[byte as usize].or(unk));
            }
        }
    }

    /// The bytes a token's text stands for: `<0xXX>` is one byte, U+2581 a space.
    pub fn token_bytes(&self, text: &str, out: &mut Vec<u8>) {
        if let Some(hex) = text.strip_prefix("<0x").and_then(|t| t.strip_suffix('>')) {
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                return;
            }
        }
        for c in text.chars() {
            let c = if c == SPACE { ' ' } else { c };
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }

    pub fn strips_leading_space(&self) -> bool {
        self.add_space_prefix
    }
}
