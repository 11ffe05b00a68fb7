//! The `state` a cell asks for, parsed: thermal (`any`, `cool`, `warm`, `hot`) and optionally
//! battery (`<thermal>+battery<LEVEL>-<MODE>`).

use super::battery::{self, Want};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    Any,
    Cool,
    Warm,
    Hot,
}

impl Requested {
    pub fn name(self) -> &'static str {
        match self {
            Requested::Any => "any",
            Requested::Cool => "cool",
            Requested::Warm => "warm",
            Requested::Hot => "hot",
        }
    }
}

/// A cell's whole state: thermal, and optionally battery (`<thermal>+battery<L>-<mode>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellState {
    pub thermal: Requested,
    pub battery: Option<Want>,
}

/// The cell's `state`, or why this agent cannot establish it.
pub fn parse(state: &str) -> Result<CellState, String> {
    let s = state.trim().to_ascii_lowercase();
    let (thermal, battery) = match s.split_once('+') {
        Some((t, b)) => (t.trim(), Some(battery::parse(b.trim())?)),
        None => (s.as_str(), None),
    };
    let thermal = match thermal {
        "" | "any" => Requested::Any,
        "cool" => Requested::Cool,
        "warm" => Requested::Warm,
        "hot" => Requested::Hot,
        _ => {
            return Err(format!(
                "unknown device state {state:?}: this agent knows any, cool, warm and hot, \
                 optionally followed by +battery<LEVEL>-<wait|drain|simulate>"
            ))
        }
    };
    Ok(CellState { thermal, battery })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::battery::Mode;

    #[test]
    fn thermal_and_battery_states_are_parsed() {
        let t = |s| parse(s).map(|c| c.thermal);
        assert_eq!(t("any"), Ok(Requested::Any));
        assert_eq!(t("hot"), Ok(Requested::Hot));
        assert_eq!(t("Cool"), Ok(Requested::Cool));
        assert_eq!(parse("hot").unwrap().battery, None);
        let c = parse("cool+battery20-wait").unwrap();
        assert_eq!(c.thermal, Requested::Cool);
        assert_eq!(
            c.battery,
            Some(Want {
                level: 20,
                mode: Mode::Wait
            })
        );
        assert_eq!(
            parse("any+battery100-simulate")
                .unwrap()
                .battery
                .unwrap()
                .mode,
            Mode::Simulate
        );
        for b in [
            "cool+drain",
            "hot+50",
            "any+simulate",
            "any+battery0-simulate",
        ] {
            let e = parse(b).unwrap_err();
            assert!(e.contains("battery"), "{b}: {e}");
        }
        assert!(parse("tepid").unwrap_err().contains("unknown device state"));
        assert!(parse("tepid+battery50-wait")
            .unwrap_err()
            .contains("unknown device state"));
    }
}
