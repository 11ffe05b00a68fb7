//! `meltbench`: the binary edge. Parses arguments, calls the library, and turns errors into a
//! message and an exit code.

mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{
    BundleArgs, Cli, Command, CompareArgs, DevicesArgs, DevicesCommand, ExportArgs, GateArgs,
    ModelsCommand, PullArgs, ReportArgs, RunArgs, TargetArgs, ValidateArgs,
};
use meltbench::gate::{self as gating, CompareRequest};
use meltbench::models::{self, PullOptions};
use meltbench::run::{self, RunPlan};
use meltbench::selection::Selection;
use meltbench::{devices, farm, suite};
use meltbench_reports::export::terminal::{self, CellRow};
use meltbench_reports::export::{self, Exporter};
use meltbench_reports::history;
use meltbench_reports::report::ReportInput;
use std::path::PathBuf;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // Library errors already carry their cause and a next step in their message.
            eprintln!("error: {err}");
            // Input the user can fix (a suite, a devices file) exits 2, like clap's usage errors.
            if err.is::<meltbench::suite::SuiteErrors>()
                || err.is::<meltbench::resume::ResumeError>()
                || err.is::<gating::InvalidInput>()
                || err.is::<InvalidDevices>()
                || err.is::<export::ExportError>()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The exit status: 0, or what `gate` decided.
fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run(args) => run_suite(args),
        Command::Validate(args) => validate(args).map(|()| 0),
        Command::Gate(args) => gate(args),
        Command::Report(args) => report(args).map(|()| 0),
        Command::Export(args) => export_runs(args).map(|()| 0),
        Command::Models(ModelsCommand::Pull(args)) => models_pull(args).map(|()| 0),
        Command::Models(ModelsCommand::List) => models_list().map(|()| 0),
        Command::Devices(args) => devices(args),
        Command::Bundle(args) => bundle(args).map(|()| 0),
    }
}

fn request(a: &CompareArgs) -> CompareRequest {
    CompareRequest {
        runs: a.runs.clone(),
        baseline: a.baseline.clone(),
        history: a.history.clone(),
        budgets: a.budget.clone(),
        ignore_key: a.ignore_key.clone(),
        baseline_engine: a.baseline_engine.clone(),
        resamples: a.resamples,
        seed: a.seed,
    }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn gate(args: GateArgs) -> Result<u8> {
    let req = request(&args.compare);
    if req.baseline.is_empty() && req.baseline_engine.is_none() {
        return Err(gating::InvalidInput(
            "meltbench gate needs --baseline RUN_DIR: the run (or directory of runs) to compare \
             against, or --baseline-engine NAME for engines compared inside the runs; to only \
             look at a run, use `meltbench report`"
                .into(),
        )
        .into());
    }
    let c = gating::compare(&req)?;
    let outcome = c.outcome.as_ref().expect("a baseline was given");
    let metrics: Vec<_> = c.config.budgets.keys().copied().collect();
    let history = match &req.history {
        Some(dir) => {
            let release = args.release.clone().unwrap_or_else(|| {
                c.candidate
                    .runs
                    .iter()
                    .map(|r| r.manifest.run_id.clone())
                    .collect::<Vec<_>>()
                    .join("+")
            });
            let entry = history::entry_from(&c.candidate, &release, &gating::now_utc(), &metrics);
            let h = gating::history_with(dir, Some(&entry), &metrics)?;
            let path = history::save(dir, &entry).map_err(|e| {
                anyhow::anyhow!("cannot write to the history {}: {e}", dir.display())
            })?;
            eprintln!(
                "history: recorded release '{release}' in {}",
                path.display()
            );
            Some(h)
        }
        None => None,
    };
    let input = ReportInput {
        title: gating::title(&c),
        candidate: &c.candidate,
        baseline: c.baseline.as_ref(),
        gate: Some(outcome),
        history: history.as_ref(),
        generated_utc: gating::now_utc(),
        command: command_line(),
    };
    let json_to_stdout = args.json.as_deref() == Some(std::path::Path::new("-"));
    let human = terminal::gate_text(outcome, history.as_ref());
    if json_to_stdout {
        eprint!("{human}");
    } else {
        print!("{human}");
    }
    // Every file the gate was asked for, each through its exporter.
    let files: [(&Option<PathBuf>, &dyn Exporter); 5] = [
        (&args.json, &export::json::GateJson),
        (&args.markdown, &export::markdown::Markdown),
        (&args.junit, &export::junit::Junit),
        (&args.html, &export::html::Html),
        (&args.bencher, &export::bencher::Bencher),
    ];
    for (path, exporter) in files {
        let Some(p) = path else { continue };
        let text = exporter.render(&input)?;
        if p.as_os_str() == "-" {
            print!("{text}");
        } else {
            gating::write(p, &text)?;
        }
    }
    Ok(outcome.exit_code as u8)
}

fn report(args: ReportArgs) -> Result<()> {
    with_report_input(&args.compare, |input, req| {
        let html = args
            .output
            .clone()
            .unwrap_or_else(|| req.runs[0].join("report.html"));
        let md = gating::write_report_files(input, &html)?;
        println!("{}", html.display());
        println!("{}", md.display());
        Ok(())
    })
}

/// `meltbench export`: one format of the runs (and of a gate, when a baseline is given) to a
/// file or stdout.
fn export_runs(args: ExportArgs) -> Result<()> {
    let exporter = export::by_name(&args.format)?;
    let text = with_report_input(&args.compare, |input, _| Ok(exporter.render(input)?))?;
    match &args.output {
        Some(p) if p.as_os_str() != "-" => {
            gating::write(p, &text)?;
            eprintln!("{}: {}", exporter.name(), p.display());
        }
        _ => print!("{text}"),
    }
    Ok(())
}

/// The runs of `args` compared (with verdicts when a baseline is given) and their history,
/// handed to `f` as the input every exporter reads.
fn with_report_input<T>(
    args: &CompareArgs,
    f: impl FnOnce(&ReportInput, &CompareRequest) -> Result<T>,
) -> Result<T> {
    let req = request(args);
    let c = gating::compare(&req)?;
    let metrics: Vec<_> = c.config.budgets.keys().copied().collect();
    let history = match &req.history {
        Some(dir) => Some(gating::history_with(dir, None, &metrics)?),
        None => None,
    };
    let input = ReportInput {
        title: gating::title(&c),
        candidate: &c.candidate,
        baseline: c.baseline.as_ref(),
        gate: c.outcome.as_ref(),
        history: history.as_ref(),
        generated_utc: gating::now_utc(),
        command: command_line(),
    };
    f(&input, &req)
}

fn models_pull(args: PullArgs) -> Result<()> {
    let options = PullOptions {
        sha256: args.sha256,
        name: args.name,
    };
    let pulled = models::pull(&args.model, &options)?;
    if !pulled.was_cached {
        eprintln!(
            "{}: cached, {} (sha256 {})",
            pulled.name,
            models::human_size(pulled.size),
            pulled.sha256
        );
    }
    println!("{}", pulled.path.display());
    Ok(())
}

fn models_list() -> Result<()> {
    print!("{}", models::list_text()?);
    Ok(())
}

/// `--devices`, or ./devices.yaml when present, or none (just `local`).
fn devices_file(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| Some(PathBuf::from("devices.yaml")).filter(|p| p.is_file()))
}

fn inventory(explicit: Option<PathBuf>) -> Result<devices::Inventory> {
    match devices_file(explicit) {
        Some(p) => devices::load_inventory(&p).map_err(|d| anyhow::anyhow!(InvalidDevices(d))),
        None => Ok(devices::Inventory::default_local()),
    }
}

/// A devices file that does not validate: exit 2, like a bad suite.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InvalidDevices(meltbench::yaml::Diagnostics);

fn devices(args: DevicesArgs) -> Result<u8> {
    let inv = inventory(args.devices)?;
    let timeout = run::CONNECT_TIMEOUT;
    match args.command {
        None => {
            println!("{}", farm::inventory_table(&inv));
            for (server, attached) in farm::unlisted_adb(&inv, std::time::Duration::from_secs(5)) {
                match attached {
                    Ok(serials) if serials.is_empty() => {}
                    Ok(serials) => println!(
                        "attached to the adb server {server} but not in the inventory: {}",
                        serials.join(", ")
                    ),
                    Err(e) => eprintln!("warning: adb server {server}: {e}"),
                }
            }
            Ok(0)
        }
        Some(DevicesCommand::Probe) => {
            let results = farm::probe_all(&inv.devices, timeout);
            println!("{}", farm::probe_table(&inv.devices, &results));
            let failed = results.iter().filter(|r| r.is_err()).count();
            if failed > 0 {
                eprintln!(
                    "{failed} of {} device(s) could not be probed",
                    results.len()
                );
                return Ok(1);
            }
            Ok(0)
        }
    }
}

fn bundle(args: BundleArgs) -> Result<()> {
    let out = args.out.unwrap_or_else(meltbench::bundle::bundles_dir);
    let targets: Vec<String> = if args.targets.is_empty() {
        meltbench::bundle::DEFAULT_TARGETS
            .map(String::from)
            .to_vec()
    } else {
        args.targets
    };
    for t in &targets {
        let m = meltbench::bundle::build(t, &out)?;
        for f in &m.files {
            println!("{t}  {}  {} bytes  sha256 {}", f.name, f.bytes, f.sha256);
        }
        println!("{}", out.join(t).display());
    }
    Ok(())
}

/// What the controller itself cost (not the devices): for sizing the machine that drives a farm.
fn controller_usage(wall: std::time::Duration) -> String {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    format!(
        "controller: wall {:.1} s, CPU {:.2} s (user {:.2} s, system {:.2} s), peak RSS {:.1} MiB",
        wall.as_secs_f64(),
        secs(ru.ru_utime) + secs(ru.ru_stime),
        secs(ru.ru_utime),
        secs(ru.ru_stime),
        ru.ru_maxrss as f64 / 1024.0
    )
}

fn validate(args: ValidateArgs) -> Result<()> {
    let suite = validated_suite(&args.suite, args.targets)?;
    let cells = suite.cells();
    println!(
        "{}: ok: {} cells on {} device(s): {}",
        args.suite.display(),
        cells.len(),
        suite.devices.len(),
        suite
            .devices
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The suite checked against the inventory, on the devices the command line picked (if any).
fn validated_suite(path: &std::path::Path, targets: TargetArgs) -> Result<suite::ValidatedSuite> {
    let devices = devices_file(targets.devices);
    let pick = Selection {
        names: targets.only,
        tags: targets.tags,
    };
    Ok(suite::validate_suite_file(path, devices.as_deref(), &pick)?)
}

/// The suite at `path` on the devices `targets` pick.
fn run_plan(path: PathBuf, targets: TargetArgs, command: String) -> Result<RunPlan> {
    // Absolute, so a resume from elsewhere finds the same inventory.
    let devices_path =
        devices_file(targets.devices.clone()).map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let suite = validated_suite(&path, targets)?;
    Ok(RunPlan {
        suite_name: suite.name.clone(),
        suite_path: path,
        devices: suite.devices.clone(),
        cells: suite.cells(),
        engines: suite.engines.clone(),
        command,
        devices_path,
    })
}

/// The exit status: 0, or 130 when Ctrl-C stopped the run.
fn run_suite(args: RunArgs) -> Result<u8> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (plan, resume) = match &args.resume {
        None => {
            let path = args
                .suite
                .clone()
                .expect("clap requires SUITE without --resume");
            (run_plan(path, args.targets, command)?, None)
        }
        Some(dir) => {
            // The run's own suite, inventory and devices, unless the command line says otherwise.
            let manifest = meltbench::resume::read_manifest(dir)?;
            let mut targets = args.targets;
            targets.devices = targets
                .devices
                .or_else(|| manifest.devices_path.as_ref().map(PathBuf::from));
            if targets.only.is_empty() && targets.tags.is_empty() {
                targets.only = manifest.devices.iter().map(|d| d.name.clone()).collect();
            }
            let path = PathBuf::from(&manifest.suite_path);
            let plan = run_plan(path, targets, command)?;
            (plan, Some((dir.clone(), manifest)))
        }
    };
    let started = std::time::Instant::now();
    let outcome = match resume {
        None => run::run(&plan, &args.out)?,
        Some((dir, manifest)) => run::resume(&plan, &dir, manifest)?,
    };
    for d in &outcome.already_complete {
        eprintln!("{d}: nothing missing");
    }
    eprintln!("{}", controller_usage(started.elapsed()));
    let rows: Vec<CellRow> = outcome.summary.cells.iter().map(CellRow::from).collect();
    println!("{}", terminal::cells_table(&rows));
    // The report is a view of the stored events; failing to draw it loses nothing. The run
    // directory itself was announced when the run began (so it is known even if the run dies).
    match gating::write_run_report(&outcome.dir, &plan.command) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!("report: {}", outcome.dir.join("report.html").display());
            println!("traces: {}", outcome.dir.join("trace").display());
        }
        Err(e) => eprintln!("warning: no report.html for this run: {e:#}"),
    }
    let failed: Vec<_> = outcome
        .summary
        .cells
        .iter()
        .filter(|c| c.error.is_some())
        .collect();
    for c in &failed {
        eprintln!(
            "failed: {} on {}: {}",
            c.key.id,
            c.key.device,
            c.error.as_deref().unwrap_or("")
        );
    }
    for (d, e) in &outcome.device_errors {
        eprintln!("failed: device {d}: {e}");
    }
    if outcome.interrupted {
        eprintln!(
            "interrupted: the completed passes are in {}; `meltbench run --resume {}` runs the rest",
            outcome.dir.display(),
            outcome.dir.display()
        );
        return Ok(130);
    }
    if !failed.is_empty() || !outcome.device_errors.is_empty() {
        anyhow::bail!(
            "{} cell(s) and {} device(s) failed; the completed passes are in {}, and \
             `meltbench run --resume {}` runs what is missing",
            failed.len(),
            outcome.device_errors.len(),
            outcome.dir.display(),
            outcome.dir.display()
        );
    }
    Ok(0)
}
