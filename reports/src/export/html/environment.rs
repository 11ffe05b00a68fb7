//! The `environment` and `reproduce` sections: what the runs ran on and how to run them again.

use super::*;

pub(super) fn environment(out: &mut String, ctx: &Ctx) {
    let rows = ctx.input.environment();
    if rows.is_empty() {
        out.push_str("<p class=\"note\">No provenance recorded.</p>\n");
        return;
    }
    let base = ctx.input.baseline.is_some();
    let differing = rows.iter().filter(|r| r.differs).count();
    if base {
        w!(
            out,
            "<p>{differing} of {} fields differ between the builds (marked &#8800;, listed \
             first).</p>\n",
            rows.len()
        );
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"environment\">\n<thead><tr><th></th><th>Field</th>",
    );
    if base {
        out.push_str("<th>Baseline</th>");
    }
    out.push_str("<th>Candidate</th></tr></thead>\n<tbody>\n");
    for r in &rows {
        let (class, mark) = if r.differs {
            (
                " class=\"differs\"",
                "<span class=\"mark\" title=\"differs\">&#8800;</span>",
            )
        } else {
            ("", "")
        };
        w!(out, "<tr{class}><td>{mark}</td><td>{}</td>", esc(&r.field));
        if base {
            w!(out, "<td class=\"wrap\">{}</td>", esc(&r.baseline));
        }
        w!(out, "<td class=\"wrap\">{}</td></tr>\n", esc(&r.candidate));
    }
    out.push_str("</tbody></table></div>\n");
}

pub(super) fn reproduce(out: &mut String, ctx: &Ctx) {
    let cmds = ctx.input.reproduce();
    out.push_str("<p>The commands that made the candidate runs, then this report:</p>\n");
    for c in &cmds {
        w!(out, "<pre><code>{}</code></pre>\n", esc(c));
    }
}
