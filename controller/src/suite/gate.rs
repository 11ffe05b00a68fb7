//! The suite's `gate:` section: budgets per metric.

use super::*;
use meltbench_reports::budget::{parse_limit, Limit};

/// Only the `gate:` section, for reading it back from a run's suite snapshot.
#[derive(Debug, Deserialize)]
pub(super) struct GateOnly {
    #[serde(default, deserialize_with = "present")]
    gate: Field<BTreeMap<String, Spanned<Raw>>>,
}

/// The `gate:` section of a suite's text (as a run directory keeps it in `run.json`).
pub fn gate_spec(file: &Path, text: &str) -> Result<GateSpec, SuiteErrors> {
    let only: GateOnly = yaml::parse(file, text)?;
    let mut r = Report::new(file, text);
    let spec = check_gate(&mut r, only.gate.as_ref());
    if r.has_errors() {
        return Err(r.finish());
    }
    Ok(spec)
}

pub(super) fn check_gate(
    r: &mut Report,
    gate: Option<&Spanned<BTreeMap<String, Spanned<Raw>>>>,
) -> GateSpec {
    let mut spec = GateSpec::default();
    let Some(gate) = gate else { return spec };
    for (key, value) in &gate.value {
        if let Some(limit) = Limit::from_key(key) {
            // YAML 1.1 reads a bare `off` as false.
            let text = match &value.value {
                Raw::Bool(false) => "off".to_string(),
                other => other.to_string(),
            };
            match parse_limit(&text) {
                Ok(b) => {
                    spec.limits.insert(limit, b);
                }
                Err(e) => r.on(value, format!("gate {key} {e}")),
            }
            continue;
        }
        let metric = Metric::from_name(key);
        if metric.is_none() && key != "noise_floor" {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            r.on(
                value,
                format!(
                    "unknown gate key '{key}' (allowed: {}, noise_floor, size_budget, \
                     memory_budget)",
                    names.join(", ")
                ),
            );
            continue;
        }
        let pct = match &value.value {
            Raw::Str(s) if s.trim() == "off" && metric.is_some() => {
                spec.budgets.insert(metric.unwrap(), None);
                continue;
            }
            Raw::Bool(false) if metric.is_some() => {
                spec.budgets.insert(metric.unwrap(), None);
                continue;
            }
            Raw::Str(s) => s
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
                .filter(|p| p.is_finite() && *p >= 0.0 && *p < 1000.0),
            _ => None,
        };
        let Some(pct) = pct else {
            let off = if metric.is_some() { " or `off`" } else { "" };
            r.on(
                value,
                format!(
                    "gate {key} must be a percentage such as 10%{off}, got '{}'",
                    value.value
                ),
            );
            continue;
        };
        match metric {
            Some(m) => {
                spec.budgets.insert(m, Some(pct / 100.0));
            }
            None => spec.noise_floor = Some(pct / 100.0),
        }
    }
    spec
}
