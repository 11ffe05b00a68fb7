//! Progress display. Bars go to stderr so stdout stays clean for scripts (`meltbench models pull`
//! prints only the final path there), and they are hidden entirely when stderr is not a terminal,
//! so CI logs and pipes do not fill with redraw sequences.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-count bar for a download of `total` bytes (a spinner when the size is unknown).
pub fn download_bar(total: Option<u64>, label: &str) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), draw_target()).with_style(
            ProgressStyle::with_template(
                "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template is valid")
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, draw_target()).with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .expect("static template is valid"),
        ),
    };
    bar.with_message(label.to_owned())
}

fn draw_target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
