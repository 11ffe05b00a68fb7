//! Perplexity the way llama.cpp's `llama-perplexity` computes it, so the numbers compare: the
//! text is cut into chunks of `ctx` tokens, each evaluated from an empty cache, and only the
//! second half of each chunk is scored (so every scored token has at least ctx/2 of context).
//!
//! The same pass can save the model's log-probabilities to a llama.cpp logits file
//! ([`crate::logits_file`]), and [`kl_divergence`] compares a model against such a file:
//! the KL divergence of our distribution from the base one at every scored position, how often
//! both pick the same top token, and how the probability of the actual next token moves (Δp),
//! with llama-perplexity's formulas so the numbers compare with `llama-perplexity --kl-divergence`.

use crate::logits_file::{BaseRow, Header, LogitsFileError, LogitsReader, LogitsWriter};
use crate::session::{ForwardError, Logits, Session};
use crate::tokenizer::Tokenizer;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    #[error(
        "the text tokenizes to {tokens} tokens; perplexity with --ctx {ctx} needs at least {need}"
    )]
    TooShort {
        tokens: usize,
        ctx: usize,
        need: usize,
    },
    #[error("--ctx must be at least 4 (got {0})")]
    CtxTooSmall(usize),
    #[error("the base logits file has a vocabulary of {file} tokens but this model has {model}: KL divergence compares two models over the same vocabulary, so make the base file with a model of the same family and tokenizer (e.g. an F16 or Q8_0 file of this very model)")]
    VocabMismatch { file: usize, model: usize },
    #[error("the base logits file was computed with chunks of {file} tokens but this session holds only {capacity} (the model's context length is {model_ctx}); use a base file made with a --ctx of at most {capacity}")]
    CtxTooLarge {
        file: usize,
        capacity: usize,
        model_ctx: usize,
    },
    #[error(transparent)]
    LogitsFile(#[from] LogitsFileError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Perplexity {
    pub ppl: f64,
    /// Standard error of the estimate, as llama.cpp prints after "+/-".
    pub stderr: f64,
    pub chunks: usize,
    pub tokens: usize,
    pub scored: usize,
    /// Running estimate after each chunk (llama.cpp's `[1]x,[2]y,...`).
    pub running: Vec<f64>,
}

pub fn perplexity(
    session: &mut Session<'_>,
    tokenizer: &Tokenizer,
    text: &str,
    ctx: usize,
    on_chunk: impl FnMut(usize, usize, f64),
) -> Result<Perplexity, PerplexityError> {
    perplexity_saving(session, tokenizer, text, ctx, None, on_chunk)
}

/// [`perplexity`], also writing every scored position's log-probabilities to `base` as
/// `llama-perplexity --kl-divergence-base FILE` does, when `base` is given.
pub fn perplexity_saving(
    session: &mut Session<'_>,
    tokenizer: &Tokenizer,
    text: &str,
    ctx: usize,
    base: Option<&Path>,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<Perplexity, PerplexityError> {
    if ctx < 4 {
        return Err(PerplexityError::CtxTooSmall(ctx));
    }
    let tokens = tokenizer.encode(text, true, false);
    if tokens.len() < 2 * ctx {
        return Err(PerplexityError::TooShort {
            tokens: tokens.len(),
            ctx,
            need: 2 * ctx,
        });
    }
    let n_chunks = tokens.len() / ctx;
    let first = ctx / 2;
    let vocab = session.model.weights.output().rows;
    let mut writer = match base {
        Some(path) => Some(LogitsWriter::create(
            path,
            Header {
                n_ctx: ctx,
                n_vocab: vocab,
                n_chunk: n_chunks,
            },
            &tokens,
        )?),
        None => None,
    };
    let bos = chunk_bos(tokenizer);
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    for chunk in 0..n_chunks {
        let chunk_tokens = &tokens[chunk * ctx..(chunk + 1) * ctx];
        let logits = eval_chunk(session, chunk_tokens, bos)?;
        for j in first..ctx - 1 {
            let row = &logits[(j - first) * vocab..(j - first + 1) * vocab];
            let lp = log_softmax_at(row, chunk_tokens[j + 1] as usize);
            nll -= lp;
            nll2 += lp * lp;
            count += 1;
            if let Some(w) = writer.as_mut() {
                w.write_row(row)?;
            }
        }
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        on_chunk(chunk + 1, n_chunks, ppl);
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let stderr = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(Perplexity {
        ppl,
        stderr,
        chunks: n_chunks,
        tokens: tokens.len(),
        scored: count,
        running,
    })
}

/// The token that replaces each chunk's first one, if the model wants a BOS (llama.cpp does
/// this per chunk, so every chunk starts like a fresh document).
fn chunk_bos(tokenizer: &Tokenizer) -> Option<u32> {
    tokenizer.bos.filter(|_| tokenizer.add_bos)
}

/// Runs one chunk from an empty cache; returns the logits of its second half, one row per
/// position from `chunk.len() / 2` on.
fn eval_chunk<'s>(
    session: &'s mut Session<'_>,
    chunk: &[u32],
    bos: Option<u32>,
) -> Result<&'s [f32], ForwardError> {
    let mut batch = chunk.to_vec();
    if let Some(b) = bos {
        batch[0] = b;
    }
    session.reset();
    session.forward(&batch, Logits::From(chunk.len() / 2))
}

/// The log-probability (nats) of token `i` under the logits `row`.
pub fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    row[i] as f64 - max - sum.ln()
}

/// The comparison at one scored position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenKld {
    /// KL(base || ours) in nats, summed over the tokens the base file resolves (log p > -16).
    pub kld: f64,
    /// Our probability of the actual next token minus the base's.
    pub p_diff: f32,
    /// Negative log-likelihood of the actual next token: ours and the base's.
    pub nll: f32,
    pub nll_base: f32,
    /// Both pick the same most likely token (the first one, on ties).
    pub same_top: bool,
}

/// Compares our `logits` with a stored base row at the position whose actual next token is
/// `target`. f32/f64 as llama-perplexity uses them, so the same inputs give the same numbers.
pub fn token_kld(logits: &[f32], base: &BaseRow<'_>, target: usize) -> TokenKld {
    let (mut imax, mut max) = (0, logits[0]);
    for (i, &l) in logits.iter().enumerate().skip(1) {
        if l > max {
            (imax, max) = (i, l);
        }
    }
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    let log_norm = max + sum.ln() as f32;
    let nll = log_norm - logits[target];
    let nll_base = -base.log_prob(target);
    let (mut kld, mut imax_base, mut max_base) = (0.0f64, 0, 0.0f32);
    for (i, &l) in logits.iter().enumerate() {
        let lp_base = base.log_prob(i);
        if i == 0 || lp_base > max_base {
            (imax_base, max_base) = (i, lp_base);
        }
        // The file clamps everything below the top 16 nats, so those terms are noise.
        if lp_base > -16.0 {
            kld += (lp_base.exp() * (lp_base - l + log_norm)) as f64;
        }
    }
    TokenKld {
        kld,
        p_diff: (-nll).exp() - (-nll_base).exp(),
        nll,
        nll_base,
        same_top: imax == imax_base,
    }
}

/// Running sums over scored positions, plus every position's KLD and Δp for the percentiles
/// (a few bytes per token: the rows themselves are never kept).
#[derive(Clone, Debug, Default)]
pub struct KldStats {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    same_top: usize,
    klds: Vec<f32>,
    p_diffs: Vec<f32>,
}

/// What llama-perplexity prints after each chunk of `--kl-divergence`.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct KldRunning {
    pub ppl: f64,
    pub mean_kld: f64,
    /// Percent.
    pub same_top1: f64,
}

impl KldStats {
    pub fn add(&mut self, t: &TokenKld) {
        let (nll, nll_base) = (t.nll as f64, t.nll_base as f64);
        self.sum_nll += nll;
        self.sum_nll2 += nll * nll;
        self.sum_nll_base += nll_base;
        self.sum_nll_base2 += nll_base * nll_base;
        self.sum_nll_nll_base += nll * nll_base;
        self.sum_kld += t.kld;
        self.sum_kld2 += t.kld * t.kld;
        let d = t.p_diff as f64;
        self.sum_p_diff += d;
        self.sum_p_diff2 += d * d;
        self.sum_p_diff4 += d * d * d * d;
        self.same_top += t.same_top as usize;
        self.klds.push(t.kld as f32);
        self.p_diffs.push(t.p_diff);
    }

    pub fn count(&self) -> usize {
        self.klds.len()
    }

    pub fn running(&self) -> KldRunning {
        let n = self.count().max(1) as f64;
        KldRunning {
            ppl: (self.sum_nll / n).exp(),
            mean_kld: self.sum_kld / n,
            same_top1: 100.0 * self.same_top as f64 / n,
        }
    }

    /// The summary llama-perplexity prints at the end of `--kl-divergence`.
    pub fn finish(mut self, chunks: usize, ctx: usize) -> KlDivergence {
        let n = self.count();
        let (ln_ppl, ln_ppl_unc) = mean_and_uncertainty(self.sum_nll, self.sum_nll2, n);
        let (ln_base, ln_base_unc) = mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, n);
        let cov = covariance(self.sum_nll, self.sum_nll_base, self.sum_nll_nll_base, n);
        let ppl = ln_ppl.exp();
        let ppl_base = ln_base.exp();
        let ln_ratio = ln_ppl - ln_base;
        let ln_ratio_unc = (ln_ppl_unc * ln_ppl_unc + ln_base_unc * ln_base_unc - 2.0 * cov).sqrt();
        let (ppl_unc, ppl_base_unc) = (ppl * ln_ppl_unc, ppl_base * ln_base_unc);
        let ppl_diff_unc =
            (ppl_unc * ppl_unc + ppl_base_unc * ppl_base_unc - 2.0 * ppl * ppl_base * cov).sqrt();
        let (mean_kld, mean_kld_unc) = mean_and_uncertainty(self.sum_kld, self.sum_kld2, n);
        let (mean_dp, mean_dp_unc) = mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, n);
        let (mse_dp, mse_dp_unc) = mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, n);
        let rms_dp = mse_dp.sqrt();
        let same = self.same_top as f64 / n.max(1) as f64;
        self.klds.sort_by(f32::total_cmp);
        self.p_diffs.sort_by(f32::total_cmp);
        KlDivergence {
            chunks,
            ctx,
            scored: n,
            ppl,
            ppl_stderr: ppl_unc,
            ppl_base,
            ppl_base_stderr: ppl_base_unc,
            cor_ln_ppl: if ln_ppl_unc > 0.0 && ln_base_unc > 0.0 {
                100.0 * cov / (ln_ppl_unc * ln_base_unc)
            } else {
                0.0
            },
            ln_ppl_ratio: ln_ratio,
            ln_ppl_ratio_stderr: ln_ratio_unc,
            ppl_ratio: ln_ratio.exp(),
            ppl_ratio_stderr: ln_ratio.exp() * ln_ratio_unc,
            ppl_diff: ppl - ppl_base,
            ppl_diff_stderr: ppl_diff_unc,
            mean_kld,
            mean_kld_stderr: mean_kld_unc,
            kld: Percentiles::of(&self.klds, 1.0),
            mean_dp: 100.0 * mean_dp,
            mean_dp_stderr: 100.0 * mean_dp_unc,
            rms_dp: 100.0 * rms_dp,
            rms_dp_stderr: if rms_dp > 0.0 {
                100.0 * 0.5 / rms_dp * mse_dp_unc
            } else {
                0.0
            },
            dp: Percentiles::of(&self.p_diffs, 100.0),
            same_top1: 100.0 * same,
            same_top1_stderr: if n > 1 {
                100.0 * (same * (1.0 - same) / (n as f64 - 1.0)).sqrt()
            } else {
                0.0
            },
        }
    }
}

/// Mean of a per-token quantity and its standard error, as llama-perplexity computes them (no
/// error from fewer than 11 values).
fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let f = sum / n;
    let var = sum2 / n - f * f;
    let df = if var > 0.0 && count > 10 {
        (var / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (f, df)
}

/// Covariance of two per-token means (llama-perplexity's, including its count < 10 cut-off).
fn covariance(sum_a: f64, sum_b: f64, sum_ab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1.0)
}

/// The distribution of a per-token quantity, at llama-perplexity's percentiles.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    pub max: f64,
    pub p99_9: f64,
    pub p99: f64,
    pub p95: f64,
    pub p90: f64,
    pub p75: f64,
    pub median: f64,
    pub p25: f64,
    pub p10: f64,
    pub p5: f64,
    pub p1: f64,
    pub p0_1: f64,
    pub min: f64,
}

impl Percentiles {
    /// `sorted` ascending; every value is multiplied by `unit` (100 for percent).
    pub fn of(sorted: &[f32], unit: f64) -> Percentiles {
        if sorted.is_empty() {
            return Percentiles::default();
        }
        let p = |f: f32| unit * percentile(sorted, f) as f64;
        let n = sorted.len();
        // The median is the mean of the middle two, not the interpolated 50% point.
        let median = if n.is_multiple_of(2) {
            0.5 * (sorted[n / 2] + sorted[n / 2 - 1])
        } else {
            sorted[n / 2]
        };
        Percentiles {
            max: unit * sorted[n - 1] as f64,
            p99_9: p(0.999),
            p99: p(0.99),
            p95: p(0.95),
            p90: p(0.90),
            p75: p(0.75),
            median: unit * median as f64,
            p25: p(0.25),
            p10: p(0.10),
            p5: p(0.05),
            p1: p(0.01),
            p0_1: p(0.001),
            min: unit * sorted[0] as f64,
        }
    }
}

/// Linear interpolation between the two nearest ranks, in f32 like llama-perplexity.
fn percentile(sorted: &[f32], fraction: f32) -> f32 {
    if fraction <= 0.0 {
        return sorted[0];
    }
    if fraction >= 1.0 {
        return sorted[sorted.len() - 1];
    }
    let p = fraction * (sorted.len() - 1) as f32;
    let i = p as usize;
    let w = p - i as f32;
    (1.0 - w) * sorted[i] + w * sorted[(i + 1).min(sorted.len() - 1)]
}

/// llama-perplexity's `--kl-divergence` summary. Δp, same-top and the correlation are in
/// percent, as it prints them; KLD in nats.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KlDivergence {
    pub chunks: usize,
    pub ctx: usize,
    pub scored: usize,
    /// Our perplexity over the base file's tokens ("Mean PPL(Q)").
    pub ppl: f64,
    pub ppl_stderr: f64,
    /// The base model's, from the stored log-probabilities ("Mean PPL(base)").
    pub ppl_base: f64,
    pub ppl_base_stderr: f64,
    /// Correlation of the two per-token log-likelihoods, percent.
    pub cor_ln_ppl: f64,
    pub ln_ppl_ratio: f64,
    pub ln_ppl_ratio_stderr: f64,
    pub ppl_ratio: f64,
    pub ppl_ratio_stderr: f64,
    pub ppl_diff: f64,
    pub ppl_diff_stderr: f64,
    pub mean_kld: f64,
    pub mean_kld_stderr: f64,
    pub kld: Percentiles,
    pub mean_dp: f64,
    pub mean_dp_stderr: f64,
    pub rms_dp: f64,
    pub rms_dp_stderr: f64,
    pub dp: Percentiles,
    pub same_top1: f64,
    pub same_top1_stderr: f64,
}

impl KlDivergence {
    /// The summary in llama-perplexity's layout, so the two outputs can be read side by side.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line("====== Perplexity statistics ======".into());
        line(format!(
            "Mean PPL(Q)                   : {:10.6} ± {:10.6}",
            self.ppl, self.ppl_stderr
        ));
        line(format!(
            "Mean PPL(base)                : {:10.6} ± {:10.6}",
            self.ppl_base, self.ppl_base_stderr
        ));
        line(format!(
            "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
            self.cor_ln_ppl
        ));
        line(format!(
            "Mean ln(PPL(Q)/PPL(base))     : {:10.6} ± {:10.6}",
            self.ln_ppl_ratio, self.ln_ppl_ratio_stderr
        ));
        line(format!(
            "Mean PPL(Q)/PPL(base)         : {:10.6} ± {:10.6}",
            self.ppl_ratio, self.ppl_ratio_stderr
        ));
        line(format!(
            "Mean PPL(Q)-PPL(base)         : {:10.6} ± {:10.6}",
            self.ppl_diff, self.ppl_diff_stderr
        ));
        line(String::new());
        line("====== KL divergence statistics ======".into());
        line(format!(
            "Mean    KLD: {:10.6} ± {:10.6}",
            self.mean_kld, self.mean_kld_stderr
        ));
        for (name, v) in self.kld.named() {
            line(format!("{name} KLD: {v:10.6}"));
        }
        line(String::new());
        line("====== Token probability statistics ======".into());
        line(format!(
            "Mean    Δp: {:6.3} ± {:5.3} %",
            self.mean_dp, self.mean_dp_stderr
        ));
        for (name, v) in self.dp.named() {
            line(format!("{name} Δp: {v:6.3}%"));
        }
        line(format!(
            "RMS Δp    : {:6.3} ± {:5.3} %",
            self.rms_dp, self.rms_dp_stderr
        ));
        line(format!(
            "Same top p: {:6.3} ± {:5.3} %",
            self.same_top1, self.same_top1_stderr
        ));
        s
    }
}

impl Percentiles {
    fn named(&self) -> [(&'static str, f64); 13] {
        [
            ("Maximum", self.max),
            ("99.9%  ", self.p99_9),
            ("99.0%  ", self.p99),
            ("95.0%  ", self.p95),
            ("90.0%  ", self.p90),
            ("75.0%  ", self.p75),
            ("Median ", self.median),
            ("25.0%  ", self.p25),
            ("10.0%  ", self.p10),
            (" 5.0%  ", self.p5),
            (" 1.0%  ", self.p1),
            (" 0.1%  ", self.p0_1),
            ("Minimum", self.min),
        ]
    }
}

/// Compares `session`'s model with the base model whose log-probabilities `base` holds, over
/// the tokens stored in the file (so both score exactly the same tokens whatever tokenizer
/// made them), chunk by chunk as llama-perplexity does. `on_chunk(i, n, running)` after each.
pub fn kl_divergence(
    session: &mut Session<'_>,
    tokenizer: &Tokenizer,
    base: &mut LogitsReader,
    mut on_chunk: impl FnMut(usize, usize, &KldRunning),
) -> Result<KlDivergence, PerplexityError> {
    let h = base.header.clone();
    let vocab = session.model.weights.output().rows;
    if h.n_vocab != vocab {
        return Err(PerplexityError::VocabMismatch {
            file: h.n_vocab,
            model: vocab,
        });
    }
    if h.n_ctx < 4 {
        return Err(PerplexityError::CtxTooSmall(h.n_ctx));
    }
    if session.cache.capacity < h.n_ctx {
        return Err(PerplexityError::CtxTooLarge {
            file: h.n_ctx,
            capacity: session.cache.capacity,
            model_ctx: session.model.config.ctx_len,
        });
    }
    let bos = chunk_bos(tokenizer);
    let first = h.n_ctx / 2;
    let (row_len, rows) = (h.row_len(), h.rows_per_chunk());
    let mut stats = KldStats::default();
    for chunk in 0..h.n_chunk {
        let tokens = base.chunk_tokens(chunk).to_vec();
        let logits = eval_chunk(session, &tokens, bos)?;
        let stored = base
            .next_chunk()?
            .expect("the reader holds n_chunk chunks (its length was checked on open)");
        for r in 0..rows {
            let ours = &logits[r * vocab..(r + 1) * vocab];
            let row = BaseRow::new(&stored[r * row_len..(r + 1) * row_len], vocab);
            let target = tokens[first + r + 1] as usize;
            stats.add(&token_kld(ours, &row, target));
        }
        on_chunk(chunk + 1, h.n_chunk, &stats.running());
    }
    Ok(stats.finish(h.n_chunk, h.n_ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logits_file::{encode_row, row_len};

    fn softmax(l: &[f32]) -> Vec<f64> {
        let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = l.iter().map(|&x| (x as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    /// A four-token example worked out with plain f64 softmaxes.
    #[test]
    fn kld_by_hand() {
        let base_logits = [2.0f32, 1.0, 0.0, -1.0];
        let ours = [1.5f32, 1.2, 0.1, -0.5];
        let mut row = vec![0u16; row_len(4)];
        encode_row(&base_logits, &mut row);
        let base = BaseRow::new(&row, 4);
        let (p, q) = (softmax(&base_logits), softmax(&ours));
        let want: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
        // p = [0.6439, 0.2369, 0.0871, 0.0321], q = [0.4711, 0.3490, 0.1162, 0.0638]:
        // KL = 0.6439 ln(0.6439/0.4711) + ... = 0.2012 - 0.0918 - 0.0251 - 0.0221 = 0.0622 nats.
        assert!((want - 0.0622).abs() < 5e-4, "hand value {want}");
        let t = token_kld(&ours, &base, 1);
        assert!((t.kld - want).abs() < 1e-5, "{} vs {want}", t.kld);
        assert!((t.p_diff as f64 - (q[1] - p[1])).abs() < 1e-5);
        assert!((t.nll as f64 + q[1].ln()).abs() < 1e-5);
        assert!((t.nll_base as f64 + p[1].ln()).abs() < 1e-4);
        assert!(t.same_top);
        let swapped = [1.0f32, 2.0, 0.0, -1.0];
        let t = token_kld(&swapped, &base, 1);
        assert!(!t.same_top);
        assert!(t.p_diff > 0.0);
    }

    #[test]
    fn identical_distributions_diverge_by_nothing() {
        let logits: Vec<f32> = (0..50)
            .map(|i| ((i * 37) % 11) as f32 * 0.7 - 3.0)
            .collect();
        let mut row = vec![0u16; row_len(logits.len())];
        encode_row(&logits, &mut row);
        let t = token_kld(&logits, &BaseRow::new(&row, logits.len()), 7);
        // Not exactly 0: the stored log-probabilities are rounded to steps of range/65535
        // (here 7 nats / 65535 = 1.1e-4), which llama.cpp's file format accepts.
        assert!(t.kld.abs() < 1e-4, "{}", t.kld);
        assert!(t.p_diff.abs() < 1e-5);
        assert!(t.same_top);
    }

    #[test]
    fn percentiles_interpolate_like_llama_cpp() {
        let v: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        let p = Percentiles::of(&v, 1.0);
        assert_eq!((p.min, p.max, p.median), (0.0, 100.0, 50.0));
        assert!((p.p99_9 - 99.9).abs() < 1e-4);
        assert!((p.p25 - 25.0).abs() < 1e-4);
        let even = Percentiles::of(&[1.0, 2.0, 4.0, 8.0], 100.0);
        assert_eq!(even.median, 300.0);
    }

    #[test]
    fn stats_of_known_values() {
        let mut s = KldStats::default();
        for i in 0..20 {
            s.add(&TokenKld {
                kld: if i % 2 == 0 { 0.1 } else { 0.3 },
                p_diff: 0.0,
                nll: 1.0,
                nll_base: 1.0,
                same_top: i < 15,
            });
        }
        let r = s.finish(2, 8);
        assert!((r.mean_kld - 0.2).abs() < 1e-12);
        // Population sd 0.1 over 20 values: standard error 0.1 / sqrt(19).
        assert!((r.mean_kld_stderr - 0.1 / 19f64.sqrt()).abs() < 1e-9);
        assert!((r.same_top1 - 75.0).abs() < 1e-12);
        assert!((r.ppl - 1f64.exp()).abs() < 1e-9);
        assert!((r.ppl_ratio - 1.0).abs() < 1e-12);
        assert_eq!(r.kld.max as f32, 0.3);
    }
}
