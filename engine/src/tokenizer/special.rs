//! Special tokens: which vocabulary entries llama.cpp treats as control or user-defined, and
//! how it cuts them out of a text before the tokenizer proper sees it.

use aho_corasick::AhoCorasick;

/// Token attributes, as llama.cpp derives them from GGUF token types (a bit set, since the
/// loader adds CONTROL to tokens it recognises by name).
pub mod attr {
    pub const NORMAL: u32 = 1 << 0;
    pub const UNKNOWN: u32 = 1 << 1;
    pub const UNUSED: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const UNDEFINED: u32 = 1 << 6;

    /// The attribute for a `tokenizer.ggml.token_type` value.
    pub fn from_gguf_type(t: i64) -> u32 {
        match t {
            1 => NORMAL,
            2 => UNKNOWN,
            3 => CONTROL,
            4 => USER_DEFINED,
            5 => UNUSED,
            6 => BYTE,
            _ => UNDEFINED,
        }
    }
}

/// Token texts llama.cpp's loader marks as control tokens whatever their GGUF type says
/// (end-of-generation, end-of-turn and fill-in-the-middle markers). It matters for ids: a
/// control token is not cut out of a text unless special tokens are parsed.
const CONTROL_BY_NAME: &[&str] = &[
    // end of generation / turn / message
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
    // fill in the middle
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// Applies llama.cpp's by-name attribute fixes to `attrs`.
pub fn apply_name_rules(tokens: &[String], attrs: &mut [u32]) {
    for (t, a) in tokens.iter().zip(attrs.iter_mut()) {
        if CONTROL_BY_NAME.contains(&t.as_str()) {
            *a |= attr::CONTROL;
        }
        // gpt-oss: these render as text, so they are user-defined.
        if matches!(
            t.as_str(),
            "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>"
        ) {
            *a = attr::USER_DEFINED;
        }
    }
    // o200k_harmony and solar-open: there `<|end|>` is no end-of-generation token but text.
    let has = |s: &str| tokens.iter().any(|t| t == s);
    if has("<|end|>")
        && ((has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>")))
    {
        for (t, a) in tokens.iter().zip(attrs.iter_mut()) {
            if t == "<|end|>" {
                *a = attr::USER_DEFINED;
            }
        }
    }
}

/// A piece of the text: plain text (a byte range) or a special token's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    Text(usize, usize),
    Token(u32),
}

/// The special tokens of a vocabulary and a matcher that finds which of them a text contains.
pub struct Specials {
    /// (text, id, attributes), longest text first (ties by id), as llama.cpp orders its cache.
    tokens: Vec<(String, u32, u32)>,
    /// All of `tokens`, for finding which occur in a text at all.
    matcher: Option<AhoCorasick>,
}

impl Specials {
    pub fn new(tokens: &[String], attrs: &[u32]) -> Specials {
        let mut list: Vec<(String, u32, u32)> = tokens
            .iter()
            .zip(attrs)
            .enumerate()
            .filter(|(_, (_, &a))| a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .map(|(i, (t, &a))| (t.clone(), i as u32, a))
            .collect();
        list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let matcher = AhoCorasick::new(list.iter().map(|t| t.0.as_str())).ok();
        Specials {
            tokens: list,
            matcher,
        }
    }

    /// Cuts the special tokens out of `text` as llama.cpp does: for each special token in
    /// turn, longest first, every occurrence in every remaining text fragment is split out
    /// (so a longer token wins over a shorter one anywhere in the text, not only where they
    /// overlap). Control and unknown tokens count only with `parse_special`; user-defined
    /// tokens always do.
    pub fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(0, text.len()));
        // Only the tokens that occur somewhere can split anything; finding those first keeps
        // a vocabulary with thousands of special tokens from scanning the text thousands of
        // times.
        let mut present = vec![false; self.tokens.len()];
        if let Some(m) = &self.matcher {
            for hit in m.find_overlapping_iter(text) {
                present[hit.pattern().as_usize()] = true;
            }
        }
        for (k, (tok, id, a)) in self.tokens.iter().enumerate() {
            if !present[k] || (!parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(start, end) = f else {
                    next.push(f);
                    continue;
                };
                let mut at = start;
                for (p, _) in text[start..end].match_indices(tok.as_str()) {
                    let p = start + p;
                    if p > at {
                        next.push(Fragment::Text(at, p));
                    }
                    next.push(Fragment::Token(*id));
                    at = p + tok.len();
                }
                if at < end {
                    next.push(Fragment::Text(at, end));
                }
            }
            frags = next;
        }
        frags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials(list: &[(&str, u32)]) -> (Vec<String>, Specials) {
        let tokens: Vec<String> = list.iter().map(|t| t.0.to_string()).collect();
        let attrs: Vec<u32> = list.iter().map(|t| t.1).collect();
        let s = Specials::new(&tokens, &attrs);
        (tokens, s)
    }

    #[test]
    fn longer_tokens_are_cut_first_anywhere_in_the_text() {
        // "xA" comes first in the text, but "ABC" is longer, so llama.cpp cuts "ABC".
        let (_, s) = specials(&[("xA", attr::USER_DEFINED), ("ABC", attr::USER_DEFINED)]);
        assert_eq!(
            s.partition("xABCxA", false),
            [Fragment::Text(0, 1), Fragment::Token(1), Fragment::Token(0)]
        );
    }

    #[test]
    fn control_tokens_need_parse_special() {
        let (_, s) = specials(&[("<c>", attr::CONTROL), ("<u>", attr::USER_DEFINED)]);
        assert_eq!(
            s.partition("a<c>b<u>", false),
            [Fragment::Text(0, 5), Fragment::Token(1)]
        );
        assert_eq!(
            s.partition("a<c>b<u>", true),
            [
                Fragment::Text(0, 1),
                Fragment::Token(0),
                Fragment::Text(4, 5),
                Fragment::Token(1)
            ]
        );
    }

    #[test]
    fn end_of_generation_names_become_control() {
        let tokens = vec!["</s>".to_string(), "<b>".to_string()];
        let mut attrs = vec![attr::USER_DEFINED, attr::USER_DEFINED];
        apply_name_rules(&tokens, &mut attrs);
        assert_eq!(
            attrs,
            [attr::USER_DEFINED | attr::CONTROL, attr::USER_DEFINED]
        );
    }
}
