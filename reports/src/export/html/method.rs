//! The `method` section: how every figure and verdict of the page was computed.

use super::*;
use std::collections::BTreeSet;

pub(super) fn method(out: &mut String, ctx: &Ctx) {
    let gate = ctx.input.gate;
    let default_config = GateConfig::default();
    let config = gate.map(|g| &g.config).unwrap_or(&default_config);
    out.push_str("<dl class=\"method\">\n");
    out.push_str(
        "<dt>Percentiles</dt><dd>From the raw latency of every measured pass (warm-ups \
         excluded), never from averages: Hyndman &amp; Fan type 7 (linear interpolation \
         between the two nearest ranks, numpy's default). Medians of tokens/s and energy per \
         token use the same estimator over per-pass values.</dd>\n",
    );
    if gate.is_none() {
        out.push_str(
            "<dt>Gate</dt><dd>No gate ran for this report, so there are no intervals or \
             verdicts. The defaults <code>meltbench gate</code> would use follow.</dd>\n",
        );
    }
    w!(
        out,
        "<dt>Confidence intervals</dt><dd>Hierarchical bootstrap of the ratio candidate / \
         baseline: each of B = {} resamples draws sessions with replacement, then passes with \
         replacement within each drawn session, and recomputes the metric on both builds; the \
         interval is the {}% two-sided percentile interval of the ratios (seed {}).</dd>\n",
        config.resamples,
        plain(config.confidence * 100.0),
        config.seed
    );
    out.push_str(
        "<dt>Budgets</dt><dd><table class=\"budgets\"><thead><tr><th>Metric</th>\
         <th>Statistic</th><th class=\"num\">Budget</th></tr></thead><tbody>\n",
    );
    for (m, b) in &config.budgets {
        w!(
            out,
            "<tr><td>{}</td><td>{} ({})</td><td class=\"num\">{}</td></tr>\n",
            m.name(),
            esc(m.label()),
            esc(m.unit()),
            budget_text(*m, *b)
        );
    }
    w!(
        out,
        "</tbody></table>Metrics not listed are not gated. Budgets are in the bad direction: \
         slower, less throughput, more memory or energy.</dd>\n<dt>Noise floor</dt><dd>Changes \
         within &plusmn;{} are noise: never reported as regressed or improved.</dd>\n",
        pct(config.noise_floor).trim_start_matches('+')
    );
    let ignored: Vec<&str> = config.ignore_key.iter().map(|k| k.name()).collect();
    w!(
        out,
        "<dt>Comparable cells</dt><dd>Cells are paired by device, model SHA-256, precision, \
         scenario, threads and state{}. A cell without a partner is listed as not comparable, \
         never as a regression.</dd>\n",
        if ignored.is_empty() {
            String::new()
        } else {
            format!(" (this gate ignored: {})", ignored.join(", "))
        }
    );
    w!(
        out,
        "<dt>Verdicts</dt><dd><ul>\
         <li>{}: the whole interval lies beyond the budget.</li>\
         <li>{}: the interval straddles the budget; more sessions would decide.</li>\
         <li>{}: would have failed, but p99 cannot gate below {} pooled passes per build.</li>\
         <li>{}: worse beyond the noise floor, but the whole interval lies within budget.</li>\
         <li>{}: within the noise floor or budget.</li>\
         <li>{}: better beyond the noise floor with the whole interval on the better side.</li>\
         </ul>A <code>~</code> after an interval means it includes no change.</dd>\n",
        chip(Verdict::Fail),
        chip(Verdict::Inconclusive),
        chip(Verdict::Warn),
        crate::metric::P99_MIN_POOLED_PASSES,
        chip(Verdict::PassWithNote),
        chip(Verdict::Pass),
        chip(Verdict::Improved),
    );
    w!(
        out,
        "<dt>Exit codes of <code>meltbench gate</code></dt><dd>0: pass (including warnings); \
         1: a regression over budget; 2: inconclusive or nothing comparable.{}</dd>\n",
        gate.map(|g| format!(" This gate exited {}.", g.exit_code))
            .unwrap_or_default()
    );
    engines_measured(out, ctx);
    w!(
        out,
        "<dt>Charts</dt><dd>CDF curves are drawn through at most {ECDF_POINTS} points (tail above \
         p99 kept); timelines show at most {TIMELINE_POINTS} marks per cell: every pass, or per \
         bucket of consecutive passes its median and its slowest pass. Every statistic uses all \
         passes.</dd>\n"
    );
    out.push_str("</dl>\n");
}

/// What each engine other than the bundled one could not measure, and whose memory its peak
/// RSS is: an adapter in front of a server times tokens as they arrive, so its zeros are not
/// measurements and its time to first token includes the request.
fn engines_measured(out: &mut String, ctx: &Ctx) {
    let mut by_engine: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for c in &ctx.input.candidate.cells {
        if c.unmeasured.is_empty() && c.memory_of.is_none() {
            continue;
        }
        let e = by_engine.entry(c.key.engine.as_str()).or_default();
        e.0.extend(c.unmeasured.iter().map(String::as_str));
        e.1.extend(c.memory_of.as_deref());
    }
    if by_engine.is_empty() {
        return;
    }
    out.push_str("<dt>What each engine measures</dt><dd><ul>");
    for (engine, (unmeasured, memory_of)) in &by_engine {
        let fields: Vec<&str> = unmeasured
            .iter()
            .copied()
            .filter(|f| *f != meltbench_protocol::engine::UNMEASURED_PEAK_RSS)
            .collect();
        w!(out, "<li><code>{}</code>: ", esc(engine));
        if !fields.is_empty() {
            w!(
                out,
                "not measured (written as 0 or empty, shown nowhere as a figure): {}; ",
                fields
                    .iter()
                    .map(|f| format!("<code>{}</code>", esc(f)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if fields.contains(&"decode_ns") {
                // Only llama-bench so far: its progress lines bracket the prompt, and its own
                // sample is the whole repetition.
                out.push_str(
                    "it times the decode of the tokens after the first only as a whole, so \
                     decode tokens/s and latency come from that whole and per-token decode \
                     latencies (decode p95) are not measured; its time to first token is the \
                     prompt's evaluation alone. ",
                );
            } else {
                out.push_str(
                    "its time to first token runs from the request to the first token's \
                     arrival and includes what the server does before prefill, so its prefill \
                     tokens/s is prompt tokens over that time. ",
                );
            }
        }
        if unmeasured.contains(meltbench_protocol::engine::UNMEASURED_PEAK_RSS) {
            out.push_str("peak memory not measured (no server process named). ");
        }
        if !memory_of.is_empty() {
            w!(
                out,
                "peak memory is that of {}. ",
                memory_of
                    .iter()
                    .map(|m| esc(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out.push_str("</li>");
    }
    out.push_str("</ul></dd>\n");
}
