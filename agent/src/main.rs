//! `meltbench-agent`: the small on-device runner that the meltbench controller pushes to every
//! device. `probe` reports identity and capabilities; `run` runs a job's cells through the engine
//! and streams events. Arguments are parsed by hand to keep the binary small (no clap).
//!
//! Exit codes: 0 success (for `run`: every cell ended), 1 the run finished with failed cells or
//! the agent could not do its own work, 2 bad usage or a job this agent cannot run, 128 + N when
//! signal N (SIGINT 2 -> 130, SIGHUP, SIGTERM) stopped a run after the device was restored
//! (see `interrupt`).

use meltbench_agent::{adapter, fsroot, interrupt, probe, runner};

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: meltbench-agent probe
       meltbench-agent run --job FILE
       meltbench-agent adapter KIND [SETTINGS...] bench MODEL --job FILE

  probe           print this device's identity and capabilities as one JSON object
  run --job FILE  run an agent job (JSON), streaming events on stdout and appending them to
                  <workdir>/events.jsonl
  adapter ...     speak the bench contract (docs/engine-contract.md) for a runtime that does
                  not: `meltbench-agent adapter --help` says which
  -h, --help      print this help
  -V, --version   print the version

Device files are read under $MELTBENCH_SYSFS_ROOT (default /).";

enum Cmd {
    Probe,
    Run { job: PathBuf },
    Adapter(adapter::Invocation),
    AdapterHelp,
    Help,
    Version,
}

fn parse(args: &[String]) -> Result<Cmd, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => Err("missing subcommand".into()),
        ["-h" | "--help" | "help", ..] => Ok(Cmd::Help),
        ["-V" | "--version"] => Ok(Cmd::Version),
        ["probe"] => Ok(Cmd::Probe),
        ["probe", extra, ..] => Err(format!("probe takes no arguments, got {extra:?}")),
        ["run", "--job", file] => Ok(Cmd::Run { job: file.into() }),
        ["run", arg] if arg.starts_with("--job=") && arg.len() > 6 => Ok(Cmd::Run {
            job: arg["--job=".len()..].into(),
        }),
        ["run", ..] => Err("run needs exactly one --job FILE".into()),
        ["adapter", "-h" | "--help", ..] => Ok(Cmd::AdapterHelp),
        ["adapter", rest @ ..] => adapter::parse(rest).map(Cmd::Adapter),
        [other, ..] => Err(format!("unknown subcommand {other:?}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse(&args) {
        Ok(c) => c,
        Err(msg) => {
            let usage = if args.first().is_some_and(|a| a == "adapter") {
                adapter::USAGE
            } else {
                USAGE
            };
            eprintln!("meltbench-agent: {msg}\n\n{usage}");
            return ExitCode::from(2);
        }
    };
    let root = fsroot::FsRoot::from_env();
    match cmd {
        Cmd::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Cmd::AdapterHelp => {
            println!("{}", adapter::USAGE);
            ExitCode::SUCCESS
        }
        Cmd::Adapter(inv) => {
            let stdout = std::io::stdout();
            match inv.run(&mut stdout.lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("meltbench-agent adapter: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Version => {
            println!("meltbench-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::Probe => {
            let info = probe::probe(&root);
            println!(
                "{}",
                serde_json::to_string(&info).expect("device info serializes")
            );
            ExitCode::SUCCESS
        }
        Cmd::Run { job } => {
            interrupt::install();
            let outcome = runner::read_job(&job).and_then(|j| runner::run(&j, &root));
            match outcome {
                Ok(s) if s.cells_failed == 0 => ExitCode::SUCCESS,
                Ok(s) => {
                    eprintln!(
                        "meltbench-agent: {} of {} cells failed; see the cell_error events",
                        s.cells_failed,
                        s.cells_ok + s.cells_failed
                    );
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("meltbench-agent: error: {e}");
                    ExitCode::from(match e {
                        runner::RunError::BadJob(_) => 2,
                        runner::RunError::Failed(_) => 1,
                        runner::RunError::Interrupted(sig) => (128 + sig).clamp(0, 255) as u8,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cmd, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_the_two_subcommands() {
        assert!(matches!(p(&["probe"]), Ok(Cmd::Probe)));
        assert!(
            matches!(p(&["run", "--job", "j.json"]), Ok(Cmd::Run { job }) if job.as_path() == std::path::Path::new("j.json"))
        );
        assert!(matches!(p(&["run", "--job=j.json"]), Ok(Cmd::Run { .. })));
        assert!(matches!(p(&["--help"]), Ok(Cmd::Help)));
        for bad in [
            &[][..],
            &["run"],
            &["run", "--job"],
            &["run", "--job="],
            &["probe", "x"],
            &["bench"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
