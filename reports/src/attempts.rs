//! A run resumed (`meltbench run --resume`) has several attempts, each with its own event log
//! per device. What counts as done, written once here for the controller (what to run again)
//! and for every reader (what to count):
//!
//! - the unit is the **session** (one engine process: its warm-ups, then its measured passes):
//!   a session is complete when all its warm-up and measured passes are in the log; cold
//!   starts count one by one;
//! - a cell's cold starts and sessions run in order, so a later attempt starts each cell at its
//!   first missing cold start and its first incomplete session;
//! - a session that a later attempt ran again is **superseded**: its partial passes stay in
//!   their attempt's log, but readers drop them (and the cell's earlier `CellError`), so no pass
//!   is counted twice and every counted session is whole.

use meltbench_protocol::agent::AgentEvent;
use std::collections::BTreeSet;

/// How far one cell got, from its (merged) events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CellProgress {
    /// Leading cold-start runs present.
    pub cold_starts: usize,
    /// Leading sessions with every warm-up and measured pass.
    pub sessions: usize,
}

/// What a cell asks for: the counts [`progress`] compares with.
#[derive(Clone, Copy, Debug)]
pub struct CellPlan {
    pub warmup: usize,
    pub passes: usize,
    pub sessions: usize,
    pub cold_starts: usize,
}

impl CellProgress {
    pub fn complete(&self, plan: &CellPlan) -> bool {
        self.cold_starts >= plan.cold_starts && self.sessions >= plan.sessions.max(1)
    }
}

/// The progress of cell `cell` in `events` (already merged across attempts).
pub fn progress(events: &[AgentEvent], cell: &str, plan: &CellPlan) -> CellProgress {
    let mut cold = BTreeSet::new();
    let mut passes_by_session: Vec<usize> = Vec::new();
    for e in events {
        match e {
            AgentEvent::ColdStart { cell: c, run, .. } if c == cell => {
                cold.insert(*run);
            }
            AgentEvent::Pass {
                cell: c, session, ..
            } if c == cell => {
                if passes_by_session.len() <= *session {
                    passes_by_session.resize(session + 1, 0);
                }
                passes_by_session[*session] += 1;
            }
            _ => {}
        }
    }
    let per_session = plan.warmup + plan.passes;
    CellProgress {
        cold_starts: (0..).take_while(|r| cold.contains(r)).count(),
        sessions: passes_by_session
            .iter()
            .take_while(|&&n| n >= per_session)
            .count(),
    }
}

/// A session whose passes a later attempt replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superseded {
    /// 1-based attempt whose log holds the partial session.
    pub attempt: usize,
    pub cell: String,
    pub session: usize,
    /// Pass events (warm-ups included) it had.
    pub passes: usize,
}

/// One device's events over all attempts (oldest first), with superseded sessions, cold starts
/// and cell errors left out; and what was left out.
pub fn merge(attempts: Vec<Vec<AgentEvent>>) -> (Vec<AgentEvent>, Vec<Superseded>) {
    // What each attempt touched, to know what a later one replaced.
    let touched: Vec<Touched> = attempts.iter().map(|a| Touched::of(a)).collect();
    let mut out = Vec::new();
    let mut dropped: Vec<Superseded> = Vec::new();
    for (i, events) in attempts.into_iter().enumerate() {
        let later = &touched[i + 1..];
        let rerun_cell = |c: &str| later.iter().any(|t| t.cells.contains(c));
        let rerun_session = |c: &str, s: usize| {
            later
                .iter()
                .any(|t| t.sessions.contains(&(c.to_string(), s)))
        };
        for e in events {
            let keep = match &e {
                AgentEvent::Pass { cell, session, .. } if rerun_session(cell, *session) => {
                    match dropped
                        .iter_mut()
                        .find(|d| d.attempt == i + 1 && d.cell == *cell && d.session == *session)
                    {
                        Some(d) => d.passes += 1,
                        None => dropped.push(Superseded {
                            attempt: i + 1,
                            cell: cell.clone(),
                            session: *session,
                            passes: 1,
                        }),
                    }
                    false
                }
                AgentEvent::Load { cell, session, .. } => !rerun_session(cell, *session),
                AgentEvent::ColdStart { cell, run, .. } => !later
                    .iter()
                    .any(|t| t.cold_starts.contains(&(cell.clone(), *run))),
                AgentEvent::CellError { cell, .. } | AgentEvent::CellEnd { cell, .. } => {
                    !rerun_cell(cell)
                }
                // Each attempt's `done` covers only its own cells.
                AgentEvent::Done { .. } => later.is_empty(),
                _ => true,
            };
            if keep {
                out.push(e);
            }
        }
    }
    (out, dropped)
}

#[derive(Default)]
struct Touched {
    cells: BTreeSet<String>,
    sessions: BTreeSet<(String, usize)>,
    cold_starts: BTreeSet<(String, usize)>,
}

impl Touched {
    fn of(events: &[AgentEvent]) -> Touched {
        let mut t = Touched::default();
        for e in events {
            match e {
                AgentEvent::CellStart { cell, .. } => {
                    t.cells.insert(cell.clone());
                }
                AgentEvent::Load { cell, session, .. } | AgentEvent::Pass { cell, session, .. } => {
                    t.sessions.insert((cell.clone(), *session));
                }
                AgentEvent::ColdStart { cell, run, .. } => {
                    t.cold_starts.insert((cell.clone(), *run));
                }
                _ => {}
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meltbench_protocol::engine::PassRecord;

    fn pass(cell: &str, session: usize, index: usize, warmup: bool) -> AgentEvent {
        AgentEvent::Pass {
            cell: cell.into(),
            session,
            pass: PassRecord {
                index,
                warmup,
                ..PassRecord::default()
            },
            rss_hwm_bytes: None,
            telemetry: None,
        }
    }

    fn start(cell: &str) -> AgentEvent {
        AgentEvent::CellStart {
            cell: cell.into(),
            index: 0,
            of: 1,
        }
    }

    fn error(cell: &str) -> AgentEvent {
        AgentEvent::CellError {
            cell: cell.into(),
            message: "agent killed".into(),
            completed_passes: 3,
        }
    }

    const PLAN: CellPlan = CellPlan {
        warmup: 1,
        passes: 2,
        sessions: 3,
        cold_starts: 0,
    };

    #[test]
    fn a_session_counts_when_all_its_passes_are_there() {
        let events = vec![
            start("a"),
            pass("a", 0, 0, true),
            pass("a", 0, 0, false),
            pass("a", 0, 1, false),
            pass("a", 1, 0, true),
            pass("a", 1, 0, false),
        ];
        let p = progress(&events, "a", &PLAN);
        assert_eq!(p.sessions, 1);
        assert!(!p.complete(&PLAN));
        assert_eq!(progress(&events, "b", &PLAN).sessions, 0);
    }

    #[test]
    fn a_rerun_session_replaces_the_partial_one_and_its_error() {
        let first = vec![
            start("a"),
            pass("a", 0, 0, true),
            pass("a", 0, 0, false),
            pass("a", 0, 1, false),
            pass("a", 1, 0, true),
            pass("a", 1, 0, false),
            error("a"),
        ];
        let second = vec![
            start("a"),
            pass("a", 1, 0, true),
            pass("a", 1, 0, false),
            pass("a", 1, 1, false),
            pass("a", 2, 0, true),
            pass("a", 2, 0, false),
            pass("a", 2, 1, false),
        ];
        let (merged, dropped) = merge(vec![first, second]);
        assert_eq!(
            dropped,
            vec![Superseded {
                attempt: 1,
                cell: "a".into(),
                session: 1,
                passes: 2
            }]
        );
        assert!(!merged
            .iter()
            .any(|e| matches!(e, AgentEvent::CellError { .. })));
        let passes = merged
            .iter()
            .filter(|e| matches!(e, AgentEvent::Pass { .. }))
            .count();
        assert_eq!(passes, 9, "three whole sessions of three passes");
        assert!(progress(&merged, "a", &PLAN).complete(&PLAN));
    }

    #[test]
    fn cells_a_later_attempt_did_not_touch_keep_everything() {
        let first = vec![start("a"), pass("a", 0, 0, false), error("a")];
        let second = vec![start("b"), pass("b", 0, 0, false)];
        let (merged, dropped) = merge(vec![first.clone(), second]);
        assert!(dropped.is_empty());
        assert_eq!(&merged[..3], &first[..]);
    }
}
