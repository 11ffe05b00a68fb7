//! `meltbench-agent`: the small on-device runner (`probe` for identity and capabilities, `run`
//! for gated cells with telemetry), pushed to every device by the controller.
//!
//! Placeholder: the agent is filled in by the issue "End to end on the local device". Until
//! then the binary says so and exits with status 2, so a controller or script that calls it
//! fails loudly instead of mistaking silence for success.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "meltbench-agent {}: not implemented yet in this build\n\
         The on-device agent (probe, run, telemetry) lands with the issue \
         \"End to end on the local device\". Use `meltbench-engine` directly for now.",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
