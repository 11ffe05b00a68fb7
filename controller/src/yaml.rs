//! YAML input with positions: the plumbing shared by [`crate::suite`] and [`crate::devices`].
//!
//! Files are parsed with `serde-saphyr` into structs whose every value is wrapped in
//! [`Spanned`], so checks that run *after* deserialization (an unknown precision, `passes: 0`,
//! a device that is not in the inventory) can still point at the offending value. Every problem
//! becomes a [`Diagnostic`] printed ripgrep style, `file:line:column: message`, and a file's
//! problems are collected into [`Diagnostics`] instead of stopping at the first one.
//!
//! Numbers are read as [`Raw`] scalars rather than as `u64`, so `passes: -3`, `passes: lots` and
//! `passes: 2.5` all reach the validator, which says which key wanted what, instead of
//! serde's bare "invalid u64".

pub mod shape;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_saphyr::{Error as YamlError, Location, MessageFormatter, Spanned, UserMessageFormatter};

/// A 1-based line and column (counted in characters) in a YAML file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    /// The start of a file: where problems with the document as a whole are reported.
    pub const START: Pos = Pos { line: 1, column: 1 };

    /// `None` for serde-saphyr's "unknown location" (line 0).
    pub fn from_location(loc: Location) -> Option<Pos> {
        let line = u32::try_from(loc.line()).ok()?;
        let column = u32::try_from(loc.column()).ok()?;
        (line > 0).then_some(Pos {
            line,
            column: column.max(1),
        })
    }

    /// Where a spanned value starts (the file start when serde-saphyr lost the location).
    pub fn of<T>(spanned: &Spanned<T>) -> Pos {
        Pos::from_location(spanned.referenced).unwrap_or(Pos::START)
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem in an input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it (relative paths stay relative).
    pub file: PathBuf,
    /// Where in the file; `None` for problems with the file as a whole (cannot read it).
    pub pos: Option<Pos>,
    /// What is wrong, naming the bad value and what is allowed.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `file:line:column: message`, or `file: message` without a position.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(pos) => write!(f, "{}:{}: {}", self.file.display(), pos, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a suite and the device inventory it was checked against: one
/// [`Diagnostic`] per line when displayed. Never empty when returned as an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    pub errors: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.errors.iter()
    }

    /// A single problem with a whole file (it cannot be read, for example).
    pub fn file(file: &Path, message: impl Into<String>) -> Diagnostics {
        Diagnostics {
            errors: vec![Diagnostic {
                file: file.to_path_buf(),
                pos: None,
                message: message.into(),
            }],
        }
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.errors.extend(other.errors);
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Collects the problems of one file while a validator walks it.
pub struct Report<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    errors: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Report {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// Record a problem at `pos`.
    pub fn at(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: self.file.to_path_buf(),
            pos: Some(pos),
            message: message.into(),
        });
    }

    /// Record a problem at a spanned value.
    pub fn on<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        self.at(Pos::of(spanned), message)
    }

    /// `list`, or a report that the file lacks `key` (with an example of it) and `None`.
    pub fn required<'l, T>(
        &mut self,
        list: Option<&'l Spanned<T>>,
        key: &str,
        example: &str,
    ) -> Option<&'l Spanned<T>> {
        if list.is_none() {
            self.at(Pos::START, format!("missing key '{key}' (e.g. {example})"));
        }
        list
    }

    /// Reports `list` when it holds nothing: "`key` is empty: `fix`" (what to write instead,
    /// or that the key can go).
    pub fn non_empty<T>(&mut self, list: &Spanned<Vec<T>>, key: &str, fix: impl std::fmt::Display) {
        if list.value.is_empty() {
            self.on(list, format!("{key} is empty: {fix}"));
        }
    }

    /// `file:line:column` of a spanned value, for messages that refer to a second place.
    pub fn place<T>(&self, spanned: &Spanned<T>) -> String {
        format!("{}:{}", self.file.display(), Pos::of(spanned))
    }

    /// The value as written in the file (quotes included), for messages.
    pub fn source<T>(&self, spanned: &Spanned<T>) -> String {
        source_text(self.text, spanned.referenced).unwrap_or_default()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The problems in file order.
    pub fn finish(mut self) -> Diagnostics {
        self.errors.sort_by_key(|d| d.pos);
        Diagnostics {
            errors: self.errors,
        }
    }

    /// A whole number in `min..=max` from a [`Raw`] scalar, or a recorded problem naming `key`.
    pub fn whole(&mut self, key: &str, value: &Spanned<Raw>, min: u64, max: u64) -> Option<u64> {
        let shown = self.shown(value);
        let wanted = if max == u64::MAX {
            format!("a whole number >= {min}")
        } else {
            format!("a whole number from {min} to {max}")
        };
        match value.value {
            Raw::Int(n) if n >= i128::from(min) && n <= i128::from(max) => u64::try_from(n).ok(),
            Raw::Int(_) => {
                self.on(value, format!("{key} must be {wanted}, got {shown}"));
                None
            }
            Raw::Null => {
                self.on(value, format!("{key} has no value (expected {wanted})"));
                None
            }
            Raw::List => {
                self.on(value, format!("{key} must be {wanted}, got a list"));
                None
            }
            Raw::Map => {
                self.on(value, format!("{key} must be {wanted}, got a mapping"));
                None
            }
            _ => {
                self.on(value, format!("{key} must be {wanted}, got {shown}"));
                None
            }
        }
    }

    /// `'text'` as written, falling back to the parsed value.
    fn shown(&self, value: &Spanned<Raw>) -> String {
        let text = self.source(value);
        if text.is_empty() {
            format!("'{}'", value.value)
        } else {
            format!("'{text}'")
        }
    }
}

/// A scalar read without a target type, so validators can say what was wrong with it.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    Int(i128),
    Float(f64),
    Bool(bool),
    Str(String),
    /// `key:` with nothing after it, or `~` / `null`.
    Null,
    /// A list where a scalar was expected (kept so the validator can name the key).
    List,
    /// A mapping where a scalar was expected.
    Map,
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Int(n) => write!(f, "{n}"),
            Raw::Float(x) => write!(f, "{x}"),
            Raw::Bool(b) => write!(f, "{b}"),
            Raw::Str(s) => f.write_str(s),
            Raw::Null => f.write_str("null"),
            Raw::List => f.write_str("a list"),
            Raw::Map => f.write_str("a mapping"),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
                Ok(i128::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Raw::List)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Raw::Map)
            }
        }
        d.deserialize_any(V)
    }
}

/// A key that may be absent: `None` when it is, the value and its position when it is not.
pub type Field<T> = Option<Spanned<T>>;

/// `#[serde(default, deserialize_with = "yaml::present")]` for [`Field`]s: a key that is
/// written is always `Some`, even as `key:` or `key: ~`, so "no value" is reported where it is
/// instead of silently meaning "use the default".
pub fn present<'de, D, T>(d: D) -> Result<Field<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Spanned::<T>::deserialize(d).map(Some)
}

/// A command line written either as one string (split on whitespace) or as a list of words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Argv(pub Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Argv;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command: a string or a list of strings")
            }
            fn visit_str<E>(self, v: &str) -> Result<Argv, E> {
                Ok(Argv(v.split_whitespace().map(str::to_owned).collect()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Argv, A::Error> {
                let mut words = Vec::new();
                while let Some(w) = seq.next_element::<String>()? {
                    words.push(w);
                }
                Ok(Argv(words))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse `text` into `T` after checking it against `shape` ([`shape::check`]): every unknown
/// key and misshapen value at once, else what the strict parse finds.
pub fn parse_shaped<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
    shape: &shape::Shape,
) -> Result<T, Diagnostics> {
    let errors = shape::check(file, text, shape);
    if !errors.is_empty() {
        return Err(Diagnostics { errors });
    }
    parse(file, text)
}

/// Parse `text` into `T`, turning serde-saphyr's error into a one-line [`Diagnostic`].
pub fn parse<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, Diagnostics> {
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_indentation: true,
    };
    serde_saphyr::from_str_with_options::<T>(text, options).map_err(|e| {
        let (pos, message) = describe(&e, text);
        Diagnostics {
            errors: vec![Diagnostic {
                file: file.to_path_buf(),
                pos: Some(pos.unwrap_or(Pos::START)),
                message,
            }],
        }
    })
}

/// Largest suite, inventory or prompt file read: far beyond any real one, and a bound on what
/// a wrong path (`/dev/zero`, a model file) can make us hold in memory.
pub const MAX_TEXT_FILE: u64 = 16 << 20;

/// The bytes of `file`, refusing what is not a regular file (a directory, a FIFO that would
/// wait for a writer, a device) and files over [`MAX_TEXT_FILE`].
pub fn read_bounded(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let meta = std::fs::metadata(file)?;
    if meta.is_dir() {
        return Err(Error::new(ErrorKind::InvalidInput, "it is a directory"));
    }
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "it is not a regular file (a FIFO, socket or device)",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_TEXT_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TEXT_FILE {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("it is larger than {} MiB", MAX_TEXT_FILE >> 20),
        ));
    }
    Ok(bytes)
}

/// Read a UTF-8 file, reporting unreadable files and invalid bytes with their position.
pub fn read(file: &Path) -> Result<String, Diagnostics> {
    let bytes = read_bounded(file).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => " (check the path)",
            _ => "",
        };
        Diagnostics::file(file, format!("cannot read: {e}{hint}"))
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            // `good` is valid UTF-8 by construction.
            let before = std::str::from_utf8(good).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            Err(Diagnostics {
                errors: vec![Diagnostic {
                    file: file.to_path_buf(),
                    pos: Some(Pos {
                        line: u32::try_from(line).unwrap_or(u32::MAX),
                        column: u32::try_from(column).unwrap_or(u32::MAX),
                    }),
                    message: "the file is not valid UTF-8 (save it as UTF-8)".into(),
                }],
            })
        }
    }
}

/// A position and a message for a serde-saphyr error, in this crate's words where it matters.
fn describe(err: &YamlError, text: &str) -> (Option<Pos>, String) {
    let mut inner = err.without_snippet();
    while let YamlError::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let pos = inner
        .location()
        .or_else(|| err.location())
        .and_then(Pos::from_location);
    let found = || {
        pos.and_then(|p| token_at(text, p))
            .map_or_else(String::new, |t| format!(", found '{t}'"))
    };
    let message = match inner {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown key '{}' (allowed: {})",
            clean(field),
            expected.join(", ")
        ),
        YamlError::DuplicateMappingKey { key, .. } => match key {
            Some(k) => format!("duplicate key '{}' (each key may appear once)", clean(k)),
            None => "duplicate key (each key may appear once)".into(),
        },
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        YamlError::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => format!("invalid value {unexpected}: expected {expected}"),
        YamlError::Unexpected { expected, .. } => {
            format!("expected {}{}", plain_expected(expected), found())
        }
        YamlError::NullIntoString { .. } => "missing value (expected a string)".into(),
        YamlError::Eof { .. } => {
            "unexpected end of file (an unclosed bracket, brace or quote?)".into()
        }
        YamlError::ExternalMessage { .. } => {
            let msg = UserMessageFormatter.format_message(inner);
            format!("invalid YAML: {msg}{}", syntax_hint(&msg, text, pos))
        }
        other => UserMessageFormatter.format_message(other).into_owned(),
    };
    (pos, no_control(&message))
}

/// What probably caused a YAML syntax error, as " (...)" to append, or "".
fn syntax_hint(msg: &str, text: &str, pos: Option<Pos>) -> String {
    let structural = !msg.contains("unclosed")
        && (msg.contains("indent") || msg.contains("flow") || msg.contains("expected ','"));
    if let Some((open, at)) = pos
        .filter(|_| structural)
        .and_then(|p| unclosed_bracket(text, p))
    {
        return format!(
            " (the '{open}' at line {}, column {} is never closed)",
            at.line, at.column
        );
    }
    if msg.contains("quoted scalar") {
        " (is a quote left open?)".into()
    } else if msg.contains("indent")
        || msg.contains("expected '-'")
        || msg.contains("block mapping")
        || msg.contains("mapping values are not allowed")
    {
        " (check the indentation of this line against the lines above)".into()
    } else {
        String::new()
    }
}

/// The innermost `[` or `{` still open before `pos`, skipping quoted text and comments.
fn unclosed_bracket(text: &str, pos: Pos) -> Option<(char, Pos)> {
    let mut stack: Vec<(char, Pos)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).ok()?;
        if line_no > pos.line {
            break;
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (j, c) in line.chars().enumerate() {
            let col = u32::try_from(j + 1).ok()?;
            if line_no == pos.line && col >= pos.column {
                break;
            }
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') if matches!(prev, ' ' | '[' | '{' | ',' | ':') => {
                    quote = Some(c)
                }
                (None, '#') if prev == ' ' || j == 0 => break,
                (None, '[' | '{') => stack.push((
                    c,
                    Pos {
                        line: line_no,
                        column: col,
                    },
                )),
                (None, ']' | '}') => {
                    stack.pop();
                }
                _ => {}
            }
            prev = c;
        }
    }
    stack.pop()
}

/// Serde-saphyr's structural expectations, in words a suite author knows.
fn plain_expected(expected: &str) -> Cow<'_, str> {
    match expected {
        "sequence start" => "a list".into(),
        "mapping start" => "a mapping (key: value)".into(),
        "string scalar" => "a single value".into(),
        other => other.into(),
    }
}

fn clean(s: &str) -> String {
    no_control(&s.chars().take(80).collect::<String>())
}

/// Control characters from the file would garble a one-line message: show them escaped.
fn no_control(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The value written at `pos` (up to the end of its line, a comment, or a flow delimiter).
fn token_at(text: &str, pos: Pos) -> Option<String> {
    let line = text.lines().nth(pos.line.checked_sub(1)? as usize)?;
    let rest: String = line
        .chars()
        .skip(pos.column.saturating_sub(1) as usize)
        .collect();
    let mut end = rest.len();
    if let Some(i) = rest.find(" #") {
        end = end.min(i);
    }
    let token = rest[..end].trim();
    if token.is_empty() {
        return None;
    }
    Some(no_control(&token.chars().take(60).collect::<String>()))
}

/// The source text of a spanned scalar, if it sits on one line.
fn source_text(text: &str, loc: Location) -> Option<String> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let s = text.get(start..start.checked_add(len)?)?;
    (!s.contains('\n')).then(|| no_control(&s.chars().take(80).collect::<String>()))
}

/// `[a-zA-Z0-9][a-zA-Z0-9._-]*`, at most 64 characters: names that end up in cell ids, file
/// names and remote command lines.
pub fn is_simple_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// What [`is_simple_name`] allows, for messages.
pub const SIMPLE_NAME_RULE: &str =
    "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters";

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default, deserialize_with = "present")]
        n: Field<Raw>,
    }

    #[test]
    fn raw_numbers_keep_their_position_and_text() {
        let text = "n: -3\n";
        let doc: Doc = parse(Path::new("x.yaml"), text).unwrap();
        let n = doc.n.unwrap();
        assert_eq!(n.value, Raw::Int(-3));
        assert_eq!(Pos::of(&n), Pos { line: 1, column: 4 });
        let mut r = Report::new(Path::new("x.yaml"), text);
        assert_eq!(r.whole("n", &n, 1, u64::MAX), None);
        assert_eq!(
            r.finish().to_string(),
            "x.yaml:1:4: n must be a whole number >= 1, got '-3'"
        );
    }

    #[test]
    fn an_empty_value_is_present_as_null() {
        let doc: Doc = parse(Path::new("x.yaml"), "n:\n").unwrap();
        assert_eq!(doc.n.unwrap().value, Raw::Null);
    }

    #[test]
    fn unknown_keys_name_the_allowed_ones() {
        let e = parse::<Doc>(Path::new("x.yaml"), "m: 1\n").unwrap_err();
        assert_eq!(e.to_string(), "x.yaml:1:1: unknown key 'm' (allowed: n)");
    }

    #[test]
    fn token_at_stops_at_comments_and_never_panics() {
        assert_eq!(
            token_at("a: [1] # c", Pos { line: 1, column: 4 }).as_deref(),
            Some("[1]")
        );
        assert_eq!(
            token_at(
                "é",
                Pos {
                    line: 9,
                    column: 99
                }
            ),
            None
        );
        assert_eq!(
            token_at(
                "é",
                Pos {
                    line: 1,
                    column: 99
                }
            ),
            None
        );
    }

    #[test]
    fn simple_names() {
        assert!(is_simple_name("smollm2-135m"));
        assert!(is_simple_name("short_chat.v2"));
        assert!(!is_simple_name("-x"));
        assert!(!is_simple_name("a b"));
        assert!(!is_simple_name("a/b"));
        assert!(!is_simple_name(""));
    }
}
