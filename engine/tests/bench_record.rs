//! The bench load record carries what a report needs to put decode speed against memory
//! bandwidth: the weight bytes one token reads, the threads, the cores they may use, the kernels.

mod common;

use meltbench_engine::dtype::DType;
use meltbench_engine::load::load;
use meltbench_engine::pool::{allowed_cpus, cpu_list};
use meltbench_protocol::engine::EngineRecord;

#[test]
fn load_record_has_the_bytes_per_token_threads_cpus_and_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth_model(dir.path(), DType::Q4_1);
    let out = common::engine()
        .args([
            "bench",
            "--prompt-tokens",
            "4",
            "-n",
            "2",
            "--passes",
            "1",
            "--warmup",
            "0",
            "-t",
            "2",
            "--kernels",
            "scalar",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let first = stdout.lines().next().unwrap();
    let EngineRecord::Load(rec) = serde_json::from_str(first).unwrap() else {
        panic!("first line is not the load record: {first}")
    };
    let want = load(&model).unwrap().model.weights.bytes_per_token() as u64;
    assert_eq!(rec.weight_bytes_per_token, want);
    assert!(want > 0);
    assert_eq!(rec.threads, 2);
    assert_eq!(rec.kernels, "scalar");
    assert_eq!(rec.cpus, allowed_cpus().map(|c| cpu_list(&c)));
    if cfg!(target_os = "linux") {
        assert!(rec.cpus.is_some(), "{first}");
    }
    // The raw line names the field too, for readers that do not use the protocol crate.
    let raw: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(raw["weight_bytes_per_token"].as_u64(), Some(want));
}
