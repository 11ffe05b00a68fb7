//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): bytes mapped to printable code points, words
//! merged pair by pair in the order of the merge list.

use super::pretokenize::PreTokenizer;
use std::collections::HashMap;

pub struct Bpe {
    pre: PreTokenizer,
    /// (left id, right id) -> (rank, merged id). Ids stand for symbols: every merge result is a
    /// vocabulary entry, so merging works on integers instead of strings.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Token id of each byte's printable form.
    byte_token: [Option<u32>; 256],
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

impl Bpe {
    pub fn new(
        pre: PreTokenizer,
        token_to_id: &HashMap<String, u32>,
        merges: &[String],
    ) -> Result<Bpe, String> {
        let table = byte_to_char_table();
        let mut byte_token = [None; 256];
        let mut unbyte = HashMap::new();
        for (b, c) in table.iter().enumerate() {
            byte_token[b] = token_to_id.get(&c.to_string()).copied();
            unbyte.insert(*c, b as u8);
        }
        let mut map = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (l, r) = m.split_once(' ').ok_or_else(|| {
                format!("merge {rank} ('{m}') is not two symbols separated by a space")
            })?;
            let (Some(&li), Some(&ri), Some(&mi)) = (
                token_to_id.get(l),
                token_to_id.get(r),
                token_to_id.get(&format!("{l}{r}")),
            ) else {
                // A merge whose parts or result are missing from the vocabulary can never fire.
                continue;
            };
            map.entry((li, ri)).or_insert((rank as u32, mi));
        }
        Ok(Bpe {
            pre,
            merges: map,
            byte_token,
            unbyte,
        })
    }

    /// Appends the ids of `text` (which holds no special tokens) to `out`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
        for word in self.pre.split(text) {
            if let Some(ids) = cache.get(word) {
                out.extend_from_slice(ids);
                continue;
            }
            let ids = self.encode_word(word);
            out.extend_from_slice(&ids);
            cache.insert(word, ids);
        }
    }

    fn encode_word(&self, word: &str) -> Vec<u32> {
        let mut syms: Vec<u32> = Vec::with_capacity(word.len());
        for &b in word.as_bytes() {
            // A byte-level vocabulary has all 256 byte symbols; one that lacks some drops them,
            // as llama.cpp does.
            syms.extend(self.byte_token[b as usize]);
        }
        // Merge the lowest-ranked pair (leftmost on ties) until no pair merges. Words are short,
        // so a scan per merge is cheaper than maintaining a heap.
        loop {
            let best = syms
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.merges
                        .get(&(w[0], w[1]))
                        .map(|&(rank, id)| (rank, i, id))
                })
                .min();
            let Some((_, i, id)) = best else { break };
            syms[i] = id;
            syms.remove(i + 1);
        }
        syms
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
