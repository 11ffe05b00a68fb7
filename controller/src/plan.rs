//! What `meltbench run` is asked to do, settled before anything runs: the devices and the cell
//! matrix the suite expands to on them. The scheduler and each device's runner read it; it
//! imports nothing that runs.

use crate::devices::Device;
use crate::suite::{EngineDef, SuiteCell};
use std::path::PathBuf;

pub struct RunPlan {
    pub suite_name: String,
    pub suite_path: PathBuf,
    pub devices: Vec<Device>,
    /// The cell matrix of the suite, in suite order.
    pub cells: Vec<SuiteCell>,
    /// The programs the cells' engines name.
    pub engines: Vec<EngineDef>,
    /// The command line, recorded in `run.json` and the report's reproduce section.
    pub command: String,
    /// The device inventory the devices came from (kept for `--resume`).
    pub devices_path: Option<PathBuf>,
}
