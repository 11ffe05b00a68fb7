//! The meltbench controller: everything that runs on the user's laptop or CI runner.
//!
//! Today this is the model cache (`meltbench models pull|list`); suites, devices, transports,
//! scheduling and the run store arrive with the issues that need them (see DESIGN.md).

pub mod cache;
pub mod http;
pub mod models;
pub mod progress;
pub mod pypi;
pub mod sha;
pub mod wheel;

pub use models::resolve_model;
