//! Pre-tokenizers for byte-level BPE: how text is cut into words before merges apply.
//!
//! Token ids must equal llama.cpp's, and llama.cpp does not run the Hugging Face regexes for
//! these families: it runs hand-written splitters (src/unicode.cpp) whose corner cases differ
//! from a regex engine's (a part ends a lookahead, unassigned code points count as "other",
//! `\s` is the Unicode White_Space set). So the rules are written out here over code points and
//! their Unicode categories, one function per regex, in the order the regex tries alternatives.

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// The splitting rules named by `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// SmolLM, StarCoder and friends: every number code point on its own first (`\p{N}`),
    /// then GPT-2 within each part.
    DigitsThenGpt2,
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3,
    /// Qwen2 (and Qwen3, whose files say `qwen2`): Llama 3's regex with single digits (`\p{N}`).
    Qwen2,
}

/// What llama.cpp's BPE loader sets besides the splitting rules for a `tokenizer.ggml.pre` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreConfig {
    pub pre: PreTokenizer,
    /// A word that is itself a vocabulary entry becomes that token without merging.
    pub ignore_merges: bool,
    /// BOS is added when the file does not say (`tokenizer.ggml.add_bos_token` absent).
    pub default_add_bos: bool,
}

impl PreTokenizer {
    /// The configuration for a `tokenizer.ggml.pre` value, as llama.cpp's vocabulary loader
    /// maps it, or `None` when we do not know it.
    pub fn from_gguf_name(name: &str) -> Option<PreConfig> {
        let plain = |pre| PreConfig {
            pre,
            ignore_merges: false,
            default_add_bos: false,
        };
        Some(match name {
            "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling"
            | "exaone4" | "roberta-bpe" | "gigachat" | "a.x-4.0" | "mellum" => {
                plain(PreTokenizer::Gpt2)
            }
            // Our own synthetic files predate the list above and say `gpt2`.
            "gpt2" => plain(PreTokenizer::Gpt2),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => plain(PreTokenizer::DigitsThenGpt2),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => PreConfig {
                pre: PreTokenizer::Llama3,
                ignore_merges: true,
                default_add_bos: true,
            },
            "dbrx" | "smaug-bpe" => plain(PreTokenizer::Llama3),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" | "hunyuan" | "solar-open"
            | "kormo" | "f2llmv2" => plain(PreTokenizer::Qwen2),
            _ => return None,
        })
    }

    /// Splits `text` into words (as string slices of it, in order, covering it entirely).
    pub fn split(self, text: &str) -> Vec<&str> {
        let cps: Vec<(usize, char)> = text.char_indices().collect();
        let byte_at = |i: usize| cps.get(i).map_or(text.len(), |&(b, _)| b);
        let parts: Vec<(usize, usize)> = match self {
            PreTokenizer::DigitsThenGpt2 => split_numbers(&cps),
            _ => vec![(0, cps.len())],
        };
        let mut words = Vec::with_capacity(cps.len() / 3 + 1);
        for (start, end) in parts {
            let part = Part {
                cps: &cps,
                start,
                end,
            };
            match self {
                PreTokenizer::Gpt2 | PreTokenizer::DigitsThenGpt2 => gpt2_words(part, &mut words),
                PreTokenizer::Llama3 => llama3_words(part, Some(3), &mut words),
                PreTokenizer::Qwen2 => llama3_words(part, Some(1), &mut words),
            }
        }
        words
            .into_iter()
            .map(|(a, b)| &text[byte_at(a)..byte_at(b)])
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Letter,
    Number,
    Space,
    /// Everything else, unassigned code points included (llama.cpp flags them "undefined",
    /// which its splitters treat like punctuation).
    Other,
    /// Past the end of the part: matches no class, so lookaheads stop there.
    End,
}

fn class(c: char) -> Class {
    // llama.cpp's whitespace set is Unicode's White_Space property, which is what
    // char::is_whitespace tests.
    if c.is_whitespace() {
        return Class::Space;
    }
    match c.general_category_group() {
        GeneralCategoryGroup::Letter => Class::Letter,
        GeneralCategoryGroup::Number => Class::Number,
        _ => Class::Other,
    }
}

/// Code points `start..end` of a text: the regex sees nothing outside them.
#[derive(Clone, Copy)]
struct Part<'a> {
    cps: &'a [(usize, char)],
    start: usize,
    end: usize,
}

impl Part<'_> {
    fn at(&self, i: usize) -> Option<char> {
        (i < self.end).then(|| self.cps[i].1)
    }

    fn cls(&self, i: usize) -> Class {
        self.at(i).map_or(Class::End, class)
    }

    /// Length of a contraction (`'s 't 're 've 'm 'll 'd`) at `pos`, 0 if none; with
    /// `any_case` the letters may be upper case too (`(?i:...)`).
    fn contraction(&self, pos: usize, any_case: bool) -> usize {
        if self.at(pos) != Some('\'') {
            return 0;
        }
        let fold = |c: Option<char>| c.map(|c| if any_case { c.to_ascii_lowercase() } else { c });
        match (fold(self.at(pos + 1)), fold(self.at(pos + 2))) {
            (Some('s' | 't' | 'm' | 'd'), _) => 2,
            (Some('r' | 'v'), Some('e')) | (Some('l'), Some('l')) => 3,
            _ => 0,
        }
    }

    /// Number of whitespace code points from `pos` on.
    fn spaces_from(&self, pos: usize) -> usize {
        let mut n = 0;
        while self.cls(pos + n) == Class::Space {
            n += 1;
        }
        n
    }
}

/// `\p{N}` as a splitting regex: each number code point alone, the runs between kept whole.
fn split_numbers(cps: &[(usize, char)]) -> Vec<(usize, usize)> {
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

/// `\s+(?!\S)|\s+` for a run of `spaces` whitespace code points at `pos`: a run followed by
/// a non-space leaves its last space to lead the next word. Returns the match length.
fn trailing_spaces(p: Part, pos: usize, spaces: usize) -> usize {
    if spaces > 1 && p.at(pos + spaces).is_some() {
        spaces - 1
    } else {
        spaces
    }
}

/// The GPT-2 word regex over one part, as (start, end) code point index pairs.
fn gpt2_words(p: Part, words: &mut Vec<(usize, usize)>) {
    let mut pos = p.start;
    while pos < p.end {
        let len = p.contraction(pos, false);
        if len > 0 {
            words.push((pos, pos + len));
            pos += len;
            continue;
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional single space joins the
        // run of one class that follows it.
        let lead = usize::from(p.at(pos) == Some(' '));
        let first = p.cls(pos + lead);
        if matches!(first, Class::Letter | Class::Number | Class::Other) {
            let mut q = pos + lead;
            while p.cls(q) == first {
                q += 1;
            }
            words.push((pos, q));
            pos = q;
            continue;
        }
        let spaces = p.spaces_from(pos);
        let len = trailing_spaces(p, pos, spaces).max(1);
        words.push((pos, pos + len));
        pos += len;
    }
}

/// The Llama 3 word regex over one part; `digits` is the longest run of numbers kept together
/// (3 for Llama 3's `\p{N}{1,3}`, 1 for Qwen2's `\p{N}`).
fn llama3_words(p: Part, digits: Option<usize>, words: &mut Vec<(usize, usize)>) {
    let max_digits = digits.unwrap_or(usize::MAX);
    let is_newline = |c: Option<char>| matches!(c, Some('\r' | '\n'));
    let mut pos = p.start;
    while pos < p.end {
        let c = p.at(pos);
        let cls = p.cls(pos);
        let len = p.contraction(pos, true);
        if len > 0 {
            words.push((pos, pos + len));
            pos += len;
            continue;
        }
        // `[^\r\n\p{L}\p{N}]?\p{L}+`: any one non-newline, non-number code point may lead a
        // run of letters.
        if !is_newline(c)
            && cls != Class::Number
            && (cls == Class::Letter || p.cls(pos + 1) == Class::Letter)
        {
            let mut q = pos + 1;
            while p.cls(q) == Class::Letter {
                q += 1;
            }
            words.push((pos, q));
            pos = q;
            continue;
        }
        // `\p{N}{1,3}`: numbers in groups from the left.
        if cls == Class::Number {
            let mut q = pos;
            while p.cls(q) == Class::Number && q - pos < max_digits {
                q += 1;
            }
            words.push((pos, q));
            pos = q;
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let lead = usize::from(c == Some(' '));
        if p.cls(pos + lead) == Class::Other || (lead == 1 && p.cls(pos + 1) == Class::End) {
            let mut q = pos + lead;
            while p.cls(q) == Class::Other {
                q += 1;
            }
            while is_newline(p.at(q)) {
                q += 1;
            }
            words.push((pos, q));
            pos = q;
            continue;
        }
        // `\s*[\r\n]+`: whitespace up to and including the last newline of the run.
        let spaces = p.spaces_from(pos);
        if let Some(last_nl) = (pos..pos + spaces).rev().find(|&i| is_newline(p.at(i))) {
            words.push((pos, last_nl + 1));
            pos = last_nl + 1;
            continue;
        }
        let len = trailing_spaces(p, pos, spaces).max(1);
        words.push((pos, pos + len));
        pos += len;
    }
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

    #[test]
    fn llama3_groups_digits_by_three_and_keeps_newlines_with_spaces() {
        let w = PreTokenizer::Llama3.split("I'M 1234567 ok!\n\n  x\r\n");
        assert_eq!(
            w,
            ["I", "'M", " ", "123", "456", "7", " ok", "!\n\n", " ", " x", "\r\n"]
        );
    }

    #[test]
    fn qwen2_splits_single_digits_and_lets_punctuation_lead_letters() {
        let w = PreTokenizer::Qwen2.split("(abc) 42");
        assert_eq!(w, ["(abc", ")", " ", "4", "2"]);
    }

    #[test]
    fn unassigned_code_points_count_as_other() {
        // U+0378 is unassigned: llama.cpp's splitters join it with punctuation.
        assert_eq!(PreTokenizer::Gpt2.split("!\u{378}!"), ["!\u{378}!"]);
    }
}
