//! Device inventory validation on arbitrary text: file:line errors or an inventory, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = meltbench::devices::parse_inventory(Path::new("fuzz-devices.yaml"), text);
});
