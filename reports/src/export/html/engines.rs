//! The `engines` section: the engines a suite ran on the same device, model, precision and
//! scenario, one column each, so a team reads its own runtime beside the bundled engine.

use super::*;

/// The figures compared, as (row label, the figure of a cell's stats).
type Row = (&'static str, fn(&Stats) -> Option<f64>);

const ROWS: [Row; 8] = [
    ("Decode tok/s (median)", Stats::decode_tps),
    ("Prefill tok/s (median)", Stats::prefill_tps),
    ("Time to first token p50 (ms)", |s| ttft(s, 50.0)),
    ("Time to first token p95 (ms)", |s| ttft(s, 95.0)),
    ("Latency p95 (ms)", |s| s.latency(95.0).map(|(v, _)| v)),
    ("Peak RSS (MiB)", Stats::peak_rss_mib),
    ("Cold start (ms, median)", Stats::cold_median),
    ("Energy (J/token, median)", Stats::energy),
];

fn ttft(s: &Stats, p: f64) -> Option<f64> {
    let d = s.figures.ttft_ms.as_ref()?;
    Some(if p == 50.0 { d.p50 } else { d.p95 })
}

pub(super) fn engines(out: &mut String, ctx: &Ctx) {
    // Everything but the engine.
    let mut groups = grouped(ctx.cells(), |k| {
        (
            k.device.as_str(),
            k.model.as_str(),
            k.precision.as_str(),
            k.scenario.as_str(),
            k.threads,
            k.state.as_str(),
        )
    });
    groups.retain(|(_, idx)| idx.len() > 1);
    if groups.is_empty() {
        out.push_str(
            "<p class=\"note\">Every cell ran one engine: list several under <code>engines:\
             </code> to see them side by side.</p>\n",
        );
        return;
    }
    out.push_str(
        "<p>Per device, model, precision and scenario: each engine the suite ran, in one \
         column (candidate build). Their sessions alternated on the device, so drift fell on \
         every engine alike. A dash is a figure the engine did not measure (see Method).</p>\n",
    );
    for ((device, model, precision, scenario, threads, state), idx) in groups {
        w!(
            out,
            "<h3>{} &middot; {} {} &middot; {}</h3>\n<p class=\"meta\">{threads} threads \
             &middot; state {}</p>\n<div class=\"scroll\"><table class=\"engines\">\n<thead>\
             <tr><th>Figure</th>",
            esc(device),
            esc(model),
            esc(precision),
            esc(scenario),
            esc(state)
        );
        for &i in &idx {
            let c = &ctx.cells()[i];
            w!(
                out,
                "<th class=\"num\"><a href=\"#{}\">{}</a></th>",
                ctx.anchors[i],
                esc(&c.key.engine)
            );
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for (label, figure) in ROWS {
            let values: Vec<Option<f64>> = idx.iter().map(|&i| figure(&ctx.cand[i])).collect();
            if values.iter().all(Option::is_none) {
                continue;
            }
            w!(out, "<tr><td>{label}</td>");
            for v in values {
                w!(out, "<td class=\"num\">{}</td>", opt(v));
            }
            out.push_str("</tr>\n");
        }
        w!(out, "<tr><td>Measured passes</td>");
        for &i in &idx {
            w!(out, "<td class=\"num\">{}</td>", ctx.cand[i].passes());
        }
        out.push_str("</tr>\n</tbody></table></div>\n");
    }
}
