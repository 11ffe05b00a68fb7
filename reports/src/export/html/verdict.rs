//! The page header and the `verdict` section: the banner and the verdict counts.

use super::*;

/// Over-budget lines in the banner; the rest are in the gate's JSON.
const MAX_OVER_SHOWN: usize = 10;

pub(super) fn header(out: &mut String, ctx: &Ctx) {
    let input = ctx.input;
    let runs = |d: &Dataset| {
        let ids: Vec<String> = d.runs.iter().map(|r| esc(&r.manifest.run_id)).collect();
        if ids.is_empty() {
            "&ndash;".to_string()
        } else {
            ids.join(", ")
        }
    };
    w!(
        out,
        "<header>\n<button id=\"theme-toggle\" type=\"button\" hidden>dark / light</button>\n\
         <h1>{}</h1>\n<p class=\"meta\">Generated {} &middot; candidate runs: {} ({} cells, {} \
         measured passes)",
        esc(&input.title),
        esc(&input.generated_utc),
        runs(input.candidate),
        input.candidate.cells.len(),
        input.candidate.total_passes()
    );
    if let Some(b) = input.baseline {
        w!(
            out,
            " &middot; baseline runs: {} ({} cells, {} measured passes)",
            runs(b),
            b.cells.len(),
            b.total_passes()
        );
    }
    out.push_str("</p>\n<nav aria-label=\"sections\">");
    for (id, title) in SECTIONS {
        w!(out, "<a href=\"#{id}\">{title}</a>");
    }
    out.push_str("</nav>\n</header>\n");
}

pub(super) fn verdict(out: &mut String, ctx: &Ctx) {
    let Some(g) = ctx.input.gate else {
        let text = if ctx.input.baseline.is_some() {
            "no gate: measurements only (a baseline was loaded but not gated)"
        } else {
            "no baseline: measurements only"
        };
        w!(
            out,
            "<div class=\"banner v-neutral\" role=\"status\"><span class=\"icon\" \
             aria-hidden=\"true\">&#8505;</span><div><p class=\"overall\">{text}</p>\
             <p>{} cells, {} measured passes. Pass a baseline to <code>meltbench gate</code> for \
             verdicts.</p></div></div>\n",
            ctx.cells().len(),
            ctx.input.candidate.total_passes()
        );
        return;
    };
    let any = |v: Verdict| g.rows.iter().any(|r| r.verdict == v);
    let over: Vec<_> = g.limit_rows.iter().filter(|r| r.over).collect();
    let (class, icon, overall) = match g.exit_code {
        1 if !any(Verdict::Fail) && !over.is_empty() => (
            "v-fail",
            "&#10006;",
            "FAIL: over a size or memory budget".to_string(),
        ),
        1 => (
            "v-fail",
            "&#10006;",
            "FAIL: a regression over budget".to_string(),
        ),
        2 if g.rows.is_empty() => (
            "v-inconclusive",
            "?",
            "INCONCLUSIVE: nothing comparable".to_string(),
        ),
        2 => (
            "v-inconclusive",
            "?",
            "INCONCLUSIVE: more sessions needed".to_string(),
        ),
        0 if any(Verdict::Warn) => ("v-warn", "&#9888;", "PASS with warnings".to_string()),
        0 => ("v-pass", "&#10003;", "PASS".to_string()),
        c => (
            "v-neutral",
            "?",
            format!("unknown gate result (exit code {c})"),
        ),
    };
    w!(
        out,
        "<div class=\"banner {class}\" role=\"status\"><span class=\"icon\" \
         aria-hidden=\"true\">{icon}</span><div>\n<p class=\"overall\">{overall} \
         <span class=\"exit\">(exit code {})</span></p>\n<p class=\"headline\">{}</p>\n",
        g.exit_code,
        esc(&g.headline)
    );
    let worst = g.worst_row();
    if let Some(r) = worst {
        w!(
            out,
            "<p class=\"worst\">Worst: {} {} {} on {} / {}</p>\n",
            chip(r.verdict),
            esc(r.metric.label()),
            row_delta(r),
            esc(&r.device),
            ctx.cell_link(&r.device, &r.cell)
        );
    }
    for r in over.iter().take(MAX_OVER_SHOWN) {
        w!(
            out,
            "<p class=\"worst\">Over <code>{}</code>: {} on {} / {}</p>\n",
            r.limit.key(),
            esc(&r.message),
            esc(&r.device),
            ctx.cell_link(&r.device, &r.cell)
        );
    }
    if over.len() > MAX_OVER_SHOWN {
        w!(
            out,
            "<p class=\"worst\">… and {} more over a budget (<code>meltbench gate --json</code> \
             lists them all).</p>\n",
            over.len() - MAX_OVER_SHOWN
        );
    }
    out.push_str("<p class=\"counts\">");
    for v in Verdict::ALL {
        let n = g.rows.iter().filter(|r| r.verdict == v).count();
        if n > 0 {
            w!(
                out,
                "<span class=\"chip {}\">{} {n} {}</span>",
                verdict_class(v),
                verdict_icon(v),
                v.name()
            );
        }
    }
    let within = g.limit_rows.len() - over.len();
    if within > 0 {
        w!(
            out,
            "<span class=\"chip v-pass\">&#10003; {within} within size and memory budgets</span>"
        );
    }
    if !g.not_comparable.is_empty() {
        w!(
            out,
            "<span class=\"chip v-nc\">&#8800; {} not comparable</span>",
            g.not_comparable.len()
        );
    }
    out.push_str("</p>\n</div></div>\n");
}
