//! `meltbench gate` and `meltbench report`: load run directories, pair cells, compute verdicts
//! (in `meltbench-reports`) and write the renderers' files.

use crate::suite;
use meltbench_reports::budget::{parse_limit, Limit};
use meltbench_reports::compare::{self, GateConfig, GateOutcome, KeyField};
use meltbench_reports::dataset::Dataset;
use meltbench_reports::export::{self, Exporter};
use meltbench_reports::history::{self, History};
use meltbench_reports::metric::Metric;
use meltbench_reports::report::ReportInput;
use meltbench_reports::runstore::{self, LoadedRun};
use std::fmt;
use std::path::{Path, PathBuf};

/// Input the user can fix (a path that is not a run, a bad --budget): exit status 2.
#[derive(Debug)]
pub struct InvalidInput(pub String);

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

fn invalid(msg: impl Into<String>) -> anyhow::Error {
    InvalidInput(msg.into()).into()
}

/// Which runs, against what, with which budgets.
#[derive(Clone, Debug, Default)]
pub struct CompareRequest {
    pub runs: Vec<PathBuf>,
    pub baseline: Vec<PathBuf>,
    pub history: Option<PathBuf>,
    /// `METRIC=PCT` or `METRIC=off`.
    pub budgets: Vec<String>,
    pub ignore_key: Vec<String>,
    /// Cells of this engine are the baseline, the other engines' cells the candidate.
    pub baseline_engine: Option<String>,
    pub resamples: usize,
    pub seed: u64,
}

/// Everything a renderer needs, loaded and computed.
pub struct Comparison {
    pub candidate: Dataset,
    pub baseline: Option<Dataset>,
    pub outcome: Option<GateOutcome>,
    pub config: GateConfig,
}

/// Loads the run directories named by `paths`: run directories themselves, or directories whose
/// subdirectories are run directories (all of them, in name order).
pub fn load_runs(paths: &[PathBuf], side: &str) -> anyhow::Result<Dataset> {
    let mut runs: Vec<LoadedRun> = Vec::new();
    for p in paths {
        let dirs = if runstore::is_run_dir(p) {
            vec![p.clone()]
        } else {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| invalid(format!("{} ({side}): {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|d| runstore::is_run_dir(d))
                .collect();
            inner.sort();
            if inner.is_empty() {
                return Err(invalid(format!(
                    "{} ({side}): neither a run directory (no run.json) nor a directory of run \
                     directories; pass a directory that `meltbench run` created",
                    p.display()
                )));
            }
            inner
        };
        for d in dirs {
            let run = runstore::load_run(&d).map_err(|e| invalid(e.to_string()))?;
            for s in &run.skipped_lines {
                eprintln!("warning: skipped an unreadable event line: {s}");
            }
            runs.push(run);
        }
    }
    Ok(Dataset::from_runs(runs))
}

/// Defaults, then the candidate suite's `gate:` section, then `--budget` and `--ignore-key`.
pub fn config(req: &CompareRequest, candidate: &Dataset) -> anyhow::Result<GateConfig> {
    let mut config = GateConfig {
        resamples: req.resamples.max(100),
        seed: req.seed,
        ..GateConfig::default()
    };
    if let Some(run) = candidate.runs.first() {
        let origin = run.dir.join("run.json");
        let origin = Path::new(&origin).join("suite_yaml");
        let spec = suite::gate_spec(&origin, &run.manifest.suite_yaml)
            .map_err(|e| invalid(e.to_string()))?;
        spec.apply(&mut config);
    }
    for b in &req.budgets {
        let (name, value) = b.split_once('=').ok_or_else(|| {
            invalid(format!(
                "--budget {b}: write METRIC=PCT, e.g. latency_p95=5%"
            ))
        })?;
        if let Some(limit) = Limit::from_key(name.trim()) {
            let bytes = parse_limit(value)
                .map_err(|e| invalid(format!("--budget {b}: {} {e}", limit.key())))?;
            config.limits.set(limit, bytes);
            continue;
        }
        let metric = Metric::from_name(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            invalid(format!(
                "--budget {b}: unknown metric '{name}' (allowed: {}, size_budget, memory_budget)",
                names.join(", ")
            ))
        })?;
        if value.trim() == "off" {
            config.budgets.remove(&metric);
            continue;
        }
        let pct = value
            .trim()
            .strip_suffix('%')
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|p| p.is_finite() && *p >= 0.0)
            .ok_or_else(|| {
                invalid(format!(
                    "--budget {b}: the budget must be a percentage such as 10% or `off`"
                ))
            })?;
        config.budgets.insert(metric, pct / 100.0);
    }
    for k in &req.ignore_key {
        let field = KeyField::from_name(k.trim()).ok_or_else(|| {
            let names: Vec<&str> = KeyField::ALL.iter().map(|f| f.name()).collect();
            invalid(format!(
                "--ignore-key {k}: unknown key field (allowed: {})",
                names.join(", ")
            ))
        })?;
        if !config.ignore_key.contains(&field) {
            config.ignore_key.push(field);
        }
    }
    Ok(config)
}

pub fn compare(req: &CompareRequest) -> anyhow::Result<Comparison> {
    let mut candidate = load_runs(&req.runs, "candidate")?;
    let mut config = config(req, &candidate)?;
    let mut baseline = if req.baseline.is_empty() {
        None
    } else {
        Some(load_runs(&req.baseline, "baseline")?)
    };
    if let Some(name) = &req.baseline_engine {
        let (b, c) = split_engines(baseline.as_ref().unwrap_or(&candidate), &candidate, name)?;
        (baseline, candidate) = (Some(b), c);
        if !config.ignore_key.contains(&KeyField::Engine) {
            config.ignore_key.push(KeyField::Engine);
        }
        // Engines of one run took turns on the device; across runs they did not.
        config.paired_sessions = req.baseline.is_empty();
    }
    let outcome = baseline
        .as_ref()
        .map(|b| compare::gate(b, &candidate, &config));
    Ok(Comparison {
        candidate,
        baseline,
        outcome,
        config,
    })
}

/// `--baseline-engine NAME`: the cells of engine `name` in `baseline` against the cells of
/// every other engine in `candidate` (often the same runs).
fn split_engines(
    baseline: &Dataset,
    candidate: &Dataset,
    name: &str,
) -> anyhow::Result<(Dataset, Dataset)> {
    let of = |d: &Dataset, keep: &dyn Fn(&str) -> bool| Dataset {
        runs: d.runs.clone(),
        cells: d
            .cells
            .iter()
            .filter(|c| keep(&c.key.engine))
            .cloned()
            .collect(),
    };
    let b = of(baseline, &|e| e == name);
    let c = of(candidate, &|e| e != name);
    if b.cells.is_empty() || c.cells.is_empty() {
        let mut engines: Vec<&str> = baseline
            .cells
            .iter()
            .chain(&candidate.cells)
            .map(|c| c.key.engine.as_str())
            .collect();
        engines.sort();
        engines.dedup();
        let what = if b.cells.is_empty() {
            format!("no cell ran engine '{name}'")
        } else {
            format!("every cell ran engine '{name}', so there is nothing to compare it with")
        };
        return Err(invalid(format!(
            "--baseline-engine {name}: {what} (engines in these runs: {}); a suite compares \
             engines when it lists several under `engines:`",
            engines.join(", ")
        )));
    }
    Ok((b, c))
}

/// The history with `extra` (the candidate) appended when given, and the trend rule applied.
pub fn history_with(
    dir: &Path,
    extra: Option<&history::HistoryEntry>,
    metrics: &[Metric],
) -> anyhow::Result<History> {
    let mut entries = history::load(dir).map_err(invalid)?;
    if let Some(e) = extra {
        entries.retain(|x| x.release != e.release);
        entries.push(e.clone());
    }
    Ok(history::build(entries, metrics))
}

pub fn now_utc() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// "suite: run-id vs run-id".
pub fn title(c: &Comparison) -> String {
    let ids = |d: &Dataset| {
        d.runs
            .iter()
            .map(|r| r.manifest.run_id.clone())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let suite = c
        .candidate
        .runs
        .first()
        .map(|r| r.manifest.suite_name.clone())
        .unwrap_or_default();
    match &c.baseline {
        Some(b) => format!("{suite}: {} vs {}", ids(&c.candidate), ids(b)),
        None => format!("{suite}: {}", ids(&c.candidate)),
    }
}

/// Writes `report.html` at `html` and `report.md` beside it.
pub fn write_report_files(input: &ReportInput, html: &Path) -> anyhow::Result<PathBuf> {
    if let Some(parent) = html.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
    }
    let md = html.with_extension(export::markdown::Markdown.extension());
    let files: [(&Path, &dyn Exporter); 2] = [
        (html, &export::html::Html),
        (&md, &export::markdown::Markdown),
    ];
    for (path, exporter) in files {
        write(path, &exporter.render(input)?)?;
    }
    Ok(md)
}

pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| {
        anyhow::anyhow!(
            "cannot write {}: {e}; check that the directory exists and is writable",
            path.display()
        )
    })
}

/// The report `meltbench run` leaves in its run directory (measurements only, no baseline),
/// and one trace per device under `trace/`. A trace that cannot be written is returned as a
/// warning: the run's events are stored already, so it must not fail the run.
pub fn write_run_report(run_dir: &Path, command: &str) -> anyhow::Result<Vec<String>> {
    let c = compare(&CompareRequest {
        runs: vec![run_dir.to_path_buf()],
        resamples: 2000,
        ..CompareRequest::default()
    })?;
    let warnings = write_traces(&c.candidate, &run_dir.join("trace"));
    let input = ReportInput {
        title: title(&c),
        candidate: &c.candidate,
        baseline: None,
        gate: None,
        history: None,
        generated_utc: now_utc(),
        command: command.to_string(),
    };
    write_report_files(&input, &run_dir.join("report.html"))?;
    Ok(warnings)
}

/// `<dir>/<device>.json`: each device's Perfetto trace. Returns what could not be written.
pub fn write_traces(d: &Dataset, dir: &Path) -> Vec<String> {
    let devices = export::perfetto::devices(d);
    if devices.is_empty() {
        return Vec::new();
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return vec![format!(
            "no traces for this run: cannot create {}: {e}; `meltbench export RUN --format \
             perfetto -o FILE` writes one elsewhere",
            dir.display()
        )];
    }
    let mut warnings = Vec::new();
    for device in devices {
        let path = dir.join(format!("{}.json", trace_file_stem(device)));
        if let Err(e) = write(&path, &export::perfetto::device_trace(d, device)) {
            warnings.push(format!("no trace for {device}: {e:#}"));
        }
    }
    warnings
}

/// A device name as a file name: inventory names are free text, and a `/` or a leading `.`
/// would put the file outside `trace/`.
pub fn trace_file_stem(device: &str) -> String {
    let stem: String = device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    stem.trim_start_matches('.').to_string()
}
