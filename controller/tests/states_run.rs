//! `meltbench run` with thermal states on the local device, whose thermal zone is the testbed's
//! thermal model (it heats with this machine's load and cools at rest): the hot cell is
//! measured after the engine's own pre-heat trips the cooling device, and the report and the
//! event log say which state each cell was measured in.

mod common;

use common::{meltbench, text};
use meltbench_testbed::thermal_model::{Params, ThermalModel};

#[test]
fn a_hot_cell_is_measured_hot_and_the_report_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = ThermalModel::start(Params {
        trip_c: 50.0,
        ..Params::default()
    });
    let suite = root.join("hot.yaml");
    std::fs::write(
        &suite,
        "name: hot\nmodels: [{name: synth}]\n\
         scenarios: [{name: tiny, prompt_tokens: 16, new_tokens: 8}]\n\
         threads: [2]\n\
         states: [{thermal: any}, {thermal: hot}]\n\
         passes: 5\nwarmup: 1\ncold_start: 0\nstate_timeout_s: 60\n",
    )
    .unwrap();
    let out = root.join("runs");
    let o = meltbench(&root.join("cache"))
        // The agent inherits the controller's environment on the local device.
        .env("MELTBENCH_SYSFS_ROOT", &model.root)
        .arg("run")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("synth/native/tiny/t2/hot: hot after"),
        "the run says when the state was reached: {stderr}"
    );
    let dir = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = std::fs::read_to_string(dir.join("events/local.jsonl")).unwrap();
    let reached: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""event":"state_reached""#))
        .collect();
    assert_eq!(reached.len(), 1, "only the hot cell gates: {reached:?}");
    assert!(reached[0].contains("cooling device"), "{}", reached[0]);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("device state reached: hot after"),
        "the report carries the state"
    );
    assert!(model.peak() > 50.0, "the pre-heat really heated the model");
}
