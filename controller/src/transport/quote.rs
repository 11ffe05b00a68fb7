//! The one place remote command lines are built. ssh and adb hand the device a string that a
//! POSIX shell (or Android's mksh) parses; each argument is wrapped in single quotes, inside
//! which the shell gives no character a meaning, and a single quote itself is written as
//! `'\''`. So a device name like `x; touch pwned` stays one argument, never a second command.

/// One argument, quoted for a POSIX shell. Plain words (letters, digits, `-_./=:,+@%`) stay as
/// they are, so logged command lines remain readable.
pub fn arg(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A whole command line: every argument quoted, joined by spaces.
pub fn command_line(argv: &[&str]) -> String {
    argv.iter().map(|a| arg(a)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What a real shell makes of the quoted line: its arguments, NUL-separated.
    fn through_sh(argv: &[&str]) -> Vec<String> {
        let line = format!("printf '%s\\0' {}", command_line(argv));
        let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
        assert!(out.status.success(), "{line}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut args: Vec<String> = text.split('\0').map(String::from).collect();
        args.pop(); // after the last NUL
        args
    }

    #[test]
    fn every_argument_reaches_the_shell_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let pwned = dir.path().join("pwned");
        let hostile = format!("x; touch {}", pwned.display());
        let cases = [
            hostile.as_str(),
            "$(touch pwned)",
            "`touch pwned`",
            "it's",
            "a'b'c",
            "\"quoted\"",
            "back\\slash",
            "new\nline",
            "*",
            "~",
            "a b",
            "-n",
            "&& || | > < ; #",
            "$HOME ${PATH}",
            "ünïcödé",
        ];
        for case in cases {
            assert_eq!(through_sh(&[case]), vec![case.to_string()], "{case:?}");
        }
        assert!(!pwned.exists(), "a quoted argument ran a command");
    }

    #[test]
    fn the_empty_argument_is_kept() {
        assert_eq!(arg(""), "''");
        assert_eq!(through_sh(&["", "x"]), vec!["".to_string(), "x".into()]);
    }

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(
            command_line(&["/data/local/tmp/mb/agent", "run", "--job", "a.json"]),
            "/data/local/tmp/mb/agent run --job a.json"
        );
        assert_eq!(arg("a b"), "'a b'");
    }
}
