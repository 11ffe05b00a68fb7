//! Per-pass figures from sampled series (device-telemetry §6).
//!
//! - Instantaneous power: `E = Σ ½(P_i + P_{i+1})(t_{i+1} − t_i)` over the samples, clipped to
//!   the pass window `[start, end]` by linear interpolation at the edges.
//! - Cumulative counters (RAPL, hwmon energy): `E = C(end) − C(start)`, each interpolated at the
//!   window edge; wraps are undone before ([`counter_delta`]).
//! - Any sample in (or bracketing) the window that is not `Ok` makes the result `Unreadable`
//!   with its reason: a battery that was charging during the pass gives no energy, not a wrong
//!   one. No samples at all gives `Absent`.
//! - Low confidence: the largest gap exceeds 3x the nominal sampling period, the window is not
//!   covered by samples at both edges, or (for power) fewer than 10 samples fall in it.

use super::Reading;

/// A sample: CLOCK_MONOTONIC nanoseconds and the value.
pub type Sample = (u64, Reading<f64>);

#[derive(Clone, Debug, PartialEq)]
pub struct WindowStats {
    pub energy_j: f64,
    pub avg_w: f64,
    pub peak_w: f64,
    /// Samples with a stamp inside `[start, end]`.
    pub samples: usize,
    /// Largest distance between the samples used (and to an uncovered window edge).
    pub max_gap_ns: u64,
    pub low_confidence: bool,
}

/// µJ consumed between two raw readings of a counter that wraps at `max_range` (to 0).
pub fn counter_delta(prev: u64, cur: u64, max_range: u64) -> u64 {
    if cur >= prev {
        cur - prev
    } else {
        max_range.saturating_sub(prev) + cur
    }
}

/// The samples that matter for `[start, end]`: the last one at or before `start` through the
/// first one at or after `end`. `Err` carries the first non-`Ok` reading's reason.
fn bracket(samples: &[Sample], start: u64, end: u64) -> Result<Vec<(u64, f64)>, Reading<()>> {
    if samples.is_empty() {
        return Err(Reading::Absent);
    }
    let lo = samples.iter().rposition(|s| s.0 <= start).unwrap_or(0);
    let hi = samples
        .iter()
        .position(|s| s.0 >= end)
        .unwrap_or(samples.len() - 1);
    if hi < lo {
        return Err(Reading::Absent);
    }
    let mut pts = Vec::with_capacity(hi - lo + 1);
    for (t, r) in &samples[lo..=hi] {
        match r {
            Reading::Ok(v) => pts.push((*t, *v)),
            Reading::Unreadable(why) => return Err(Reading::Unreadable(why.clone())),
            Reading::Absent => return Err(Reading::Unreadable("sensor absent mid-run".into())),
        }
    }
    Ok(pts)
}

/// Linear interpolation within the points, holding the end values outside them.
fn value_at(pts: &[(u64, f64)], t: u64) -> f64 {
    let first = pts[0];
    let last = pts[pts.len() - 1];
    if t <= first.0 {
        return first.1;
    }
    if t >= last.0 {
        return last.1;
    }
    let i = pts.partition_point(|p| p.0 <= t);
    let (t0, v0) = pts[i - 1];
    let (t1, v1) = pts[i];
    if t1 == t0 {
        return v1;
    }
    v0 + (v1 - v0) * (t - t0) as f64 / (t1 - t0) as f64
}

fn gaps(pts: &[(u64, f64)], start: u64, end: u64) -> (u64, bool) {
    let mut max_gap = pts.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or(0);
    let covered = pts[0].0 <= start && pts[pts.len() - 1].0 >= end;
    if pts[0].0 > start {
        max_gap = max_gap.max(pts[0].0 - start);
    }
    if pts[pts.len() - 1].0 < end {
        max_gap = max_gap.max(end - pts[pts.len() - 1].0);
    }
    (max_gap, covered)
}

/// Trapezoid integral of power samples (W) over `[start, end]` (ns).
pub fn integrate_power(
    samples: &[Sample],
    start: u64,
    end: u64,
    nominal_period_ns: u64,
) -> Reading<WindowStats> {
    if end <= start {
        return Reading::Unreadable("empty pass window".into());
    }
    let pts = match bracket(samples, start, end) {
        Ok(p) => p,
        Err(r) => return r.map(|()| unreachable!()),
    };
    let mut clipped = Vec::with_capacity(pts.len() + 2);
    clipped.push((start, value_at(&pts, start)));
    clipped.extend(pts.iter().copied().filter(|p| p.0 > start && p.0 < end));
    clipped.push((end, value_at(&pts, end)));
    let energy: f64 = clipped
        .windows(2)
        .map(|w| 0.5 * (w[0].1 + w[1].1) * (w[1].0 - w[0].0) as f64 / 1e9)
        .sum();
    let peak = clipped.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let inside = pts.iter().filter(|p| p.0 >= start && p.0 <= end).count();
    let (max_gap, covered) = gaps(&pts, start, end);
    let dur = (end - start) as f64 / 1e9;
    Reading::Ok(WindowStats {
        energy_j: energy,
        avg_w: energy / dur,
        peak_w: peak,
        samples: inside,
        max_gap_ns: max_gap,
        low_confidence: !covered || inside < 10 || max_gap > 3 * nominal_period_ns,
    })
}

/// Energy from a cumulative counter series (J) over `[start, end]` (ns). Peak power is the
/// steepest interval touching the window.
pub fn counter_energy(
    samples: &[Sample],
    start: u64,
    end: u64,
    nominal_period_ns: u64,
) -> Reading<WindowStats> {
    if end <= start {
        return Reading::Unreadable("empty pass window".into());
    }
    let pts = match bracket(samples, start, end) {
        Ok(p) => p,
        Err(r) => return r.map(|()| unreachable!()),
    };
    let energy = value_at(&pts, end) - value_at(&pts, start);
    let peak = pts
        .windows(2)
        .filter(|w| w[1].0 > start && w[0].0 < end && w[1].0 > w[0].0)
        .map(|w| (w[1].1 - w[0].1) / ((w[1].0 - w[0].0) as f64 / 1e9))
        .fold(f64::NAN, f64::max);
    let inside = pts.iter().filter(|p| p.0 >= start && p.0 <= end).count();
    let (max_gap, covered) = gaps(&pts, start, end);
    let dur = (end - start) as f64 / 1e9;
    Reading::Ok(WindowStats {
        energy_j: energy,
        avg_w: energy / dur,
        peak_w: if peak.is_nan() { energy / dur } else { peak },
        samples: inside,
        max_gap_ns: max_gap,
        low_confidence: !covered || max_gap > 3 * nominal_period_ns,
    })
}

/// A level series (temperature, status) over a window: the value at the start (last sample at
/// or before it, else the first inside), the maximum, and the value at the end. Only `Ok`
/// samples count.
pub fn levels(samples: &[Sample], start: u64, end: u64) -> Option<(f64, f64, f64)> {
    let ok = |s: &&Sample| matches!(s.1, Reading::Ok(_));
    let val = |s: &Sample| match s.1 {
        Reading::Ok(v) => v,
        _ => unreachable!("filtered"),
    };
    let first = samples
        .iter()
        .filter(ok)
        .rfind(|s| s.0 <= start)
        .or_else(|| samples.iter().filter(ok).find(|s| s.0 <= end))?;
    let last = samples.iter().filter(ok).rfind(|s| s.0 <= end)?;
    let max = samples
        .iter()
        .filter(ok)
        .filter(|s| s.0 >= start && s.0 <= end)
        .map(val)
        .fold(val(first).max(val(last)), f64::max);
    Some((val(first), max, val(last)))
}

/// Mean of a level series over a window (samples inside, plus the one in force at the start).
pub fn mean(samples: &[Sample], start: u64, end: u64) -> Option<f64> {
    let vals: Vec<f64> = samples
        .iter()
        .filter(|s| s.0 <= end)
        .skip_while(|s| {
            s.0 < start
                && samples
                    .iter()
                    .any(|n| n.0 > s.0 && n.0 <= start && matches!(n.1, Reading::Ok(_)))
        })
        .filter_map(|s| match s.1 {
            Reading::Ok(v) => Some(v),
            _ => None,
        })
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const PERIOD: u64 = 50_000_000; // 20 Hz

    /// Samples of `p(t_seconds)` every 50 ms from 0 to 20 s, with a 13 ms phase so no sample
    /// falls on a window edge.
    fn sampled(p: impl Fn(f64) -> f64) -> Vec<Sample> {
        (0..400)
            .map(|i| {
                let t = 13_000_000 + i * PERIOD;
                (t, Reading::Ok(p(t as f64 / 1e9)))
            })
            .collect()
    }

    fn close(got: f64, want: f64) {
        assert!(
            ((got - want) / want).abs() < 0.01,
            "got {got}, want {want} (within 1%)"
        );
    }

    #[test]
    fn constant_power() {
        let st = integrate_power(&sampled(|_| 5.0), 2 * S + 7, 12 * S + 3, PERIOD)
            .ok()
            .unwrap();
        close(st.energy_j, 50.0);
        close(st.avg_w, 5.0);
        assert_eq!(st.peak_w, 5.0);
        assert_eq!(st.samples, 200);
        assert_eq!(st.max_gap_ns, PERIOD);
        assert!(!st.low_confidence);
    }

    #[test]
    fn ramp_power() {
        // P = 1 + 0.5 t; ∫_3^11 = 8 + 0.25 (121 - 9) = 36
        let st = integrate_power(&sampled(|t| 1.0 + 0.5 * t), 3 * S, 11 * S, PERIOD)
            .ok()
            .unwrap();
        close(st.energy_j, 36.0);
        close(st.peak_w, 6.5);
    }

    #[test]
    fn step_inside_a_pass() {
        // 2 W until 6.52 s, then 8 W; window 4..10 s: 2*2.52 + 8*3.48 = 32.88
        let st = integrate_power(
            &sampled(|t| if t < 6.52 { 2.0 } else { 8.0 }),
            4 * S,
            10 * S,
            PERIOD,
        )
        .ok()
        .unwrap();
        close(st.energy_j, 32.88);
        assert_eq!(st.peak_w, 8.0);
    }

    #[test]
    fn window_between_two_samples_interpolates() {
        let s = vec![(0, Reading::Ok(0.0)), (S, Reading::Ok(10.0))];
        // P(t) = 10 t on [0.2, 0.6]: ∫ = 5 (0.36 - 0.04) = 1.6
        let st = integrate_power(&s, S / 5, 3 * S / 5, PERIOD).ok().unwrap();
        close(st.energy_j, 1.6);
        assert_eq!(st.samples, 0);
        assert!(st.low_confidence, "no sample inside and a 1 s gap");
    }

    #[test]
    fn counter_with_wraparound() {
        // 4 W for 10 s read every 100 ms from a µJ counter wrapping at 2^32 µJ, starting near
        // the top so it wraps mid-pass.
        let max = 4_294_967_295u64;
        let mut raw = max - 7_000_000;
        let mut unwrap = crate::telemetry::rapl::Unwrap::new(max);
        let mut s = Vec::new();
        for i in 0..=120u64 {
            s.push((i * 100_000_000 + 5, Reading::Ok(unwrap.push(raw))));
            raw = (raw + 400_000) % max;
        }
        let st = counter_energy(&s, S, 11 * S, 100_000_000).ok().unwrap();
        close(st.energy_j, 40.0);
        close(st.avg_w, 4.0);
        close(st.peak_w, 4.0);
        assert!(!st.low_confidence);
        assert_eq!(counter_delta(max - 10, 5, max), 15);
    }

    #[test]
    fn charging_makes_energy_invalid_and_no_data_is_absent() {
        let mut s = sampled(|_| 3.0);
        s[100].1 = Reading::Unreadable("battery status Charging".into());
        let r = integrate_power(&s, 2 * S, 8 * S, PERIOD);
        assert!(
            matches!(r, Reading::Unreadable(ref w) if w.contains("Charging")),
            "{r:?}"
        );
        // A pass entirely outside the charging sample is fine.
        assert!(integrate_power(&s, 10 * S, 12 * S, PERIOD).ok().is_some());
        assert_eq!(integrate_power(&[], 0, S, PERIOD), Reading::Absent);
    }

    #[test]
    fn temperature_levels() {
        let s: Vec<Sample> = vec![
            (0, Reading::Ok(40.0)),
            (S, Reading::Ok(45.0)),
            (2 * S, Reading::Unreadable("x".into())),
            (3 * S, Reading::Ok(44.0)),
            (4 * S, Reading::Ok(50.0)),
        ];
        assert_eq!(levels(&s, S / 2, 3 * S + 1), Some((40.0, 45.0, 44.0)));
        assert_eq!(mean(&s, S / 2, 3 * S + 1), Some((40.0 + 45.0 + 44.0) / 3.0));
        assert_eq!(levels(&[], 0, 1), None);
    }
}
