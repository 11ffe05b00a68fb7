//! The agent as a library: the binary (`main.rs`) is its command line, and the fuzz targets
//! reach the parsers of device output (telemetry commands, sysfs trees) through it.

pub mod adapter;
pub mod arms;
pub mod coldstart;
pub mod engine_process;
pub mod events;
pub mod fsroot;
pub mod interrupt;
pub mod model_check;
pub mod pass_check;
pub mod probe;
pub mod rss;
pub mod runner;
pub mod states;
pub mod telemetry;
pub mod undo;
