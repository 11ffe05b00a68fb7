//! Limits the candidate must keep on its own, whatever the baseline did: the edge standard's
//! model size budget (< 100 MB bundled with an app, < 500 MB downloaded on demand) and memory
//! budget (peak RSS plus 20% headroom within 2 GB on a mid-range device, 4 GB on a flagship).
//! A relative budget asks "did it get worse?"; these ask "does it still fit?", so they need no
//! baseline and no statistics: a file's size and a cell's largest VmHWM are single figures.

use crate::dataset::Dataset;
use serde::{Deserialize, Serialize};

/// Peak RSS is held to its budget with this much headroom (the standard's 20%).
pub const HEADROOM: f64 = 1.2;

/// The standard's on-demand model size: the default `size_budget`.
pub const DEFAULT_SIZE_BYTES: u64 = 500_000_000;
/// The standard's mid-range device: the default `memory_budget`.
pub const DEFAULT_MEMORY_BYTES: u64 = 2_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The model file's size against `size_budget`.
    Size,
    /// The cell's peak RSS plus [`HEADROOM`] against `memory_budget`.
    Memory,
}

impl Limit {
    pub const ALL: [Limit; 2] = [Limit::Size, Limit::Memory];

    /// Its key in a suite's `gate:` and in `--budget`.
    pub fn key(self) -> &'static str {
        match self {
            Limit::Size => "size_budget",
            Limit::Memory => "memory_budget",
        }
    }

    pub fn from_key(key: &str) -> Option<Limit> {
        Limit::ALL.into_iter().find(|l| l.key() == key)
    }

    /// What is measured, for tables.
    pub fn measured(self) -> &'static str {
        match self {
            Limit::Size => "model file",
            Limit::Memory => "peak RSS + 20%",
        }
    }
}

/// The limits in force; `None` is `off`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub size_bytes: Option<u64>,
    pub memory_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            size_bytes: Some(DEFAULT_SIZE_BYTES),
            memory_bytes: Some(DEFAULT_MEMORY_BYTES),
        }
    }
}

impl Limits {
    pub fn get(&self, l: Limit) -> Option<u64> {
        match l {
            Limit::Size => self.size_bytes,
            Limit::Memory => self.memory_bytes,
        }
    }

    pub fn set(&mut self, l: Limit, bytes: Option<u64>) {
        match l {
            Limit::Size => self.size_bytes = bytes,
            Limit::Memory => self.memory_bytes = bytes,
        }
    }
}

/// One limit checked on one model file (size) or one cell (memory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitRow {
    pub device: String,
    /// The cell id; for a size row, the first cell that ran the file on the device.
    pub cell: String,
    pub limit: Limit,
    pub budget_bytes: u64,
    /// The file's size, or the peak RSS times [`HEADROOM`].
    pub measured_bytes: u64,
    pub over: bool,
    /// "model file 253.1 MB is over the size budget of 100.0 MB by 153.1 MB".
    pub message: String,
}

/// Every limit in force on every candidate cell that measured its figure. Size rows are one per
/// model file and device; a cell without a peak RSS (an engine whose memory nobody measured)
/// gets no memory row.
pub fn check(candidate: &Dataset, limits: &Limits) -> Vec<LimitRow> {
    let mut rows = Vec::new();
    let mut sized: Vec<(&str, &str, &str)> = Vec::new();
    for c in &candidate.cells {
        let k = &c.key;
        if let (Some(budget), Some(bytes)) = (limits.size_bytes, c.model_file_bytes) {
            let file = (
                k.device.as_str(),
                k.model_sha256.as_str(),
                k.precision.as_str(),
            );
            if !sized.contains(&file) {
                sized.push(file);
                rows.push(row(
                    &k.device,
                    &k.id,
                    Limit::Size,
                    budget,
                    bytes,
                    "model file",
                ));
            }
        }
        if let (Some(budget), Some(peak)) = (limits.memory_bytes, c.peak_rss_bytes()) {
            let with_headroom = (peak as f64 * HEADROOM).round() as u64;
            // MiB beside it: the rest of the report gives peak RSS in MiB.
            let mib = peak as f64 / (1u64 << 20) as f64;
            let what = format!("peak RSS {} ({mib:.1} MiB) + 20%", fmt_bytes(peak));
            rows.push(row(
                &k.device,
                &k.id,
                Limit::Memory,
                budget,
                with_headroom,
                &what,
            ));
        }
    }
    rows.sort_by(|a, b| {
        (!a.over, &a.device, &a.cell, a.limit).cmp(&(!b.over, &b.device, &b.cell, b.limit))
    });
    rows
}

fn row(device: &str, cell: &str, limit: Limit, budget: u64, measured: u64, what: &str) -> LimitRow {
    let over = measured > budget;
    let name = match limit {
        Limit::Size => "size budget",
        Limit::Memory => "memory budget",
    };
    let message = if over {
        format!(
            "{what} = {} is over the {name} of {} by {}",
            fmt_bytes(measured),
            fmt_bytes(budget),
            fmt_bytes(measured - budget)
        )
    } else {
        format!(
            "{what} = {} is within the {name} of {}",
            fmt_bytes(measured),
            fmt_bytes(budget)
        )
    };
    LimitRow {
        device: device.to_string(),
        cell: cell.to_string(),
        limit,
        budget_bytes: budget,
        measured_bytes: measured,
        over,
        message,
    }
}

/// A limit as a suite or `--budget` writes it: a size ([`parse_bytes`]) or `off` (`None`).
pub fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "off" => Ok(None),
        t => parse_bytes(t).map(Some).ok_or_else(|| {
            format!("must be a size such as 100MB, 1.5GB or 512MiB, or `off`, got '{t}'")
        }),
    }
}

/// A size as people write one: `100MB`, `1.5 GB`, `512MiB`, `2GiB`, `4096` (bytes). MB and GB
/// are decimal, as the standard and file managers count; MiB and GiB binary.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * scale;
    (1.0..1e18).contains(&bytes).then(|| bytes.round() as u64)
}

/// Decimal units, as [`parse_bytes`] reads them back: `2.40 GB`, `98.4 MB`, `1.0 kB`, `512 B`.
pub fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_bytes("100MB"), Some(100_000_000));
        assert_eq!(parse_bytes(" 1.5 GB "), Some(1_500_000_000));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2gib"), Some(2 << 30));
        assert_eq!(parse_bytes("4096"), Some(4096));
        for bad in ["", "MB", "10 parsecs", "-5MB", "0", "1e3MB", "NaN"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
        assert_eq!(fmt_bytes(98_362_432), "98.4 MB");
        assert_eq!(fmt_bytes(2_400_000_000), "2.40 GB");
        assert_eq!(fmt_bytes(1000), "1.0 kB");
        assert_eq!(fmt_bytes(512), "512 B");
    }

    #[test]
    fn a_row_says_by_how_much() {
        let r = row(
            "pi5",
            "c",
            Limit::Size,
            100_000_000,
            253_113_024,
            "model file",
        );
        assert!(r.over);
        assert_eq!(
            r.message,
            "model file = 253.1 MB is over the size budget of 100.0 MB by 153.1 MB"
        );
        let r = row(
            "pi5",
            "c",
            Limit::Memory,
            2_000_000_000,
            120_000_000,
            "peak RSS 100.0 MB + 20%",
        );
        assert!(!r.over);
        assert!(
            r.message.contains("within the memory budget of 2.00 GB"),
            "{}",
            r.message
        );
    }
}
