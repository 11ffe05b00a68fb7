//! A pass's [`PassFigures`] in the protocol's form ([`PassTelemetry`]).

use super::sampler::PassFigures;
use super::{PowerTotal, Reading};
use meltbench_protocol::agent::PassTelemetry;

/// `None` when the device gave nothing for this pass (no readable sensor at all): never a
/// record of zeros. `idle_w` is the device's power at rest before the cell, if measured;
/// `duration_s` the pass's length.
pub fn to_protocol(
    f: &PassFigures,
    total: Option<&PowerTotal>,
    gen_tokens: usize,
    idle_w: Option<f64>,
    duration_s: f64,
) -> Option<PassTelemetry> {
    let mut t = PassTelemetry::default();
    if let Some((start, max, end)) = f.temp_c {
        t.temp_c_start = Some(start);
        t.temp_c_max = Some(max);
        t.temp_c_end = Some(end);
    }
    match &f.power {
        Reading::Ok(st) => {
            t.power_w_avg = Some(st.avg_w);
            t.power_w_peak = Some(st.peak_w);
            t.energy_j = Some(st.energy_j);
            t.energy_j_per_token = (gen_tokens > 0).then(|| st.energy_j / gen_tokens as f64);
            t.power_samples = Some(st.samples);
            t.power_max_gap_ms = Some(st.max_gap_ns as f64 / 1e6);
            t.low_confidence = Some(st.low_confidence);
            if let Some(idle) = idle_w {
                t.idle_power_w = Some(idle);
                t.energy_j_above_idle = Some(st.energy_j - idle * duration_s);
            }
        }
        Reading::Unreadable(why) => t.energy_invalid = Some(why.clone()),
        Reading::Absent => {}
    }
    if let Some(p) = total {
        t.power_source = Some(p.rule.clone());
        t.power_lower_bound = p.lower_bound.then_some(true);
    }
    t.thermal_status_max = f.thermal_status_max.map(|s| s as u8);
    t.throttled_bits = f.throttled_bits;
    t.throttling_devices_max = f.throttling_devices_max.map(|n| n as u32);
    t.cpu_mhz_mean = f.cpu_mhz.iter().map(|(_, m)| *m).reduce(f64::max);
    let empty = t.temp_c_max.is_none()
        && t.energy_j.is_none()
        && t.energy_invalid.is_none()
        && t.thermal_status_max.is_none()
        && t.throttled_bits.is_none()
        && t.throttling_devices_max.is_none()
        && t.cpu_mhz_mean.is_none();
    (!empty).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::energy::WindowStats;
    use crate::telemetry::Kind;

    fn figures(power: Reading<WindowStats>) -> PassFigures {
        PassFigures {
            temp_c: Some((40.0, 47.5, 46.0)),
            power,
            lower_bound: false,
            thermal_status_max: None,
            throttled_bits: None,
            throttling_devices_max: None,
            cpu_mhz: vec![
                ("cpufreq:cpus 0".into(), 1200.0),
                ("cpufreq:cpus 4".into(), 2400.0),
            ],
        }
    }

    #[test]
    fn energy_per_token_and_invalid_energy() {
        let total = PowerTotal {
            members: vec!["battery:battery:power".into()],
            kind: Kind::PowerW,
            rule: "battery discharge power".into(),
            lower_bound: false,
            battery_side: true,
        };
        let st = WindowStats {
            energy_j: 8.0,
            avg_w: 4.0,
            peak_w: 5.0,
            samples: 40,
            max_gap_ns: 51_000_000,
            low_confidence: false,
        };
        let t = to_protocol(&figures(Reading::Ok(st)), Some(&total), 16, Some(1.5), 2.0).unwrap();
        assert_eq!(t.energy_j, Some(8.0));
        assert_eq!(t.energy_j_per_token, Some(0.5));
        assert_eq!(t.temp_c_max, Some(47.5));
        assert_eq!(t.cpu_mhz_mean, Some(2400.0));
        assert_eq!(t.power_lower_bound, None);
        assert_eq!(t.idle_power_w, Some(1.5));
        assert_eq!(t.energy_j_above_idle, Some(5.0));
        let charging = to_protocol(
            &figures(Reading::Unreadable("battery status Charging".into())),
            Some(&total),
            16,
            Some(1.5),
            2.0,
        )
        .unwrap();
        assert_eq!(charging.energy_j, None, "never a number while charging");
        assert!(charging.energy_invalid.unwrap().contains("Charging"));
        let nothing = PassFigures {
            temp_c: None,
            power: Reading::Absent,
            lower_bound: false,
            thermal_status_max: None,
            throttled_bits: None,
            throttling_devices_max: None,
            cpu_mhz: Vec::new(),
        };
        assert_eq!(to_protocol(&nothing, None, 16, None, 1.0), None);
    }
}
