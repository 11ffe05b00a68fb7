//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`): spaces become U+2581, adjacent
//! pieces merge by the highest vocabulary score, and anything left unknown falls back to
//! `<0xXX>` byte tokens.
//!
//! This is llama.cpp's algorithm (llm_tokenizer_spm): start from code points, keep a priority
//! queue of adjacent pairs whose concatenation is a vocabulary entry, best score first and
//! leftmost on ties, and merge until the queue is empty. Queue entries made stale by an earlier
//! merge are recognised by their length and skipped, so a text of n code points costs
//! O(n log n) lookups instead of a rescan per merge.
//!
//! llama.cpp's re-segmentation step (splitting a final piece that is not a token back into the
//! pieces it was merged from) never has work to do: a merge only happens when its result is a
//! token, so the only pieces that are not tokens are single code points, and those go straight
//! to byte fallback.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

const SPACE: char = '\u{2581}';

pub struct Spm {
    add_space_prefix: bool,
    /// `<0xXX>` (or, failing that, the byte as a one-character token) for each byte.
    byte_tokens: Box<[Option<u32>; 256]>,
}

/// A queued pair: symbols `left` and `right` (adjacent when queued) whose texts make `len`
/// bytes and a token of score `score`.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pair {}
impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pair {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// A piece of the text: bytes `start..start + len`, linked to its neighbours.
#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

impl Spm {
    pub fn new(token_to_id: &HashMap<String, u32>, add_space_prefix: bool) -> Spm {
        let mut byte_tokens = Box::new([None; 256]);
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = token_to_id
                .get(&format!("<0x{b:02X}>"))
                .copied()
                .or_else(|| {
                    let b = b as u8;
                    b.is_ascii()
                        .then(|| token_to_id.get(&char::from(b).to_string()).copied())
                        .flatten()
                });
        }
        Spm {
            add_space_prefix,
            byte_tokens,
        }
    }

    /// Whether a text fragment gets a leading space: at the start of the text and after each
    /// special token, when the vocabulary asks for the prefix (llama.cpp's rule).
    pub fn adds_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Appends the ids of `text` (one fragment between special tokens) to `out`.
    pub fn encode(
        &self,
        text: &str,
        prefix_space: bool,
        token_to_id: &HashMap<String, u32>,
        scores: &[f32],
        unk: Option<u32>,
        out: &mut Vec<u32>,
    ) {
        let mut s = String::with_capacity(text.len() + 3);
        if prefix_space {
            s.push(SPACE);
        }
        s.extend(text.chars().map(|c| if c == ' ' { SPACE } else { c }));
        let mut syms: Vec<Sym> = s
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Sym {
                start,
                len: c.len_utf8(),
                prev: i.wrapping_sub(1),
                next: i + 1,
            })
            .collect();
        if let Some(last) = syms.last_mut() {
            last.next = NONE;
        }
        let lookup = |a: &Sym, b: &Sym| -> Option<Pair> {
            let text = &s[a.start..b.start + b.len];
            let &id = token_to_id.get(text)?;
            Some(Pair {
                score: scores.get(id as usize).copied().unwrap_or(0.0),
                left: 0,
                right: 0,
                len: text.len(),
            })
        };
        let mut queue = BinaryHeap::new();
        let try_pair = |queue: &mut BinaryHeap<Pair>, syms: &[Sym], l: usize| {
            if l == NONE || syms[l].next == NONE {
                return;
            }
            let r = syms[l].next;
            if let Some(p) = lookup(&syms[l], &syms[r]) {
                queue.push(Pair {
                    left: l,
                    right: r,
                    ..p
                });
            }
        };
        for l in 0..syms.len() {
            try_pair(&mut queue, &syms, l);
        }
        while let Some(p) = queue.pop() {
            let (l, r) = (syms[p.left], syms[p.right]);
            // Stale: one side was merged away or grew since the pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != p.len {
                continue;
            }
            syms[p.left].len += r.len;
            syms[p.right].len = 0;
            syms[p.left].next = r.next;
            if r.next != NONE {
                syms[r.next].prev = p.left;
            }
            try_pair(&mut queue, &syms, l.prev);
            try_pair(&mut queue, &syms, p.left);
        }
        let mut i = if syms.is_empty() { NONE } else { 0 };
        while i != NONE {
            let sym = syms[i];
            let piece = &s[sym.start..sym.start + sym.len];
            match token_to_id.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &byte in piece.as_bytes() {
                        out.extend(self.byte_tokens[byte as usize].or(unk));
                    }
                }
            }
            i = sym.next;
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
