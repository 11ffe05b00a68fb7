//! Release history: `--history DIR` keeps one JSON file per release with, per cell and gated
//! metric, the statistic of every session (so step ratios between releases get intervals), and
//! the trend rule alerts when three consecutive releases are each more than 5% worse.

use crate::dataset::Dataset;
use crate::metric::{Metric, SessionValues, Statistic};
use crate::stats::percentile::percentile_sorted;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One release as the history keeps it (`DIR/<release>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub release: String,
    pub recorded_utc: String,
    pub run_ids: Vec<String>,
    pub meltbench_commit: String,
    pub cells: Vec<HistoryCell>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryCell {
    pub device: String,
    pub cell: String,
    pub model_sha256: String,
    pub precision: String,
    pub scenario: String,
    pub threads: usize,
    pub state: String,
    /// Per metric, the metric's statistic computed within each session.
    pub sessions: BTreeMap<Metric, Vec<f64>>,
}

/// Releases in the order they were recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
    pub alerts: Vec<TrendAlert>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendAlert {
    pub device: String,
    pub cell: String,
    pub metric: Metric,
    /// The four releases spanning the three steps, oldest first.
    pub releases: Vec<String>,
    /// Worse-direction ratio of each step (1.07 = 7% worse).
    pub step_ratios: Vec<f64>,
    pub message: String,
}

/// How much worse each of three consecutive steps must be for the trend rule to alert.
pub const TREND_STEP: f64 = 0.05;

/// Resamples for the step intervals; history holds few sessions, so this is cheap.
const STEP_RESAMPLES: usize = 1000;

impl HistoryCell {
    fn key(&self) -> (&str, &str, &str, &str, usize, &str) {
        (
            &self.device,
            &self.model_sha256,
            &self.precision,
            &self.scenario,
            self.threads,
            &self.state,
        )
    }
}

/// The history entry for `dataset` under the name `release`.
pub fn entry_from(
    dataset: &Dataset,
    release: &str,
    recorded_utc: &str,
    metrics: &[Metric],
) -> HistoryEntry {
    let cells = dataset
        .cells
        .iter()
        .filter(|c| c.measured_passes() > 0)
        .map(|c| HistoryCell {
            device: c.key.device.clone(),
            cell: c.key.id.clone(),
            model_sha256: c.key.model_sha256.clone(),
            precision: c.key.precision.clone(),
            scenario: c.key.scenario.clone(),
            threads: c.key.threads,
            state: c.key.state.clone(),
            sessions: metrics
                .iter()
                .filter_map(|&m| {
                    let per: Vec<f64> = c
                        .sessions
                        .iter()
                        .filter_map(|s| session_statistic(m, &m.session_values(s)))
                        .collect();
                    (!per.is_empty()).then_some((m, per))
                })
                .collect(),
        })
        .collect();
    HistoryEntry {
        release: release.to_string(),
        recorded_utc: recorded_utc.to_string(),
        run_ids: dataset
            .runs
            .iter()
            .map(|r| r.manifest.run_id.clone())
            .collect(),
        meltbench_commit: dataset
            .runs
            .first()
            .map(|r| r.manifest.meltbench_commit.clone())
            .unwrap_or_default(),
        cells,
    }
}

fn session_statistic(m: Metric, v: &SessionValues) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    match m.statistic() {
        Statistic::Max => v.values.iter().copied().reduce(f64::max),
        Statistic::Quantile(q) => {
            let mut s = v.values.clone();
            s.sort_by(f64::total_cmp);
            Some(percentile_sorted(&s, q * 100.0))
        }
    }
}

/// Reads every `*.json` entry of `dir`, oldest first (by `recorded_utc`, then release name).
/// A missing directory is an empty history.
pub fn load(dir: &Path) -> Result<Vec<HistoryEntry>, String> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut entries = Vec::new();
    for f in rd {
        let path = f.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let entry: HistoryEntry = serde_json::from_slice(&text).map_err(|e| {
                format!(
                    "{}: not a meltbench history entry ({e}); the history directory should \
                     hold only files written by `meltbench gate --history`",
                    path.display()
                )
            })?;
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| {
        (a.recorded_utc.as_str(), a.release.as_str())
            .cmp(&(b.recorded_utc.as_str(), b.release.as_str()))
    });
    Ok(entries)
}

/// Writes `entry` as `dir/<release>.json` (replacing an earlier entry of the same release).
pub fn save(dir: &Path, entry: &HistoryEntry) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name: String = entry
        .release
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{name}.json"));
    let tmp = path.with_extension("json.partial");
    std::fs::write(&tmp, serde_json::to_vec_pretty(entry)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The history with the trend rule applied at its newest release.
pub fn build(entries: Vec<HistoryEntry>, metrics: &[Metric]) -> History {
    let alerts = trend_alerts(&entries, metrics);
    History { entries, alerts }
}

/// The trend rule at the newest release, per cell and metric present in the last four
/// releases:
/// - rule A: each of the last three steps is more than [`TREND_STEP`] worse, and where both
///   releases have two or more sessions, the step's bootstrap interval lies above no change;
/// - rule B: the drift over those three steps exceeds 1.05^3 with its interval above 1.10,
///   which catches creep that no single step shows.
pub fn trend_alerts(entries: &[HistoryEntry], metrics: &[Metric]) -> Vec<TrendAlert> {
    let mut alerts = Vec::new();
    if entries.len() < 4 {
        return alerts;
    }
    let last4 = &entries[entries.len() - 4..];
    for cell in &last4[3].cells {
        let chain: Option<Vec<&HistoryCell>> = last4
            .iter()
            .map(|e| e.cells.iter().find(|c| c.key() == cell.key()))
            .collect();
        let Some(chain) = chain else { continue };
        for &m in metrics {
            let Some(values): Option<Vec<&Vec<f64>>> =
                chain.iter().map(|c| c.sessions.get(&m)).collect()
            else {
                continue;
            };
            let seed = 0x7472656e64u64 ^ m as u64;
            let steps: Vec<(f64, f64)> = (0..3)
                .map(|i| worse_ratio(m, values[i], values[i + 1], seed + i as u64))
                .collect();
            let releases: Vec<String> = last4.iter().map(|e| e.release.clone()).collect();
            let step_ratios: Vec<f64> = steps.iter().map(|s| s.0).collect();
            let rule_a = steps
                .iter()
                .all(|&(r, low)| r > 1.0 + TREND_STEP && low > 1.0);
            let (drift, drift_low) = worse_ratio(m, values[0], values[3], seed + 7);
            let rule_b = drift > (1.0 + TREND_STEP).powi(3) && drift_low > 1.10;
            if rule_a || rule_b {
                let pct: Vec<String> = step_ratios
                    .iter()
                    .map(|r| format!("{:+.1}%", (r - 1.0) * 100.0))
                    .collect();
                let message = if rule_a {
                    format!(
                        "{} worse in 3 consecutive releases ({}), each step more than {:.0}%",
                        m.label(),
                        pct.join(", "),
                        TREND_STEP * 100.0
                    )
                } else {
                    format!(
                        "{} drifted {:+.1}% over 3 releases ({}), more than {:.1}% in total",
                        m.label(),
                        (drift - 1.0) * 100.0,
                        pct.join(", "),
                        ((1.0 + TREND_STEP).powi(3) - 1.0) * 100.0
                    )
                };
                alerts.push(TrendAlert {
                    device: cell.device.clone(),
                    cell: cell.cell.clone(),
                    metric: m,
                    releases,
                    step_ratios,
                    message,
                });
            }
        }
    }
    alerts
}

/// How much worse `new` is than `old` (1.07 = 7% worse, whatever the metric's direction), and
/// the lower end of a 95% bootstrap interval over sessions. With fewer than two sessions on a
/// side there is no interval and the lower end is the point ratio.
fn worse_ratio(m: Metric, old: &[f64], new: &[f64], seed: u64) -> (f64, f64) {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let worse = |o: f64, n: f64| if m.higher_is_better() { o / n } else { n / o };
    let point = worse(mean(old), mean(new));
    if old.len() < 2 || new.len() < 2 {
        return (point, point);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |v: &[f64]| {
        let mut s = 0.0;
        for _ in 0..v.len() {
            s += v[(rng.next_u64() % v.len() as u64) as usize];
        }
        s / v.len() as f64
    };
    let mut ratios: Vec<f64> = (0..STEP_RESAMPLES)
        .map(|_| {
            let o = draw(old);
            let n = draw(new);
            worse(o, n)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    (point, percentile_sorted(&ratios, 2.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(release: &str, day: u32, latency: &[f64]) -> HistoryEntry {
        HistoryEntry {
            release: release.into(),
            recorded_utc: format!("2026-01-{day:02}T00:00:00Z"),
            run_ids: vec![release.into()],
            meltbench_commit: "abc".into(),
            cells: vec![HistoryCell {
                device: "pixel".into(),
                cell: "m/q4_1/s/t2/any".into(),
                model_sha256: "00".into(),
                precision: "q4_1".into(),
                scenario: "s".into(),
                threads: 2,
                state: "any".into(),
                sessions: [(Metric::LatencyP95, latency.to_vec())].into(),
            }],
        }
    }

    fn scaled(base: &[f64], f: f64) -> Vec<f64> {
        base.iter().map(|v| v * f).collect()
    }

    const S: [f64; 5] = [100.0, 101.0, 99.5, 100.5, 100.2];

    #[test]
    fn three_steps_each_over_five_percent_alert() {
        let h = vec![
            entry("v1", 1, &S),
            entry("v2", 2, &scaled(&S, 1.07)),
            entry("v3", 3, &scaled(&S, 1.07 * 1.07)),
            entry("v4", 4, &scaled(&S, 1.07 * 1.07 * 1.07)),
        ];
        let a = trend_alerts(&h, &[Metric::LatencyP95]);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].releases, ["v1", "v2", "v3", "v4"]);
        assert!(a[0].message.contains("3 consecutive"), "{}", a[0].message);
    }

    #[test]
    fn a_flat_history_or_a_single_jump_does_not_alert() {
        let flat: Vec<_> = (1..=5).map(|d| entry(&format!("v{d}"), d, &S)).collect();
        assert!(trend_alerts(&flat, &[Metric::LatencyP95]).is_empty());
        let jump = vec![
            entry("v1", 1, &S),
            entry("v2", 2, &S),
            entry("v3", 3, &S),
            entry("v4", 4, &scaled(&S, 1.08)),
        ];
        assert!(trend_alerts(&jump, &[Metric::LatencyP95]).is_empty());
    }

    #[test]
    fn creep_below_the_step_threshold_alerts_on_drift() {
        // Steps of +4%, +7%, +7%: the first is under 5%, so rule A stays quiet, but together
        // they drift +19%, beyond 1.05^3.
        let h = vec![
            entry("v1", 1, &S),
            entry("v2", 2, &scaled(&S, 1.04)),
            entry("v3", 3, &scaled(&S, 1.04 * 1.07)),
            entry("v4", 4, &scaled(&S, 1.04 * 1.07 * 1.07)),
        ];
        let a = trend_alerts(&h, &[Metric::LatencyP95]);
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(a[0].message.contains("drifted"), "{}", a[0].message);
    }

    #[test]
    fn throughput_direction_is_respected() {
        let mk = |r: &str, d: u32, f: f64| {
            let mut e = entry(r, d, &S);
            let v = e.cells[0].sessions.remove(&Metric::LatencyP95).unwrap();
            e.cells[0]
                .sessions
                .insert(Metric::DecodeTokensPerS, scaled(&v, f));
            e
        };
        // Throughput falling 7% per release is worse; rising is not.
        let falling = vec![
            mk("a", 1, 1.0),
            mk("b", 2, 0.93),
            mk("c", 3, 0.93 * 0.93),
            mk("d", 4, 0.93 * 0.93 * 0.93),
        ];
        assert_eq!(trend_alerts(&falling, &[Metric::DecodeTokensPerS]).len(), 1);
        let rising = vec![
            mk("a", 1, 1.0),
            mk("b", 2, 1.07),
            mk("c", 3, 1.07 * 1.07),
            mk("d", 4, 1.07 * 1.07 * 1.07),
        ];
        assert!(trend_alerts(&rising, &[Metric::DecodeTokensPerS]).is_empty());
    }

    #[test]
    fn entries_round_trip_through_a_directory_in_time_order() {
        let dir = std::env::temp_dir().join(format!("mb-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        save(&dir, &entry("v2", 2, &S)).unwrap();
        save(&dir, &entry("v1", 1, &S)).unwrap();
        save(&dir, &entry("v1", 1, &scaled(&S, 2.0))).unwrap();
        let h = load(&dir).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].release, "v1");
        assert_eq!(h[0].cells[0].sessions[&Metric::LatencyP95][0], 200.0);
        std::fs::write(dir.join("junk.json"), "{}").unwrap();
        let e = load(&dir).unwrap_err();
        assert!(
            e.contains("junk.json") && e.contains("not a meltbench history entry"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
