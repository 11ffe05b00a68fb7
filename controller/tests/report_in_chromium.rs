//! The HTML report in a real browser: headless Chromium (Debian `chromium`) loads a gate report
//! made from real ci-smoke runs with a release history, with no console messages, and its DOM
//! holds every section with drawn charts.

mod common;

use common::{meltbench, run_suite, text};
use std::path::{Path, PathBuf};
use std::process::Command;

const CI_SMOKE: &str = include_str!("../../suites/ci-smoke.yaml");

const SECTIONS: [&str; 10] = [
    "verdict",
    "summary",
    "cdf",
    "timeline",
    "coldstart",
    "ladder",
    "history",
    "environment",
    "reproduce",
    "method",
];

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MELTBENCH_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let msg =
        "headless Chromium is not installed (Debian package `chromium`; ci/test.sh installs it)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn the_gate_report_renders_every_section_in_chromium_without_console_errors() {
    let Some(chromium) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let suite = format!("{CI_SMOKE}\nsessions: 2\n");
    let base = run_suite(&cache, tmp.path(), "base", &suite);
    let cand = run_suite(&cache, tmp.path(), "cand", &suite);
    let history = tmp.path().join("history");
    let html = tmp.path().join("report.html");
    for release in ["v1", "v2", "v3"] {
        // Each release must write its own report: one left by the last would hide a failure.
        let _ = std::fs::remove_file(&html);
        let o = meltbench(&cache)
            .arg("gate")
            .arg(if release == "v3" { &cand } else { &base })
            .arg("--baseline")
            .arg(&base)
            .arg("--history")
            .arg(&history)
            .args(["--release", release, "--html"])
            .arg(&html)
            .output()
            .unwrap();
        // With 2 sessions a build the verdict depends on this machine's noise (even the
        // baseline against itself is often inconclusive), but it must be a verdict (0 pass,
        // 1 fail, 2 inconclusive, with the gate's summary line), not an error.
        let verdict = o.status.code().filter(|c| (0..=2).contains(c));
        let decided = verdict.is_some()
            && String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("gate "))
            && !String::from_utf8_lossy(&o.stderr).contains("error:");
        assert!(decided, "gate of {release}: {:?}\n{}", o.status, text(&o));
        assert!(html.is_file(), "{}", text(&o));
    }

    let o = headless(&chromium, &tmp.path().join("profile"))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium: {}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let dom = String::from_utf8_lossy(&o.stdout);
    for id in SECTIONS {
        assert_eq!(
            dom.matches(&format!("<section id=\"{id}\"")).count(),
            1,
            "section #{id} once in the DOM"
        );
    }
    let svgs = dom.matches("<svg").count();
    assert!(svgs >= 4, "charts drawn: {svgs} <svg> elements");
    assert!(
        dom.contains("v1") && dom.contains("v3"),
        "history shows the releases"
    );
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(
            !dom.contains(external),
            "no external resources: found {external}"
        );
    }

    let png = tmp.path().join("report.png");
    let o = headless(&chromium, &tmp.path().join("profile2"))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2400")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium screenshot: {}", text(&o));
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real screenshot"
    );
}
