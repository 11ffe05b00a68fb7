//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): bytes mapped to printable code points, words
//! merged pair by pair in the order of the merge list.
//!
//! As in llama.cpp, merges are keyed by the text of their two parts, not by vocabulary ids: a
//! merge may produce a string that is not a token (it then falls back to its single-byte
//! tokens at the end). Every string that can appear as a symbol gets an integer here, the
//! vocabulary's id where it is a token and a fresh number past the vocabulary otherwise, so
//! merging compares integers.

use super::pretokenize::{PreConfig, PreTokenizer};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

pub struct Bpe {
    pre: PreTokenizer,
    ignore_merges: bool,
    n_vocab: u32,
    /// (left symbol, right symbol) -> (rank, merged symbol).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Symbol of each byte's printable form.
    byte_symbol: Box<[u32; 256]>,
    /// Text of the symbols numbered from `n_vocab` on (strings that are not tokens).
    extra_text: Vec<String>,
    /// Byte value of each printable code point, for decoding.
    unbyte: HashMap<char, u8>,
}

/// GPT-2's reversible map from bytes to printable code points: printable Latin-1 bytes stand
/// for themselves, the other 68 are moved to U+0100 onwards.
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).expect("latin-1")
        } else {
            let c = char::from_u32(next).expect("in range");
            next += 1;
            c
        };
    }
    table
}

/// Numbers strings: vocabulary ids first, then fresh numbers for anything else.
struct Symbols<'a> {
    token_to_id: &'a HashMap<String, u32>,
    n_vocab: u32,
    extra: HashMap<String, u32>,
    extra_text: Vec<String>,
}

impl Symbols<'_> {
    fn id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.token_to_id.get(text) {
            return id;
        }
        if let Some(&id) = self.extra.get(text) {
            return id;
        }
        let id = self.n_vocab + self.extra_text.len() as u32;
        self.extra.insert(text.to_string(), id);
        self.extra_text.push(text.to_string());
        id
    }
}

impl Bpe {
    pub fn new(
        config: PreConfig,
        token_to_id: &HashMap<String, u32>,
        n_vocab: usize,
        merges: &[&str],
    ) -> Result<Bpe, String> {
        let mut syms = Symbols {
            token_to_id,
            n_vocab: n_vocab as u32,
            extra: HashMap::new(),
            extra_text: Vec::new(),
        };
        let table = byte_to_char_table();
        let mut byte_symbol = Box::new([0; 256]);
        let mut unbyte = HashMap::new();
        for (b, c) in table.iter().enumerate() {
            byte_symbol[b] = syms.id(&c.to_string());
            unbyte.insert(*c, b as u8);
        }
        let mut map = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte, so a part may start
            // with a space.
            let cut = m
                .bytes()
                .skip(1)
                .position(|b| b == b' ')
                .map(|i| i + 1)
                .ok_or_else(|| {
                    format!("merge {rank} ('{m}') is not two symbols separated by a space")
                })?;
            let (l, r) = (&m[..cut], &m[cut + 1..]);
            let key = (syms.id(l), syms.id(r));
            let merged = syms.id(&format!("{l}{r}"));
            // The first merge listed for a pair wins, as in llama.cpp.
            map.entry(key).or_insert((rank as u32, merged));
        }
        Ok(Bpe {
            pre: config.pre,
            ignore_merges: config.ignore_merges,
            n_vocab: n_vocab as u32,
            merges: map,
            byte_symbol,
            extra_text: syms.extra_text,
            unbyte,
        })
    }

    /// Appends the ids of `text` (which holds no special tokens) to `out`.
    pub fn encode(&self, text: &str, token_to_id: &HashMap<String, u32>, out: &mut Vec<u32>) {
        // Texts repeat their words: each distinct word is merged once.
        let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
        let mut scratch = Merger::default();
        for word in self.pre.split(text) {
            if let Some(ids) = cache.get(word) {
                out.extend_from_slice(ids);
                continue;
            }
            let mut ids = Vec::new();
            self.encode_word(word, token_to_id, &mut scratch, &mut ids);
            out.extend_from_slice(&ids);
            cache.insert(word, ids);
        }
    }

    fn encode_word(
        &self,
        word: &str,
        token_to_id: &HashMap<String, u32>,
        m: &mut Merger,
        out: &mut Vec<u32>,
    ) {
        if self.ignore_merges {
            let table = byte_to_char_table();
            let encoded: String = word.bytes().map(|b| table[b as usize]).collect();
            if let Some(&id) = token_to_id.get(&encoded) {
                out.push(id);
                return;
            }
        }
        m.start(word.bytes().map(|b| self.byte_symbol[b as usize]));
        m.run(|l, r| self.merges.get(&(l, r)).copied());
        for sym in m.finished() {
            if sym < self.n_vocab {
                out.push(sym);
                continue;
            }
            // Not a token: each byte of its printable form that is a token on its own (as
            // llama.cpp does; in a complete byte-level vocabulary this never happens).
            let text = &self.extra_text[(sym - self.n_vocab) as usize];
            for b in text.bytes() {
                if b.is_ascii() {
                    let mut buf = [0u8; 4];
                    let s = char::from(b).encode_utf8(&mut buf);
                    out.extend(token_to_id.get(&*s).copied());
                }
            }
        }
    }

    /// The bytes a token's text stands for.
    pub fn token_bytes(&self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            match self.unbyte.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
}

/// BPE merging of one word with a priority queue: the lowest-ranked adjacent pair merges
/// first, the leftmost among equal ranks; entries made stale by an earlier merge are skipped
/// when they come up. O(n log n) in the word's length, so a long run without spaces is fine.
#[derive(Default)]
struct Merger {
    sym: Vec<u32>,
    prev: Vec<usize>,
    next: Vec<usize>,
    alive: Vec<bool>,
    heap: BinaryHeap<Reverse<Queued>>,
}

/// A pair waiting to merge: (rank, left index, left symbol, right index, right symbol, merged
/// symbol). Ordered by rank, then position, as llama.cpp's queue is.
type Queued = (u32, usize, u32, usize, u32, u32);

const NONE: usize = usize::MAX;

impl Merger {
    fn start(&mut self, syms: impl Iterator<Item = u32>) {
        self.sym.clear();
        self.sym.extend(syms);
        let n = self.sym.len();
        self.prev.clear();
        self.prev.extend((0..n).map(|i| i.wrapping_sub(1)));
        self.next.clear();
        self.next
            .extend((0..n).map(|i| if i + 1 < n { i + 1 } else { NONE }));
        self.alive.clear();
        self.alive.resize(n, true);
        self.heap.clear();
    }

    fn push_pair(&mut self, l: usize, merge: &impl Fn(u32, u32) -> Option<(u32, u32)>) {
        if l == NONE {
            return;
        }
        let r = self.next[l];
        if r == NONE {
            return;
        }
        if let Some((rank, merged)) = merge(self.sym[l], self.sym[r]) {
            self.heap
                .push(Reverse((rank, l, self.sym[l], r, self.sym[r], merged)));
        }
    }

    fn run(&mut self, merge: impl Fn(u32, u32) -> Option<(u32, u32)>) {
        for l in 0..self.sym.len() {
            self.push_pair(l, &merge);
        }
        while let Some(Reverse((_, l, ls, r, rs, merged))) = self.heap.pop() {
            // Stale: one side was merged away or grew since the pair was queued.
            if !self.alive[l] || !self.alive[r] || self.sym[l] != ls || self.sym[r] != rs {
                continue;
            }
            self.sym[l] = merged;
            self.alive[r] = false;
            let after = self.next[r];
            self.next[l] = after;
            if after != NONE {
                self.prev[after] = l;
            }
            self.push_pair(self.prev[l], &merge);
            self.push_pair(l, &merge);
        }
    }

    fn finished(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.sym.len())
            .filter(|&i| self.alive[i])
            .map(|i| self.sym[i])
    }
}
