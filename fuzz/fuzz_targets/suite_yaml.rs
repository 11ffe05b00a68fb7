//! Suite validation on arbitrary text: file:line errors or a suite, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meltbench::devices::Inventory;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(suite) =
        meltbench::suite::parse_suite(Path::new("fuzz.yaml"), text, &Inventory::default_local())
    {
        let _ = suite.cells();
    }
});
