//! The `history` section: the gated metrics across recorded releases.

use super::*;

pub(super) fn history(out: &mut String, ctx: &Ctx) {
    let Some(h) = ctx.input.history.filter(|h| !h.entries.is_empty()) else {
        out.push_str("<p class=\"note\">no history: pass --history DIR to meltbench gate</p>\n");
        return;
    };
    history_charts(out, ctx, h);
}

pub(super) fn history_charts(out: &mut String, ctx: &Ctx, h: &History) {
    // (device, cell) in first-seen order; per cell the metrics to draw: latency_p95, and every
    // metric an alert names.
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for e in &h.entries {
        for c in &e.cells {
            let k = (c.device.as_str(), c.cell.as_str());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    w!(
        out,
        "<p>{} releases, oldest first, evenly spaced. Each point is the mean of the per-session \
         values of the release; bars span the smallest to the largest session. &#9650; marks the \
         last release of a trend alert (three consecutive steps each more than 5% worse).</p>\n",
        h.entries.len()
    );
    for (device, cell) in keys {
        let mut metrics = vec![Metric::LatencyP95];
        for a in &h.alerts {
            if a.device == device && a.cell == cell && !metrics.contains(&a.metric) {
                metrics.push(a.metric);
            }
        }
        for m in metrics {
            let points: Vec<charts::HistoryPoint> = h
                .entries
                .iter()
                .map(|e| {
                    let vals = e
                        .cells
                        .iter()
                        .find(|c| c.device == device && c.cell == cell)
                        .and_then(|c| c.sessions.get(&m))
                        .filter(|v| !v.is_empty());
                    let stats = vals.map(|v| {
                        let mean = v.iter().sum::<f64>() / v.len() as f64;
                        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        (mean, lo, hi)
                    });
                    let alert = h.alerts.iter().any(|a| {
                        a.device == device
                            && a.cell == cell
                            && a.metric == m
                            && a.releases.last() == Some(&e.release)
                    });
                    charts::HistoryPoint {
                        release: e.release.clone(),
                        stats,
                        alert,
                    }
                })
                .collect();
            if points.iter().all(|p| p.stats.is_none()) {
                continue;
            }
            let link = ctx
                .anchor_of(device, cell)
                .map(|a| format!(" <a href=\"#{a}\">(cell)</a>"))
                .unwrap_or_default();
            w!(
                out,
                "<h3 id=\"history-{}-{}\">{} / {} &middot; {}{link}</h3>\n",
                cell_anchor(device, cell),
                m.name(),
                esc(device),
                esc(cell),
                esc(m.label())
            );
            let y = format!("{} ({})", m.label(), m.unit());
            let aria = format!("history of {} for {device} / {cell}", m.label());
            w!(
                out,
                "<div class=\"chart\">{}</div>\n",
                charts::history_chart(&points, &y, &aria)
            );
            out.push_str(
                "<details><summary>values</summary><table class=\"history\"><thead><tr>\
                 <th>Release</th><th class=\"num\">mean</th><th class=\"num\">min</th>\
                 <th class=\"num\">max</th></tr></thead><tbody>\n",
            );
            for p in &points {
                let (m_, lo, hi) = match p.stats {
                    Some((m_, lo, hi)) => (num(m_), num(lo), num(hi)),
                    None => ("&ndash;".into(), "&ndash;".into(), "&ndash;".into()),
                };
                w!(
                    out,
                    "<tr><td>{}{}</td><td class=\"num\">{m_}</td><td class=\"num\">{lo}</td>\
                     <td class=\"num\">{hi}</td></tr>\n",
                    esc(&p.release),
                    if p.alert { " &#9650; alert" } else { "" }
                );
            }
            out.push_str("</tbody></table></details>\n");
        }
    }
    out.push_str("<h3>Trend alerts</h3>\n");
    if h.alerts.is_empty() {
        out.push_str("<p class=\"note\">No trend alerts.</p>\n");
        return;
    }
    out.push_str("<ul class=\"alerts\">\n");
    for a in &h.alerts {
        let steps: Vec<String> = a.step_ratios.iter().map(|r| pct(r - 1.0)).collect();
        let releases: Vec<String> = a.releases.iter().map(|r| esc(r)).collect();
        w!(
            out,
            "<li><span class=\"chip v-fail\">&#9650; ALERT</span> {} / {} &middot; {}: {} \
             <span class=\"meta\">(releases {}; steps {})</span></li>\n",
            esc(&a.device),
            ctx.cell_link(&a.device, &a.cell),
            esc(a.metric.label()),
            esc(&a.message),
            releases.join(" &rarr; "),
            steps.join(", ")
        );
    }
    out.push_str("</ul>\n");
}
