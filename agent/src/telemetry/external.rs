//! An external power meter: a user command (`$MELTBENCH_POWER_METER`, split on whitespace, no
//! shell) that prints the current power in milliwatts; the last number it prints is taken. It
//! is sampled at the command rate like the other spawned readers and, when it works, is the
//! total: a meter outside the device sees what the device's own sensors leave out.

use super::cmd::Commands;
use super::{priority, Found, Group, Kind, PowerTotal, Rate, Reading};

pub const ENV: &str = "MELTBENCH_POWER_METER";

/// The last number in the output, in mW.
pub fn parse_mw(text: &str) -> Option<f64> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '=')
        .filter_map(|t| t.trim_end_matches("mW").parse::<f64>().ok())
        .rfind(|v| v.is_finite())
}

pub fn discover(cmds: &Commands, found: &mut Found) {
    let Some(cmd) = std::env::var(ENV).ok().filter(|c| !c.trim().is_empty()) else {
        return;
    };
    discover_command(cmds, &cmd, found);
}

pub fn discover_command(cmds: &Commands, cmd: &str, found: &mut Found) {
    let argv: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    let read = {
        let cmds = cmds.clone();
        let argv = argv.clone();
        move || {
            let args: Vec<&str> = argv.iter().map(String::as_str).collect();
            cmds.run(&args).and_then(|out| match parse_mw(&out) {
                Some(mw) => Reading::Ok(mw / 1e3),
                None => Reading::Unreadable(format!("meter printed no number: {:?}", out.trim())),
            })
        }
    };
    let probe = read.clone();
    match probe() {
        Reading::Ok(w) => {
            found.source(
                "external_meter",
                Reading::Ok(format!("`{cmd}`: {:.0} mW now", w * 1e3)),
            );
            found.groups.push(Group::single(
                Rate::Command,
                "external:power".into(),
                Kind::PowerW,
                read,
            ));
            found.totals.push((
                priority::EXTERNAL,
                PowerTotal {
                    members: vec!["external:power".into()],
                    kind: Kind::PowerW,
                    rule: format!("external meter `{cmd}`"),
                    lower_bound: false,
                    battery_side: false,
                },
            ));
        }
        Reading::Absent => found.source(
            "external_meter",
            Reading::Unreadable(format!("`{cmd}`: command not found")),
        ),
        other => found.source("external_meter", other.map(|w| w.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliwatts() {
        assert_eq!(parse_mw("4321\n"), Some(4321.0));
        assert_eq!(parse_mw("power=1234.5mW"), Some(1234.5));
        assert_eq!(parse_mw("t 17 p 900"), Some(900.0));
        assert_eq!(parse_mw("no data"), None);
    }
}
