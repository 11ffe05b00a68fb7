//! llama.cpp's logits file, the one `llama-perplexity --kl-divergence-base FILE` writes and
//! `--kl-divergence` reads back, so a model can be compared token by token against another
//! model's (or another engine's) predictions on the very same tokens.
//!
//! Layout (all little-endian, as llama.cpp writes it on every platform it runs on):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | `_logits_` |
//! | 4 | `n_ctx` (u32): chunk length in tokens |
//! | 4 | `n_vocab` (i32) |
//! | 4 | `n_chunk` (i32) |
//! | 4 x n_ctx x n_chunk | the tokens (i32), as tokenized, before any BOS substitution |
//! | per chunk, per scored position | one row of `2 * ceil(n_vocab / 2) + 4` u16 |
//!
//! A chunk scores positions `n_ctx/2 .. n_ctx-2` (their logits predict the next token), so it
//! holds `n_ctx - 1 - n_ctx/2` rows. A row starts with two f32, `scale` and `min_log_prob`,
//! then one u16 per vocabulary entry: `log p(i) = scale * q[i] + min_log_prob`. Only the top
//! 16 nats are kept (everything below clamps to q = 0), which is what makes 16 bits enough;
//! an odd vocabulary is padded with one zero so rows stay 4-byte aligned.
//!
//! The files are large (SmolLM2's 49152-token vocabulary at `--ctx 128` over GPL-3 is ~370 MB),
//! so both directions stream one chunk at a time.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"_logits_";

/// Everything before the rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub n_chunk: usize,
}

impl Header {
    /// Rows (scored positions) per chunk, as llama-perplexity scores them.
    pub fn rows_per_chunk(&self) -> usize {
        rows_per_chunk(self.n_ctx)
    }

    /// u16 values per row, scale and minimum included.
    pub fn row_len(&self) -> usize {
        row_len(self.n_vocab)
    }

    /// The size a complete file with this header has.
    pub fn file_len(&self) -> u64 {
        let head = MAGIC.len() as u64 + 12 + 4 * (self.n_ctx * self.n_chunk) as u64;
        head + 2 * (self.row_len() * self.rows_per_chunk() * self.n_chunk) as u64
    }
}

pub fn rows_per_chunk(n_ctx: usize) -> usize {
    n_ctx.saturating_sub(1 + n_ctx / 2)
}

pub fn row_len(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

#[derive(Debug, thiserror::Error)]
pub enum LogitsFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a logits file (it does not start with `_logits_`); make one with `meltbench-engine perplexity MODEL --file TEXT --kl-divergence-base FILE` or `llama-perplexity --kl-divergence-base FILE`")]
    NotLogits(String),
    #[error("{path}: the header is not valid ({what}); the file is damaged or not from llama-perplexity")]
    BadHeader { path: String, what: String },
    #[error("{path} is {actual} bytes but its header (n_ctx {n_ctx}, n_vocab {n_vocab}, {n_chunk} chunks) describes {expected}: it is truncated or damaged; write it again")]
    WrongLength {
        path: String,
        actual: u64,
        expected: u64,
        n_ctx: usize,
        n_vocab: usize,
        n_chunk: usize,
    },
    #[error("row {got} values wide for a vocabulary of {n_vocab} (want {want})")]
    RowWidth {
        got: usize,
        want: usize,
        n_vocab: usize,
    },
    #[error("the logits file was declared with {declared} chunks but {written} were written")]
    ChunkCount { declared: usize, written: usize },
}

/// Quantizes one row of logits into `out` (`row_len(logits.len())` values) the way
/// llama-perplexity does, and returns `max + ln(sum exp(l - max))`, the log of the softmax
/// denominator, so the caller gets the token's NLL as `returned - logits[token]`.
///
/// The arithmetic follows llama.cpp's types (f32 logits, an f64 sum of f32 exponentials,
/// round-half-to-even) so that the same logits give the same bytes.
pub fn encode_row(logits: &[f32], out: &mut [u16]) -> f32 {
    debug_assert_eq!(out.len(), row_len(logits.len()));
    let max = logits.iter().copied().fold(logits[0], f32::max);
    let min = logits.iter().copied().fold(logits[0], f32::min);
    // Below max - 16 a token's probability is < 1e-7 of the top one: not worth resolution.
    let min = min.max(max - 16.0);
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    let log_sum = sum.ln() as f32;
    let min_log_prob = min - max - log_sum;
    let scale = (max - min) / 65535.0;
    put_f32(&mut out[0..2], scale);
    put_f32(&mut out[2..4], min_log_prob);
    let q = &mut out[4..];
    q.fill(0);
    if scale != 0.0 {
        let inv = 1.0 / scale;
        for (o, &l) in q.iter_mut().zip(logits) {
            if l > min {
                *o = (inv * (l - min)).round_ties_even() as u16;
            }
        }
    }
    max + log_sum
}

fn put_f32(dst: &mut [u16], v: f32) {
    // Two u16 that, written little-endian, are the f32's little-endian bytes.
    let b = v.to_bits();
    dst[0] = b as u16;
    dst[1] = (b >> 16) as u16;
}

fn get_f32(src: &[u16]) -> f32 {
    f32::from_bits(src[0] as u32 | (src[1] as u32) << 16)
}

/// One stored row: the base model's log-probabilities at one position.
#[derive(Clone, Copy, Debug)]
pub struct BaseRow<'a> {
    pub scale: f32,
    pub min_log_prob: f32,
    /// One value per vocabulary entry (padding removed).
    pub q: &'a [u16],
}

impl<'a> BaseRow<'a> {
    pub fn new(row: &'a [u16], n_vocab: usize) -> BaseRow<'a> {
        BaseRow {
            scale: get_f32(&row[0..2]),
            min_log_prob: get_f32(&row[2..4]),
            q: &row[4..4 + n_vocab],
        }
    }

    pub fn log_prob(&self, i: usize) -> f32 {
        self.scale * self.q[i] as f32 + self.min_log_prob
    }
}

/// Writes a logits file: the header and tokens first, then the rows of each chunk in order.
pub struct LogitsWriter {
    out: BufWriter<File>,
    path: String,
    header: Header,
    row: Vec<u16>,
    rows_in_chunk: usize,
    chunks: usize,
}

impl LogitsWriter {
    /// Creates `path` and writes the header and `tokens` (at least `n_chunk * n_ctx` of them;
    /// only those are stored, as llama-perplexity stores them).
    pub fn create(path: &Path, header: Header, tokens: &[u32]) -> Result<Self, LogitsFileError> {
        let p = path.display().to_string();
        let io = |source| LogitsFileError::Io {
            path: p.clone(),
            source,
        };
        let n_tokens = header.n_ctx * header.n_chunk;
        assert!(
            tokens.len() >= n_tokens,
            "fewer tokens than n_ctx x n_chunk"
        );
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
        let mut head = Vec::with_capacity(20 + 4 * n_tokens);
        head.extend_from_slice(MAGIC);
        for v in [header.n_ctx, header.n_vocab, header.n_chunk] {
            head.extend_from_slice(&(v as u32).to_le_bytes());
        }
        for &t in &tokens[..n_tokens] {
            head.extend_from_slice(&t.to_le_bytes());
        }
        out.write_all(&head).map_err(io)?;
        let row = vec![0u16; header.row_len()];
        Ok(LogitsWriter {
            out,
            path: p,
            header,
            row,
            rows_in_chunk: 0,
            chunks: 0,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Appends the row for the next scored position; returns what [`encode_row`] returns.
    pub fn write_row(&mut self, logits: &[f32]) -> Result<f32, LogitsFileError> {
        if logits.len() != self.header.n_vocab {
            return Err(LogitsFileError::RowWidth {
                got: logits.len(),
                want: self.header.n_vocab,
                n_vocab: self.header.n_vocab,
            });
        }
        let log_norm = encode_row(logits, &mut self.row);
        if cfg!(target_endian = "big") {
            for v in &mut self.row {
                *v = v.to_le();
            }
        }
        self.out
            .write_all(bytemuck::cast_slice(&self.row))
            .map_err(|source| LogitsFileError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.rows_in_chunk += 1;
        if self.rows_in_chunk == self.header.rows_per_chunk() {
            self.rows_in_chunk = 0;
            self.chunks += 1;
        }
        Ok(log_norm)
    }

    /// Flushes; fails if fewer chunks were written than the header declares.
    pub fn finish(mut self) -> Result<(), LogitsFileError> {
        if self.chunks != self.header.n_chunk || self.rows_in_chunk != 0 {
            return Err(LogitsFileError::ChunkCount {
                declared: self.header.n_chunk,
                written: self.chunks,
            });
        }
        self.out.flush().map_err(|source| LogitsFileError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Reads a logits file: the header and tokens on open, then one chunk of rows at a time.
pub struct LogitsReader {
    input: BufReader<File>,
    path: String,
    pub header: Header,
    /// `n_ctx * n_chunk` tokens, chunk after chunk.
    pub tokens: Vec<u32>,
    chunk: Vec<u16>,
    next_chunk: usize,
}

impl LogitsReader {
    /// Opens `path`, checks the magic and that the length matches the header, and reads the
    /// tokens.
    pub fn open(path: &Path) -> Result<Self, LogitsFileError> {
        let p = path.display().to_string();
        let io = |source| LogitsFileError::Io {
            path: p.clone(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let actual = file.metadata().map_err(io)?.len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 20];
        if actual < head.len() as u64 {
            return Err(LogitsFileError::NotLogits(p));
        }
        input.read_exact(&mut head).map_err(io)?;
        if &head[..8] != MAGIC {
            return Err(LogitsFileError::NotLogits(p));
        }
        let word = |i: usize| u32::from_le_bytes(head[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        let (n_ctx, n_vocab, n_chunk) = (word(0), word(1) as i32, word(2) as i32);
        let bad = |what: String| LogitsFileError::BadHeader {
            path: p.clone(),
            what,
        };
        if n_vocab <= 0 {
            return Err(bad(format!("n_vocab {n_vocab}")));
        }
        if n_chunk <= 0 {
            return Err(bad(format!("n_chunk {n_chunk}")));
        }
        if n_ctx < 3 {
            return Err(bad(format!("n_ctx {n_ctx} leaves no position to score")));
        }
        let header = Header {
            n_ctx: n_ctx as usize,
            n_vocab: n_vocab as usize,
            n_chunk: n_chunk as usize,
        };
        if actual != header.file_len() {
            return Err(LogitsFileError::WrongLength {
                path: p,
                actual,
                expected: header.file_len(),
                n_ctx: header.n_ctx,
                n_vocab: header.n_vocab,
                n_chunk: header.n_chunk,
            });
        }
        let mut raw = vec![0u8; 4 * header.n_ctx * header.n_chunk];
        input.read_exact(&mut raw).map_err(io)?;
        let mut tokens = Vec::with_capacity(raw.len() / 4);
        for (i, b) in raw.chunks_exact(4).enumerate() {
            let t = i32::from_le_bytes(b.try_into().unwrap());
            if t < 0 {
                return Err(bad(format!("token {i} is {t}")));
            }
            tokens.push(t as u32);
        }
        Ok(LogitsReader {
            input,
            path: p,
            chunk: Vec::new(),
            header,
            tokens,
            next_chunk: 0,
        })
    }

    /// The tokens of chunk `i`.
    pub fn chunk_tokens(&self, i: usize) -> &[u32] {
        let n = self.header.n_ctx;
        &self.tokens[i * n..(i + 1) * n]
    }

    /// Reads the next chunk's rows (`None` after the last); the slice holds
    /// `rows_per_chunk()` rows of `row_len()` values, see [`BaseRow::new`].
    pub fn next_chunk(&mut self) -> Result<Option<&[u16]>, LogitsFileError> {
        if self.next_chunk == self.header.n_chunk {
            return Ok(None);
        }
        let len = self.header.rows_per_chunk() * self.header.row_len();
        self.chunk.resize(len, 0);
        self.input
            .read_exact(bytemuck::cast_slice_mut(&mut self.chunk))
            .map_err(|source| LogitsFileError::Io {
                path: self.path.clone(),
                source,
            })?;
        if cfg!(target_endian = "big") {
            for v in &mut self.chunk {
                *v = u16::from_le(*v);
            }
        }
        self.next_chunk += 1;
        Ok(Some(&self.chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_sizes_follow_llama_cpp() {
        assert_eq!(row_len(49152), 49156);
        assert_eq!(row_len(291), 296);
        assert_eq!(rows_per_chunk(128), 63);
        assert_eq!(rows_per_chunk(5), 2);
    }

    #[test]
    fn encoding_keeps_log_probs_to_the_scale() {
        let logits = [1.0f32, -3.0, 2.5, 0.25, -30.0];
        let mut row = vec![0u16; row_len(logits.len())];
        let log_norm = encode_row(&logits, &mut row);
        let r = BaseRow::new(&row, logits.len());
        let exact: f64 = logits.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln();
        assert!((log_norm as f64 - exact).abs() < 1e-5);
        // The top token is exact; the others within half a step; -30 is below max - 16.
        assert!((r.log_prob(2) - (2.5 - log_norm)).abs() < 1e-5);
        for i in [0, 1, 3] {
            assert!((r.log_prob(i) - (logits[i] - log_norm)).abs() <= r.scale);
        }
        assert_eq!(r.q[4], 0);
        assert_eq!(r.q[2], 65535);
        assert_eq!(row[row.len() - 1], 0, "the odd vocabulary's padding");
    }

    #[test]
    fn flat_logits_store_zeros() {
        let mut row = vec![7u16; row_len(4)];
        encode_row(&[0.5; 4], &mut row);
        let r = BaseRow::new(&row, 4);
        assert_eq!(r.scale, 0.0);
        assert!(r.q.iter().all(|&q| q == 0));
        assert!((r.log_prob(0) - (0.25f32).ln()).abs() < 1e-6);
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.kld");
        let header = Header {
            n_ctx: 6,
            n_vocab: 3,
            n_chunk: 2,
        };
        let tokens: Vec<u32> = (0..12).map(|i| i % 3).collect();
        let mut w = LogitsWriter::create(&path, header.clone(), &tokens).unwrap();
        let rows = [
            [0.0f32, 1.0, 2.0],
            [3.0, -1.0, 0.5],
            [1.0, 1.0, 9.0],
            [0.0; 3],
        ];
        for r in &rows {
            w.write_row(r).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), header.file_len());
        let mut rd = LogitsReader::open(&path).unwrap();
        assert_eq!(rd.header, header);
        assert_eq!(rd.tokens, tokens);
        let mut seen = 0;
        while let Some(chunk) = rd.next_chunk().unwrap() {
            for row in chunk.chunks_exact(row_len(3)) {
                let mut want = vec![0u16; row_len(3)];
                encode_row(&rows[seen], &mut want);
                assert_eq!(row, &want[..]);
                seen += 1;
            }
        }
        assert_eq!(seen, 4);
    }

    #[test]
    fn short_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"GGUF and then some bytes").unwrap();
        assert!(matches!(
            LogitsReader::open(&path),
            Err(LogitsFileError::NotLogits(_))
        ));
        let mut bytes = MAGIC.to_vec();
        for v in [4u32, 3, 1] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&[0; 16]);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            LogitsReader::open(&path),
            Err(LogitsFileError::WrongLength { .. })
        ));
    }

    #[test]
    fn writer_refuses_to_finish_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base");
        let header = Header {
            n_ctx: 4,
            n_vocab: 2,
            n_chunk: 1,
        };
        let w = LogitsWriter::create(&path, header, &[0, 1, 0, 1]).unwrap();
        assert!(matches!(
            w.finish(),
            Err(LogitsFileError::ChunkCount { .. })
        ));
    }
}
