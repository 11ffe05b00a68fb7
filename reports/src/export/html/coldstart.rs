//! The `coldstart` section: process start to first token per cell.

use super::*;

pub(super) fn page_cache_text(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "dropped before every cold start",
        Some(false) => "&#9888; not dropped (the model may have been cached: times are optimistic)",
        None => "unknown",
    }
}

pub(super) fn coldstart(out: &mut String, ctx: &Ctx) {
    let with: Vec<usize> = (0..ctx.cells().len())
        .filter(|&i| {
            !ctx.cells()[i].cold_start_ms.is_empty()
                || ctx
                    .baseline_of(i)
                    .is_some_and(|(b, _)| !b.cold_start_ms.is_empty())
        })
        .collect();
    if with.is_empty() {
        out.push_str(
            "<p class=\"note\">No cold starts recorded (no cell of the suite measures a fresh \
             process to first token).</p>\n",
        );
        return;
    }
    let has_base = with.iter().any(|&i| ctx.baseline_of(i).is_some());
    out.push_str(
        "<p>Fresh engine process to first token, one value per cold start.</p>\n\
         <div class=\"scroll\"><table class=\"coldstart\">\n<thead><tr><th>Device</th>\
         <th>Cell</th><th class=\"num\">n</th><th class=\"num\">min (ms)</th>\
         <th class=\"num\">median (ms)</th><th class=\"num\">max (ms)</th>",
    );
    if has_base {
        out.push_str(
            "<th class=\"num\">baseline median (ms)</th><th class=\"num\">&Delta; median</th>",
        );
    }
    out.push_str("<th>Page cache</th></tr></thead>\n<tbody>\n");
    let mut strips = Vec::new();
    for &i in &with {
        let c = &ctx.cells()[i];
        let v = &c.cold_start_ms;
        let min = v.iter().copied().min_by(f64::total_cmp);
        let max = v.iter().copied().max_by(f64::total_cmp);
        w!(
            out,
            "<tr id=\"coldstart-{}\"><td>{}</td><td><a href=\"#{}\">{}</a></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td>",
            ctx.anchors[i],
            esc(&c.key.device),
            ctx.anchors[i],
            esc(&c.key.id),
            v.len(),
            opt(min),
            opt(ctx.cand[i].cold_median()),
            opt(max)
        );
        let base = ctx.baseline_of(i);
        if has_base {
            let bm = base.and_then(|(_, bs)| bs.cold_median());
            w!(
                out,
                "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                opt(bm),
                delta(ctx.cand[i].cold_median(), bm)
            );
        }
        let mut cache = page_cache_text(c.cold_start_page_cache_dropped).to_string();
        if let Some((b, _)) = base {
            if b.cold_start_page_cache_dropped != c.cold_start_page_cache_dropped {
                w!(
                    cache,
                    "; baseline: {}",
                    page_cache_text(b.cold_start_page_cache_dropped)
                );
            }
        }
        w!(out, "<td>{cache}</td></tr>\n");
        let label = charts::short(&format!("{} / {}", c.key.device, c.key.id), 40);
        strips.push(charts::Strip {
            label: label.clone(),
            values: thin(v, 200),
            baseline: false,
        });
        if let Some((b, _)) = base {
            strips.push(charts::Strip {
                label: format!("{} (baseline)", charts::short(&label, 28)),
                values: thin(&b.cold_start_ms, 200),
                baseline: true,
            });
        }
    }
    out.push_str("</tbody></table></div>\n");
    const MAX_ROWS: usize = 60;
    if strips.len() > MAX_ROWS {
        w!(
            out,
            "<p class=\"note\">The chart shows the first {MAX_ROWS} of {} rows; the table \
             lists every cell.</p>\n",
            strips.len()
        );
        strips.truncate(MAX_ROWS);
    }
    w!(
        out,
        "<div class=\"legend\"><span><span class=\"sw\" style=\"color:{}\">&#9679;</span> \
         candidate</span>{}</div>\n<div class=\"chart\">{}</div>\n",
        charts::hex(charts::CANDIDATE),
        if has_base {
            format!(
                "<span><span class=\"sw\" style=\"color:{}\">&#9651;</span> baseline</span>",
                charts::hex(charts::BASELINE)
            )
        } else {
            String::new()
        },
        charts::strip_chart(&strips, "cold-start times per cell")
    );
}

/// At most `max` of `v`, evenly strided.
pub(super) fn thin(v: &[f64], max: usize) -> Vec<f64> {
    if v.len() <= max {
        return v.to_vec();
    }
    let step = v.len().div_ceil(max);
    v.iter().step_by(step).copied().collect()
}
