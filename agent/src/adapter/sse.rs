//! The server-sent events of a streamed OpenAI-style completion: `data: {json}` lines, one
//! chunk of generated text each, ending with `data: [DONE]`. Parsing is apart from the HTTP
//! client so captured streams test it. A malformed chunk is an error naming the field, never a
//! panic and never a silent zero.

use serde_json::Value;

/// What one `data:` line carries.
#[derive(Debug, Default, PartialEq)]
pub struct Chunk {
    /// Generated text (empty for a chunk that carries only a role, a finish reason or usage).
    pub text: String,
    /// `length`, `stop`, ... once generation ended.
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// `data: [DONE]`: the stream's end.
    pub done: bool,
}

/// Token counts the server reports (`usage`), usually in the last chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// The payload of a `data:` line; `None` for comments, `event:`/`id:` lines and blank lines.
pub fn data(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("data:")?;
    Some(
        rest.strip_prefix(' ')
            .unwrap_or(rest)
            .trim_end_matches(['\r', '\n']),
    )
}

/// One `data:` payload of a stream from `/completions` (`chat` false: text in
/// `choices[0].text`) or `/chat/completions` (`chat` true: in `choices[0].delta.content`).
pub fn parse(payload: &str, chat: bool) -> Result<Chunk, String> {
    if payload.trim() == "[DONE]" {
        return Ok(Chunk {
            done: true,
            ..Chunk::default()
        });
    }
    let v: Value = serde_json::from_str(payload)
        .map_err(|e| format!("a stream chunk is not JSON ({e}): {}", shown(payload)))?;
    if let Some(err) = v.get("error") {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        return Err(format!("the server reported an error: {message}"));
    }
    let mut chunk = Chunk::default();
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        chunk.usage = Some(Usage {
            prompt_tokens: count(u, "usage", "prompt_tokens")?,
            completion_tokens: count(u, "usage", "completion_tokens")?,
        });
    }
    let choices = match v.get("choices") {
        Some(Value::Array(c)) => c,
        Some(other) => return Err(format!("`choices` is {}, not a list", kind(other))),
        // A usage-only chunk (`stream_options.include_usage`) may leave `choices` out.
        None if chunk.usage.is_some() => return Ok(chunk),
        None => {
            return Err(format!(
                "a stream chunk has no `choices`: {}",
                shown(payload)
            ))
        }
    };
    let Some(first) = choices.first() else {
        return Ok(chunk);
    };
    let (text, name) = if chat {
        (
            first.get("delta").and_then(|d| d.get("content")),
            "choices[0].delta.content",
        )
    } else {
        (first.get("text"), "choices[0].text")
    };
    chunk.text = match text {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("`{name}` is {}, not a string", kind(other))),
    };
    chunk.finish_reason = match first.get("finish_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(format!(
                "`choices[0].finish_reason` is {}, not a string",
                kind(other)
            ))
        }
    };
    Ok(chunk)
}

/// `usage` of a non-streamed response (the prompt calibration asks for one token).
pub fn usage_of_response(body: &str) -> Result<Usage, String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| format!("the response is not JSON ({e}): {}", shown(body)))?;
    if let Some(err) = v.get("error") {
        return Err(format!("the server reported an error: {err}"));
    }
    let u = v
        .get("usage")
        .filter(|u| !u.is_null())
        .ok_or_else(|| format!("the response has no `usage`: {}", shown(body)))?;
    Ok(Usage {
        prompt_tokens: count(u, "usage", "prompt_tokens")?,
        completion_tokens: count(u, "usage", "completion_tokens")?,
    })
}

pub(super) fn count(obj: &Value, parent: &str, field: &str) -> Result<usize, String> {
    match obj.get(field) {
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| format!("`{parent}.{field}` is {n}, not a count")),
        Some(other) => Err(format!(
            "`{parent}.{field}` is {}, not a count",
            kind(other)
        )),
        None => Err(format!("`{parent}` has no `{field}`")),
    }
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(super) fn shown(text: &str) -> String {
    let s: String = text.chars().take(160).collect();
    if s.len() < text.len() {
        format!("{s}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_and_others() {
        assert_eq!(data("data: {\"a\":1}"), Some("{\"a\":1}"));
        assert_eq!(data("data:[DONE]\r"), Some("[DONE]"));
        assert_eq!(data(": ping"), None);
        assert_eq!(data(""), None);
        assert_eq!(data("event: message"), None);
    }

    #[test]
    fn malformed_chunks_name_the_field() {
        let e = parse(r#"{"choices":[{"text":7}]}"#, false).unwrap_err();
        assert!(e.contains("`choices[0].text` is a number"), "{e}");
        let e = parse(r#"{"choices":[{"delta":{"content":[]}}]}"#, true).unwrap_err();
        assert!(e.contains("`choices[0].delta.content` is a list"), "{e}");
        let e = parse(r#"{"choices":[],"usage":{"prompt_tokens":"9"}}"#, false).unwrap_err();
        assert!(e.contains("`usage.prompt_tokens` is a string"), "{e}");
        let e = parse(r#"{"choices":[],"usage":{"prompt_tokens":9}}"#, false).unwrap_err();
        assert!(e.contains("`usage` has no `completion_tokens`"), "{e}");
        let e = parse(r#"{"choices":{"text":"a"}}"#, false).unwrap_err();
        assert!(e.contains("`choices` is an object"), "{e}");
        let e = parse(r#"{"id":"x"}"#, false).unwrap_err();
        assert!(e.contains("no `choices`"), "{e}");
        let e = parse(r#"{"choices":[{"text":"a""#, false).unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        let e = parse(r#"{"error":{"message":"model not loaded"}}"#, false).unwrap_err();
        assert!(e.contains("model not loaded"), "{e}");
    }

    #[test]
    fn usage_only_and_done_chunks() {
        let c = parse(
            r#"{"choices":[],"usage":{"prompt_tokens":64,"completion_tokens":16}}"#,
            false,
        )
        .unwrap();
        assert_eq!(c.text, "");
        assert_eq!(c.usage.unwrap().completion_tokens, 16);
        assert!(parse("[DONE]", true).unwrap().done);
    }
}
