//! Tests of the HTML report: escaping, anchors, sections and figures.

use super::cdf::ecdf_points;
use super::timeline::timeline_data;
use super::*;
use crate::compare::NotComparable;
use crate::dataset::{LoadedRunInfo, SessionData};

#[test]
fn summary_shows_ttft_and_decode_percentiles() {
    let mut d = dataset(
        "run-a",
        "rpi5",
        vec![cell("rpi5", "tiny-q4", "q4_0", 2, 50, 50.0, false, 1)],
    );
    for (i, p) in d.cells[0]
        .sessions
        .iter_mut()
        .flat_map(|s| s.passes.iter_mut())
        .enumerate()
    {
        p.decode_step_ms = vec![10.0 + i as f64, 20.0 + i as f64];
    }
    let ttft: Vec<f64> = d.cells[0].passes().map(|p| p.ttft_ms).collect();
    let steps: Vec<f64> = d.cells[0]
        .passes()
        .flat_map(|p| p.decode_step_ms.clone())
        .collect();
    let html = render(&input(&d, None, None, None));
    let table = &html[html.find("<table class=\"cells\">").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains("TTFT (ms)<br>p50 / p95 / p99"), "{table}");
    assert!(
        table.contains("Decode (ms/token)<br>p50 / p95 / p99"),
        "{table}"
    );
    for v in [ttft, steps] {
        let want = three(&Distribution::of(&v));
        assert!(
            table.contains(&format!(">{want}<")),
            "{want} not in {table}"
        );
    }
}

#[test]
fn an_interval_has_the_digits_of_its_figure() {
    // 100 passes from 650.123 to 749.123 ms: p50 is near 700, printed with one decimal,
    // and so are its interval's ends (not `[680.267, 735.584]`).
    let sorted: Vec<f64> = (0..100).map(|i| 650.123 + i as f64).collect();
    let d = Distribution::of(&sorted).unwrap();
    let ci = interval(Some(d.ci95.p50));
    let ends: Vec<&str> = ci.trim_matches(['[', ']']).split(", ").collect();
    assert_eq!(ends.len(), 2, "{ci}");
    for e in ends {
        assert_eq!(e.split('.').nth(1).map(str::len), Some(1), "{ci}");
    }
}
use crate::cell_key::CellKey;
use crate::history::{HistoryCell, HistoryEntry, TrendAlert};
use crate::runstore::{DeviceRecord, RunManifest};
use meltbench_protocol::agent::DeviceInfo;

/// A deterministic pseudo-random stream in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn key(device: &str, id: &str, precision: &str) -> CellKey {
    CellKey {
        id: id.into(),
        device: device.into(),
        model: "tinyllama-1.1b".into(),
        model_sha256: "1a2b3c4d5e6f".into(),
        precision: precision.into(),
        scenario: "chat-short".into(),
        threads: 4,
        state: "cool".into(),
        engine: "bundled".into(),
    }
}

fn pass(start_s: f64, latency_ms: f64, warmup: bool, sensors: bool) -> PassData {
    PassData {
        start_s,
        warmup,
        latency_ms,
        ttft_ms: latency_ms * 0.2,
        decode_step_ms: Vec::new(),
        prefill_tokens_per_s: Some(400.0 + latency_ms.fract() * 10.0),
        decode_tokens_per_s: Some(1000.0 / latency_ms * 32.0),
        rss_hwm_bytes: Some(700 << 20),
        temp_c: sensors.then_some(40.0 + start_s / 10.0),
        power_w: sensors.then_some(3.5 + latency_ms.fract()),
        energy_j_per_token: sensors.then_some(0.12),
        cpu_mhz: None,
        split: Default::default(),
    }
}

#[allow(clippy::too_many_arguments)]
fn cell(
    device: &str,
    id: &str,
    precision: &str,
    sessions: usize,
    passes: usize,
    base_ms: f64,
    sensors: bool,
    seed: u64,
) -> CellData {
    let mut rng = Lcg(seed);
    let mut t = 0.0;
    let sessions = (0..sessions)
        .map(|s| {
            let mut warm = Vec::new();
            for _ in 0..2 {
                warm.push(pass(t, base_ms * 1.5, true, sensors));
                t += base_ms * 1.5 / 1000.0;
            }
            let ps = (0..passes)
                .map(|_| {
                    let spike = if rng.next() < 0.01 { 3.0 } else { 1.0 };
                    let l = base_ms * (1.0 + 0.1 * rng.next()) * spike;
                    let p = pass(t, l, false, sensors);
                    t += l / 1000.0;
                    p
                })
                .collect();
            SessionData {
                run_id: "20261122T101500Z-ci-smoke".into(),
                index: s,
                passes: ps,
                warmups: warm,
                peak_rss_bytes: Some(712 << 20),
            }
        })
        .collect();
    CellData {
        key: key(device, id, precision),
        sessions,
        cold_start_ms: vec![base_ms * 8.0, base_ms * 8.5, base_ms * 7.9],
        cold_start_page_cache_dropped: Some(true),
        errors: Vec::new(),
        states_reached: Vec::new(),
        prompt_tokens: Some(64),
        gen_tokens: Some(32),
        model_file_bytes: Some(match precision {
            "f16" => 2200 << 20,
            "q8_0" => 1170 << 20,
            _ => 640 << 20,
        }),
        weight_bytes_per_token: None,
        kernels: Some("avx2".into()),
        reported_peak_rss_bytes: None,
        preludes: vec![],
        unmeasured: Default::default(),
        memory_of: None,
    }
}

fn run_info(run_id: &str, device: &str, cells: &[CellData]) -> LoadedRunInfo {
    LoadedRunInfo {
        dir: format!("runs/{run_id}").into(),
        manifest: RunManifest {
            run_id: run_id.into(),
            suite_name: "ci-smoke".into(),
            suite_path: "suites/ci-smoke.yaml".into(),
            suite_yaml: String::new(),
            meltbench_version: "0.1.0".into(),
            meltbench_commit: "f41b2fe".into(),
            suite_git_commit: None,
            started_utc: "2026-11-22T10:15:00Z".into(),
            finished_utc: None,
            command: format!("meltbench run suites/ci-smoke.yaml --device '{device}'"),
            devices: vec![DeviceRecord {
                name: device.into(),
                transport: "ssh".into(),
                info: Some(DeviceInfo {
                    hostname: format!("{device}-host"),
                    os: "linux".into(),
                    os_release: Some("6.1".into()),
                    kernel: "6.1.0".into(),
                    arch: "aarch64".into(),
                    abi: "aarch64".into(),
                    cpu_model: Some("Cortex-A76".into()),
                    cores: 4,
                    clusters: Vec::new(),
                    ram_bytes: Some(8 << 30),
                    root: false,
                    can_drop_caches: true,
                    telemetry: Vec::new(),
                }),
                error: None,
                transfer: None,
            }],
            cells: cells.iter().map(|c| c.key.clone()).collect(),
            devices_path: None,
            attempts: Vec::new(),
        },
        skipped_lines: Vec::new(),
    }
}

fn dataset(run_id: &str, device: &str, cells: Vec<CellData>) -> Dataset {
    Dataset {
        runs: vec![run_info(run_id, device, &cells)],
        cells,
    }
}

fn input<'a>(
    cand: &'a Dataset,
    base: Option<&'a Dataset>,
    gate: Option<&'a GateOutcome>,
    history: Option<&'a History>,
) -> ReportInput<'a> {
    ReportInput {
        title: "ci-smoke: cand vs base".into(),
        candidate: cand,
        baseline: base,
        gate,
        history,
        generated_utc: "2026-11-22T11:00:00Z".into(),
        command: "meltbench gate runs/base runs/cand --html report.html".into(),
    }
}

/// Every section present once, in order, each closed; tags balanced enough to trust.
/// With `MELTBENCH_HTML_DUMP=dir` set, also writes the page there for a look in a browser.
fn check_structure(html: &str) {
    if let Some(dir) = std::env::var_os("MELTBENCH_HTML_DUMP") {
        let name = std::thread::current()
            .name()
            .unwrap_or("page")
            .replace("::", "_");
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{name}.html")),
            html,
        )
        .unwrap();
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    let mut last = 0;
    for (id, _) in SECTIONS {
        let needle = format!("<section id=\"{id}\">");
        assert_eq!(html.matches(&needle).count(), 1, "section {id}");
        let at = html.find(&needle).unwrap();
        assert!(at > last, "section {id} out of order");
        last = at;
        assert_eq!(
            html.matches(&format!("id=\"{id}\"")).count(),
            1,
            "id {id} unique"
        );
    }
    for tag in [
        "section", "table", "article", "svg", "div", "pre", "ul", "details",
    ] {
        let open =
            html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
        let close = html.matches(&format!("</{tag}>")).count();
        assert_eq!(open, close, "<{tag}> balanced");
    }
    assert_eq!(html.matches("<section").count(), SECTIONS.len());
    assert_eq!(html.matches("<script>").count(), 1, "only the theme script");
    let outside_svg_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for external in [
        "http://",
        "https://",
        "<img",
        "<link",
        "<iframe",
        "<script src",
        "@import",
        "url(",
    ] {
        assert!(
            !outside_svg_ns.contains(external),
            "external reference {external}"
        );
    }
    // Ids unique over the whole page.
    let mut ids: Vec<&str> = html
        .match_indices(" id=\"")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate ids");
}

#[test]
fn no_baseline_render() {
    let d = dataset(
        "run-a",
        "rpi5",
        vec![
            cell("rpi5", "tiny-q4", "q4_0", 3, 40, 50.0, false, 1),
            cell("rpi5", "tiny-f16", "f16", 3, 40, 120.0, false, 2),
        ],
    );
    let html = render(&input(&d, None, None, None));
    check_structure(&html);
    assert!(html.contains("no baseline: measurements only"));
    assert!(html.contains("no history: pass --history DIR to meltbench gate"));
    assert!(html.contains("no temperature or power samples in this run (no readable sensor)"));
    let a = cell_anchor("rpi5", "tiny-q4");
    assert!(html.contains(&format!("id=\"{a}\"")));
    assert!(html.contains(&format!("href=\"#{a}\"")));
    assert!(html.contains(&format!("id=\"timeline-{a}\"")));
    // Axis labels reach the SVG.
    assert!(html.contains("pass latency (ms, log scale)"));
    assert!(html.contains("fraction of passes at or below"));
    assert!(html.contains("time since the cell&apos;s first pass (s)"));
    assert!(html.contains("fresh process to first token (ms)"));
    // Ladder: f16 first (largest file).
    let lad = &html[html.find("<section id=\"ladder\">").unwrap()..];
    assert!(lad.find(">f16<").unwrap() < lad.find(">q4_0<").unwrap());
    assert!(html.contains("dropped before every cold start"));
    assert!(html.contains(
        "<pre><code>meltbench run suites/ci-smoke.yaml --device &#39;rpi5&#39;</code></pre>"
    ));
}

#[test]
fn engines_of_one_cell_stand_side_by_side() {
    let mut cells = vec![
        cell("rpi5", "tiny-q4", "q4_0", 3, 40, 50.0, false, 1),
        cell("rpi5", "tiny-q4/llama", "q4_0", 3, 40, 40.0, false, 2),
        cell("rpi5", "tiny-f16", "f16", 3, 40, 120.0, false, 3),
    ];
    cells[1].key.engine = "llama".into();
    let html = render(&input(&dataset("run-a", "rpi5", cells), None, None, None));
    check_structure(&html);
    let section = &html[html.find("<section id=\"engines\">").unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    // One table: q4_0 ran two engines, f16 one.
    assert_eq!(
        section.matches("<table class=\"engines\">").count(),
        1,
        "{section}"
    );
    let bundled = section.find(">bundled</a></th>").expect("a bundled column");
    let llama = section.find(">llama</a></th>").expect("a llama column");
    assert!(bundled < llama);
    assert!(section.contains("<td>Time to first token p95 (ms)</td>"));
    // The faster engine's decode rate is the larger.
    let row = &section[section.find("<td>Decode tok/s (median)</td>").unwrap()..];
    let nums: Vec<f64> = row
        .split("<td class=\"num\">")
        .skip(1)
        .take(2)
        .map(|t| t[..t.find('<').unwrap()].parse().unwrap())
        .collect();
    assert!(nums[1] > nums[0], "{nums:?}");
    // The ladder keeps each engine's precisions apart.
    let lad = &html[html.find("<section id=\"ladder\">").unwrap()..];
    assert!(lad.contains("engine llama &middot; one precision only"));
    let one = render(&input(
        &dataset(
            "run-b",
            "rpi5",
            vec![cell("rpi5", "tiny-q4", "q4_0", 3, 40, 50.0, false, 1)],
        ),
        None,
        None,
        None,
    ));
    assert!(one.contains("Every cell ran one engine"));
}

#[test]
fn escapes_every_string() {
    let evil = "<script>alert(1)</script>";
    let mut c = cell(evil, "cell\"<b>&", "q4_0", 2, 30, 40.0, true, 3);
    c.errors
        .push("engine died: <img src=x onerror=alert(2)>".into());
    c.key.model = "<i>model</i>".into();
    let mut d = dataset("run-<x>", evil, vec![c]);
    d.runs[0]
        .skipped_lines
        .push("events/x.jsonl:3: <bad>".into());
    let h = History {
        entries: vec![HistoryEntry {
            release: "v1<script>".into(),
            recorded_utc: String::new(),
            run_ids: vec![],
            meltbench_commit: String::new(),
            cells: vec![HistoryCell {
                device: evil.into(),
                cell: "cell\"<b>&".into(),
                model_sha256: String::new(),
                precision: String::new(),
                scenario: String::new(),
                threads: 1,
                state: String::new(),
                sessions: [(Metric::LatencyP95, vec![1.0, 2.0])].into_iter().collect(),
            }],
        }],
        alerts: vec![],
    };
    let html = render(&input(&d, None, None, Some(&h)));
    check_structure(&html);
    assert!(!html.contains("<script>alert(1)"));
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>&"));
    assert!(!html.contains("<i>model"));
    assert!(!html.contains("v1<script>"));
    assert!(!html.contains("<bad>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // Only the theme script.
    assert_eq!(html.matches("<script").count(), 1);
    // Anchors keep only safe characters.
    let a = cell_anchor(evil, "cell\"<b>&");
    assert!(a
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
}

#[test]
fn plotters_escapes_svg_text() {
    let pts = [charts::HistoryPoint {
        release: "<b>&\"'".into(),
        stats: Some((1.0, 0.5, 1.5)),
        alert: true,
    }];
    let svg = charts::history_chart(&pts, "y <unit>", "aria <x>");
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("&lt;b&gt;&amp;&quot;&apos;"));
    assert!(svg.contains("y &lt;unit&gt;"));
    assert!(svg.contains("aria-label=\"aria &lt;x&gt;\""));
    assert!(!svg.contains("<b>"));
    assert!(svg.contains("trend alert"));
}

fn row(device: &str, cell: &str, metric: Metric, ratio: f64, v: Verdict) -> GateRow {
    GateRow {
        device: device.into(),
        cell: cell.into(),
        baseline_cell: cell.into(),
        metric,
        baseline: 100.0,
        candidate: 100.0 * ratio,
        ratio,
        ci_low: ratio - 0.03,
        ci_high: ratio + 0.04,
        budget: 0.10,
        verdict: v,
        baseline_sessions: 3,
        candidate_sessions: 3,
        baseline_n: 120,
        candidate_n: 120,
        sessions_needed: (v == Verdict::Inconclusive).then_some(9),
        note: (v == Verdict::Fail).then(|| "p95 over budget <check>".to_string()),
    }
}

#[test]
fn with_gate_render() {
    let cand = dataset(
        "run-c",
        "pixel8",
        vec![
            cell("pixel8", "chat-q4", "q4_0", 3, 40, 60.0, true, 4),
            cell("pixel8", "chat-q8", "q8_0", 3, 40, 80.0, true, 5),
            cell("pixel8", "new-cell", "q4_0", 2, 20, 70.0, true, 6),
        ],
    );
    let mut base = dataset(
        "run-b",
        "pixel8",
        vec![
            cell("pixel8", "chat-q4", "q4_0", 3, 40, 50.0, true, 7),
            cell("pixel8", "chat-q8", "q8_0", 3, 40, 80.0, true, 8),
        ],
    );
    base.runs[0].manifest.meltbench_commit = "0ldc0mm".into();
    let gate = GateOutcome {
        config: GateConfig::default(),
        rows: vec![
            row("pixel8", "chat-q4", Metric::LatencyP95, 1.2, Verdict::Fail),
            row(
                "pixel8",
                "chat-q8",
                Metric::LatencyP95,
                1.05,
                Verdict::Inconclusive,
            ),
            row(
                "pixel8",
                "chat-q8",
                Metric::DecodeTokensPerS,
                1.0,
                Verdict::Pass,
            ),
        ],
        not_comparable: vec![NotComparable {
            device: "pixel8".into(),
            cell: "new-cell".into(),
            side: "candidate".into(),
            reason: "no baseline cell with this key".into(),
        }],
        not_measured: vec!["pixel8 / chat-q4: energy_per_token".into()],
        limit_rows: vec![],
        exit_code: 1,
        headline: "1 regression over budget, 1 inconclusive, 1 unchanged".into(),
    };
    let html = render(&input(&cand, Some(&base), Some(&gate), None));
    check_structure(&html);
    let verdict = &html[html.find("<section id=\"verdict\">").unwrap()
        ..html.find("<section id=\"summary\">").unwrap()];
    assert!(verdict.contains("banner v-fail"));
    assert!(verdict.contains("FAIL"));
    assert!(verdict.contains("1 regression over budget, 1 inconclusive, 1 unchanged"));
    assert!(verdict.contains("Worst:"));
    assert!(verdict.contains("+20.0% [+17.0%, +24.0%]"));
    let summary = &html[html.find("<section id=\"summary\">").unwrap()
        ..html.find("<section id=\"cdf\">").unwrap()];
    assert!(summary.contains("p95 over budget &lt;check&gt;"));
    assert!(summary.contains("about 9 sessions per build would decide"));
    assert!(summary.contains("no baseline cell with this key"));
    assert!(
        summary.contains("&minus;10%"),
        "tokens/s budget is a decrease"
    );
    assert!(summary.contains("3&times;40 / 3&times;40"));
    assert!(summary.contains(&format!("href=\"#{}\"", cell_anchor("pixel8", "chat-q4"))));
    assert!(summary.contains("energy_per_token"));
    // Baseline overlaid where comparable, not for the new cell.
    assert_eq!(html.matches("baseline, dashed").count(), 2);
    assert!(html.contains("no comparable baseline cell"));
    // Sensors present: secondary axes, no missing-sensor note.
    assert!(html.contains("temperature (°C), line"));
    assert!(html.contains("power (W)"));
    assert!(!html.contains("no readable sensor"));
    // Environment compares both builds; a differing row is marked, not only coloured.
    assert!(html.contains("<th>Baseline</th><th>Candidate</th>"));
    assert!(html.contains(
        "<tr class=\"differs\"><td><span class=\"mark\" title=\"differs\">&#8800;</span>\
             </td><td>meltbench commit</td><td class=\"wrap\">0ldc0mm</td>"
    ));
    assert!(html.contains("This gate exited 1."));
    assert!(html.contains("B = 2000"));
}

#[test]
fn history_render() {
    let d = dataset(
        "run-a",
        "rpi5",
        vec![cell("rpi5", "tiny-q4", "q4_0", 2, 30, 50.0, false, 9)],
    );
    let entries: Vec<HistoryEntry> = (0..4)
        .map(|i| HistoryEntry {
            release: format!("v1.{i}.0"),
            recorded_utc: format!("2026-11-0{}T00:00:00Z", i + 1),
            run_ids: vec![format!("run-{i}")],
            meltbench_commit: "abc".into(),
            cells: vec![HistoryCell {
                device: "rpi5".into(),
                cell: "tiny-q4".into(),
                model_sha256: "1a2b".into(),
                precision: "q4_0".into(),
                scenario: "chat-short".into(),
                threads: 4,
                state: "cool".into(),
                sessions: [
                    (
                        Metric::LatencyP95,
                        vec![50.0 * 1.07f64.powi(i), 52.0 * 1.07f64.powi(i)],
                    ),
                    (Metric::TtftP95, vec![10.0, 11.0]),
                ]
                .into_iter()
                .collect(),
            }],
        })
        .collect();
    let h = History {
        alerts: vec![TrendAlert {
            device: "rpi5".into(),
            cell: "tiny-q4".into(),
            metric: Metric::LatencyP95,
            releases: entries.iter().map(|e| e.release.clone()).collect(),
            step_ratios: vec![1.07, 1.07, 1.07],
            message: "p95 latency worse by more than 5% in 3 consecutive releases".into(),
        }],
        entries,
    };
    let html = render(&input(&d, None, None, Some(&h)));
    check_structure(&html);
    let hist = &html[html.find("<section id=\"history\">").unwrap()
        ..html.find("<section id=\"environment\">").unwrap()];
    assert!(!hist.contains("no history"));
    assert_eq!(hist.matches("<svg").count(), 1, "one chart: latency_p95");
    for r in ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"] {
        assert!(hist.contains(&format!(">{r}<")), "release {r} labelled");
    }
    assert!(hist.contains("trend alert"));
    assert!(hist.contains("p95 latency worse by more than 5% in 3 consecutive releases"));
    assert!(hist.contains("+7.0%, +7.0%, +7.0%"));
    assert!(hist.contains("v1.0.0 &rarr; v1.1.0"));
}

#[test]
fn reductions_are_bounded() {
    let c = cell("d", "c", "q4_0", 7, 20_000, 10.0, true, 12);
    let s = Stats::of(&c);
    let pts = ecdf_points(&s.sorted_latency, ECDF_POINTS);
    assert!(pts.len() <= ECDF_POINTS + 1);
    assert_eq!(pts.last().unwrap().1, 1.0);
    assert_eq!(pts.last().unwrap().0, *s.sorted_latency.last().unwrap());
    let marks = |t: &Timeline| -> usize {
        t.sessions
            .iter()
            .chain(t.slowest.iter())
            .map(Vec::len)
            .sum()
    };
    let (t, k) = timeline_data(&c, TIMELINE_POINTS);
    assert!(marks(&t) <= TIMELINE_POINTS, "{}", marks(&t));
    assert!(k > 1);
    // The slowest pass survives.
    let max = t.slowest.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
    assert_eq!(max, *s.sorted_latency.last().unwrap());
    // Medians sit in the body, below the spikes.
    let typical = t.sessions.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
    assert!(typical < 11.5, "{typical}");
    // Few passes: every pass drawn as itself.
    let small = cell("d", "c", "q4_0", 3, 100, 10.0, false, 14);
    let (t, k) = timeline_data(&small, TIMELINE_POINTS);
    assert_eq!((k, marks(&t)), (1, 300));
    // Many short sessions: buckets cross sessions, still bounded.
    let many = cell("d", "c", "q4_0", 3000, 3, 10.0, false, 13);
    let (t, _) = timeline_data(&many, TIMELINE_POINTS);
    assert!(marks(&t) <= TIMELINE_POINTS, "{}", marks(&t));
}

fn big(cells: usize, passes_per_cell: usize) -> (Dataset, Dataset) {
    let mk = |seed: u64, base: f64| {
        let cs: Vec<CellData> = (0..cells)
            .map(|i| {
                cell(
                    "pixel8",
                    &format!("cell-{i}"),
                    "q4_0",
                    10,
                    passes_per_cell / 10,
                    base + i as f64,
                    true,
                    seed + i as u64,
                )
            })
            .collect();
        dataset("run", "pixel8", cs)
    };
    (mk(100, 40.0), mk(200, 41.0))
}

#[test]
fn large_dataset_renders() {
    let (cand, base) = big(2, 100_000);
    assert_eq!(cand.total_passes(), 200_000);
    let t = std::time::Instant::now();
    let html = render(&input(&cand, Some(&base), None, None));
    let took = t.elapsed();
    check_structure(&html);
    eprintln!(
        "200,000 + 200,000 baseline passes: {took:?}, {} KiB",
        html.len() / 1024
    );
    assert!(
        html.len() < 2 << 20,
        "page stays small: {} bytes",
        html.len()
    );
}

/// `cargo test --release -p meltbench-reports --lib export::html -- --ignored --nocapture`
#[test]
#[ignore]
fn million_passes_timing() {
    let (cand, base) = big(10, 100_000);
    assert_eq!(cand.total_passes(), 1_000_000);
    let t = std::time::Instant::now();
    let html = render(&input(&cand, Some(&base), None, None));
    let took = t.elapsed();
    check_structure(&html);
    eprintln!(
        "1,000,000 candidate + 1,000,000 baseline passes: rendered in {took:?}, {} KiB",
        html.len() / 1024
    );
}
