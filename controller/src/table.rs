//! The end-of-run table: one row per cell, percentiles from the raw passes.

use meltbench_reports::stats::percentile::Distribution;
use meltbench_reports::summary::CellSummary;
use tabled::builder::Builder;
use tabled::settings::Style;

fn ms3(d: &Option<Distribution>) -> String {
    d.as_ref().map_or("-".into(), |d| {
        format!("{:.1} / {:.1} / {:.1}", d.p50, d.p95, d.p99)
    })
}

fn rate(d: &Option<Distribution>) -> String {
    d.as_ref().map_or("-".into(), |d| format!("{:.1}", d.p50))
}

pub fn render(cells: &[CellSummary]) -> String {
    let mut b = Builder::default();
    b.push_record([
        "device",
        "cell",
        "passes",
        "TTFT ms p50/p95/p99",
        "decode ms/tok p50/p95/p99",
        "prefill tok/s",
        "decode tok/s",
        "peak RSS MiB",
        "cold start ms p50",
    ]);
    for c in cells {
        let passes = match &c.error {
            Some(_) => format!("{} (failed)", c.passes),
            None => c.passes.to_string(),
        };
        b.push_record([
            c.key.device.clone(),
            c.key.id.clone(),
            passes,
            ms3(&c.ttft_ms),
            ms3(&c.decode_ms_per_token),
            rate(&c.prefill_tokens_per_s),
            rate(&c.decode_tokens_per_s),
            c.peak_rss_bytes
                .map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
            c.cold_start_ms
                .as_ref()
                .map_or("-".into(), |d| format!("{:.1}", d.p50)),
        ]);
    }
    let mut t = b.build();
    t.with(Style::rounded());
    t.to_string()
}
