//! What the controller reads back from devices and their servers: the adb server's device
//! listing, `sha256sum` output from the push cache's check, the stderr stream whose first lines
//! carry a remote command's process id (cut into arbitrary chunks, as the network delivers it),
//! and an Android ABI. None may panic; the pid filter must hand back every byte it was given
//! except the one line it takes out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meltbench::transport::adb::parse_devices;
use meltbench::transport::parse_sha256sum;
use meltbench::transport::ssh::PidFilter;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (serial, state) in parse_devices(&text) {
        assert!(!serial.contains('\n') && !state.contains('\n'));
    }
    if let Some(hex) = parse_sha256sum(&text, "/data/local/tmp/meltbench/blobs/x") {
        assert_eq!(hex.len(), 64);
    }
    let _ = meltbench::bundle::target_for_android_abi(text.trim());

    let mut filter = PidFilter::default();
    let cut = data.first().map_or(1, |&b| b as usize % 7 + 1);
    for chunk in data.chunks(cut) {
        filter.push(chunk);
    }
    let pid = filter.pid();
    let rest = filter.finish();
    match pid {
        None => assert_eq!(
            rest, data,
            "without a pid line, stderr passes through whole"
        ),
        Some(_) => assert!(rest.len() < data.len(), "the pid line is taken out"),
    }
});
