//! JUnit XML of a gate outcome, for CI systems that show test reports (GitLab, Jenkins,
//! Azure Pipelines, GitHub test-reporter actions).
//!
//! One `<testsuite>` per device; each gated metric of each cell pair is a `<testcase>` with
//! `classname="<device>.<cell>"` and `name="<metric>"` (e.g. `latency_p95`), so a test's identity
//! stays the same from one gate run to the next. FAIL is a `<failure>`, INCONCLUSIVE an
//! `<error>` (non-pass, like its exit code 2), WARN and the other verdicts pass (WARN, PASS with
//! a note and IMPROVED say why in `<system-out>`), and a cell without a comparable partner is a
//! `<skipped>` test. Gated metrics that neither build measured are skipped tests of a
//! `not measured` suite. When the exit code is not already explained by a test (exit 2
//! because nothing was comparable), a `gate` suite holds one failing test with the headline,
//! so the CI's test view never shows green for a gate that did not pass.

use super::markdown::{fmt_budget, fmt_change, fmt_value, row_note};
use crate::compare::{GateOutcome, GateRow, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Pass,
    Failure,
    Error,
    Skipped,
}

struct Case {
    classname: String,
    name: String,
    kind: Kind,
    message: String,
    body: String,
    system_out: Option<String>,
}

#[derive(Default)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

impl Counts {
    fn add(&mut self, kind: Kind) {
        self.tests += 1;
        match kind {
            Kind::Pass => {}
            Kind::Failure => self.failures += 1,
            Kind::Error => self.errors += 1,
            Kind::Skipped => self.skipped += 1,
        }
    }

    fn attrs(&self) -> String {
        format!(
            "tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"0\"",
            self.tests, self.failures, self.errors, self.skipped
        )
    }
}

/// The JUnit XML document; `name` names the root `<testsuites>` (e.g. the suite and runs).
pub fn render(outcome: &GateOutcome, name: &str) -> String {
    let confidence = outcome.config.confidence;
    // Devices in name order; within a device, the outcome's order (most severe first).
    let mut suites: BTreeMap<String, Vec<Case>> = BTreeMap::new();
    for r in &outcome.rows {
        suites
            .entry(r.device.clone())
            .or_default()
            .push(row_case(r, confidence));
    }
    for r in &outcome.limit_rows {
        suites.entry(r.device.clone()).or_default().push(Case {
            classname: format!("{}.{}", r.device, r.cell),
            name: r.limit.key().to_string(),
            kind: if r.over { Kind::Failure } else { Kind::Pass },
            message: r.message.clone(),
            body: format!("{} / {}: {}", r.device, r.cell, r.message),
            system_out: None,
        });
    }
    for n in &outcome.not_comparable {
        let message = format!("not comparable: {}", n.reason);
        suites.entry(n.device.clone()).or_default().push(Case {
            classname: format!("{}.{}", n.device, n.cell),
            name: format!("comparable ({})", n.side),
            kind: Kind::Skipped,
            body: format!(
                "{} / {} ({} side) has no comparable partner: {}",
                n.device, n.cell, n.side, n.reason
            ),
            message,
            system_out: None,
        });
    }
    let mut extra: Vec<(String, Vec<Case>)> = Vec::new();
    if !outcome.not_measured.is_empty() {
        let cases = outcome
            .not_measured
            .iter()
            .map(|m| Case {
                classname: "not_measured".into(),
                name: m.clone(),
                kind: Kind::Skipped,
                message: format!("not measured by either build: {m}"),
                body: String::new(),
                system_out: None,
            })
            .collect();
        extra.push(("not measured".into(), cases));
    }
    let has = |v: &[Verdict]| outcome.rows.iter().any(|r| v.contains(&r.verdict));
    let over = outcome.limit_rows.iter().any(|r| r.over);
    let unexplained = match outcome.exit_code {
        0 => None,
        1 if has(&[Verdict::Fail]) || over => None,
        1 => Some(Kind::Failure),
        _ if has(&[Verdict::Fail, Verdict::Inconclusive]) => None,
        _ => Some(Kind::Error),
    };
    if let Some(kind) = unexplained {
        extra.push((
            "gate".into(),
            vec![Case {
                classname: "meltbench.gate".into(),
                name: "verdict".into(),
                kind,
                message: format!("exit code {}: {}", outcome.exit_code, outcome.headline),
                body: outcome.headline.clone(),
                system_out: None,
            }],
        ));
    }

    let mut total = Counts::default();
    let mut body = String::new();
    for (suite, cases) in suites.into_iter().chain(extra) {
        let mut c = Counts::default();
        let mut inner = String::new();
        for case in &cases {
            c.add(case.kind);
            write_case(&mut inner, case);
        }
        total.tests += c.tests;
        total.failures += c.failures;
        total.errors += c.errors;
        total.skipped += c.skipped;
        let _ = writeln!(
            body,
            "  <testsuite name=\"{}\" {}>",
            escape(&suite, true),
            c.attrs()
        );
        body.push_str(&inner);
        body.push_str("  </testsuite>\n");
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" {}>",
        escape(name, true),
        total.attrs()
    );
    out.push_str(&body);
    out.push_str("</testsuites>\n");
    out
}

fn row_case(r: &GateRow, confidence: f64) -> Case {
    let m = r.metric;
    let change = fmt_change(r.ratio, r.ci_low, r.ci_high);
    let budget = fmt_budget(m, r.budget);
    let note = row_note(r);
    let mut details = format!(
        "{} / {}: {} ({})\n\
         baseline:  {} ({} sessions, n = {}){}\n\
         candidate: {} ({} sessions, n = {})\n\
         change:    {} ({:.0}% CI), budget {}\n\
         verdict:   {}",
        r.device,
        r.cell,
        m.label(),
        m.name(),
        fmt_value(r.baseline, m.unit()),
        r.baseline_sessions,
        r.baseline_n,
        if r.baseline_cell != r.cell {
            format!(", cell {}", r.baseline_cell)
        } else {
            String::new()
        },
        fmt_value(r.candidate, m.unit()),
        r.candidate_sessions,
        r.candidate_n,
        change,
        confidence * 100.0,
        budget,
        r.verdict.name(),
    );
    if let Some(n) = &note {
        details.push_str("\nnote:      ");
        details.push_str(n);
    }
    let (kind, message, system_out) = match r.verdict {
        Verdict::Fail => (
            Kind::Failure,
            format!("{} {change} is beyond the budget {budget}", m.label()),
            None,
        ),
        Verdict::Inconclusive => (
            Kind::Error,
            format!(
                "{} {change} straddles the budget {budget}: inconclusive{}",
                m.label(),
                r.sessions_needed
                    .map(|s| format!(", about {s} sessions per build would decide"))
                    .unwrap_or_default()
            ),
            None,
        ),
        Verdict::Warn | Verdict::PassWithNote | Verdict::Improved => {
            (Kind::Pass, String::new(), Some(details.clone()))
        }
        Verdict::Pass => (Kind::Pass, String::new(), note.map(|_| details.clone())),
    };
    Case {
        classname: format!("{}.{}", r.device, r.cell),
        name: m.name().to_string(),
        kind,
        message,
        body: details,
        system_out,
    }
}

fn write_case(out: &mut String, c: &Case) {
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
        escape(&c.classname, true),
        escape(&c.name, true)
    );
    let mut inner = String::new();
    match c.kind {
        Kind::Pass => {}
        Kind::Failure | Kind::Error => {
            let tag = if c.kind == Kind::Failure {
                "failure"
            } else {
                "error"
            };
            let ty = if c.kind == Kind::Failure {
                "regression"
            } else {
                "inconclusive"
            };
            let _ = writeln!(
                inner,
                "      <{tag} message=\"{}\" type=\"{ty}\">{}</{tag}>",
                escape(&c.message, true),
                escape(&c.body, false)
            );
        }
        Kind::Skipped => {
            let _ = writeln!(
                inner,
                "      <skipped message=\"{}\"/>",
                escape(&c.message, true)
            );
        }
    }
    if let Some(s) = &c.system_out {
        let _ = writeln!(inner, "      <system-out>{}</system-out>", escape(s, false));
    }
    if inner.is_empty() {
        out.push_str("/>\n");
    } else {
        out.push_str(">\n");
        out.push_str(&inner);
        out.push_str("    </testcase>\n");
    }
}

/// Whether `c` may not appear in an XML 1.0 document at all (not even as a reference).
fn illegal_in_xml(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}'
    )
}

/// Escapes `s` for XML 1.0 text (`attr = false`) or a double- or single-quoted attribute value.
/// Characters XML 1.0 forbids become U+FFFD; in attributes, line breaks and tabs are written as
/// references so that attribute-value normalisation does not turn them into spaces, and a
/// carriage return is a reference everywhere so that it is not read back as a line feed.
pub fn escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            c if illegal_in_xml(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML of the gate's verdicts.
pub struct Junit;

impl super::Exporter for Junit {
    fn name(&self) -> &'static str {
        "junit"
    }

    fn about(&self) -> &'static str {
        "the gate's verdicts as JUnit XML, one test case per gated metric (needs a gate)"
    }

    fn extension(&self) -> &'static str {
        "xml"
    }

    fn render(&self, input: &crate::report::ReportInput) -> Result<String, super::ExportError> {
        let g = input.gate.ok_or(super::ExportError::NeedsGate("junit"))?;
        Ok(render(g, &input.title))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{GateConfig, NotComparable};
    use crate::metric::Metric;

    /// A parsed element: attributes and text with references resolved.
    #[derive(Debug)]
    struct El {
        name: String,
        attrs: Vec<(String, String)>,
        children: Vec<El>,
        text: String,
    }

    impl El {
        fn attr(&self, k: &str) -> &str {
            self.attrs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("<{}> has no {k}", self.name))
        }

        fn all<'a>(&'a self, name: &str, out: &mut Vec<&'a El>) {
            for c in &self.children {
                if c.name == name {
                    out.push(c);
                }
                c.all(name, out);
            }
        }

        fn find(&self, name: &str) -> Vec<&El> {
            let mut v = Vec::new();
            self.all(name, &mut v);
            v
        }

        fn child(&self, name: &str) -> Option<&El> {
            self.children.iter().find(|c| c.name == name)
        }
    }

    /// Resolves the five predefined entities and character references; errors on a bare `&`
    /// or an unknown entity, and on `<` (never allowed raw in text or attributes).
    fn unescape(s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['&', '<']) {
            out.push_str(&rest[..i]);
            if rest.as_bytes()[i] == b'<' {
                return Err(format!("raw '<' in {s:?}"));
            }
            let end = rest[i..]
                .find(';')
                .ok_or_else(|| format!("bare '&' in {s:?}"))?;
            let ent = &rest[i + 1..i + end];
            let c = match ent {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let code = if let Some(h) = ent.strip_prefix("#x") {
                        u32::from_str_radix(h, 16)
                    } else if let Some(d) = ent.strip_prefix('#') {
                        d.parse()
                    } else {
                        return Err(format!("unknown entity &{ent}; in {s:?}"));
                    };
                    let c = code
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("bad reference &{ent};"))?;
                    if illegal_in_xml(c) {
                        return Err(format!("reference to an illegal character &{ent};"));
                    }
                    c
                }
            };
            out.push(c);
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn is_name(s: &str) -> bool {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
            && !s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
    }

    /// A small well-formedness check: one root element, balanced tags, quoted and unique
    /// attributes, no raw `<` or bare `&`, only characters XML 1.0 allows.
    fn parse(doc: &str) -> Result<El, String> {
        if let Some(c) = doc.chars().find(|&c| illegal_in_xml(c)) {
            return Err(format!("illegal character {c:?}"));
        }
        let mut s = doc;
        if s.starts_with("<?xml") {
            let e = s.find("?>").ok_or("unterminated declaration")?;
            s = &s[e + 2..];
        }
        let mut stack: Vec<El> = Vec::new();
        let mut root: Option<El> = None;
        loop {
            let lt = s.find('<');
            let text = &s[..lt.unwrap_or(s.len())];
            let text = unescape(text)?;
            match stack.last_mut() {
                Some(top) => top.text.push_str(&text),
                None if text.trim().is_empty() => {}
                None => return Err(format!("text outside the root: {text:?}")),
            }
            let Some(lt) = lt else { break };
            let gt = s[lt..].find('>').ok_or("unterminated tag")? + lt;
            let tag = &s[lt + 1..gt];
            s = &s[gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let el = stack.pop().ok_or("close without open")?;
                if el.name != name.trim() {
                    return Err(format!("</{name}> closes <{}>", el.name));
                }
                match stack.last_mut() {
                    Some(p) => p.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err("two roots".into()),
                }
                continue;
            }
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(t) => (t, true),
                None => (tag, false),
            };
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            if !is_name(name) {
                return Err(format!("bad element name {name:?}"));
            }
            let mut el = El {
                name: name.into(),
                attrs: vec![],
                children: vec![],
                text: String::new(),
            };
            let mut a = tag[name_end..].trim_start();
            while !a.is_empty() {
                let eq = a
                    .find('=')
                    .ok_or(format!("attribute without value in {tag:?}"))?;
                let an = a[..eq].trim();
                if !is_name(an) || el.attrs.iter().any(|(n, _)| n == an) {
                    return Err(format!("bad or repeated attribute {an:?}"));
                }
                let v = a[eq + 1..].trim_start();
                let q = v.chars().next().ok_or("missing value")?;
                if q != '"' && q != '\'' {
                    return Err(format!("unquoted attribute {an}"));
                }
                let close = v[1..].find(q).ok_or("unterminated value")? + 1;
                el.attrs.push((an.into(), unescape(&v[1..close])?));
                let after = &v[close + 1..];
                if !after.is_empty() && !after.starts_with(char::is_whitespace) {
                    return Err(format!("no space after attribute {an}"));
                }
                a = after.trim_start();
            }
            if empty {
                match stack.last_mut() {
                    Some(p) => p.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err("two roots".into()),
                }
            } else {
                if stack.is_empty() && root.is_some() {
                    return Err("two roots".into());
                }
                stack.push(el);
            }
        }
        if let Some(open) = stack.last() {
            return Err(format!("<{}> not closed", open.name));
        }
        root.ok_or_else(|| "no root element".into())
    }

    fn row(device: &str, cell: &str, metric: Metric, verdict: Verdict) -> GateRow {
        GateRow {
            device: device.into(),
            cell: cell.into(),
            baseline_cell: cell.into(),
            metric,
            baseline: 100.0,
            candidate: 114.2,
            ratio: 1.142,
            ci_low: 1.11,
            ci_high: 1.179,
            budget: 0.10,
            verdict,
            baseline_sessions: 5,
            candidate_sessions: 5,
            baseline_n: 500,
            candidate_n: 500,
            sessions_needed: None,
            note: None,
        }
    }

    fn outcome() -> GateOutcome {
        let evil = "<script>alert(1)</script>";
        let mut warn = row("pixel8", "chat", Metric::LatencyP99, Verdict::Warn);
        warn.note = Some("p99 with \"500\" passes < 1000: warning only".into());
        let mut inc = row(evil, "chat", Metric::TtftP95, Verdict::Inconclusive);
        inc.sessions_needed = Some(12);
        GateOutcome {
            config: GateConfig::default(),
            rows: vec![
                row("pixel8", "chat", Metric::LatencyP95, Verdict::Fail),
                warn,
                inc,
                row("pixel8", "chat", Metric::PeakRss, Verdict::Pass),
                row(
                    "rpi5",
                    "long'ctx",
                    Metric::DecodeTokensPerS,
                    Verdict::Improved,
                ),
            ],
            not_comparable: vec![NotComparable {
                device: "rpi5".into(),
                cell: "q8".into(),
                side: "candidate".into(),
                reason: "model SHA-256 differs (baseline 1a2b, candidate 3c4d) & \"q8\"\u{0}"
                    .into(),
            }],
            not_measured: vec!["pixel8/chat: energy_per_token".into()],
            limit_rows: vec![],
            exit_code: 1,
            headline: "1 regression over budget".into(),
        }
    }

    fn counts(e: &El) -> [usize; 4] {
        ["tests", "failures", "errors", "skipped"].map(|k| e.attr(k).parse().unwrap())
    }

    #[test]
    fn well_formed_with_right_counts() {
        let xml = render(&outcome(), "ci-smoke: a vs b");
        let root = parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        assert_eq!(root.name, "testsuites");
        assert_eq!(root.attr("name"), "ci-smoke: a vs b");
        // 5 rows + 1 not comparable + 1 not measured; exit 1 is explained by the FAIL row.
        assert_eq!(counts(&root), [7, 1, 1, 2]);
        let suites = root.find("testsuite");
        let names: Vec<&str> = suites.iter().map(|s| s.attr("name")).collect();
        assert_eq!(
            names,
            [
                "<script>alert(1)</script>",
                "pixel8",
                "rpi5",
                "not measured"
            ]
        );
        let by = |n: &str| *suites.iter().find(|s| s.attr("name") == n).unwrap();
        assert_eq!(counts(by("pixel8")), [3, 1, 0, 0]);
        assert_eq!(counts(by("<script>alert(1)</script>")), [1, 0, 1, 0]);
        assert_eq!(counts(by("rpi5")), [2, 0, 0, 1]);
        assert_eq!(counts(by("not measured")), [1, 0, 0, 1]);
        // Each suite's counts are what its test cases say.
        for s in &suites {
            let cases = s.find("testcase");
            let with = |t: &str| cases.iter().filter(|c| c.child(t).is_some()).count();
            assert_eq!(
                counts(s),
                [cases.len(), with("failure"), with("error"), with("skipped")]
            );
        }

        let p = by("pixel8").find("testcase");
        assert_eq!(p[0].attr("classname"), "pixel8.chat");
        assert_eq!(p[0].attr("name"), "latency_p95");
        let f = p[0].child("failure").unwrap();
        assert!(
            f.attr("message").contains("+14.2% [+11.0%, +17.9%]"),
            "{f:?}"
        );
        assert!(f.text.contains("baseline:  100.0 ms"), "{}", f.text);
        // WARN passes and says why.
        assert_eq!(p[1].attr("name"), "latency_p99");
        assert!(p[1].child("failure").is_none() && p[1].child("error").is_none());
        let out = &p[1].child("system-out").unwrap().text;
        assert!(out.contains("p99 with \"500\" passes < 1000"), "{out}");
        // A plain pass is an empty element.
        assert!(p[2].children.is_empty());

        let e = by("<script>alert(1)</script>").find("testcase");
        assert_eq!(e[0].attr("classname"), "<script>alert(1)</script>.chat");
        assert!(e[0]
            .child("error")
            .unwrap()
            .attr("message")
            .contains("12 sessions"));

        let r = by("rpi5").find("testcase");
        assert_eq!(r[0].attr("classname"), "rpi5.long'ctx");
        assert!(r[0].child("system-out").is_some());
        let sk = r[1].child("skipped").unwrap().attr("message");
        assert!(
            sk.starts_with("not comparable: model SHA-256 differs"),
            "{sk}"
        );
        assert!(sk.ends_with("& \"q8\"\u{FFFD}"), "{sk}");
    }

    #[test]
    fn escapes_markup_quotes_and_illegal_characters() {
        let xml = render(&outcome(), "a \"quoted\" <name>\n");
        assert!(!xml.contains("<script>"));
        assert!(xml.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(xml.contains("name=\"a &quot;quoted&quot; &lt;name&gt;&#10;\""));
        assert!(!xml.contains('\u{0}'));
        assert_eq!(
            escape("a&b<c>d\"e'f\u{1}\u{FFFF}\t\r\n", true),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f\u{FFFD}\u{FFFD}&#9;&#13;&#10;"
        );
        assert_eq!(escape("x\ty\nz", false), "x\ty\nz");
        assert_eq!(unescape(&escape("]]> & <", false)).unwrap(), "]]> & <");
        // The checker itself rejects what it should.
        assert!(parse("<a><b></a></b>").is_err());
        assert!(parse("<a x=\"1 & 2\"/>").is_err());
        assert!(parse("<a>1 < 2</a>").is_err());
        assert!(parse("<a/><b/>").is_err());
        assert!(parse("<a x=1/>").is_err());
    }

    #[test]
    fn unexplained_exit_code_is_a_non_pass_test() {
        let o = GateOutcome {
            config: GateConfig::default(),
            rows: vec![],
            not_comparable: vec![NotComparable {
                device: "pixel8".into(),
                cell: "chat".into(),
                side: "baseline".into(),
                reason: "no candidate cell".into(),
            }],
            not_measured: vec![],
            limit_rows: vec![],
            exit_code: 2,
            headline: "nothing comparable".into(),
        };
        let root = parse(&render(&o, "x")).unwrap();
        assert_eq!(counts(&root), [2, 0, 1, 1]);
        let gate = root.find("testsuite").into_iter().last().unwrap();
        assert_eq!(gate.attr("name"), "gate");
        let err = gate.find("error");
        assert_eq!(err[0].attr("message"), "exit code 2: nothing comparable");

        // A passing gate adds nothing.
        let pass = GateOutcome {
            rows: vec![row("d", "c", Metric::LatencyP95, Verdict::Pass)],
            not_comparable: vec![],
            exit_code: 0,
            ..o
        };
        let root = parse(&render(&pass, "x")).unwrap();
        assert_eq!(counts(&root), [1, 0, 0, 0]);
    }

    #[test]
    fn a_model_over_its_size_budget_is_a_failed_test_explaining_exit_1() {
        let limit = |over: bool, measured: u64| crate::budget::LimitRow {
            device: "pi5".into(),
            cell: "smol/q4_0".into(),
            limit: crate::budget::Limit::Size,
            budget_bytes: 100_000_000,
            measured_bytes: measured,
            over,
            message: format!("model file = {measured} bytes"),
        };
        let o = GateOutcome {
            config: GateConfig::default(),
            rows: vec![row("pi5", "smol/q4_0", Metric::LatencyP95, Verdict::Pass)],
            not_comparable: vec![],
            not_measured: vec![],
            limit_rows: vec![limit(true, 253_113_024), limit(false, 98_362_432)],
            exit_code: 1,
            headline: "1 over a size or memory budget; 1 unchanged".into(),
        };
        let root = parse(&render(&o, "x")).unwrap();
        assert_eq!(
            counts(&root),
            [3, 1, 0, 0],
            "no unexplained-exit test added"
        );
        let failure = root.find("failure");
        assert_eq!(failure[0].attr("message"), "model file = 253113024 bytes");
    }
}
