//! `meltbench`: the binary edge. Parses arguments, calls the library, and turns errors into a
//! message and an exit code.

mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command, ModelsCommand, PullArgs};
use meltbench::models::{self, PullOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Library errors already carry their cause and a next step in their message.
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Models(ModelsCommand::Pull(args)) => models_pull(args),
        Command::Models(ModelsCommand::List) => models_list(),
    }
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
    let (entries, not_pulled) = models::list()?;
    let dir = models::cache_dir()?;
    if entries.is_empty() {
        println!("No models cached in {} yet.", dir.display());
    } else {
        let rows: Vec<[String; 4]> = entries
            .iter()
            .map(|e| {
                let names = if e.names.is_empty() {
                    "(unnamed)".to_owned()
                } else {
                    e.names.join(", ")
                };
                [
                    names,
                    models::human_size(e.size),
                    e.sha256.clone(),
                    e.path.display().to_string(),
                ]
            })
            .collect();
        let header = ["NAME", "SIZE", "SHA256", "PATH"].map(String::from);
        let width = |col: usize| {
            rows.iter()
                .chain([&header])
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        for row in [&header].into_iter().chain(&rows) {
            println!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {}",
                row[0], row[1], row[2], row[3]
            );
        }
    }
    for model in not_pulled {
        println!(
            "{} is available but not pulled: meltbench models pull {}",
            model.name, model.name
        );
    }
    Ok(())
}
