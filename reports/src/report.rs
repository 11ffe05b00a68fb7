//! What every renderer reads: the candidate runs, optionally a baseline and the gate's outcome,
//! optionally the release history; plus the environment differences and the commands that
//! reproduce the runs, derived here once so that HTML and Markdown say the same thing.

use crate::compare::GateOutcome;
use crate::dataset::Dataset;
use crate::history::History;

pub struct ReportInput<'a> {
    /// e.g. "ci-smoke: 20261122T101500Z-ci-smoke vs 20261121T093000Z-ci-smoke".
    pub title: String,
    pub candidate: &'a Dataset,
    pub baseline: Option<&'a Dataset>,
    pub gate: Option<&'a GateOutcome>,
    pub history: Option<&'a History>,
    /// RFC 3339, UTC.
    pub generated_utc: String,
    /// The `meltbench gate` / `meltbench report` command line that produced this report.
    pub command: String,
}

/// One line of the environment comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvRow {
    /// e.g. "local: kernel".
    pub field: String,
    pub baseline: String,
    pub candidate: String,
    pub differs: bool,
}

impl ReportInput<'_> {
    /// Provenance and device identity of both sides (candidate only when there is no baseline),
    /// one row per field and device; differing rows first.
    pub fn environment(&self) -> Vec<EnvRow> {
        let cand = environment_of(self.candidate);
        let base = self.baseline.map(environment_of).unwrap_or_default();
        let mut rows: Vec<EnvRow> = Vec::new();
        let mut fields: Vec<&String> = cand.keys().chain(base.keys()).collect();
        fields.sort();
        fields.dedup();
        for f in fields {
            let c = cand.get(f).cloned().unwrap_or_else(|| "-".into());
            let b = if self.baseline.is_some() {
                base.get(f).cloned().unwrap_or_else(|| "-".into())
            } else {
                String::new()
            };
            let differs = self.baseline.is_some() && b != c;
            rows.push(EnvRow {
                field: f.clone(),
                baseline: b,
                candidate: c,
                differs,
            });
        }
        rows.sort_by_key(|r| !r.differs);
        rows
    }

    /// The commands that reproduce the candidate runs (each run's `meltbench run` line), then
    /// the command that made this report.
    pub fn reproduce(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.candidate.runs {
            if !out.contains(&r.manifest.command) {
                out.push(r.manifest.command.clone());
            }
        }
        // `meltbench run` writes its report with its own command line, already listed.
        if !out.contains(&self.command) {
            out.push(self.command.clone());
        }
        out
    }
}

fn environment_of(d: &Dataset) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let join = |v: Vec<String>| {
        let mut v = v;
        v.dedup();
        v.join(", ")
    };
    m.insert(
        "meltbench version".to_string(),
        join(
            d.runs
                .iter()
                .map(|r| r.manifest.meltbench_version.clone())
                .collect(),
        ),
    );
    m.insert(
        "meltbench commit".to_string(),
        join(
            d.runs
                .iter()
                .map(|r| r.manifest.meltbench_commit.clone())
                .collect(),
        ),
    );
    m.insert(
        "suite".to_string(),
        join(
            d.runs
                .iter()
                .map(|r| r.manifest.suite_name.clone())
                .collect(),
        ),
    );
    for r in &d.runs {
        for dev in &r.manifest.devices {
            let p = |k: &str| format!("{}: {k}", dev.name);
            m.insert(p("transport"), dev.transport.clone());
            if let Some(i) = &dev.info {
                m.insert(p("hostname"), i.hostname.clone());
                m.insert(
                    p("os"),
                    format!("{} {}", i.os, i.os_release.clone().unwrap_or_default()),
                );
                m.insert(p("kernel"), i.kernel.clone());
                m.insert(p("abi"), i.abi.clone());
                m.insert(p("cpu"), i.cpu_model.clone().unwrap_or_else(|| "-".into()));
                m.insert(p("cores"), i.cores.to_string());
                m.insert(
                    p("ram"),
                    i.ram_bytes
                        .map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
                        .unwrap_or_else(|| "-".into()),
                );
            }
        }
    }
    for c in &d.cells {
        if let Some(k) = &c.kernels {
            m.insert(format!("{}: kernels", c.key.device), k.clone());
        }
    }
    m
}
