//! What llama-server answers besides the completion stream (which is [`super::sse`]'s):
//! `/health`, `/props`, `/v1/models` and `/tokenize`. Apart from the HTTP client so the
//! answers captured from a real server (`agent/tests/fixtures/llama-server/`) test it. A
//! malformed answer is an error naming the field, never a panic and never a zero.

use super::sse::{count, kind, shown};
use serde_json::Value;

/// What the load record says about the server: its build and the model it loaded.
#[derive(Debug, Default, PartialEq)]
pub struct ServerInfo {
    /// `build_info` of `/props`, e.g. `b6990-3f3a4c1`; `None` for a server that omits it.
    pub build: Option<String>,
    /// `model_ftype` of `/props`, the file's weight type as llama.cpp names it (`Q4_1`).
    pub ftype: Option<String>,
    /// The model's name in requests (`data[0].id` of `/v1/models`).
    pub model: String,
    /// `data[0].meta.n_params`, when the server says.
    pub n_params: Option<u64>,
}

/// `/health`: `Ok(true)` once the model is loaded, `Ok(false)` while it loads (503).
pub fn healthy(status: u16, body: &str) -> Result<bool, String> {
    match status {
        200 => Ok(true),
        503 => Ok(false),
        other => Err(format!("/health answered {other}: {}", shown(body.trim()))),
    }
}

fn json(what: &str, body: &str) -> Result<Value, String> {
    serde_json::from_str(body).map_err(|e| format!("{what} is not JSON ({e}): {}", shown(body)))
}

/// `build_info` and `model_ftype` of a `/props` answer (either may be absent: older servers).
pub fn props(props: &str) -> Result<(Option<String>, Option<String>), String> {
    let v = json("/props", props)?;
    let text = |field: &str| match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "/props: `{field}` is {}, not a string",
            kind(other)
        )),
    };
    Ok((text("build_info")?, text("model_ftype")?))
}

/// The model a `/v1/models` answer lists first, with its parameter count when given.
pub fn first_model(models: &str) -> Result<(String, Option<u64>), String> {
    let v = json("/v1/models", models)?;
    let first = match v.get("data") {
        Some(Value::Array(list)) => list.first().ok_or("/v1/models: `data` lists no model")?,
        Some(other) => return Err(format!("/v1/models: `data` is {}, not a list", kind(other))),
        None => return Err("/v1/models has no `data`".into()),
    };
    let id = match first.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "/v1/models: `data[0].id` is {}, not a string",
                kind(other)
            ))
        }
        None => return Err("/v1/models: `data[0]` has no `id`".into()),
    };
    let n_params = match first.get("meta") {
        None | Some(Value::Null) => None,
        Some(meta) => Some(count(meta, "data[0].meta", "n_params")? as u64),
    };
    Ok((id, n_params))
}

/// The number of tokens in a `/tokenize` answer (`{"tokens": [...]}`).
pub fn token_count(body: &str) -> Result<usize, String> {
    let v = json("/tokenize", body)?;
    match v.get("tokens") {
        Some(Value::Array(t)) => Ok(t.len()),
        Some(other) => Err(format!(
            "/tokenize: `tokens` is {}, not a list",
            kind(other)
        )),
        None => Err(format!("/tokenize has no `tokens`: {}", shown(body))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_answers_name_the_field() {
        assert!(!healthy(503, "{}").unwrap());
        let e = healthy(404, "File Not Found").unwrap_err();
        assert!(e.contains("/health answered 404"), "{e}");
        let e = props(r#"{"build_info":7}"#).unwrap_err();
        assert!(e.contains("`build_info` is a number"), "{e}");
        assert_eq!(props("{}").unwrap(), (None, None));
        let e = first_model(r#"{"data":[]}"#).unwrap_err();
        assert!(e.contains("lists no model"), "{e}");
        let e = first_model(r#"{"data":[{"id":1}]}"#).unwrap_err();
        assert!(e.contains("`data[0].id` is a number"), "{e}");
        let e = first_model(r#"{"data":[{"id":"m","meta":{"n_params":"9"}}]}"#).unwrap_err();
        assert!(e.contains("`data[0].meta.n_params` is a string"), "{e}");
        let e = first_model(r#"{"object":"list"}"#).unwrap_err();
        assert!(e.contains("no `data`"), "{e}");
        let e = token_count(r#"{"tokens":3}"#).unwrap_err();
        assert!(e.contains("`tokens` is a number"), "{e}");
        let e = token_count(r#"{"tok"#).unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
    }
}
