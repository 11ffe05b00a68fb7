use super::*;

fn ok(text: &str) -> ValidatedSuite {
    parse_suite(Path::new("s.yaml"), text, &Inventory::default_local())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    parse_suite(Path::new("s.yaml"), text, &Inventory::default_local())
        .unwrap_err()
        .to_string()
}

const MINIMAL: &str =
    "models: [{name: synth}]\nscenarios: [{name: a, prompt_tokens: 4, new_tokens: 2}]\n";

#[test]
fn defaults_fill_a_minimal_suite() {
    let s = ok(MINIMAL);
    assert_eq!(s.name, "s");
    assert_eq!(s.devices.len(), 1);
    assert_eq!(s.precisions, [Precision::Native]);
    assert_eq!(s.threads, [None]);
    assert_eq!(s.states, [State::ANY]);
    assert_eq!(
        (s.passes, s.warmup, s.cold_start, s.timeout_s),
        (100, 10, 5, 1800)
    );
    let cells = s.cells();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].id, "synth/native/a/tdefault/any");
    assert_eq!(cells[0].prompt, Prompt::Tokens(4));
}

#[test]
fn depth_fills_the_cache_and_names_the_cell() {
    let s = ok("models: [{name: synth}]\n\
                    scenarios: [{name: a, prompt_tokens: 4, new_tokens: 2, depth: 4096}, {name: b, prompt: hi, new_tokens: 2, chat: true, depth: 16}, {name: c, prompt: hi, new_tokens: 2, depth: 0}]\n");
    let cells = s.cells();
    let got: Vec<(&str, usize)> = cells.iter().map(|c| (c.id.as_str(), c.depth)).collect();
    assert_eq!(
        got,
        [
            ("synth/native/a@d4096/tdefault/any", 4096),
            ("synth/native/b+chat@d16/tdefault/any", 16),
            ("synth/native/c/tdefault/any", 0)
        ]
    );
    let e = err("models: [{name: synth}]\n\
                     scenarios: [{name: a, prompt: hi, new_tokens: 2, depth: -1}, {name: b, prompt: hi, new_tokens: 2, depth: deep}]\n");
    assert!(
        e.contains("s.yaml:2:57: depth must be a whole number from 0 to 1000000, got '-1'"),
        "{e}"
    );
    assert!(
        e.contains("depth must be a whole number from 0 to 1000000, got 'deep'"),
        "{e}"
    );
}

#[test]
fn a_scenario_can_run_on_some_models_only() {
    let s = ok("models: [{name: synth}, {name: smollm2-135m}]\n\
                    scenarios: [{name: a, prompt: hi, new_tokens: 2}, {name: b, prompt: hi, new_tokens: 2, chat: true, models: [smollm2-135m]}]\n");
    let ids: Vec<String> = s.cells().into_iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [
            "synth/native/a/tdefault/any",
            "smollm2-135m/native/a/tdefault/any",
            "smollm2-135m/native/b+chat/tdefault/any"
        ]
    );
    let e = err("models: [{name: synth}]\n\
                     scenarios: [{name: a, prompt: hi, new_tokens: 2, models: [gemma3-270m]}]\n");
    assert!(
            e.contains("s.yaml:2:59: scenario 'a' names model 'gemma3-270m', which the suite does not list (its models: synth)"),
            "{e}"
        );
}

#[test]
fn cells_nest_in_a_fixed_order() {
    let s = ok("models: [{name: synth}, {name: smollm2-135m}]\n\
                    precisions: [q4_0, f16]\n\
                    scenarios: [{name: a, prompt: hi, new_tokens: 2}, {name: b, prompt_tokens: 3, new_tokens: 1}]\n\
                    threads: [1, 4]\n\
                    states: [{thermal: any}, {thermal: hot, battery: [50], battery_mode: drain}]\n");
    let ids: Vec<String> = s.cells().into_iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 2 * 2 * 2 * 2 * 2);
    assert_eq!(ids[0], "synth/q4_0/a/t1/any");
    assert_eq!(ids[1], "synth/q4_0/a/t1/hot+battery50-drain");
    assert_eq!(ids[2], "synth/q4_0/a/t4/any");
    assert_eq!(ids[31], "smollm2-135m/f16/b/t4/hot+battery50-drain");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
}

#[test]
fn battery_levels_expand_into_states_and_bad_ones_are_located() {
    let s = ok("models: [{name: synth}]\n\
                    scenarios: [{name: a, prompt: hi, new_tokens: 2}]\n\
                    states: [{thermal: cool, battery: [100, 50, 20], battery_mode: simulate}]\n");
    let states: Vec<String> = s.states.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        states,
        [
            "cool+battery100-simulate",
            "cool+battery50-simulate",
            "cool+battery20-simulate"
        ]
    );
    let s = ok("models: [{name: synth}]\n\
                    scenarios: [{name: a, prompt: hi, new_tokens: 2}]\n\
                    states: [{battery: [30]}]\n");
    assert_eq!(s.states[0].to_string(), "any+battery30-wait");
    let e = err("models: [{name: synth}]\n\
                     scenarios: [{name: a, prompt: hi, new_tokens: 2}]\n\
                     states: [{battery: [0, 50], battery_mode: drian}, {battery_mode: drain}]\n");
    assert!(
        e.contains("s.yaml:3:21: battery must be a whole number from 1 to 100, got '0'"),
        "{e}"
    );
    assert!(e.contains("unknown battery_mode 'drian'"), "{e}");
    assert!(e.contains("battery_mode needs battery levels"), "{e}");
}

#[test]
fn all_problems_are_reported_in_file_order() {
    let e = err("models: [{name: synth}]\n\
                     precisions: [q5_9]\n\
                     scenarios: [{name: a, new_tokens: 0}]\n\
                     passes: 0\n");
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 4, "{e}");
    assert_eq!(
        lines[0],
        "s.yaml:2:14: unknown precision 'q5_9' (allowed: f32, f16, q8_0, q4_0, q4_1)"
    );
    assert!(
        lines[1].starts_with("s.yaml:3:13: scenario 'a' has no prompt"),
        "{e}"
    );
    assert_eq!(
        lines[2],
        "s.yaml:3:35: new_tokens must be a whole number from 1 to 1000000, got '0'"
    );
    assert_eq!(
        lines[3],
        "s.yaml:4:9: passes must be a whole number from 1 to 1000000, got '0'"
    );
}

#[test]
fn devices_resolve_by_name_and_tag() {
    let inv = devices::parse_inventory(
            Path::new("d.yaml"),
            "devices:\n- {name: local, transport: local}\n- {name: p1, transport: adb, serial: x, tags: [phone]}\n- {name: p2, transport: adb, serial: y, tags: [phone]}\n",
        )
        .unwrap();
    let text = format!("devices: [local, tag:phone, p1]\n{MINIMAL}");
    let s = parse_suite(Path::new("s.yaml"), &text, &inv).unwrap();
    let names: Vec<&str> = s.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["local", "p1", "p2"]);
    let text = format!("devices: [tag:board]\n{MINIMAL}");
    let e = parse_suite(Path::new("s.yaml"), &text, &inv)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "s.yaml:1:11: no device in d.yaml has tag 'board'");
}

#[test]
fn a_model_path_must_hold_a_gguf_model() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let suite = |model: &std::path::Path| {
        format!(
            "models: [{{name: '{}'}}]\nscenarios: [{{name: a, prompt_tokens: 4, new_tokens: 2}}]\n",
            model.display()
        )
    };
    let e = err(&suite(&text));
    assert!(
        e.contains("cannot be used") && e.contains("not a GGUF file"),
        "{e}"
    );
    let e = err(&suite(dir.path()));
    assert!(e.contains("is a directory"), "{e}");
}

#[test]
fn engines_are_the_innermost_axis_and_share_a_group_per_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let shim = dir.path().join("shim.sh");
    std::fs::write(&shim, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = format!(
        "{MINIMAL}threads: [1, 2]\nengines:\n  - name: bundled\n  - name: shim\n    command: {}\n  - name: vendor\n    device_command: /opt/v/bench\n",
        shim.display()
    );
    let s = ok(&text);
    assert_eq!(s.engines.len(), 3);
    let cells = s.cells();
    let got: Vec<(&str, Option<u32>)> = cells
        .iter()
        .map(|c| (c.id.as_str(), c.interleave))
        .collect();
    assert_eq!(
        got,
        [
            ("synth/native/a/t1/any", Some(1)),
            ("synth/native/a/t1/any/shim", Some(1)),
            ("synth/native/a/t1/any/vendor", Some(1)),
            ("synth/native/a/t2/any", Some(2)),
            ("synth/native/a/t2/any/shim", Some(2)),
            ("synth/native/a/t2/any/vendor", Some(2)),
        ]
    );
    // One engine: no groups, ids as before engines were an axis.
    let one = ok(MINIMAL).cells();
    assert_eq!(
        (one[0].engine.as_str(), one[0].interleave),
        ("bundled", None)
    );
}

#[test]
fn an_openai_engine_runs_the_agent_as_its_adapter_without_cold_starts() {
    let s = ok(&format!(
        "{MINIMAL}cold_start: 3\nengines:\n  - name: bundled\n  - name: server\n    openai: {{url: \"http://127.0.0.1:8080/v1/\", model: smollm2, memory_of: llama-server}}\n"
    ));
    let EngineProgramRef::OpenAi(endpoint) = &s.engines[1].program else {
        panic!("{:?}", s.engines[1]);
    };
    assert_eq!(
        endpoint.adapter_args(),
        [
            "adapter",
            "openai",
            "--url",
            "http://127.0.0.1:8080/v1",
            "--model",
            "smollm2",
            "--memory-of",
            "llama-server"
        ]
    );
    let cells = s.cells();
    assert_eq!((cells[0].cold_start, cells[1].cold_start), (3, 0));
    let e = err(&format!(
        "{MINIMAL}engines:\n  - name: a\n    openai: {{model: m}}\n  - name: b\n    openai: {{url: \"https://api.example.com/v1\"}}\n  - name: c\n    openai: {{url: localhost:8080}}\n  - name: d\n    command: /bin/true\n    openai: {{url: \"http://h/v1\"}}\n"
    ));
    for want in [
        "s.yaml:5:13: openai needs 'url'",
        "s.yaml:7:19: 'https://api.example.com/v1': the openai adapter speaks plain HTTP only",
        "s.yaml:9:19: 'localhost:8080' is not an http:// URL",
        "s.yaml:11:14: give one of 'command', 'device_command', 'llama.cpp' and 'openai'",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let e = err(&format!(
        "{MINIMAL}engines:\n  - name: e\n    openai: {{url: \"http://h/v1\", port: 1}}\n"
    ));
    assert!(
        e.contains("s.yaml:5:34: unknown key 'port' (allowed: url, model, memory_of)"),
        "{e}"
    );
}

#[test]
fn a_llama_cpp_build_without_a_server_runs_llama_bench_and_tool_chooses() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let make = |sub: &str, names: &[&str]| {
        let bin = dir.path().join(sub);
        std::fs::create_dir(&bin).unwrap();
        for f in names {
            std::fs::write(bin.join(f), f).unwrap();
            std::fs::set_permissions(bin.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        bin
    };
    let bench_only = make("bench", &["llama-bench", "llama-cli", "libggml.so"]);
    let both = make("both", &["llama-bench", "llama-server", "libggml.so"]);
    let s = ok(&format!(
        "{MINIMAL}engines:\n  - name: a\n    llama.cpp: {{dir: {}}}\n  - name: b\n    llama.cpp: {{dir: {}, tool: llama-bench}}\n  - name: c\n    llama.cpp: {{dir: {}}}\n  - name: d\n    llama.cpp: {{device_dir: /o, tool: llama-bench}}\n",
        bench_only.display(),
        both.display(),
        both.display()
    ));
    let tools: Vec<(Option<&str>, Vec<&str>)> = s
        .engines
        .iter()
        .map(|e| {
            let EngineProgramRef::LlamaCpp(t) = &e.program else {
                panic!("{e:?}");
            };
            let files = match &t.place {
                ToolsPlace::Local(files) => files.iter().map(|(n, _)| n.as_str()).collect(),
                ToolsPlace::OnDevice(_) => vec![],
            };
            (t.tool.as_deref(), files)
        })
        .collect();
    assert_eq!(
        tools,
        [
            (Some("llama-bench"), vec!["libggml.so", "llama-bench"]),
            (Some("llama-bench"), vec!["libggml.so", "llama-bench"]),
            (Some("llama-server"), vec!["libggml.so", "llama-server"]),
            (Some("llama-bench"), vec![]),
        ],
        "the chosen tool and its libraries are pushed, never both tools"
    );
    let EngineProgramRef::LlamaCpp(on_device) = &s.engines[3].program else {
        unreachable!()
    };
    assert_eq!(
        on_device.adapter_args(&[]),
        [
            "adapter",
            "llama.cpp",
            "--dir",
            "/o",
            "--tool",
            "llama-bench"
        ]
    );
}

#[test]
fn a_llama_cpp_build_pushes_its_server_and_libraries_with_the_words_for_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for f in [
        "llama-server",
        "llama-cli",
        "libllama.so.0.0.1",
        "libggml.so",
    ] {
        std::fs::write(bin.join(f), f).unwrap();
        std::fs::set_permissions(bin.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink("libllama.so.0.0.1", bin.join("libllama.so")).unwrap();
    let s = ok(&format!(
        "{MINIMAL}cold_start: 2\nengines:\n  - name: bundled\n  - name: llama\n    llama.cpp: {{dir: {}, args: [-ngl, 99]}}\n  - name: board\n    llama.cpp: {{device_dir: /opt/llama.cpp/bin/}}\n",
        bin.display()
    ));
    let EngineProgramRef::LlamaCpp(tools) = &s.engines[1].program else {
        panic!("{:?}", s.engines[1]);
    };
    let ToolsPlace::Local(files) = &tools.place else {
        panic!("{tools:?}");
    };
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "libggml.so",
            "libllama.so",
            "libllama.so.0.0.1",
            "llama-server"
        ],
        "the server and its libraries, not the other tools"
    );
    assert_eq!(
        tools.adapter_args(&[("llama-server".into(), "/w/blobs/9f".into())]),
        [
            "adapter",
            "llama.cpp",
            "--file",
            "llama-server=/w/blobs/9f",
            "--tool",
            "llama-server",
            "--arg",
            "-ngl",
            "--arg",
            "99"
        ]
    );
    let EngineProgramRef::LlamaCpp(board) = &s.engines[2].program else {
        panic!("{:?}", s.engines[2]);
    };
    assert_eq!(
        board.adapter_args(&[]),
        ["adapter", "llama.cpp", "--dir", "/opt/llama.cpp/bin"]
    );
    // A cold start is the server's start to its first token: the suite's count holds.
    let cells = s.cells();
    assert_eq!(
        (
            cells[0].cold_start,
            cells[1].cold_start,
            cells[2].cold_start
        ),
        (2, 2, 2)
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = err(&format!(
        "{MINIMAL}engines:\n  - name: a\n    llama.cpp: {{device_dir: /o, tool: llama-cli}}\n  - name: b\n    llama.cpp: {{dir: {}, tool: llama-bench}}\n",
        empty.display()
    ));
    for want in [
        "s.yaml:5:39: tool 'llama-cli' is not one the adapter runs",
        "has no llama-bench: give the bin directory",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let e = err(&format!(
        "{MINIMAL}engines:\n  - name: a\n    llama.cpp: {{dir: {}}}\n  - name: b\n    llama.cpp: {{device_dir: opt/bin}}\n  - name: c\n    llama.cpp: {{args: [-ngl]}}\n  - name: d\n    llama.cpp: {{device_dir: /o, args: [[x]]}}\n  - name: e\n    llama.cpp: {{device_dir: /o}}\n    openai: {{url: \"http://h/v1\"}}\n",
        empty.display()
    ));
    for want in [
        "s.yaml:5:22: dir '",
        "has no llama-server or llama-bench: give the bin directory of a llama.cpp build",
        "s.yaml:7:29: device_dir 'opt/bin' must be an absolute path",
        "s.yaml:9:16: llama.cpp needs 'dir'",
        "s.yaml:11:40: each of 'args' is one word",
        "s.yaml:14:13: give one of",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
}

#[test]
fn engine_mistakes_are_reported_with_their_lines() {
    let e = err(&format!(
        "{MINIMAL}engines:\n  - name: bundled\n    command: /bin/true\n  - name: x\n  - name: y\n    command: /nonexistent/engine\n  - name: z\n    device_command: relative/bench\n  - name: y\n    device_command: /b\n  - {{}}\n  - name: /etc/passwd\n    command: /etc/passwd\n"
    ));
    for want in [
        "s.yaml:5:14: 'bundled' is the engine of the bundle",
        "s.yaml:6:11: engine 'x' says no program",
        "s.yaml:8:14: command '/nonexistent/engine' cannot be used",
        "s.yaml:10:21: device_command 'relative/bench' must be an absolute path",
        "s.yaml:11:11: engine 'y' is listed twice (first at line 7)",
        "s.yaml:13:5: engine has no 'name'",
        "s.yaml:14:11: invalid engine name '/etc/passwd'",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let e = err(&format!(
        "{MINIMAL}engines:\n  - name: a\n    command: /etc/passwd\n"
    ));
    assert!(
        e.contains("is not executable (chmod +x /etc/passwd)"),
        "{e}"
    );
    let e = err(&format!("{MINIMAL}engines: []\n"));
    assert!(e.contains("list at least one"), "{e}");
}

#[test]
fn gate_limits_read_sizes_and_off_over_the_defaults() {
    let spec = gate_spec(
        Path::new("s.yaml"),
        "gate:\n  size_budget: 100MB\n  memory_budget: off\n  latency_p95: 5%\n",
    )
    .unwrap();
    let mut config = meltbench_reports::compare::GateConfig::default();
    assert_eq!(config.limits.size_bytes, Some(500_000_000));
    assert_eq!(config.limits.memory_bytes, Some(2_000_000_000));
    spec.apply(&mut config);
    assert_eq!(config.limits.size_bytes, Some(100_000_000));
    assert_eq!(config.limits.memory_bytes, None);
    let spec = gate_spec(Path::new("s.yaml"), "gate:\n  memory_budget: 4GiB\n").unwrap();
    spec.apply(&mut config);
    assert_eq!(config.limits.memory_bytes, Some(4 << 30));
}

#[test]
fn a_bare_off_turns_a_metric_off_too() {
    let spec = gate_spec(Path::new("s.yaml"), "gate:\n  energy_per_token: off\n").unwrap();
    let mut config = meltbench_reports::compare::GateConfig::default();
    spec.apply(&mut config);
    assert!(!config
        .budgets
        .contains_key(&meltbench_reports::metric::Metric::EnergyPerToken));
}
