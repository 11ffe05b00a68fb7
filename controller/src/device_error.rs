//! Why a device failed as a whole, as a type: the run records its text in `run.json`, and a
//! caller can tell a device it could not reach from one whose agent broke off.

use crate::bins::BinError;
use crate::bundle::BundleError;
use crate::models::PullError;
use crate::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device could not be reached, or a setup command on it failed to run.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A setup step on the device answered, but not as needed (`mkdir`, machine type, home).
    #[error("{0}")]
    Setup(String),
    /// The controller's own agent or engine binary is missing.
    #[error(transparent)]
    Programs(#[from] BinError),
    /// No bundle for the device's target.
    #[error("{device} needs {target}: {source}")]
    Bundle {
        device: String,
        target: String,
        source: Box<BundleError>,
    },
    /// The controller's model cache is not where it should be.
    #[error(transparent)]
    Cache(#[from] PullError),
    /// The run directory could not be written (job file, event log).
    #[error("{path}: {source}")]
    RunStore {
        path: String,
        source: std::io::Error,
    },
    /// The agent speaks another protocol major version than this controller.
    #[error(
        "the agent speaks protocol {agent} but this controller speaks {ours}; rebuild both from \
         the same checkout (`cargo build --release`, then `meltbench bundle`)"
    )]
    Protocol { agent: String, ours: String },
    /// The agent could not be started, or its stream broke.
    #[error("cannot run the agent on {device}: {source}")]
    AgentStream {
        device: String,
        source: TransportError,
    },
    /// The agent ended without its `done` event.
    #[error("the agent stopped before finishing ({status}): {stderr}")]
    AgentStopped { status: String, stderr: String },
    /// The agent's probe failed or printed something else than device info.
    #[error("{0}")]
    Probe(String),
    /// Ctrl-C (or SIGTERM) on the controller stopped the device before it finished.
    #[error(
        "stopped by Ctrl-C before it finished; `meltbench run --resume RUN_DIR` runs the rest"
    )]
    Stopped,
    /// The controller could not start the task that runs the device.
    #[error("{0}")]
    Scheduler(String),
}
