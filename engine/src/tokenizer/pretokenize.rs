//! Pre-tokenizers for byte-level BPE: how text is cut into words before merges apply.
//!
//! These follow llama.cpp's splitting rules (which reproduce the Hugging Face regexes), since
//! token ids must equal llama.cpp's for the same text. Working on code points with their Unicode
//! categories keeps the rules readable without a backtracking regex engine.

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// The splitting rules named by `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// SmolLM and friends: every digit on its own first (`\p{N}`), then GPT-2 within each part.
    DigitsThenGpt2,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value, or `None` when we do not know it.
    pub fn from_gguf_name(name: &str) -> Option<PreTokenizer> {
        Some(match name {
            "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => PreTokenizer::Gpt2,
            "smollm" | "codeshell" | "exaone" | "minerva-7b" => PreTokenizer::DigitsThenGpt2,
            _ => return None,
        })
    }

    /// Splits `text` into words (as string slices of it, in order, covering it entirely).
    pub fn split(self, text: &str) -> Vec<&str> {
        let cps: Vec<(usize, char)> = text.char_indices().collect();
        let byte_at = |i: usize| cps.get(i).map_or(text.len(), |&(b, _)| b);
        let parts: Vec<(usize, usize)> = match self {
            PreTokenizer::Gpt2 => vec![(0, cps.len())],
            PreTokenizer::DigitsThenGpt2 => split_digits(&cps),
        };
        let mut out = Vec::new();
        for (start, end) in parts {
            for (a, b) in gpt2_words(&cps, start, end) {
                out.push(&text[byte_at(a)..byte_at(b)]);
            }
        }
        out
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
    /// Unassigned code points and positions past the end of a part: they match no class.
    Nothing,
}

fn class(c: char) -> Class {
    match c.general_category_group() {
        GeneralCategoryGroup::Letter => Class::Letter,
        GeneralCategoryGroup::Number => Class::Number,
        _ if c.is_whitespace() => Class::Space,
        _ if c.general_category() == unicode_properties::GeneralCategory::Unassigned => {
            Class::Nothing
        }
        _ => Class::Other,
    }
}

/// `\p{N}` as a splitting regex: each number code point alone, the runs between kept whole.
fn split_digits(cps: &[(usize, char)]) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut run_start = 0;
    for (i, &(_, c)) in cps.iter().enumerate() {
        if class(c) == Class::Number {
            if run_start < i {
                parts.push((run_start, i));
            }
            parts.push((i, i + 1));
            run_start = i + 1;
        }
    }
    if run_start < cps.len() {
        parts.push((run_start, cps.len()));
    }
    parts
}

/// The GPT-2 word regex over code points `start..end`, as (start, end) index pairs.
fn gpt2_words(cps: &[(usize, char)], start: usize, end: usize) -> Vec<(usize, usize)> {
    let at = |i: usize| if i < end { Some(cps[i].1) } else { None };
    let cls = |i: usize| at(i).map_or(Class::Nothing, class);
    let mut words = Vec::new();
    let mut pos = start;
    while pos < end {
        let c = cps[pos].1;
        // 's 't 're 've 'm 'll 'd
        if c == '\'' {
            let n1 = at(pos + 1);
            let n2 = at(pos + 2);
            let len = match (n1, n2) {
                (Some('s' | 't' | 'm' | 'd'), _) => 2,
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
                _ => 0,
            };
            if len > 0 {
                words.push((pos, pos + len));
                pos += len;
                continue;
            }
        }
        // An optional single space joins the word that follows it.
        let lead = usize::from(c == ' ');
        let first = cls(pos + lead);
        let is_other = |k: Class| k == Class::Other;
        if matches!(first, Class::Letter | Class::Number) || is_other(first) {
            let mut p = pos + lead;
            while cls(p) == first {
                p += 1;
            }
            words.push((pos, p));
            pos = p;
            continue;
        }
        let mut spaces = 0;
        while cls(pos + spaces) == Class::Space {
            spaces += 1;
        }
        if spaces > 1 && pos + spaces < end {
            // \s+(?!\S): leave the last space to lead the next word.
            words.push((pos, pos + spaces - 1));
            pos += spaces - 1;
        } else if spaces > 0 {
            words.push((pos, pos + spaces));
            pos += spaces;
        } else {
            words.push((pos, pos + 1));
            pos += 1;
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_splits_like_the_regex() {
        let w = PreTokenizer::Gpt2.split("Hello world's  end\t\tx 123abc!!");
        assert_eq!(
            w,
            ["Hello", " world", "'s", " ", " end", "\t", "\t", "x", " 123", "abc", "!!"]
        );
    }

    #[test]
    fn smollm_splits_every_digit() {
        let w = PreTokenizer::DigitsThenGpt2.split("in 2024, 3.14");
        assert_eq!(
            w,
            ["in", " ", "2", "0", "2", "4", ",", " ", "3", ".", "1", "4"]
        );
    }

    #[test]
    fn trailing_spaces_stay_together() {
        assert_eq!(PreTokenizer::Gpt2.split("a   "), ["a", "   "]);
    }
}
