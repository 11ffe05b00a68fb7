//! Types shared by the meltbench controller, agent and engine. No logic lives here: only the
//! shapes of what crosses a process or device boundary, so every side agrees on them.

pub mod agent;
pub mod engine;

/// Version of the formats in this crate. A change that breaks readers bumps the major number;
/// readers refuse a different major version.
pub const PROTOCOL_VERSION: &str = "1.5";

/// The major part of [`PROTOCOL_VERSION`].
pub fn protocol_major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}
