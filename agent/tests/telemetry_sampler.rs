//! The sampling thread at its default rates (power 20 Hz, temperatures and clocks 2 Hz,
//! spawned commands 2 Hz) against device trees and this machine: its own CPU time as a share of
//! one core, and that the deadlines hold.
//!
//! `cargo test -p meltbench-agent --test telemetry_sampler -- --nocapture` prints the figures.
#![allow(dead_code)]

#[path = "../src/fsroot.rs"]
mod fsroot;
#[path = "../src/telemetry/mod.rs"]
mod telemetry;

use fsroot::FsRoot;
use std::path::Path;
use std::time::Duration;
use telemetry::cmd::Commands;
use telemetry::sampler::{monotonic_ns, Config, Sampler};
use telemetry::{discover, Reading};

const RUN: Duration = Duration::from_secs(4);

fn measure(label: &str, root: FsRoot, cmds: Commands) -> f64 {
    let mut d = discover(&root, &cmds);
    let n_series: usize = d.groups.iter().map(|g| g.series.len()).sum();
    let s = Sampler::start(&mut d, Config::default());
    let t0 = monotonic_ns();
    std::thread::sleep(RUN);
    let t1 = monotonic_ns();
    let figures = s.pass(t0 + 500_000_000, t1 - 100_000_000);
    let o = s.stop();
    println!(
        "sampler overhead [{label}]: {:.3}% of one core ({} µs CPU over {:.2} s; {} series, {} group reads, {} deadlines missed); pass power: {:?}",
        o.core_pct(),
        o.cpu_ns / 1000,
        o.wall_ns as f64 / 1e9,
        n_series,
        o.reads,
        o.missed,
        figures.power
    );
    o.core_pct()
}

fn tree(name: &str) -> (FsRoot, Commands) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testbed/devices")
        .join(name);
    (
        FsRoot::new(dir.join("root")),
        Commands::Captured(dir.join("commands")),
    )
}

#[test]
fn sampler_overhead_at_default_rates() {
    let mut worst: f64 = 0.0;
    for name in ["x86-laptop-rapl", "agx-orin", "pixel"] {
        let (r, c) = tree(name);
        worst = worst.max(measure(name, r, c));
    }
    worst = worst.max(measure("this machine", FsRoot::new("/"), Commands::Live));
    // A source that spawns a process (as vcgencmd, dumpsys or a meter command do) at the
    // command rate, on this machine: the fork/exec/wait cost lands on the sampling thread.
    let mut found = telemetry::Found::new();
    telemetry::external::discover_command(&Commands::Live, "echo 4321", &mut found);
    let mut d = telemetry::Discovery {
        family: telemetry::Family::Linux,
        identity: Default::default(),
        sources: found.sources,
        groups: found.groups,
        power: found.totals.pop().map(|(_, t)| t),
        primary_temp: None,
    };
    let s = Sampler::start(&mut d, Config::default());
    std::thread::sleep(RUN);
    let o = s.stop();
    println!(
        "sampler overhead [spawning `echo` at 2 Hz, this machine]: {:.3}% of one core ({} reads)",
        o.core_pct(),
        o.reads
    );
    worst = worst.max(o.core_pct());
    // The budget is 1% of one core (measured 0.2-0.4%). CPU time, not wall time: a loaded
    // machine delays the reads but does not make them cost more.
    assert!(worst < 1.0, "sampler used {worst:.2}% of one core");
}

#[test]
fn deadlines_are_absolute_and_the_total_is_sampled_at_20_hz() {
    let (r, c) = tree("orin-nano");
    let mut d = discover(&r, &c);
    let s = Sampler::start(&mut d, Config::default());
    std::thread::sleep(Duration::from_millis(2050));
    let total = s.total_samples();
    let o = s.stop();
    // 2.05 s at 20 Hz: 41 or 42 ticks (the first at t=0); a little slack for a loaded machine,
    // where a late wake-up skips a deadline rather than shifting the ones after it.
    assert!(
        (37..=43).contains(&total.len()),
        "{} samples, {o:?}",
        total.len()
    );
    let gaps: Vec<u64> = total.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
    assert!((mean - 50e6).abs() < 5e6, "mean period {mean} ns");
    for (_, v) in &total {
        assert_eq!(*v, Reading::Ok(5.104 * 1.143));
    }
}
