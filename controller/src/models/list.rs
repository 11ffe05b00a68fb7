//! `meltbench models list`: the cache's models beside the registry's.

use super::*;

/// Cached models, plus registry models that have not been pulled yet (with no path).
pub fn list() -> Result<(Vec<Entry>, Vec<&'static KnownModel>), PullError> {
    let cache = ModelCache::from_env()?;
    let entries = cache.entries()?;
    let missing = REGISTRY
        .iter()
        .filter(|m| !entries.iter().any(|e| e.sha256 == m.sha256))
        .collect();
    Ok((entries, missing))
}

/// `meltbench models list`: every registry model (pulled or not) and everything in the cache.
pub fn list_text() -> Result<String, PullError> {
    let cache = ModelCache::from_env()?;
    Ok(render_list(&REGISTRY, &cache.entries()?, cache.dir()))
}

pub(super) fn render_list(registry: &[KnownModel], entries: &[Entry], dir: &Path) -> String {
    let mut out = String::from("Registry (meltbench models pull NAME):\n");
    let rows: Vec<[String; 4]> = registry
        .iter()
        .map(|m| {
            let cached = entries.iter().any(|e| e.sha256 == m.sha256);
            [
                m.name.to_owned(),
                human_size(m.size),
                if cached { "cached" } else { "not pulled" }.to_owned(),
                format!("{}; licence: {}", m.description, short_licence(&m.licence)),
            ]
        })
        .collect();
    out.push_str(&columns(["NAME", "SIZE", "STATUS", "ABOUT"], &rows));
    if entries.is_empty() {
        out.push_str(&format!("\nNo models cached in {} yet.\n", dir.display()));
        return out;
    }
    out.push_str(&format!("\nCache ({}):\n", dir.display()));
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|e| {
            let names = if e.names.is_empty() {
                "(unnamed)".to_owned()
            } else {
                e.names.join(", ")
            };
            [
                names,
                human_size(e.size),
                e.sha256.clone(),
                e.path.display().to_string(),
            ]
        })
        .collect();
    out.push_str(&columns(["NAME", "SIZE", "SHA256", "PATH"], &rows));
    out
}

/// The licence's first sentence, for one-line listings (`pull` prints it whole).
pub(super) fn short_licence(licence: &str) -> &str {
    licence.split(". ").next().unwrap_or(licence)
}

/// Left-aligned columns (the second, sizes, right-aligned), the last one unpadded.
pub(super) fn columns(header: [&str; 4], rows: &[[String; 4]]) -> String {
    let header = header.map(String::from);
    let width = |col: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    for row in [&header].into_iter().chain(rows) {
        out.push_str(&format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {}\n",
            row[0], row[1], row[2], row[3]
        ));
    }
    out
}

/// Sizes the way people read them in a terminal (binary units, one decimal).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
