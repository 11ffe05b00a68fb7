//! Cells that compare engines on one device: which cells run together, and in which order
//! their sessions alternate.
//!
//! A device drifts (temperature, frequency, background load, memory layout): run back to back,
//! engine A's sessions meet one device and engine B's another, and the difference between them
//! is partly the drift. Alternating A B B A ... puts every stretch of drift on both arms alike,
//! and the mirrored order cancels a linear trend within each pair of rounds.

use meltbench_protocol::agent::Cell;
use std::ops::Range;

/// The job's cells as runs of adjacent cells sharing an interleave group; a cell without a
/// group is a run of its own.
pub fn groups(cells: &[Cell]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        match out.last_mut() {
            Some(last)
                if cell.interleave.is_some() && cells[last.start].interleave == cell.interleave =>
            {
                last.end = i + 1
            }
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// The order of `arms` members in round `round` (a session or a cold start): as listed in even
/// rounds, reversed in odd ones, so two arms run A B, B A, A B, ...
pub fn order(arms: usize, round: usize) -> Vec<usize> {
    let mut o: Vec<usize> = (0..arms).collect();
    if round % 2 == 1 {
        o.reverse();
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(id: &str, interleave: Option<u32>) -> Cell {
        serde_json::from_value(serde_json::json!({
            "id": id, "model": "m", "model_path": "/m", "model_sha256": "s", "precision": "f32",
            "scenario": "s", "threads": 1, "state": "any", "interleave": interleave,
            "engine_job": {"prompt": {"tokens": 4}, "n_gen": 1, "passes": 1},
            "cold_start_runs": 0, "timeout_s": 60,
        }))
        .unwrap()
    }

    #[test]
    fn adjacent_cells_of_one_group_run_together() {
        let cells = [
            cell("a", None),
            cell("b1", Some(1)),
            cell("b2", Some(1)),
            cell("c1", Some(2)),
            cell("c2", Some(2)),
            cell("c3", Some(2)),
            cell("d", None),
            cell("e", None),
        ];
        assert_eq!(groups(&cells), vec![0..1, 1..3, 3..6, 6..7, 7..8]);
    }

    #[test]
    fn two_arms_alternate_a_b_b_a() {
        let rounds: Vec<usize> = (0..4).flat_map(|r| order(2, r)).collect();
        assert_eq!(rounds, [0, 1, 1, 0, 0, 1, 1, 0]);
        assert_eq!(order(1, 1), [0]);
    }
}
