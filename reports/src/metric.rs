//! The metrics the gate compares, and what each one takes from a session's passes.

use crate::dataset::SessionData;
pub use crate::stats::sample::{SessionValues, Statistic};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// p95 of the whole pass (tokenize + prefill + decode + detokenize).
    LatencyP95,
    /// p99 of the whole pass; only warns below [`P99_MIN_POOLED_PASSES`] passes per build.
    LatencyP99,
    /// p95 of time to first token.
    TtftP95,
    /// p95 of the per-token decode latency (every decode step of every pass).
    DecodeP95,
    /// Median of per-pass decode tokens/s.
    DecodeTokensPerS,
    /// Median of per-pass prefill tokens/s.
    PrefillTokensPerS,
    /// Largest resident set over the sessions.
    PeakRss,
    /// Median of per-pass energy per generated token.
    EnergyPerToken,
}

/// Below this many pooled passes per build a p99 verdict is at most a warning: a 95% interval
/// for p99 is unbounded above until n >= 368, and a point estimate is a coin flip well beyond.
pub const P99_MIN_POOLED_PASSES: usize = 1000;

impl Metric {
    pub const ALL: [Metric; 8] = [
        Metric::LatencyP95,
        Metric::LatencyP99,
        Metric::TtftP95,
        Metric::DecodeP95,
        Metric::DecodeTokensPerS,
        Metric::PrefillTokensPerS,
        Metric::PeakRss,
        Metric::EnergyPerToken,
    ];

    /// The name used in suites (`gate:`), on the command line and in exports.
    pub fn name(self) -> &'static str {
        match self {
            Metric::LatencyP95 => "latency_p95",
            Metric::LatencyP99 => "latency_p99",
            Metric::TtftP95 => "ttft_p95",
            Metric::DecodeP95 => "decode_p95",
            Metric::DecodeTokensPerS => "decode_tokens_per_s",
            Metric::PrefillTokensPerS => "prefill_tokens_per_s",
            Metric::PeakRss => "peak_rss",
            Metric::EnergyPerToken => "energy_per_token",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Words for a table header.
    pub fn label(self) -> &'static str {
        match self {
            Metric::LatencyP95 => "p95 pass latency",
            Metric::LatencyP99 => "p99 pass latency",
            Metric::TtftP95 => "p95 time to first token",
            Metric::DecodeP95 => "p95 decode latency per token",
            Metric::DecodeTokensPerS => "median decode tokens/s",
            Metric::PrefillTokensPerS => "median prefill tokens/s",
            Metric::PeakRss => "peak RSS",
            Metric::EnergyPerToken => "median energy per token",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::LatencyP95 | Metric::LatencyP99 | Metric::TtftP95 => "ms",
            Metric::DecodeP95 => "ms/token",
            Metric::DecodeTokensPerS | Metric::PrefillTokensPerS => "tok/s",
            Metric::PeakRss => "MiB",
            Metric::EnergyPerToken => "J/token",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::DecodeTokensPerS | Metric::PrefillTokensPerS)
    }

    /// The allowed relative change in the bad direction (0.10 = 10% slower, 10% less
    /// throughput, 10% more memory or energy).
    pub fn default_budget(self) -> f64 {
        0.10
    }

    pub fn statistic(self) -> Statistic {
        match self {
            Metric::LatencyP95 | Metric::TtftP95 | Metric::DecodeP95 => Statistic::Quantile(0.95),
            Metric::LatencyP99 => Statistic::Quantile(0.99),
            Metric::DecodeTokensPerS | Metric::PrefillTokensPerS | Metric::EnergyPerToken => {
                Statistic::Quantile(0.5)
            }
            Metric::PeakRss => Statistic::Max,
        }
    }

    /// What `session` contributes (empty when it has no such measurement).
    pub fn session_values(self, session: &SessionData) -> SessionValues {
        let mut out = SessionValues {
            values: Vec::new(),
            groups: vec![0],
        };
        let mut push = |vals: &mut dyn Iterator<Item = f64>| {
            out.values.extend(vals);
            if *out.groups.last().unwrap() != out.values.len() {
                out.groups.push(out.values.len());
            }
        };
        match self {
            Metric::PeakRss => push(
                &mut session
                    .peak_rss_bytes
                    .map(|b| b as f64 / 1048576.0)
                    .into_iter(),
            ),
            _ => {
                for p in &session.passes {
                    match self {
                        Metric::LatencyP95 | Metric::LatencyP99 => {
                            push(&mut std::iter::once(p.latency_ms))
                        }
                        Metric::TtftP95 => push(&mut std::iter::once(p.ttft_ms)),
                        Metric::DecodeP95 => push(&mut p.decode_step_ms.iter().copied()),
                        Metric::DecodeTokensPerS => push(&mut p.decode_tokens_per_s.into_iter()),
                        Metric::PrefillTokensPerS => push(&mut p.prefill_tokens_per_s.into_iter()),
                        Metric::EnergyPerToken => push(&mut p.energy_j_per_token.into_iter()),
                        Metric::PeakRss => unreachable!(),
                    }
                }
            }
        }
        out
    }
}
