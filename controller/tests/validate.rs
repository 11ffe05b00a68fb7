//! Suite validation: broken suites are reported at the right line and column, through the
//! library (`meltbench::suite::validate_suite_file`) and through `meltbench validate`; the suites
//! shipped in `suites/` validate; no input makes validation panic.
//!
//! Fixtures live in `tests/fixtures/suites/`; paths are relative to this crate's directory,
//! which is where cargo runs integration tests.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use meltbench::devices::Inventory;
use meltbench::selection::Selection;
use meltbench::suite::{parse_suite, validate_suite_file, Precision};

const FIXTURES: &str = "tests/fixtures/suites";
const LAB: &str = "devices-lab.yaml";

/// One broken input: the fixture, the devices file to check it against (in the fixtures
/// directory), and where the first problem must be reported, with a phrase of its message.
struct Case {
    file: &'static str,
    devices: Option<&'static str>,
    line: u32,
    column: u32,
    phrase: &'static str,
}

const fn case(file: &'static str, line: u32, column: u32, phrase: &'static str) -> Case {
    Case {
        file,
        devices: None,
        line,
        column,
        phrase,
    }
}

const CASES: &[Case] = &[
    case("unknown-top-key.yaml", 7, 1, "unknown key 'pases' (allowed: name, description, devices, models, precisions, scenarios, threads, states, engines, passes, warmup, sessions, cold_start, timeout_s, state_timeout_s, gate); did you mean 'passes'?"),
    case("unknown-scenario-key.yaml", 5, 5, "unknown key 'promt' (allowed: name, prompt, prompt_file, prompt_tokens, new_tokens, chat, depth, models)"),
    case("chat-not-bool.yaml", 7, 11, "chat must be true or false (true sends the prompt as one user turn of the model's chat template), got 'sometimes'"),
    case("wrong-type.yaml", 1, 9, "expected a list for 'models', found 'synth'"),
    case("negative-passes.yaml", 7, 9, "passes must be a whole number from 1 to 1000000, got '-5'"),
    case("unknown-gate-metric.yaml", 9, 16, "unknown gate key 'latency_p96' (allowed: latency_p95, latency_p99, ttft_p95, decode_p95, decode_tokens_per_s, prefill_tokens_per_s, peak_rss, energy_per_token, noise_floor, size_budget, memory_budget)"),
    case("gate-budget-not-percent.yaml", 8, 15, "gate decode_p95 must be a percentage such as 10% or `off`, got '0.1'"),
    case("gate-size-not-a-size.yaml", 8, 18, "gate memory_budget must be a size such as 100MB, 1.5GB or 512MiB, or `off`, got '2 bananas'"),
    case("zero-passes.yaml", 7, 9, "passes must be a whole number from 1 to 1000000, got '0'"),
    case("fractional-passes.yaml", 7, 9, "passes must be a whole number from 1 to 1000000, got '2.5'"),
    case("empty-value.yaml", 7, 7, "passes has no value"),
    case("list-for-number.yaml", 7, 9, "warmup must be a whole number from 0 to 100000, got a list"),
    case("unknown-precision.yaml", 3, 20, "unknown precision 'q5_9' (allowed: f32, f16, q8_0, q4_0, q4_1)"),
    case("missing-prompt.yaml", 4, 5, "scenario 'tiny' has no prompt (give exactly one of prompt, prompt_file, prompt_tokens)"),
    case("two-prompts.yaml", 6, 20, "scenario 'tiny' has both prompt and prompt_tokens"),
    case("unknown-device.yaml", 1, 18, "unknown device 'pixel9' (without a devices file only 'local' exists"),
    Case {
        file: "unknown-device-lab.yaml",
        devices: Some(LAB),
        line: 1,
        column: 26,
        phrase: "unknown device 'pixel9' (devices in tests/fixtures/suites/devices-lab.yaml: local, pixel8",
    },
    case("unclosed-bracket.yaml", 2, 1, "invalid YAML: invalid indentation (the '[' at line 1, column 9 is never closed)"),
    case("unclosed-bracket-eof.yaml", 1, 9, "invalid YAML: unclosed bracket '['"),
    case("unclosed-quote.yaml", 6, 1, "(is a quote left open?)"),
    case("bad-indentation.yaml", 6, 4, "did not find expected '-' indicator (check the indentation"),
    case("tab-indentation.yaml", 2, 2, "tabs disallowed"),
    case("duplicate-scenario.yaml", 7, 11, "duplicate scenario name 'tiny' (first used at line 4)"),
    case("duplicate-key.yaml", 8, 1, "duplicate key 'passes'"),
    case("zero-threads.yaml", 7, 14, "threads must be a whole number from 1 to 1024, got '0'"),
    case("empty-models.yaml", 1, 9, "models is empty"),
    case("missing-models.yaml", 1, 1, "missing key 'models'"),
    case("unknown-model.yaml", 2, 11, "unknown model 'gpt-17' (registry: smollm2-135m, gemma3-270m, "),
    case("missing-model-file.yaml", 2, 11, "model file 'weights/missing.gguf' does not exist"),
    case("missing-prompt-file.yaml", 5, 18, "cannot read prompt_file 'prompts/missing.txt'"),
    case("new-tokens-not-number.yaml", 6, 17, "new_tokens must be a whole number from 1 to 1000000, got 'lots'"),
    case("unknown-thermal.yaml", 8, 14, "unknown thermal state 'lukewarm' (allowed: cool, warm, hot, any)"),
    case("unknown-battery.yaml", 8, 49, "unknown battery_mode 'plugged' (allowed: wait, drain, simulate)"),
    case("bad-suite-name.yaml", 1, 7, "invalid suite name 'quick start'"),
    case("not-a-mapping.yaml", 1, 1, "expected a mapping (key: value), found '- synth'"),
    case("empty.yaml", 1, 1, "missing key 'models'"),
    case("not-utf8.yaml", 2, 1, "not valid UTF-8"),
    // A broken inventory is reported in its own file, both duplicates named.
    Case {
        file: "ok-lab.yaml",
        devices: Some("devices-dup.yaml"),
        line: 7,
        column: 11,
        phrase: "duplicate device name 'pi' (first defined at tests/fixtures/suites/devices-dup.yaml:4:11)",
    },
];

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// The file a case's first message must name: the devices file for inventory problems.
fn reported_file(c: &Case) -> PathBuf {
    match c.devices {
        Some(d) if d != LAB => fixture(d),
        _ => fixture(c.file),
    }
}

#[test]
fn broken_suites_are_reported_at_the_right_place_by_the_library() {
    let mut failures = Vec::new();
    for c in CASES {
        let devices = c.devices.map(fixture);
        let result = catch_unwind(|| {
            validate_suite_file(&fixture(c.file), devices.as_deref(), &Selection::default())
        });
        let Ok(result) = result else {
            failures.push(format!("{}: validation panicked", c.file));
            continue;
        };
        let Err(errors) = result else {
            failures.push(format!("{}: validated, but should not", c.file));
            continue;
        };
        let first = &errors.errors[0];
        let expected = format!("{}:{}:{}: ", reported_file(c).display(), c.line, c.column);
        let shown = first.to_string();
        if !shown.starts_with(&expected) || !first.message.contains(c.phrase) {
            failures.push(format!(
                "{}:\n    got      {shown}\n    expected {expected}...{}...",
                c.file, c.phrase
            ));
        }
        // Every message is one line, so terminals and CI logs show it whole.
        for e in &errors.errors {
            assert!(
                !e.message.contains('\n'),
                "{}: multi-line message {e}",
                c.file
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn broken_suites_are_reported_at_the_right_place_by_meltbench_validate() {
    let mut failures = Vec::new();
    for c in CASES {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meltbench"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("validate")
            .arg(fixture(c.file));
        if let Some(d) = c.devices {
            cmd.arg("--devices").arg(fixture(d));
        }
        let out = cmd.output().expect("run meltbench");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("{}:{}:{}: ", reported_file(c).display(), c.line, c.column);
        let line = stderr.lines().find(|l| l.contains(&expected));
        if out.status.code() != Some(2)
            || stderr.contains("panicked")
            || !line.is_some_and(|l| l.contains(c.phrase))
        {
            failures.push(format!(
                "{}: exit {:?}, stderr:\n{stderr}    expected {expected}...{}...",
                c.file,
                out.status.code(),
                c.phrase
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// serde stops at the first unknown key; a user fixing a suite must see them all in one go.
#[test]
fn every_unknown_key_and_misshapen_value_is_reported_at_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_meltbench"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("validate")
        .arg(fixture("three-unknown-keys.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let file = fixture("three-unknown-keys.yaml").display().to_string();
    for (at, phrase) in [
        ("3:5", "unknown key 'quant' (allowed: name)"),
        ("6:5", "unknown key 'promt' (allowed: name, prompt, prompt_file, prompt_tokens, new_tokens, chat, depth, models); did you mean 'prompt'?"),
        ("11:5", "unknown key 'templated'"),
        ("12:1", "unknown key 'pases'"),
        ("13:10", "expected a list for 'devices', found 'local'"),
    ] {
        let want = format!("{file}:{at}: {phrase}");
        assert!(stderr.contains(&want), "missing {want}\n{stderr}");
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shipped_suites() -> Vec<PathBuf> {
    let mut suites: Vec<PathBuf> = std::fs::read_dir(repo().join("suites"))
        .expect("suites/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    suites.sort();
    suites
}

#[test]
fn the_shipped_suites_validate() {
    let suites = shipped_suites();
    for required in ["quickstart.yaml", "ci-smoke.yaml", "precision-ladder.yaml"] {
        assert!(
            suites.iter().any(|p| p.ends_with(required)),
            "suites/{required} is missing"
        );
    }
    let devices = repo().join("devices.yaml");
    for path in &suites {
        for inventory in [None, Some(devices.as_path())] {
            let suite = validate_suite_file(path, inventory, &Selection::default())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(!suite.cells().is_empty(), "{}", path.display());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_meltbench"))
            .current_dir(repo())
            .arg("validate")
            .arg(path)
            .output()
            .expect("run meltbench");
        assert!(
            out.status.success(),
            "meltbench validate {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_shipped_suites_say_what_they_promise() {
    let quick = validate_suite_file(
        &repo().join("suites/quickstart.yaml"),
        None,
        &Selection::default(),
    )
    .unwrap();
    let ids: Vec<String> = quick.cells().into_iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [
            "smollm2-135m/q4_1/short-chat/t2/any",
            "smollm2-135m/q4_1/long-prompt/t2/any"
        ]
    );
    assert_eq!((quick.passes, quick.warmup, quick.cold_start), (100, 10, 5));

    let smoke = validate_suite_file(
        &repo().join("suites/ci-smoke.yaml"),
        None,
        &Selection::default(),
    )
    .unwrap();
    let cells = smoke.cells();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].model.source(), "synth");
    assert_eq!(
        (cells[0].passes, cells[0].warmup, cells[0].cold_start),
        (10, 2, 2)
    );

    let ladder = validate_suite_file(
        &repo().join("suites/precision-ladder.yaml"),
        None,
        &Selection::default(),
    )
    .unwrap();
    assert_eq!(ladder.precisions, Precision::LISTABLE);
}

#[test]
fn prompt_files_are_read_relative_to_the_suite() {
    let suite =
        validate_suite_file(&fixture("ok-prompt-file.yaml"), None, &Selection::default()).unwrap();
    assert_eq!(
        suite.cells()[0].prompt,
        meltbench_protocol::engine::Prompt::Text("Write a haiku about heat sinks.\n".into())
    );
}

/// `chat: true` reaches the cell, and its label says so, so a report tells templated cells from
/// plain ones; omitting it or `chat: false` leaves the scenario as before.
#[test]
fn chat_scenarios_are_labelled_in_their_cells() {
    let suite = validate_suite_file(&fixture("ok-chat.yaml"), None, &Selection::default()).unwrap();
    let chat: Vec<bool> = suite.scenarios.iter().map(|s| s.chat).collect();
    assert_eq!(chat, [false, true, false]);
    let cells = suite.cells();
    let seen: Vec<(&str, &str, bool)> = cells
        .iter()
        .map(|c| (c.id.as_str(), c.scenario.as_str(), c.chat))
        .collect();
    assert_eq!(
        seen,
        [
            ("synth/native/raw/tdefault/any", "raw", false),
            ("synth/native/app+chat/tdefault/any", "app+chat", true),
            ("synth/native/filler/tdefault/any", "filler", false),
        ]
    );
    // The templated scenario keeps its prompt as written: the engine renders it.
    assert_eq!(cells[1].prompt, cells[0].prompt);
}

#[test]
fn suites_select_devices_by_name_and_tag() {
    let suite = validate_suite_file(
        &fixture("ok-lab.yaml"),
        Some(&fixture(LAB)),
        &Selection::default(),
    )
    .unwrap();
    let names: Vec<&str> = suite.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["local", "pixel8"]);
}

/// One suite file, any inventory: without `devices:` it runs on every device listed, and
/// `--only`/`--tags` pick from the inventory whatever the suite says.
#[test]
fn suites_are_portable_across_inventories() {
    let farm = fixture("devices-farm.yaml");
    let on = |suite: &str, pick: Selection| -> Vec<String> {
        validate_suite_file(&repo().join(suite), Some(&farm), &pick)
            .unwrap_or_else(|e| panic!("{suite}: {e}"))
            .devices
            .into_iter()
            .map(|d| d.name)
            .collect()
    };
    let only = |names: &[&str]| Selection {
        names: names.iter().map(|n| n.to_string()).collect(),
        tags: Vec::new(),
    };
    assert_eq!(
        on("suites/ci-smoke.yaml", Selection::default()),
        ["pi", "pixel8", "orin"]
    );
    // quickstart names `local`, which this farm lacks; a selection replaces that list.
    assert_eq!(
        on("suites/quickstart.yaml", only(&["orin", "pi"])),
        ["pi", "orin"]
    );
    let boards_and_phone = Selection {
        names: vec!["pixel8".into()],
        tags: vec!["board".into()],
    };
    assert_eq!(
        on("suites/ci-smoke.yaml", boards_and_phone),
        ["pi", "pixel8", "orin"]
    );
    let jetsons = Selection {
        names: Vec::new(),
        tags: vec!["jetson".into()],
    };
    assert_eq!(on("suites/quickstart.yaml", jetsons), ["orin"]);

    // Without a selection, a suite naming a device the farm lacks is still an error at its line.
    let e = validate_suite_file(
        &repo().join("suites/quickstart.yaml"),
        Some(&farm),
        &Selection::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown device 'local' (devices in"), "{e}");

    // A name that matches nothing exits 2 and lists the inventory; the suite is still checked.
    let out = Command::new(env!("CARGO_BIN_EXE_meltbench"))
        .args(["validate", "--devices"])
        .arg(&farm)
        .args(["--only", "pi,rpi5", "--tags", "watch"])
        .arg(fixture("zero-passes.yaml"))
        .output()
        .expect("run meltbench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--only names 'rpi5', which is not in the inventory (its devices: pi, pixel8, orin)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("--tags names 'watch', which no device of the inventory carries (its tags: arm64, board, jetson, phone)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("zero-passes.yaml:7:9: passes must be"),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_meltbench"))
        .args(["validate", "--devices"])
        .arg(&farm)
        .args(["--tags", "phone"])
        .arg(repo().join("suites/ci-smoke.yaml"))
        .output()
        .expect("run meltbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 cells on 1 device(s): pixel8"),
        "{stdout}"
    );
}

/// A scenario longer than a model's context is refused at its `new_tokens`, for the models it
/// runs on, before any device is touched; the engine would only fail it mid-run.
#[test]
fn scenarios_must_fit_the_model_context() {
    let dir = tempfile::tempdir().unwrap();
    for (file, ctx) in [("short.gguf", 64), ("long.gguf", 4096)] {
        meltbench_engine::synth::write_synth(
            &dir.path().join(file),
            &meltbench_engine::synth::SynthConfig {
                ctx_len: ctx,
                ..Default::default()
            },
        )
        .unwrap();
    }
    let suite = dir.path().join("s.yaml");
    std::fs::write(
        &suite,
        "models:\n  - name: short.gguf\n  - name: long.gguf\nscenarios:\n\
         \x20 - {name: fits, prompt_tokens: 48, new_tokens: 16}\n\
         \x20 - {name: over, prompt_tokens: 60, new_tokens: 8}\n\
         \x20 - {name: deep, prompt: hi, new_tokens: 8, depth: 100}\n\
         \x20 - {name: only-long, prompt_tokens: 1000, new_tokens: 8, models: [long]}\n\
         \x20 - {name: huge, prompt_tokens: 8, new_tokens: 100000}\n",
    )
    .unwrap();
    let e = validate_suite_file(&suite, None, &Selection::default())
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 4, "{e}");
    assert!(
        lines[0].ends_with(":6:49: scenario 'over' needs 68 tokens of context (depth 0 + prompt 60 + new_tokens 8), but model 'short' holds 64 (its context_length)"),
        "{e}"
    );
    assert!(
        lines[1].contains(":7:42: scenario 'deep' needs 109 tokens of context (depth 100 + prompt at least 1 + new_tokens 8), but model 'short'"),
        "{e}"
    );
    assert!(
        lines[2].contains("scenario 'huge' needs 100008") && lines[2].contains("'short' holds 64"),
        "{e}"
    );
    assert!(
        lines[3].contains("scenario 'huge' needs 100008") && lines[3].contains("'long' holds 4096"),
        "{e}"
    );
}

/// Truncations and single-character edits of every shipped suite and fixture: validation must
/// return (Ok or Err with a position inside the file), never panic.
#[test]
fn no_input_makes_validation_panic() {
    let mut inputs: Vec<(PathBuf, String)> = shipped_suites()
        .into_iter()
        .chain(
            std::fs::read_dir(FIXTURES)
                .expect("fixtures")
                .map(|e| e.expect("dir entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml")),
        )
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect();
    inputs.sort();
    let inventory = Inventory::default_local();
    let edits = [
        '[', ']', '{', '}', ':', '-', '#', '"', '\'', '\t', '\n', ' ', ',', '&', '*', '!', '|',
        '>', '0', 'é',
    ];
    let mut checked = 0usize;
    for (path, text) in &inputs {
        let chars: Vec<char> = text.chars().collect();
        let mut variants: Vec<String> = (0..=chars.len())
            .map(|i| chars[..i].iter().collect())
            .collect();
        for i in (0..chars.len()).step_by(3) {
            for &c in &edits {
                let mut v = chars.clone();
                v[i] = c;
                variants.push(v.into_iter().collect());
            }
        }
        for v in variants {
            let lines = u32::try_from(v.lines().count().max(1)).unwrap_or(u32::MAX);
            let result = catch_unwind(AssertUnwindSafe(|| parse_suite(path, &v, &inventory)));
            match result {
                Err(_) => panic!(
                    "validation panicked on this edit of {}:\n{v}",
                    path.display()
                ),
                Ok(Err(errors)) => {
                    assert!(!errors.errors.is_empty());
                    for e in &errors.errors {
                        if let Some(pos) = e.pos {
                            assert!(
                                pos.line >= 1 && pos.line <= lines + 1,
                                "{e} is outside the input:\n{v}"
                            );
                        }
                    }
                }
                Ok(Ok(_)) => {}
            }
            checked += 1;
        }
    }
    assert!(checked > 10_000, "only {checked} inputs");
}

/// What is not a suite file (a device, a directory, something huge) is refused at once, with
/// the reason, instead of being read into memory.
#[test]
fn non_files_and_huge_files_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.yaml");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(17 << 20).unwrap();
    for (path, why) in [
        (Path::new("/dev/zero"), "not a regular file"),
        (dir.path(), "is a directory"),
        (huge.as_path(), "larger than 16 MiB"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_meltbench"))
            .arg("validate")
            .arg(path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", path.display());
        assert!(err.contains(why), "{}: {err}", path.display());
    }
}
