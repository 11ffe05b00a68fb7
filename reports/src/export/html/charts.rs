//! The report's charts: plotters drawing into SVG strings that are inlined in the page.
//!
//! Every function here takes points that the caller has already reduced (downsampled), so a
//! chart never holds more than a few thousand marks whatever the number of passes. Text given
//! to plotters (axis labels, release names) is escaped by its SVG backend (`&`, `<`, `>`, `"`,
//! `'`); the tests check that.

use super::esc;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::error::Error;

type Drawn = Result<(), Box<dyn Error>>;

/// Okabe & Ito's colour-blind-safe palette, in the order sessions use it.
pub(super) const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x00, 0x00), // black
    RGBColor(0xB8, 0xA2, 0x00), // yellow, darkened to be visible on white
];
pub(super) const CANDIDATE: RGBColor = RGBColor(0x00, 0x72, 0xB2);
pub(super) const BASELINE: RGBColor = RGBColor(0xE6, 0x9F, 0x00);
const TEMP: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const POWER: RGBColor = RGBColor(0xCC, 0x79, 0xA7);
const ALERT: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const WARMUP: RGBColor = RGBColor(0x80, 0x80, 0x80);
const FONT: &str = "sans-serif";

/// `#rrggbb` of a palette colour, for HTML legends.
pub(super) fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// The shape a session's points are drawn with: sessions beyond the palette's eight colours
/// also change shape, so no two of the first 24 sessions look alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    Circle,
    Triangle,
    Cross,
}

impl Shape {
    pub(super) fn of_session(i: usize) -> Shape {
        match (i / PALETTE.len()) % 3 {
            0 => Shape::Circle,
            1 => Shape::Triangle,
            _ => Shape::Cross,
        }
    }

    /// The same shape as text, for the HTML legend.
    pub(super) fn glyph(self) -> &'static str {
        match self {
            Shape::Circle => "&#9679;",
            Shape::Triangle => "&#9650;",
            Shape::Cross => "&#10005;",
        }
    }
}

pub(super) fn session_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Draws with `draw` on an SVG canvas of `size` pixels and returns the `<svg>` element, or a
/// note saying why it could not be drawn.
fn svg<F>(size: (u32, u32), aria: &str, draw: F) -> String
where
    F: for<'b> FnOnce(&DrawingArea<SVGBackend<'b>, Shift>) -> Drawn,
{
    let mut buf = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        draw(&root)
            .and_then(|_| root.present().map_err(|e| e.into()))
            .map_err(|e| e.to_string())
    };
    match result {
        Ok(()) => tidy(buf, aria),
        Err(e) => format!(
            "<p class=\"note\">chart could not be drawn: {}</p>",
            esc(&e)
        ),
    }
}

/// Labels the chart for screen readers and drops attributes that only restate defaults, which
/// keeps charts with thousands of points small.
fn tidy(svg: String, aria: &str) -> String {
    let svg = svg
        .replacen(
            "<svg ",
            &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(aria)),
            1,
        )
        .replace(" opacity=\"1\"", "")
        .replace(" stroke=\"none\" stroke-width=\"1\"", "");
    // plotters ends every tag with a newline; the page is smaller without them. (Text from
    // runs is escaped, so a raw `>` only ever ends a tag.)
    svg.replace(">\n", ">").replace("\n</", "</")
}

fn style(c: RGBColor, width: u32, filled: bool) -> ShapeStyle {
    ShapeStyle {
        color: c.to_rgba(),
        filled,
        stroke_width: width,
    }
}

/// Short number for an axis label.
pub(super) fn axis_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        let s = format!("{v:.1}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    } else if a >= 0.1 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}

/// About `n` round values (two significant digits) spread evenly on a log scale over
/// `[lo, hi]`: plotters' own log ticks are powers of ten and leave a narrow range unlabelled.
pub(super) fn log_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let round2 = |v: f64| {
        let p = 10f64.powf(v.log10().floor() - 1.0);
        (v / p).round() * p
    };
    let mut out: Vec<f64> = Vec::new();
    if !(lo > 0.0 && hi > lo) {
        return out;
    }
    let n = n.max(2);
    for k in 0..n {
        let v = round2(lo * (hi / lo).powf((k as f64 + 0.5) / n as f64));
        if v > lo && v < hi && out.last().is_none_or(|&l| v > l * 1.0001) {
            out.push(v);
        }
    }
    out
}

/// A range `[lo, hi]` widened by `pad` of its width (or around the value when it is a point).
fn padded(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let w = hi - lo;
    if w <= 0.0 {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.05 };
        (lo - d, hi + d)
    } else {
        (lo - w * pad, hi + w * pad)
    }
}

fn bounds<'a>(pts: impl Iterator<Item = &'a (f64, f64)>) -> Option<((f64, f64), (f64, f64))> {
    let mut b: Option<((f64, f64), (f64, f64))> = None;
    for &(x, y) in pts {
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        b = Some(match b {
            None => ((x, x), (y, y)),
            Some(((x0, x1), (y0, y1))) => ((x0.min(x), x1.max(x)), (y0.min(y), y1.max(y))),
        });
    }
    b
}

/// One empirical CDF curve.
pub(super) struct Ecdf<'a> {
    /// (latency, cumulative fraction), ascending.
    pub points: &'a [(f64, f64)],
    pub color: RGBColor,
    pub dashed: bool,
    /// (value, fraction, label) of p50, p95, p99.
    pub markers: &'a [(f64, f64, &'static str)],
    /// Whether the marker labels are written next to the markers.
    pub label_markers: bool,
}

/// Latency ECDFs on a log-x axis with percentile markers.
pub(super) fn ecdf_chart(curves: &[Ecdf<'_>], aria: &str) -> String {
    let Some(((x0, x1), _)) = bounds(curves.iter().flat_map(|c| c.points.iter())) else {
        return "<p class=\"note\">no measured passes to plot</p>".into();
    };
    // Log scale needs a positive range; a zero latency is drawn at the left edge.
    let lo = if x0 > 0.0 {
        x0 / 1.05
    } else {
        (x1 / 1e3).max(1e-6)
    };
    let hi = if x1 > lo { x1 * 1.05 } else { lo * 10.0 };
    svg((820, 340), aria, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(
                (lo..hi).log_scale().with_key_points(log_ticks(lo, hi, 8)),
                0f64..1.02f64,
            )?;
        chart
            .configure_mesh()
            .x_desc("pass latency (ms, log scale)")
            .y_desc("fraction of passes at or below")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_label_formatter(&|v| axis_num(*v))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .max_light_lines(2)
            .draw()?;
        for c in curves {
            let pts = c.points.iter().map(|&(x, y)| (x.max(lo), y));
            if c.dashed {
                chart.draw_series(DashedLineSeries::new(pts, 7, 4, style(c.color, 2, false)))?;
            } else {
                chart.draw_series(LineSeries::new(pts, style(c.color, 2, false)))?;
            }
            for &(x, y, label) in c.markers {
                let at = (x.max(lo), y);
                let s = style(c.color, 2, !c.dashed);
                match label {
                    "p50" => chart.draw_series(std::iter::once(Circle::new(at, 5, s)))?,
                    "p95" => chart.draw_series(std::iter::once(TriangleMarker::new(at, 6, s)))?,
                    _ => chart.draw_series(std::iter::once(Cross::new(at, 5, s)))?,
                };
                if c.label_markers {
                    let t = TextStyle::from((FONT, 14).into_font()).color(&c.color).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Right,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    );
                    chart.draw_series(std::iter::once(
                        EmptyElement::at(at) + Text::new(label, (-9, 0), t),
                    ))?;
                }
            }
        }
        Ok(())
    })
}

/// Per-pass data of one cell, already reduced to at most a few thousand points.
#[derive(Default)]
pub(super) struct Timeline {
    /// Per session (index = colour slot): (start s, latency ms) of measured passes, or of
    /// each bucket's median when passes are bucketed.
    pub sessions: Vec<Vec<(f64, f64)>>,
    /// Per session: the slowest pass of each bucket (empty when passes are not bucketed).
    pub slowest: Vec<Vec<(f64, f64)>>,
    /// (start s, latency ms) of warm-up passes.
    pub warmups: Vec<(f64, f64)>,
    /// Time spans of warm-up passes (shaded).
    pub warmup_spans: Vec<(f64, f64)>,
    /// Per session: (start s, °C) and (start s, W).
    pub temp: Vec<Vec<(f64, f64)>>,
    pub power: Vec<Vec<(f64, f64)>>,
}

impl Timeline {
    pub(super) fn has_temp(&self) -> bool {
        self.temp.iter().any(|s| !s.is_empty())
    }
    pub(super) fn has_power(&self) -> bool {
        self.power.iter().any(|s| !s.is_empty())
    }
}

/// What the secondary axis of the timeline shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Secondary {
    None,
    Temp,
    Power,
}

/// Latency per pass against start time, sessions by colour and shape, warm-ups hollow and
/// shaded; temperature or power on the right axis.
pub(super) fn timeline_chart(t: &Timeline, secondary: Secondary, aria: &str) -> String {
    let all = t
        .sessions
        .iter()
        .chain(t.slowest.iter())
        .flat_map(|s| s.iter())
        .chain(t.warmups.iter());
    let Some(((x0, x1), (y0, y1))) = bounds(all) else {
        return "<p class=\"note\">no passes to plot</p>".into();
    };
    let (x0, x1) = padded(x0, x1, 0.02);
    let (y0, y1) = padded(y0, y1, 0.06);
    let y0 = y0.max(0.0);
    let sec_series = match secondary {
        Secondary::Temp => &t.temp,
        Secondary::Power => &t.power,
        Secondary::None => &t.sessions, // unused
    };
    let sec_bounds = bounds(sec_series.iter().flat_map(|s| s.iter()));
    svg((820, 340), aria, |root| {
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(root);
        builder
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56);
        if secondary != Secondary::None {
            builder.right_y_label_area_size(56);
        }
        // The secondary coordinate must exist before the primary mesh is drawn: it takes the
        // right label area, which the primary would otherwise label too.
        let (s0, s1) = sec_bounds.map_or((0.0, 1.0), |(_, (s0, s1))| padded(s0, s1, 0.1));
        let mut chart = builder
            .build_cartesian_2d(x0..x1, y0..y1)?
            .set_secondary_coord(x0..x1, s0..s1);
        chart
            .configure_mesh()
            .x_desc("time since the cell's first pass (s)")
            .y_desc("pass latency (ms)")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_label_formatter(&|v| axis_num(*v))
            .y_label_formatter(&|v| axis_num(*v))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .max_light_lines(2)
            .draw()?;
        chart.draw_series(
            t.warmup_spans
                .iter()
                .map(|&(a, b)| Rectangle::new([(a, y0), (b, y1)], WARMUP.mix(0.15).filled())),
        )?;
        chart.draw_series(
            t.warmups
                .iter()
                .map(|&p| Circle::new(p, 3, style(WARMUP, 1, false))),
        )?;
        // Typical passes filled, bucket maxima hollow.
        let filled = t.sessions.iter().enumerate().map(|(i, p)| (i, p, true));
        let hollow = t.slowest.iter().enumerate().map(|(i, p)| (i, p, false));
        for (i, pts, fill) in filled.chain(hollow) {
            let s = style(session_color(i), 1, fill);
            match Shape::of_session(i) {
                Shape::Circle => {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, s)))?;
                }
                // plotters fills every TriangleMarker: a hollow one is an outline path.
                Shape::Triangle if !fill => {
                    let outline = vec![(0, -3), (3, 2), (-3, 2), (0, -3)];
                    chart
                        .draw_series(pts.iter().map(|&p| {
                            EmptyElement::at(p) + PathElement::new(outline.clone(), s)
                        }))?;
                }
                Shape::Triangle => {
                    chart.draw_series(pts.iter().map(|&p| TriangleMarker::new(p, 3, s)))?;
                }
                Shape::Cross => {
                    chart.draw_series(pts.iter().map(|&p| Cross::new(p, 2, s)))?;
                }
            }
        }
        if sec_bounds.is_some() && secondary != Secondary::None {
            let (desc, color) = match secondary {
                Secondary::Temp => ("temperature (°C), line", TEMP),
                _ => ("power (W), line", POWER),
            };
            chart
                .configure_secondary_axes()
                .y_desc(desc)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 15))
                .y_label_formatter(&|v| axis_num(*v))
                .draw()?;
            // Solid lines: a dashed line is one SVG element per dash.
            for s in sec_series {
                chart.draw_secondary_series(LineSeries::new(
                    s.iter().copied(),
                    style(color, 2, false),
                ))?;
            }
        }
        Ok(())
    })
}

/// A short strip of power readings sharing the timeline's x axis (used when the timeline's
/// secondary axis already shows temperature).
pub(super) fn power_strip(t: &Timeline, aria: &str) -> String {
    let xs = t
        .sessions
        .iter()
        .flat_map(|s| s.iter())
        .chain(t.warmups.iter());
    let (Some(((x0, x1), _)), Some((_, (p0, p1)))) =
        (bounds(xs), bounds(t.power.iter().flat_map(|s| s.iter())))
    else {
        return String::new();
    };
    let (x0, x1) = padded(x0, x1, 0.02);
    let (p0, p1) = padded(p0, p1, 0.1);
    svg((820, 150), aria, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(56)
            .right_y_label_area_size(56)
            .build_cartesian_2d(x0..x1, p0..p1)?
            // Takes the right label area (kept empty so the x axis lines up with the timeline's).
            .set_secondary_coord(x0..x1, p0..p1);
        chart
            .configure_mesh()
            .y_desc("power (W)")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_label_formatter(&|v| axis_num(*v))
            .y_label_formatter(&|v| axis_num(*v))
            .y_labels(4)
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .max_light_lines(2)
            .draw()?;
        for s in &t.power {
            chart.draw_series(LineSeries::new(s.iter().copied(), style(POWER, 2, false)))?;
        }
        Ok(())
    })
}

/// One row of the cold-start strip chart.
pub(super) struct Strip {
    pub label: String,
    pub values: Vec<f64>,
    pub baseline: bool,
}

/// Cold-start times, one row per cell (and per build), one mark per cold start.
pub(super) fn strip_chart(rows: &[Strip], aria: &str) -> String {
    let all: Vec<(f64, f64)> = rows
        .iter()
        .flat_map(|r| r.values.iter().map(|&v| (v, 0.0)))
        .collect();
    let Some(((x0, x1), _)) = bounds(all.iter()) else {
        return String::new();
    };
    let (x0, x1) = padded(x0, x1, 0.05);
    let x0 = x0.max(0.0);
    // plotters' integer ranges include their end: `0..n - 1` is n rows.
    let n = rows.len() as i32;
    let height = (60 + 26 * rows.len()).min(2000) as u32;
    svg((820, height), aria, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(250)
            .build_cartesian_2d(x0..x1, (0..n - 1).into_segmented())?;
        // Row 0 at the top: plotters counts upwards.
        let row = |i: i32| rows.len().checked_sub(1 + i as usize);
        let label = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => row(*i)
                .and_then(|r| rows.get(r))
                .map(|r| r.label.clone())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .x_desc("fresh process to first token (ms)")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_label_formatter(&|v| axis_num(*v))
            .y_label_formatter(&label)
            .y_labels(rows.len().max(1))
            .disable_y_mesh()
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .max_light_lines(2)
            .draw()?;
        for (i, r) in rows.iter().enumerate() {
            let y = || SegmentValue::CenterOf((rows.len() - 1 - i) as i32);
            if r.baseline {
                let s = style(BASELINE, 2, false);
                chart.draw_series(
                    r.values
                        .iter()
                        .map(|&v| TriangleMarker::new((v, y()), 5, s)),
                )?;
            } else {
                let s = style(CANDIDATE, 1, true);
                chart.draw_series(r.values.iter().map(|&v| Circle::new((v, y()), 4, s)))?;
            }
        }
        Ok(())
    })
}

/// One release on the history chart.
pub(super) struct HistoryPoint {
    pub release: String,
    /// Mean, min and max of the session values; `None` when the release lacks the cell.
    pub stats: Option<(f64, f64, f64)>,
    pub alert: bool,
}

/// Releases evenly spaced, the mean of the session values with min–max bars, alerts marked.
pub(super) fn history_chart(points: &[HistoryPoint], y_desc: &str, aria: &str) -> String {
    let ys: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.stats)
        .flat_map(|(_, lo, hi)| [(0.0, lo), (0.0, hi)])
        .collect();
    let Some((_, (y0, y1))) = bounds(ys.iter()) else {
        return "<p class=\"note\">no values to plot</p>".into();
    };
    let (y0, y1) = padded(y0, y1, 0.15);
    let y0 = y0.max(0.0);
    let n = points.len() as i32; // `0..n - 1` is n releases
    let y_desc = y_desc.to_string();
    svg((820, 300), aria, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(56)
            .build_cartesian_2d((0..n - 1).into_segmented(), y0..y1)?;
        let label = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => points
                .get(*i as usize)
                .map(|p| short(&p.release, 18))
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .x_desc("release (evenly spaced, oldest first)")
            .y_desc(y_desc)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_label_formatter(&label)
            .x_labels(points.len().max(1))
            .y_label_formatter(&|v| axis_num(*v))
            .disable_x_mesh()
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .max_light_lines(2)
            .draw()?;
        let at = |i: usize| SegmentValue::CenterOf(i as i32);
        let present: Vec<(usize, (f64, f64, f64))> = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.stats.map(|s| (i, s)))
            .collect();
        chart.draw_series(LineSeries::new(
            present.iter().map(|&(i, (m, _, _))| (at(i), m)),
            style(CANDIDATE, 1, false),
        ))?;
        for &(i, (m, lo, hi)) in &present {
            let bar = style(CANDIDATE, 1, false);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(at(i), lo), (at(i), hi)],
                bar,
            )))?;
            for y in [lo, hi] {
                chart.draw_series(std::iter::once(
                    EmptyElement::at((at(i), y)) + PathElement::new(vec![(-5, 0), (5, 0)], bar),
                ))?;
            }
            chart.draw_series(std::iter::once(Circle::new(
                (at(i), m),
                4,
                style(CANDIDATE, 1, true),
            )))?;
            if points[i].alert {
                chart.draw_series(std::iter::once(
                    EmptyElement::at((at(i), hi))
                        + TriangleMarker::new((0, -14), 7, style(ALERT, 1, true))
                        + Text::new(
                            "trend alert",
                            (8, -20),
                            TextStyle::from((FONT, 14).into_font()).color(&ALERT),
                        ),
                ))?;
            }
        }
        Ok(())
    })
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub(super) fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
