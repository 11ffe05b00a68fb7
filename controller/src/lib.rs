//! The meltbench controller: everything that runs on the user's laptop or CI runner.
//!
//! Today this is the model cache (`meltbench models pull|list`); suites, devices, transports,
//! scheduling and the run store arrive with the issues that need them (see DESIGN.md).

pub mod bins;
pub mod bundle;
pub mod cache;
pub mod device_error;
pub mod device_run;
pub mod devices;
pub mod engine_programs;
pub mod farm;
pub mod gate;
pub mod http;
pub mod models;
pub mod plan;
pub mod prepare;
pub mod progress;
pub mod push;
pub mod pypi;
pub mod recover;
pub mod resume;
pub mod run;
pub mod scheduler;
pub mod sdist;
pub mod selection;
pub mod sha;
pub mod slots;
pub mod stop;
pub mod store;
pub mod suite;
pub mod transport;
pub mod wheel;
pub mod yaml;

pub use models::resolve_model;
