//! `meltbench-agent run` against the real engine on the synth model: the event stream, the
//! durable log, cold starts, a killed engine, a timeout, and a job from another protocol.

mod common;

use common::{cell, engine, job, run_job, synth_model};
use meltbench_protocol::agent::AgentEvent;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn two_cells_with_cold_starts() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_model(dir.path());
    let cells = vec![
        cell("synth/a", &model, 5, 2, 2),
        cell("synth/b", &model, 5, 2, 2),
    ];
    let ran = run_job(dir.path(), &job(dir.path(), engine(), cells));
    assert!(ran.out.status.success(), "{}", ran.stderr());
    assert_eq!(
        ran.stdout_lines, ran.log_lines,
        "events.jsonl equals stdout line for line"
    );
    // Every weight is read in a pass, so the engine's resident peak holds at least the model
    // (mapped or repacked) and a MiB of code and buffers; a reading taken right after exec
    // (about 200 KiB) cannot pass.
    let rss_floor = std::fs::metadata(&model).unwrap().len() + (1 << 20);

    match &ran.events[0] {
        AgentEvent::Hello {
            protocol,
            run_id,
            device,
            ..
        } => {
            assert_eq!(protocol, meltbench_protocol::PROTOCOL_VERSION);
            assert_eq!(run_id, "test-run");
            assert!(device.cores > 0);
        }
        e => panic!("first event is not hello: {e:?}"),
    }
    assert_eq!(
        ran.events.last(),
        Some(&AgentEvent::Done {
            cells_ok: 2,
            cells_failed: 0
        })
    );
    for (index, id) in ["synth/a", "synth/b"].into_iter().enumerate() {
        let evs: Vec<&AgentEvent> = ran.for_cell(id).collect();
        assert_eq!(
            evs[0],
            &AgentEvent::CellStart {
                cell: id.into(),
                index,
                of: 2
            }
        );
        let kinds: Vec<&str> = evs
            .iter()
            .map(|e| match e {
                AgentEvent::CellStart { .. } => "start",
                AgentEvent::ColdStart { .. } => "cold",
                AgentEvent::Load { .. } => "load",
                AgentEvent::Pass { .. } => "pass",
                AgentEvent::CellEnd { .. } => "end",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "start", "cold", "cold", "load", "pass", "pass", "pass", "pass", "pass", "pass",
                "pass", "end"
            ]
        );

        let mut warmups = 0;
        for e in &evs {
            match e {
                AgentEvent::ColdStart {
                    load_ns,
                    first_token_ns,
                    page_cache_note,
                    ..
                } => {
                    assert!(*load_ns > 0 && first_token_ns >= load_ns, "{e:?}");
                    assert!(!page_cache_note.is_empty());
                }
                AgentEvent::Pass {
                    pass,
                    rss_hwm_bytes,
                    ..
                } => {
                    warmups += pass.warmup as usize;
                    assert!(rss_hwm_bytes.unwrap() >= rss_floor, "{e:?}");
                }
                AgentEvent::CellEnd {
                    passes,
                    peak_rss_bytes,
                    ru_maxrss_bytes,
                    ..
                } => {
                    assert_eq!(*passes, 5);
                    assert!(peak_rss_bytes.unwrap() >= rss_floor, "{e:?}");
                    assert!(ru_maxrss_bytes.unwrap() >= rss_floor, "{e:?}");
                }
                _ => {}
            }
        }
        assert_eq!(warmups, 2);
    }
}

/// The first engine run is killed with SIGKILL after its third pass line: that cell fails with
/// its passes kept, and the next cell still runs.
#[test]
fn a_killed_engine_fails_its_cell_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_model(dir.path());
    // The engine writes into a FIFO that the wrapper forwards line by line, so the kill lands
    // after exactly three pass lines however fast the engine is. The wrapper then kills itself,
    // so the agent sees its child die by SIGKILL as it would an OOM-killed engine.
    let wrapper = script(
        dir.path(),
        "engine-wrapper.sh",
        &format!(
            r#"#!/bin/sh
d='{dir}'
if [ -e "$d/killed-once" ]; then exec '{engine}' "$@"; fi
: > "$d/killed-once"
rm -f "$d/fifo"; mkfifo "$d/fifo"
'{engine}' "$@" > "$d/fifo" &
pid=$!
n=0
while IFS= read -r line; do
    printf '%s\n' "$line"
    case "$line" in *'"type":"pass"'*) n=$((n + 1)) ;; esac
    if [ "$n" -ge 3 ]; then kill -KILL "$pid"; kill -KILL $$; fi
done < "$d/fifo"
"#,
            dir = dir.path().display(),
            engine = engine().display()
        ),
    );
    let cells = vec![
        cell("synth/killed", &model, 5, 2, 0),
        cell("synth/fine", &model, 5, 2, 1),
    ];
    let ran = run_job(dir.path(), &job(dir.path(), &wrapper, cells));
    assert_eq!(ran.out.status.code(), Some(1), "{}", ran.stderr());
    assert_eq!(ran.stdout_lines, ran.log_lines);

    let killed: Vec<&AgentEvent> = ran.for_cell("synth/killed").collect();
    let passes = killed
        .iter()
        .filter(|e| matches!(e, AgentEvent::Pass { .. }))
        .count();
    assert_eq!(
        passes, 3,
        "the passes before the kill are kept in events.jsonl"
    );
    match killed.last().unwrap() {
        AgentEvent::CellError {
            message,
            completed_passes,
            ..
        } => {
            assert!(message.contains("SIGKILL"), "{message}");
            assert!(
                message.contains("after 1 of 5 measured passes"),
                "{message}"
            );
            assert_eq!(*completed_passes, 1, "two of the three were warm-ups");
        }
        e => panic!("killed cell ended with {e:?}"),
    }
    assert!(matches!(
        ran.for_cell("synth/fine").last(),
        Some(AgentEvent::CellEnd { passes: 5, .. })
    ));
    assert_eq!(
        ran.events.last(),
        Some(&AgentEvent::Done {
            cells_ok: 1,
            cells_failed: 1
        })
    );
}

#[test]
fn a_hung_engine_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let hang = script(
        dir.path(),
        "hang.sh",
        "#!/bin/sh\necho 'loading forever' >&2\nsleep 60\n",
    );
    // A model file that exists (the agent checks it before starting the engine).
    let model = dir.path().join("m.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    let mut c = cell("synth/hang", &model, 5, 0, 0);
    c.timeout_s = 1;
    let t = Instant::now();
    let ran = run_job(dir.path(), &job(dir.path(), &hang, vec![c]));
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the timeout did not stop the cell"
    );
    assert_eq!(ran.out.status.code(), Some(1));
    match ran.for_cell("synth/hang").last().unwrap() {
        AgentEvent::CellError {
            message,
            completed_passes: 0,
            ..
        } => {
            assert!(message.contains("timeout of 1 s"), "{message}");
            assert!(
                message.contains("loading forever"),
                "stderr is quoted: {message}"
            );
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn a_missing_engine_fails_the_cell_not_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    let c = cell("synth/none", &model, 1, 0, 1);
    let ran = run_job(
        dir.path(),
        &job(dir.path(), Path::new("/nonexistent/engine"), vec![c]),
    );
    assert_eq!(ran.out.status.code(), Some(1));
    assert!(matches!(
        ran.for_cell("synth/none").last(),
        Some(AgentEvent::CellError { message, .. }) if message.contains("cannot start the engine")
    ));
    assert_eq!(
        ran.events.last(),
        Some(&AgentEvent::Done {
            cells_ok: 0,
            cells_failed: 1
        })
    );
}

#[test]
fn a_job_from_another_major_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(dir.path(), Path::new("engine"), vec![]);
    j.protocol = "2.0".into();
    let ran = run_job(dir.path(), &j);
    assert_eq!(ran.out.status.code(), Some(2));
    let err = ran.stderr();
    assert!(
        err.contains("protocol \"2.0\"") && err.contains("update the agent or the controller"),
        "{err}"
    );
    assert!(ran.stdout_lines.is_empty());
    assert!(
        !Path::new(&j.workdir).exists(),
        "nothing is written for a refused job"
    );
}

#[test]
fn sessions_run_in_fresh_engine_processes_one_after_another() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_model(dir.path());
    let mut c = cell("synth/s", &model, 4, 1, 0);
    c.sessions = 3;
    let ran = run_job(dir.path(), &job(dir.path(), engine(), vec![c]));
    assert!(ran.out.status.success(), "{}", ran.stderr());
    let evs: Vec<&AgentEvent> = ran.for_cell("synth/s").collect();
    let loads: Vec<usize> = evs
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Load { session, .. } => Some(*session),
            _ => None,
        })
        .collect();
    assert_eq!(loads, [0, 1, 2], "one engine load per session, in order");
    let passes: Vec<(usize, bool)> = evs
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Pass { session, pass, .. } => Some((*session, pass.warmup)),
            _ => None,
        })
        .collect();
    let expect: Vec<(usize, bool)> = (0..3)
        .flat_map(|s| std::iter::once((s, true)).chain(std::iter::repeat_n((s, false), 4)))
        .collect();
    assert_eq!(passes, expect, "each session: its warm-up, then its passes");
    match evs.last().unwrap() {
        AgentEvent::CellEnd {
            passes,
            peak_rss_bytes,
            ..
        } => {
            assert_eq!(*passes, 12, "measured passes of all sessions");
            assert!(peak_rss_bytes.is_some());
        }
        e => panic!("the cell did not end: {e:?}"),
    }
}

/// Two engines of one comparison (the engine, and a shim that runs it) share a group: cold
/// starts and sessions alternate A B, B A, ..., each cell ends on its own, and a cell naming an
/// engine the job lacks fails alone.
#[test]
fn engines_of_one_comparison_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_model(dir.path());
    let shim = script(
        dir.path(),
        "shim.sh",
        &format!("#!/bin/sh\nexec {} \"$@\"\n", engine().display()),
    );
    let future = script(
        dir.path(),
        "future.sh",
        &format!(
            "#!/bin/sh\n{} \"$@\" | sed 's/\"protocol\":\"1[.][0-9]*\"/\"protocol\":\"2.0\"/'\n",
            engine().display()
        ),
    );
    let member = |id: &str, engine: &str, group: Option<u32>| {
        let mut c = cell(id, &model, 2, 1, 2);
        c.sessions = 4;
        c.engine = engine.into();
        c.interleave = group;
        c
    };
    let cells = vec![
        member("synth/a", "bundled", Some(1)),
        member("synth/a/shim", "shim", Some(1)),
        member("synth/b/missing", "nowhere", None),
        member("synth/c/future", "future", None),
        // No cold starts: the first session meets the load record.
        {
            let mut c = member("synth/d/future", "future", None);
            c.cold_start_runs = 0;
            c
        },
    ];
    let mut j = job(dir.path(), engine(), cells);
    j.engines.insert(
        "shim".into(),
        meltbench_protocol::agent::EngineProgram {
            program: shim.display().to_string(),
            args: Vec::new(),
            wrapped: false,
        },
    );
    j.engines.insert(
        "future".into(),
        meltbench_protocol::agent::EngineProgram {
            program: future.display().to_string(),
            args: Vec::new(),
            wrapped: false,
        },
    );
    let ran = run_job(dir.path(), &j);
    let order: Vec<(String, usize)> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Load { cell, session, .. } => Some((cell.clone(), *session)),
            _ => None,
        })
        .collect();
    let (a, b) = ("synth/a".to_string(), "synth/a/shim".to_string());
    let want: Vec<(String, usize)> = [
        (&a, 0),
        (&b, 0),
        (&b, 1),
        (&a, 1),
        (&a, 2),
        (&b, 2),
        (&b, 3),
        (&a, 3),
    ]
    .into_iter()
    .map(|(c, s)| (c.clone(), s))
    .collect();
    assert_eq!(
        order,
        want,
        "{}\n{:#?}",
        ran.stderr(),
        ran.events
            .iter()
            .filter(|e| matches!(
                e,
                AgentEvent::CellError { .. }
                    | AgentEvent::Warning { .. }
                    | AgentEvent::CellEnd { .. }
            ))
            .collect::<Vec<_>>()
    );
    let colds: Vec<(String, usize)> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ColdStart { cell, run, .. } => Some((cell.clone(), *run)),
            _ => None,
        })
        .collect();
    assert_eq!(
        colds,
        [
            (a.clone(), 0),
            (b.clone(), 0),
            (b.clone(), 1),
            (a.clone(), 1)
        ]
    );
    for id in [&a, &b] {
        let end = ran.for_cell(id).find_map(|e| match e {
            AgentEvent::CellEnd { passes, .. } => Some(*passes),
            _ => None,
        });
        assert_eq!(end, Some(8), "{id}: 4 sessions x 2 passes");
    }
    let missing = ran.for_cell("synth/b/missing").find_map(|e| match e {
        AgentEvent::CellError { message, .. } => Some(message.clone()),
        _ => None,
    });
    let missing = missing.expect("the cell naming an unknown engine fails");
    assert!(
        missing.contains("no program for engine 'nowhere'")
            && missing.contains("bundled, future, shim"),
        "{missing}"
    );
    // A program of another contract major is stopped at its load record; nothing it wrote is
    // taken as a measurement.
    for id in ["synth/c/future", "synth/d/future"] {
        let future: Vec<&AgentEvent> = ran.for_cell(id).collect();
        assert!(
            !future
                .iter()
                .any(|e| matches!(e, AgentEvent::Pass { .. } | AgentEvent::Load { .. })),
            "{future:?}"
        );
        let message = future.iter().find_map(|e| match e {
            AgentEvent::CellError { message, .. } => Some(message.clone()),
            _ => None,
        });
        let message = message.expect("the foreign engine's cell fails");
        assert!(
            message.contains("bench contract protocol \"2.0\""),
            "{id}: {message}"
        );
    }
    assert_eq!(
        ran.events.last(),
        Some(&AgentEvent::Done {
            cells_ok: 2,
            cells_failed: 3
        })
    );
}

/// Ctrl-C during the cold starts of a comparison (the second engine's first cold start signals
/// the agent, as a terminal's Ctrl-C would): no other cold start begins and no session runs,
/// for either engine; the agent says it was interrupted.
#[test]
fn an_interrupt_during_cold_starts_starts_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_model(dir.path());
    let interrupting = script(
        dir.path(),
        "interrupting.sh",
        &format!(
            "#!/bin/sh\nkill -INT $PPID\nexec {} \"$@\"\n",
            engine().display()
        ),
    );
    let member = |id: &str, engine: &str| {
        let mut c = cell(id, &model, 2, 1, 5);
        c.sessions = 2;
        c.engine = engine.into();
        c.interleave = Some(1);
        c
    };
    let mut j = job(
        dir.path(),
        engine(),
        vec![
            member("synth/a", "bundled"),
            member("synth/a/ctrl-c", "interrupting"),
        ],
    );
    j.engines.insert(
        "interrupting".into(),
        meltbench_protocol::agent::EngineProgram {
            program: interrupting.display().to_string(),
            args: Vec::new(),
            wrapped: false,
        },
    );
    let ran = run_job(dir.path(), &j);
    let colds = ran
        .events
        .iter()
        .filter(|e| matches!(e, AgentEvent::ColdStart { .. }))
        .count();
    assert!(
        colds <= 2,
        "cold starts went on after the interrupt: {:#?}",
        ran.events
    );
    // Without the check, each later cold start was started and killed at once: a cell error
    // "cold start 2 of 5: the engine was killed by the agent on SIGINT" for each engine.
    let started_after = ran.events.iter().any(
        |e| matches!(e, AgentEvent::CellError { message, .. } if message.contains("cold start 2")),
    );
    assert!(
        !started_after,
        "an engine was started after the interrupt: {:#?}",
        ran.events
    );
    assert!(
        !ran.events
            .iter()
            .any(|e| matches!(e, AgentEvent::Load { .. })),
        "a session ran after the interrupt: {:#?}",
        ran.events
    );
    assert!(
        ran.events.iter().any(|e| matches!(
            e,
            AgentEvent::Warning { message } if message.contains("interrupted by SIGINT")
        )),
        "{:#?}\n{}",
        ran.events,
        ran.stderr()
    );
    assert!(!ran.out.status.success());
}

/// A program whose passes break the contract's arithmetic (time to first token not tokenize +
/// prefill): its passes are kept as written, and each session says so once.
#[test]
fn a_pass_that_breaks_the_contract_is_kept_and_named_once_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_model(dir.path());
    let off = script(
        dir.path(),
        "off.sh",
        &format!(
            "#!/bin/sh\n{} \"$@\" | sed 's/\"ttft_ns\":[0-9]*/\"ttft_ns\":1/'\n",
            engine().display()
        ),
    );
    let mut c = cell("synth/off", &model, 3, 1, 0);
    c.sessions = 2;
    c.engine = "off".into();
    let mut j = job(dir.path(), engine(), vec![c]);
    j.engines.insert(
        "off".into(),
        meltbench_protocol::agent::EngineProgram {
            program: off.display().to_string(),
            args: Vec::new(),
            wrapped: false,
        },
    );
    let ran = run_job(dir.path(), &j);
    assert!(ran.out.status.success(), "{}", ran.stderr());
    let warnings: Vec<&String> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Warning { message } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for (session, w) in warnings.iter().enumerate() {
        assert!(
            w.starts_with(&format!(
                "cell synth/off session {session}: pass 0 breaks the bench contract: ttft_ns 1 \
                 is not tokenize_ns + prefill_ns = "
            )),
            "{w}"
        );
    }
    let passes = ran
        .events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Pass { pass, .. } if pass.ttft_ns == 1))
        .count();
    assert_eq!(passes, 8, "every pass kept as written");
}
