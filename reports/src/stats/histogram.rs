//! Per-token (decode step) latency histograms: HdrHistogram in microseconds at 3 significant
//! digits (quantisation at most 0.1%), mergeable across sessions and devices, stored as base64
//! of the V2+DEFLATE encoding (HdrHistogram's compressed histogram format, as the `hdrhistogram`
//! crate's `V2DeflateSerializer` writes it).
//!
//! Quantiles read from a histogram are HdrHistogram's: nearest rank, reported as the upper
//! edge of the value's bucket (biased up by at most one bucket, not interpolated). The gate
//! never reads them: it works on the raw values.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::fmt;

/// Significant decimal digits kept.
pub const SIGFIG: u8 = 3;

#[derive(Clone, Debug, PartialEq)]
pub struct TokenLatencyHistogram {
    hist: Histogram<u64>,
}

/// Why a stored histogram could not be read back.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramDecodeError(String);

impl fmt::Display for HistogramDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read the token latency histogram: {}", self.0)
    }
}

impl std::error::Error for HistogramDecodeError {}

impl Default for TokenLatencyHistogram {
    fn default() -> Self {
        TokenLatencyHistogram::new()
    }
}

impl TokenLatencyHistogram {
    pub fn new() -> TokenLatencyHistogram {
        TokenLatencyHistogram {
            hist: Histogram::new(SIGFIG).expect("3 significant digits is a valid precision"),
        }
    }

    /// Records one decode step of `ms` milliseconds (rounded to whole microseconds; negative
    /// and non-finite values are ignored).
    pub fn record_ms(&mut self, ms: f64) {
        if ms.is_finite() && ms >= 0.0 {
            // The histogram auto-resizes, so recording cannot fail.
            let _ = self.hist.record((ms * 1000.0).round() as u64);
        }
    }

    /// A histogram of these decode steps (milliseconds).
    pub fn from_steps_ms(steps: impl IntoIterator<Item = f64>) -> TokenLatencyHistogram {
        let mut h = TokenLatencyHistogram::new();
        steps.into_iter().for_each(|ms| h.record_ms(ms));
        h
    }

    /// Adds `other`'s counts (exact: quantiles of the merge are those of the pooled steps).
    pub fn merge(&mut self, other: &TokenLatencyHistogram) {
        self.hist
            .add(&other.hist)
            .expect("an auto-resizing histogram takes any other");
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The `q`-quantile (0..=1) in milliseconds (nearest rank, upper bucket edge); `None` when
    /// empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (!self.is_empty()).then(|| self.hist.value_at_quantile(q) as f64 / 1000.0)
    }

    pub fn max_ms(&self) -> Option<f64> {
        (!self.is_empty()).then(|| self.hist.max() as f64 / 1000.0)
    }

    /// The empirical CDF: one point per recorded bucket, (upper edge in microseconds,
    /// percent of steps at or below it), ascending; the last point is at 100.
    pub fn cdf_points(&self) -> Vec<(u64, f64)> {
        self.hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.percentile()))
            .collect()
    }

    /// Base64 (standard alphabet, padded) of the V2+DEFLATE encoding.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.hist, &mut bytes)
            .expect("serialising into memory does not fail");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Reads [`TokenLatencyHistogram::to_base64`]'s output (plain V2 is accepted too).
    pub fn from_base64(text: &str) -> Result<TokenLatencyHistogram, HistogramDecodeError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| HistogramDecodeError(format!("not base64 ({e})")))?;
        let hist = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| HistogramDecodeError(format!("not an HdrHistogram V2 encoding ({e})")))?;
        Ok(TokenLatencyHistogram { hist })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_merges_and_reads_quantiles() {
        let a = TokenLatencyHistogram::from_steps_ms((1..=1000).map(|i| i as f64 * 0.1));
        let b = TokenLatencyHistogram::from_steps_ms((1..=1000).map(|i| 100.0 + i as f64 * 0.1));
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.len(), 2000);
        let text = merged.to_base64();
        let back = TokenLatencyHistogram::from_base64(&text).unwrap();
        assert_eq!(back, merged);
        assert_eq!(back.to_base64(), text);
        // 3 significant digits: within 0.1% of the exact values.
        let p50 = back.quantile_ms(0.5).unwrap();
        assert!((p50 - 100.0).abs() <= 0.1, "{p50}");
        let max = back.max_ms().unwrap();
        assert!((max - 200.0).abs() <= 0.2, "{max}");
        let cdf = back.cdf_points();
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(cdf.last().unwrap().1, 100.0);
        assert!(TokenLatencyHistogram::new().quantile_ms(0.5).is_none());
        let err = TokenLatencyHistogram::from_base64("not a histogram!").unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
        let err = TokenLatencyHistogram::from_base64("AAAA").unwrap_err();
        assert!(err.to_string().contains("HdrHistogram"), "{err}");
    }
}
