//! How long and how often establishing a state waits, and its answer to a signal.

use crate::interrupt::{self, signal_name};
use crate::telemetry::sampler::Sampler;
use meltbench_protocol::agent::Cell;
use std::time::Duration;

/// Used when a cell's `state_timeout_s` is 0.
pub const DEFAULT_TIMEOUT_S: u64 = 900;

/// The cell's state timeout (s): `state_timeout_s`, or [`DEFAULT_TIMEOUT_S`] when 0.
pub fn timeout_s(cell: &Cell) -> u64 {
    if cell.state_timeout_s == 0 {
        DEFAULT_TIMEOUT_S
    } else {
        cell.state_timeout_s
    }
}

/// Sleeps one sampler period of the temperatures (the rate the gate can see changes at), or
/// less when a signal arrives.
pub fn poll_pause(sampler: Option<&Sampler>) {
    let ns = sampler
        .map(|s| s.config.period_ns(crate::telemetry::Rate::Slow))
        .unwrap_or(500_000_000);
    interrupt::sleep(Duration::from_nanos(ns));
}

/// `Err` when a signal has arrived (the agent is exiting).
pub fn check_signal(what: &str) -> Result<(), String> {
    match interrupt::signalled() {
        Some(sig) => Err(format!(
            "interrupted by {} while establishing {what}",
            signal_name(sig)
        )),
        None => Ok(()),
    }
}
