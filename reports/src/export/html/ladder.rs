//! The `ladder` section: one model's precisions side by side.

use super::*;

pub(super) fn ladder(out: &mut String, ctx: &Ctx) {
    // Everything but precision.
    let groups = grouped(ctx.cells(), |k| {
        (
            k.device.as_str(),
            k.model.as_str(),
            k.scenario.as_str(),
            k.threads,
            k.state.as_str(),
            k.engine.as_str(),
        )
    });
    if groups.is_empty() {
        out.push_str("<p class=\"note\">No cells.</p>\n");
        return;
    }
    out.push_str(
        "<p>Per device, model and scenario: each precision the suite ran, largest model file \
         first (candidate build). Speed-up is decode tokens/s relative to the first row.</p>\n",
    );
    for ((device, model, scenario, threads, state, engine), mut idx) in groups {
        idx.sort_by_key(|&i| std::cmp::Reverse(ctx.cells()[i].model_file_bytes));
        let energy = idx.iter().any(|&i| ctx.cand[i].energy().is_some());
        w!(
            out,
            "<h3>{} &middot; {} &middot; {}</h3>\n<p class=\"meta\">{threads} threads &middot; \
             state {} &middot; engine {}{}</p>\n<div class=\"scroll\"><table class=\"ladder\">\n<thead><tr>\
             <th>Precision</th><th>Cell</th><th class=\"num\">Model file (MiB)</th>\
             <th class=\"num\">Decode tok/s (median)</th><th class=\"num\">Speed-up</th>\
             <th class=\"num\">Prefill tok/s (median)</th><th class=\"num\">Peak RSS (MiB)</th>",
            esc(device),
            esc(model),
            esc(scenario),
            esc(state),
            esc(engine),
            if idx.len() == 1 {
                " &middot; one precision only"
            } else {
                ""
            }
        );
        if energy {
            out.push_str("<th class=\"num\">Energy (J/token, median)</th>");
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        let top = ctx.cand[idx[0]].decode_tps();
        for &i in &idx {
            let c = &ctx.cells()[i];
            let s = &ctx.cand[i];
            let speedup = match (s.decode_tps(), top) {
                (Some(d), Some(t)) if t > 0.0 => format!("&times;{:.2}", d / t),
                _ => "&ndash;".into(),
            };
            w!(
                out,
                "<tr><td>{}</td><td><a href=\"#{}\">{}</a></td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{speedup}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td>",
                esc(&c.key.precision),
                ctx.anchors[i],
                esc(&c.key.id),
                opt(c.model_file_bytes.map(mib)),
                opt(s.decode_tps()),
                opt(s.prefill_tps()),
                opt(s.peak_rss_mib())
            );
            if energy {
                w!(out, "<td class=\"num\">{}</td>", opt(s.energy()));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></div>\n");
    }
    out.push_str(
        "<p class=\"note\">Quality (perplexity) per precision is not part of these runs.</p>\n",
    );
}
