//! Devices in parallel: one task per device, all started at once, cells in order within a
//! device. Transports block (libssh2, adb sockets, child processes), so each device gets a
//! blocking task of its own and the runtime's worker only waits; a slow or dead device holds
//! nobody else up.

use crate::device_error::DeviceError;
use crate::device_run::{self, DeviceOutcome, DeviceRun};

/// Runs every device to its end; outcomes in the order given.
pub fn run_devices(runs: Vec<DeviceRun>) -> Vec<DeviceOutcome> {
    if runs.is_empty() {
        return Vec::new();
    }
    let n = runs.len();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(n)
        .thread_name("meltbench-device")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let msg = format!("cannot start the device scheduler: {e}");
            return (0..n)
                .map(|_| DeviceOutcome {
                    error: Some(DeviceError::Scheduler(msg.clone())),
                    ..Default::default()
                })
                .collect();
        }
    };
    rt.block_on(async move {
        let tasks: Vec<_> = runs
            .into_iter()
            .map(|r| {
                tokio::task::spawn_blocking(move || {
                    let outcome = device_run::run(&r);
                    match &outcome.error {
                        Some(e) => r.bar.abandon_with_message(format!("failed: {e}")),
                        None => r.bar.finish_with_message("done"),
                    }
                    outcome
                })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(n);
        for t in tasks {
            outcomes.push(t.await.unwrap_or_else(|e| DeviceOutcome {
                error: Some(DeviceError::Scheduler(format!(
                    "the device task crashed: {e}"
                ))),
                ..Default::default()
            }));
        }
        outcomes
    })
}
