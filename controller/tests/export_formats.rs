//! One real run (ci-smoke on the synthetic model, 400 passes per cell so p99 has both interval
//! ends) rendered through every format: each format shows, for every cell, the same
//! percentiles and interval ends as summary.json, which `meltbench run` computed from the
//! stored events. The machine-readable formats must match to the bit, the human-readable ones
//! as their formatter prints the same value. The run's `trace/<device>.json` and the perfetto
//! export hold a slice per pass; llama-bench's tests carry summary.json's mean rates.

mod common;

use common::{meltbench, run_suite, text};
use meltbench_reports::export::html::cell_anchor;
use meltbench_reports::export::number;
use serde_json::Value;
use std::path::Path;

const CI_SMOKE: &str = include_str!("../../suites/ci-smoke.yaml");

fn export(cache: &Path, run: &Path, format: &str) -> String {
    let o = meltbench(cache)
        .arg("export")
        .arg(run)
        .args(["--format", format])
        .output()
        .unwrap();
    assert!(o.status.success(), "{format}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Type-7 percentile of unsorted values, written out here independently of the crate.
fn type7(values: &[f64], p: f64) -> f64 {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let h = (s.len() - 1) as f64 * p / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    s[lo] + (h - lo as f64) * (s[hi] - s[lo])
}

/// Complete events named `pass N` on the thread named `cell` of the process named `device`.
fn pass_slices(trace: &Value, device: &str, cell: &str) -> usize {
    let events = trace["traceEvents"].as_array().unwrap();
    let named = |what: &str, name: &str| {
        events
            .iter()
            .find(|e| e["ph"] == "M" && e["name"] == what && e["args"]["name"] == name)
            .unwrap_or_else(|| panic!("no {what} {name}"))
    };
    let pid = &named("process_name", device)["pid"];
    let thread = events
        .iter()
        .find(|e| e["name"] == "thread_name" && e["pid"] == *pid && e["args"]["name"] == cell)
        .unwrap_or_else(|| panic!("no thread for {cell}"));
    events
        .iter()
        .filter(|e| {
            e["ph"] == "X"
                && e["pid"] == *pid
                && e["tid"] == thread["tid"]
                && e["name"].as_str().unwrap().starts_with("pass ")
        })
        .count()
}

#[test]
fn every_format_shows_the_same_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let suite = format!(
        "{}\nsessions: 2\n",
        CI_SMOKE.replace("passes: 10", "passes: 200")
    );
    let run = run_suite(&cache, tmp.path(), "figures", &suite);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    let cells = summary["cells"].as_array().unwrap();
    assert!(!cells.is_empty());

    let bencher: Value = serde_json::from_str(&export(&cache, &run, "bencher")).unwrap();
    let csv = export(&cache, &run, "csv");
    let markdown = export(&cache, &run, "markdown");
    let html = export(&cache, &run, "html");
    let terminal = export(&cache, &run, "terminal");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let perfetto: Value = serde_json::from_str(&export(&cache, &run, "perfetto")).unwrap();
    let llama: Value = serde_json::from_str(&export(&cache, &run, "llama-bench-json")).unwrap();
    let llama = llama.as_array().unwrap();
    assert_eq!(llama.len(), 2 * cells.len(), "a pp and a tg test per cell");

    for (i, cell) in cells.iter().enumerate() {
        let (device, id) = (
            cell["key"]["device"].as_str().unwrap(),
            cell["key"]["id"].as_str().unwrap(),
        );
        let lat = &cell["latency_ms"];
        assert_eq!(lat["n"], 400, "{id}: 2 sessions x 200 passes");

        // The trace `meltbench run` left, and the perfetto export: a pass slice per pass.
        let path = run.join("trace").join(format!("{device}.json"));
        let stored: Value = serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap();
        for trace in [&stored, &perfetto] {
            assert_eq!(
                pass_slices(trace, device, id),
                400,
                "{id}: one slice per pass"
            );
        }

        // llama-bench's tests: avg_ts is summary.json's mean rate, to the bit.
        let (pp, tg) = (&llama[2 * i], &llama[2 * i + 1]);
        assert_eq!(pp["n_gen"], 0);
        assert_eq!(tg["n_prompt"], 0);
        assert_eq!(
            f(&pp["avg_ts"]),
            f(&cell["prefill_tokens_per_s"]["mean"]),
            "{id}"
        );
        assert_eq!(
            f(&tg["avg_ts"]),
            f(&cell["decode_tokens_per_s"]["mean"]),
            "{id}"
        );
        assert_eq!(pp["samples_ns"].as_array().unwrap().len(), 400);
        assert!(
            !lat["ci95"]["p99"]["high"].is_null(),
            "{id}: 400 passes give p99 an upper end"
        );

        // Bencher: the same value and interval ends, to the bit.
        let b = &bencher[format!("{device}/{id}")];
        for (measure, dist, p) in [
            ("latency-p95-ms", &cell["latency_ms"], "p95"),
            ("latency-p99-ms", &cell["latency_ms"], "p99"),
            ("ttft-p95-ms", &cell["ttft_ms"], "p95"),
            ("decode-step-p95-ms", &cell["decode_ms_per_token"], "p95"),
            ("decode-tokens-per-s", &cell["decode_tokens_per_s"], "p50"),
            ("prefill-tokens-per-s", &cell["prefill_tokens_per_s"], "p50"),
            ("cold-start-ms", &cell["cold_start_ms"], "p50"),
        ] {
            let m = &b[measure];
            assert_eq!(f(&m["value"]), f(&dist[p]), "{id} {measure}");
            let ci = &dist["ci95"][p];
            assert_eq!(m.get("lower_value"), ci.get("low").filter(|v| !v.is_null()));
            assert_eq!(
                m.get("upper_value"),
                ci.get("high").filter(|v| !v.is_null())
            );
        }

        // CSV: the raw passes give the same percentiles when computed from scratch.
        let measured: Vec<Vec<&str>> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|r| r[col("cell")] == id && r[col("warmup")] == "false")
            .collect();
        assert_eq!(measured.len(), 400, "{id}: every measured pass is a row");
        let latency: Vec<f64> = measured
            .iter()
            .map(|r| r[col("latency_ms")].parse().unwrap())
            .collect();
        for p in ["p50", "p95", "p99"] {
            let q: f64 = p[1..].parse().unwrap();
            let want = f(&lat[p]);
            let got = type7(&latency, q);
            assert!(
                (got - want).abs() <= 1e-9 * want,
                "{id} {p}: {got} vs {want}"
            );
        }

        // Markdown and HTML: the cell's row prints the summary's latency percentiles.
        let row = |doc: &str| -> String {
            doc.lines()
                .filter(|l| l.contains(id) && (l.starts_with('|') || l.contains("<td")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let three = [f(&lat["p50"]), f(&lat["p95"]), f(&lat["p99"])].map(number);
        let md_row = row(&markdown);
        for v in &three {
            assert!(
                md_row.contains(&format!("| {v} |")),
                "{id}: {v} in {md_row}"
            );
        }
        let anchor = format!("href=\"#{}\"", cell_anchor(device, id));
        let html_row = html
            .lines()
            .find(|l| l.starts_with("<tr>") && l.contains(&anchor))
            .unwrap_or_else(|| panic!("{id}: no summary row in report.html"));
        for v in &three {
            assert!(
                html_row.contains(&format!(">{v}<")),
                "{id}: {v} in {html_row}"
            );
        }
        // The HTML percentile table: p99 with both interval ends, as the summary has them.
        let ci = &lat["ci95"]["p99"];
        let interval = format!("[{}, {}]", number(f(&ci["low"])), number(f(&ci["high"])));
        assert!(html.contains(&interval), "{id}: {interval} in report.html");

        // Terminal: TTFT and decode p50/p95/p99 at one decimal.
        let tri = |d: &Value| {
            format!(
                "{:.1} / {:.1} / {:.1}",
                f(&d["p50"]),
                f(&d["p95"]),
                f(&d["p99"])
            )
        };
        let line = terminal.lines().find(|l| l.contains(id)).unwrap();
        assert!(line.contains(&tri(&cell["ttft_ms"])), "{line}");
        assert!(line.contains(&tri(&cell["decode_ms_per_token"])), "{line}");
    }

    // A format that holds verdicts says what it needs instead of writing nothing.
    let o = meltbench(&cache)
        .arg("export")
        .arg(&run)
        .args(["--format", "junit"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--baseline"),
        "{}",
        text(&o)
    );
    let o = meltbench(&cache)
        .arg("export")
        .arg(&run)
        .args(["--format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("csv"),
        "{}",
        text(&o)
    );
}
