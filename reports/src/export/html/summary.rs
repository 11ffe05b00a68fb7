//! The `summary` section: the gate's table of verdicts, skipped input lines and the per-cell table.

use super::*;

pub(super) fn summary(out: &mut String, ctx: &Ctx) {
    let input = ctx.input;
    if let Some(g) = input.gate {
        gate_table(out, ctx, g);
    } else {
        out.push_str(
            "<p class=\"note\">No gate ran: the table lists the candidate's measurements.</p>\n",
        );
    }
    skipped_lines(out, input);
    if input.gate.is_some() {
        out.push_str("<h3>Measurements per cell (candidate)</h3>\n");
    }
    cell_table(out, ctx);
}

pub(super) fn gate_table(out: &mut String, ctx: &Ctx, g: &GateOutcome) {
    if g.rows.is_empty() {
        out.push_str("<p class=\"warn\">No gated metric could be compared.</p>\n");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table class=\"gate\">\n<thead><tr><th>Device</th>\
             <th>Cell</th><th>Metric</th><th class=\"num\">Baseline</th>\
             <th class=\"num\">Candidate</th><th class=\"num\">&Delta; [CI]</th>\
             <th class=\"num\">Budget</th><th>Verdict</th>\
             <th class=\"num\" title=\"sessions &times; values per session\">n baseline / \
             candidate</th><th>Note</th></tr></thead>\n<tbody>\n",
        );
        for r in &g.rows {
            let cell = if r.baseline_cell != r.cell {
                format!(
                    "{} <span class=\"note\">(baseline {})</span>",
                    ctx.cell_link(&r.device, &r.cell),
                    esc(&r.baseline_cell)
                )
            } else {
                ctx.cell_link(&r.device, &r.cell)
            };
            let mut note = r.note.as_deref().map(esc).unwrap_or_default();
            if let Some(n) = r.sessions_needed {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                w!(note, "about {n} sessions per build would decide");
            }
            w!(
                out,
                "<tr class=\"row-{}\"><td>{}</td><td class=\"id\">{cell}</td><td>{} ({})</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td><td class=\"num\">{} / {}</td>\
                 <td class=\"wrap\">{note}</td></tr>\n",
                verdict_class(r.verdict),
                esc(&r.device),
                esc(r.metric.label()),
                esc(r.metric.unit()),
                num(r.baseline),
                num(r.candidate),
                row_delta(r),
                budget_text(r.metric, r.budget),
                chip(r.verdict),
                sessions_by_values(r.baseline_sessions, r.baseline_n),
                sessions_by_values(r.candidate_sessions, r.candidate_n),
            );
        }
        out.push_str("</tbody></table></div>\n");
    }
    out.push_str("<h3>Not comparable</h3>\n");
    if g.not_comparable.is_empty() {
        out.push_str("<p class=\"note\">Every cell had a comparable partner.</p>\n");
    } else {
        out.push_str(
            "<p>These cells are never counted as regressions: their keys differ or one build \
             lacks them.</p>\n<div class=\"scroll\"><table class=\"not-comparable\">\n\
             <thead><tr><th>Device</th><th>Cell</th><th>Only in</th><th>Reason</th></tr>\
             </thead>\n<tbody>\n",
        );
        for n in &g.not_comparable {
            let cell = if n.side == "candidate" {
                ctx.cell_link(&n.device, &n.cell)
            } else {
                esc(&n.cell)
            };
            w!(
                out,
                "<tr><td>&#8800; {}</td><td>{cell}</td><td>{}</td><td class=\"wrap\">{}</td>\
                 </tr>\n",
                esc(&n.device),
                esc(&n.side),
                esc(&n.reason)
            );
        }
        out.push_str("</tbody></table></div>\n");
    }
    if !g.not_measured.is_empty() {
        out.push_str("<h4>Gated metrics neither build measured</h4>\n<ul>\n");
        for m in &g.not_measured {
            w!(out, "<li>{}</li>\n", esc(m));
        }
        out.push_str("</ul>\n");
    }
}

pub(super) fn skipped_lines(out: &mut String, input: &ReportInput) {
    let sides = [
        ("candidate", Some(input.candidate)),
        ("baseline", input.baseline),
    ];
    for (side, d) in sides {
        for r in d.map(|d| d.runs.as_slice()).unwrap_or_default() {
            if r.skipped_lines.is_empty() {
                continue;
            }
            w!(
                out,
                "<p class=\"warn\">&#9888; {side} run {}: {} unreadable event lines were \
                 skipped (first: {}).</p>\n",
                esc(&r.manifest.run_id),
                r.skipped_lines.len(),
                esc(&r.skipped_lines[0])
            );
        }
    }
}

pub(super) fn cell_table(out: &mut String, ctx: &Ctx) {
    if ctx.cells().is_empty() {
        out.push_str("<p class=\"warn\">The candidate has no cells.</p>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"cells\">\n<thead><tr><th rowspan=\"2\">Device</th>\
         <th rowspan=\"2\">Cell</th><th class=\"num\" rowspan=\"2\">Passes</th>\
         <th class=\"num\" rowspan=\"2\">Sessions</th><th colspan=\"3\">Pass latency (ms)</th>\
         <th class=\"num\" rowspan=\"2\">TTFT (ms)<br>p50 / p95 / p99</th>\
         <th class=\"num\" rowspan=\"2\">Decode (ms/token)<br>p50 / p95 / p99</th>\
         <th colspan=\"2\">Median tok/s</th>\
         <th class=\"num\" rowspan=\"2\">Peak RSS (MiB)</th>\
         <th class=\"num\" rowspan=\"2\">Cold start median (ms)</th><th rowspan=\"2\">Notes</th>\
         </tr>\n<tr><th class=\"num\">p50</th><th class=\"num\">p95</th><th class=\"num\">p99</th>\
         <th class=\"num\">decode</th><th class=\"num\">prefill</th></tr></thead>\n<tbody>\n",
    );
    for (i, c) in ctx.cells().iter().enumerate() {
        let s = &ctx.cand[i];
        let f = &s.figures;
        let notes = cell_notes(c, s);
        w!(
            out,
            "<tr><td>{}</td><td class=\"id-wrap\"><a href=\"#{}\">{}</a></td>\
             <td class=\"num\" title=\"{} warm-up passes not counted\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num tri\">{}</td><td class=\"num tri\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"notes\">{notes}</td></tr>\n",
            esc(&c.key.device),
            ctx.anchors[i],
            breakable_id(&c.key.id),
            f.warmup_passes,
            f.passes,
            f.sessions,
            opt(s.latency(50.0).map(|l| l.0)),
            opt(s.latency(95.0).map(|l| l.0)),
            opt(s.latency(99.0).map(|l| l.0)),
            three(&f.ttft_ms),
            three(&f.decode_ms_per_token),
            opt(median(&f.decode_tokens_per_s)),
            opt(median(&f.prefill_tokens_per_s)),
            opt(f.peak_rss_bytes.map(mib)),
            opt(median(&f.cold_start_ms)),
        );
    }
    out.push_str("</tbody></table></div>\n");
}

pub(super) fn cell_notes(c: &CellData, s: &Stats) -> String {
    let mut notes: Vec<String> = c
        .errors
        .iter()
        .map(|e| format!("&#9888; error: {}", esc(e)))
        .collect();
    if s.passes() == 0 {
        notes.push("no measured passes".into());
    } else if s.passes() < crate::metric::P99_MIN_POOLED_PASSES {
        notes.push(format!(
            "p99 informational: n = {} &lt; {}",
            s.passes(),
            crate::metric::P99_MIN_POOLED_PASSES
        ));
    }
    notes.join("<br>")
}
