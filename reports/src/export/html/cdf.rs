//! The `cdf` section: each cell's latency ECDF with its percentile markers and intervals.

use super::*;

/// Points of the empirical CDF of `sorted` (ascending): every point when there are at most
/// `max`, else four fifths evenly spaced by rank and one fifth log-spaced through the tail
/// above p99, so the tail keeps its shape.
pub(super) fn ecdf_points(sorted: &[f64], max: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let at = |i: usize| (sorted[i], (i + 1) as f64 / n as f64);
    if n <= max {
        return (0..n).map(at).collect();
    }
    let body = max * 4 / 5;
    let tail = max - body;
    let mut idx: Vec<usize> = (0..body)
        .map(|k| ((k as f64) * (n - 1) as f64 / (body - 1) as f64).round() as usize)
        .collect();
    // 1 - q from 0.01 down to 1/n, geometrically.
    let (a, b) = (0.01f64, 1.0 / n as f64);
    for j in 0..tail {
        let f = j as f64 / (tail - 1).max(1) as f64;
        let q = 1.0 - a * (b / a).powf(f);
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        idx.push(i);
    }
    idx.push(n - 1);
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter().map(at).collect()
}

pub(super) fn markers(s: &Stats) -> Vec<(f64, f64, &'static str)> {
    [(50.0, "p50"), (95.0, "p95"), (99.0, "p99")]
        .into_iter()
        .filter_map(|(p, l)| s.latency(p).map(|(v, _)| (v, p / 100.0, l)))
        .collect()
}

pub(super) fn cdf(out: &mut String, ctx: &Ctx) {
    if ctx.cells().is_empty() {
        out.push_str("<p class=\"note\">No cells.</p>\n");
        return;
    }
    w!(
        out,
        "<p>Empirical CDF of every measured pass's latency (warm-ups excluded) on a log-x axis; \
         the tail is the upper right. Markers: &#9679; p50, &#9650; p95, &#10005; p99. Curves \
         are drawn through at most {ECDF_POINTS} points with the tail above p99 kept. \
         Percentile intervals are distribution-free: order statistics chosen by the exact \
         binomial, so they need no assumption about the latency distribution, and an end the \
         sample cannot bound says so.</p>\n"
    );
    for (i, c) in ctx.cells().iter().enumerate() {
        let s = &ctx.cand[i];
        let a = &ctx.anchors[i];
        w!(
            out,
            "<article class=\"cell\" id=\"{a}\">\n<h3>{} / {}</h3>\n{}",
            esc(&c.key.device),
            esc(&c.key.id),
            key_line(c)
        );
        for e in &c.errors {
            w!(
                out,
                "<p class=\"warn\">&#9888; cell error: {}</p>\n",
                esc(e)
            );
        }
        for st in &c.states_reached {
            w!(out, "<p>device state reached: {}</p>\n", esc(st));
        }
        let base = ctx.baseline_of(i);
        let cand_pts = ecdf_points(&s.sorted_latency, ECDF_POINTS);
        let cand_marks = markers(s);
        let base_pts = base.map(|(_, bs)| ecdf_points(&bs.sorted_latency, ECDF_POINTS));
        let base_marks = base.map(|(_, bs)| markers(bs)).unwrap_or_default();
        let mut curves = vec![charts::Ecdf {
            points: &cand_pts,
            color: charts::CANDIDATE,
            dashed: false,
            markers: &cand_marks,
            label_markers: true,
        }];
        if let Some(bp) = &base_pts {
            curves.push(charts::Ecdf {
                points: bp,
                color: charts::BASELINE,
                dashed: true,
                markers: &base_marks,
                label_markers: false,
            });
        }
        w!(
            out,
            "<div class=\"legend\"><span><span class=\"swatch-line\" style=\"border-color:{}\">\
             </span> candidate ({} passes)</span>",
            charts::hex(charts::CANDIDATE),
            s.passes()
        );
        match base {
            Some((_, bs)) => {
                w!(
                    out,
                    "<span><span class=\"swatch-line dashed\" style=\"border-color:{}\"></span> \
                     baseline, dashed ({} passes)</span>",
                    charts::hex(charts::BASELINE),
                    bs.passes()
                );
            }
            None if ctx.input.baseline.is_some() => {
                out.push_str("<span class=\"note\">no comparable baseline cell</span>");
            }
            None => {}
        }
        w!(
            out,
            "<span><a href=\"#timeline-{a}\">timeline</a></span></div>\n<div class=\"chart\">{}\
             </div>\n",
            charts::ecdf_chart(
                &curves,
                &format!("latency CDF of {} / {}", c.key.device, c.key.id)
            )
        );
        out.push_str(
            "<table class=\"pct\"><thead><tr><th>Percentile (ms)</th><th class=\"num\">\
             Candidate</th><th class=\"num\">95% CI</th>",
        );
        if base.is_some() {
            out.push_str(
                "<th class=\"num\">Baseline</th><th class=\"num\">95% CI</th>\
                 <th class=\"num\">&Delta;</th>",
            );
        }
        out.push_str("</tr></thead><tbody>\n");
        for (label, q) in [("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0)] {
            let (cv, ci) = s.latency(q).unzip();
            w!(
                out,
                "<tr><td>{label}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                opt(cv),
                interval(ci)
            );
            if let Some((_, b)) = base {
                let (bv, bci) = b.latency(q).unzip();
                w!(
                    out,
                    "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    opt(bv),
                    interval(bci),
                    delta(cv, bv)
                );
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n</article>\n");
    }
}
