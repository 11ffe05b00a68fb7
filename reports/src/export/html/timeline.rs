//! The `timeline` section: each cell's passes in time order, reduced to a drawing budget.

use super::*;

/// A cell's passes reduced to at most `budget` marks, plus warm-ups and sensor readings. Up
/// to `budget` passes are drawn one by one; beyond that, consecutive passes of a session form
/// buckets, each drawn twice: its median (the typical pass) and its slowest pass (so spikes
/// stay visible). Returns the timeline and the bucket size (1: every pass drawn).
pub(super) fn timeline_data(c: &CellData, budget: usize) -> (Timeline, usize) {
    let n: usize = c.measured_passes();
    let sessions = c.sessions.len();
    let mut t = Timeline {
        sessions: vec![Vec::new(); sessions],
        slowest: vec![Vec::new(); sessions],
        temp: vec![Vec::new(); sessions],
        power: vec![Vec::new(); sessions],
        ..Timeline::default()
    };
    // One bucket of (session slot, pass): its median and slowest pass (or the pass itself),
    // the hottest reading and the highest power.
    let mut scratch: Vec<f64> = Vec::new();
    let mut emit = |t: &mut Timeline, chunk: &[(usize, &PassData)]| {
        let (Some(&(slot, first)), Some(&(slow_slot, slow))) = (
            chunk.first(),
            chunk
                .iter()
                .max_by(|a, b| a.1.latency_ms.total_cmp(&b.1.latency_ms)),
        ) else {
            return;
        };
        if chunk.len() == 1 {
            t.sessions[slot].push((first.start_s, first.latency_ms));
        } else {
            scratch.clear();
            scratch.extend(chunk.iter().map(|(_, p)| p.latency_ms));
            let median = percentile_select(&mut scratch, 50.0).unwrap_or(slow.latency_ms);
            let (mid_slot, mid) = chunk[chunk.len() / 2];
            t.sessions[mid_slot].push((mid.start_s, median));
            t.slowest[slow_slot].push((slow.start_s, slow.latency_ms));
        }
        let max_of = |f: &dyn Fn(&PassData) -> Option<f64>| {
            chunk
                .iter()
                .filter_map(|(_, p)| f(p))
                .max_by(f64::total_cmp)
        };
        if let Some(v) = max_of(&|p| p.temp_c) {
            t.temp[slot].push((first.start_s, v));
        }
        if let Some(v) = max_of(&|p| p.power_w) {
            t.power[slot].push((first.start_s, v));
        }
    };
    let mut chunk: Vec<(usize, &PassData)> = Vec::new();
    // Two marks per bucket once passes are bucketed.
    let buckets = (budget / 2).max(1);
    let k;
    if n <= budget || sessions * 2 <= buckets {
        // Buckets never straddle sessions: at most n/k + sessions <= buckets of them.
        k = if n <= budget {
            1
        } else {
            n.div_ceil(buckets - sessions)
        };
        for (slot, s) in c.sessions.iter().enumerate() {
            for ps in s.passes.chunks(k) {
                chunk.clear();
                chunk.extend(ps.iter().map(|p| (slot, p)));
                emit(&mut t, &chunk);
            }
        }
    } else {
        // More sessions than buckets: buckets run across sessions; each mark takes the colour
        // of the session its pass came from.
        k = n.div_ceil(buckets);
        for (slot, s) in c.sessions.iter().enumerate() {
            for p in &s.passes {
                chunk.push((slot, p));
                if chunk.len() == k {
                    emit(&mut t, &chunk);
                    chunk.clear();
                }
            }
        }
        emit(&mut t, &chunk);
    }
    let warm_total: usize = c.sessions.iter().map(|s| s.warmups.len()).sum();
    let wk = warm_total.div_ceil(WARMUP_POINTS).max(1);
    for s in &c.sessions {
        for ws in s.warmups.chunks(wk) {
            if let Some(p) = ws
                .iter()
                .max_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms))
            {
                t.warmups.push((p.start_s, p.latency_ms));
            }
        }
        let span = s.warmups.iter().fold(None, |acc: Option<(f64, f64)>, p| {
            let end = p.start_s + p.latency_ms / 1000.0;
            Some(match acc {
                None => (p.start_s, end),
                Some((a, b)) => (a.min(p.start_s), b.max(end)),
            })
        });
        t.warmup_spans.extend(span);
    }
    (t, k)
}

pub(super) fn timeline(out: &mut String, ctx: &Ctx) {
    if ctx.cells().is_empty() {
        out.push_str("<p class=\"note\">No cells.</p>\n");
        return;
    }
    out.push_str(
        "<p>Latency of each pass against its start time, one colour (and shape) per session; \
         warm-up passes are hollow grey and their span is shaded. Drift upward within a session \
         suggests thermal throttling; a slow start suggests too few warm-ups.</p>\n",
    );
    for (i, c) in ctx.cells().iter().enumerate() {
        let a = &ctx.anchors[i];
        w!(
            out,
            "<article class=\"cell\" id=\"timeline-{a}\">\n<h3><a href=\"#{a}\">{} / {}</a></h3>\n",
            esc(&c.key.device),
            esc(&c.key.id)
        );
        let (t, k) = timeline_data(c, TIMELINE_POINTS);
        let secondary = if t.has_temp() {
            Secondary::Temp
        } else if t.has_power() {
            Secondary::Power
        } else {
            Secondary::None
        };
        // Legend: sessions, warm-ups, sensors.
        out.push_str("<div class=\"legend\">");
        const LEGEND_SESSIONS: usize = 24;
        for (j, s) in c.sessions.iter().enumerate().take(LEGEND_SESSIONS) {
            w!(
                out,
                "<span><span class=\"sw\" style=\"color:{}\">{}</span> session {} of run {}\
                 </span>",
                charts::hex(charts::session_color(j)),
                Shape::of_session(j).glyph(),
                s.index,
                esc(&s.run_id)
            );
        }
        if c.sessions.len() > LEGEND_SESSIONS {
            w!(
                out,
                "<span>and {} more sessions (colours repeat)</span>",
                c.sessions.len() - LEGEND_SESSIONS
            );
        }
        if !t.warmups.is_empty() {
            out.push_str("<span><span class=\"swatch-box\"></span> &#9675; warm-up passes</span>");
        }
        match secondary {
            Secondary::Temp => {
                w!(
                    out,
                    "<span><span class=\"swatch-line\" style=\"border-color:#d55e00\">\
                     </span> temperature, &deg;C (right axis, highest per bucket)</span>"
                );
            }
            Secondary::Power => {
                w!(
                    out,
                    "<span><span class=\"swatch-line\" style=\"border-color:#cc79a7\">\
                     </span> power, W (right axis, highest per bucket)</span>"
                );
            }
            Secondary::None => {}
        }
        out.push_str("</div>\n");
        if c.measured_passes() == 0 && t.warmups.is_empty() {
            out.push_str("<p class=\"note\">no passes recorded for this cell</p>\n");
            out.push_str("</article>\n");
            continue;
        }
        let aria = format!("per-pass timeline of {} / {}", c.key.device, c.key.id);
        w!(
            out,
            "<div class=\"chart\">{}</div>\n",
            charts::timeline_chart(&t, secondary, &aria)
        );
        if secondary == Secondary::Temp && t.has_power() {
            w!(
                out,
                "<div class=\"chart\">{}</div>\n",
                charts::power_strip(&t, &format!("power during {} / {}", c.key.device, c.key.id))
            );
        }
        if secondary == Secondary::None {
            out.push_str(
                "<p class=\"note\">no temperature or power samples in this run (no readable \
                 sensor)</p>\n",
            );
        }
        if k > 1 {
            w!(
                out,
                "<p class=\"note\">{} measured passes, drawn in buckets of {k} consecutive \
                 passes: a filled mark is the bucket's median pass, a hollow mark its slowest \
                 pass (so spikes stay visible).</p>\n",
                c.measured_passes()
            );
        }
        out.push_str("</article>\n");
    }
}
