//! A pass record that parses can still break the bench contract's arithmetic
//! (`docs/engine-contract.md`): then the report's figures disagree with each other (the
//! timeline adds phases that do not make the time to first token), or a figure is counted
//! twice. The agent keeps the record, as it always has, and says what is wrong, so a shim's
//! author finds it in the run's warnings rather than in a reviewer's question.

use meltbench_protocol::engine::PassRecord;

/// What in `pass` breaks the contract, in the contract's words; `None` for a sound pass.
pub fn problem(pass: &PassRecord) -> Option<String> {
    let ttft = pass.tokenize_ns.saturating_add(pass.prefill_ns);
    if pass.ttft_ns != ttft {
        return Some(format!(
            "ttft_ns {} is not tokenize_ns + prefill_ns = {ttft}",
            pass.ttft_ns
        ));
    }
    if pass.end_mono_ns < pass.start_mono_ns {
        return Some(format!(
            "end_mono_ns {} is before start_mono_ns {}",
            pass.end_mono_ns, pass.start_mono_ns
        ));
    }
    if pass.decode_total_ns.is_some() && !pass.decode_ns.is_empty() {
        return Some(
            "decode_total_ns is written beside per-token decode_ns (it stands in for them, \
             never beside them)"
                .to_string(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass() -> PassRecord {
        PassRecord {
            tokenize_ns: 10,
            prefill_ns: 90,
            ttft_ns: 100,
            decode_ns: vec![5, 5],
            gen_tokens: 3,
            start_mono_ns: 1_000,
            end_mono_ns: 2_000,
            ..PassRecord::default()
        }
    }

    #[test]
    fn a_sound_pass_has_no_problem_and_each_break_is_named() {
        assert_eq!(problem(&pass()), None);
        let p = PassRecord {
            ttft_ns: 90,
            ..pass()
        };
        assert_eq!(
            problem(&p).unwrap(),
            "ttft_ns 90 is not tokenize_ns + prefill_ns = 100"
        );
        let p = PassRecord {
            end_mono_ns: 999,
            ..pass()
        };
        assert!(problem(&p).unwrap().contains("before start_mono_ns"));
        let p = PassRecord {
            decode_total_ns: Some(10),
            ..pass()
        };
        assert!(problem(&p).unwrap().contains("beside per-token"));
        let p = PassRecord {
            decode_total_ns: Some(10),
            decode_ns: vec![],
            ..pass()
        };
        assert_eq!(problem(&p), None, "the whole instead of the steps is sound");
    }
}
