//! Chat turns as apps send them: a conversation rendered with the model's own
//! `tokenizer.chat_template` (Jinja, run by minijinja), then tokenized the way llama.cpp does.
//!
//! What a template sees follows llama.cpp's `common_chat_templates_apply_jinja` (common/chat.cpp
//! at commit 0c1e570): `messages` (role and content strings), `add_generation_prompt`,
//! `bos_token` and `eos_token` (the texts of those tokens, empty where the model has none),
//! `enable_thinking` (true, llama.cpp's default), `datetime` and `date_string` (today, as
//! "%b %d %Y" and "%d %b %Y"), and the functions `raise_exception(msg)` and
//! `strftime_now(format)`. `tools` is left undefined, as llama.cpp does when no tools are given.
//! Blocks are trimmed as in Hugging Face's and llama.cpp's template environments
//! (`trim_blocks`, `lstrip_blocks`), and Python's string methods (`.strip()`, `.startswith()`,
//! `.split()`, ...) come from minijinja-contrib's pycompat.
//!
//! Tokenizing the rendered text parses special tokens (so `<|im_start|>` becomes its id) and
//! adds BOS where the model asks for it; when the template already wrote the BOS text at the
//! start, that text is dropped first, so the prompt holds one BOS either way (llama.cpp strips
//! it in `common_chat_template_direct_apply_impl`, then tokenizes with `add_special`).

use crate::gguf::{Gguf, Value as GgufValue};
use crate::quantize::hex;
use crate::tokenizer::Tokenizer;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Value, ValueKind};
use minijinja::{
    context, escape_formatter, AutoEscape, Environment, Error, ErrorKind, Output, State,
};
use sha2::{Digest, Sha256};

/// The GGUF metadata key that holds a model's chat template.
pub const TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// The template's name inside minijinja, which its error messages show as `name:line`.
const NAME: &str = "tokenizer.chat_template";

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(
        "{model} has no {TEMPLATE_KEY} in its metadata, so there is no chat format to put the \
         prompt in; run it without chat (drop `chat: true` from the scenario, or --chat), or use \
         the model's instruct variant, whose file carries a template"
    )]
    NoTemplate { model: String },
    #[error("{model}: {TEMPLATE_KEY} holds {found}, not the text of a Jinja template")]
    NotText { model: String, found: String },
    #[error(
        "{model}: the chat template in {TEMPLATE_KEY} does not parse: {detail}; the file's \
         template is broken or uses Jinja this engine does not support"
    )]
    Syntax { model: String, detail: String },
    #[error("{model}: rendering the chat template in {TEMPLATE_KEY} failed: {detail}")]
    Render { model: String, detail: String },
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: &str) -> Message {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// What a template is rendered with besides the conversation: the texts of the model's BOS and
/// EOS tokens, and whether its tokenizer adds BOS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Specials {
    pub bos_token: String,
    pub eos_token: String,
    pub add_bos: bool,
}

impl Specials {
    /// The tokenizer's own: token texts as llama.cpp's `common_token_to_piece(.., special =
    /// true)` gives them (control tokens included), empty where the model has no such token.
    pub fn of(tokenizer: &Tokenizer) -> Specials {
        let text = |id: Option<u32>| {
            let mut bytes = Vec::new();
            if let Some(id) = id {
                tokenizer.token_bytes(id, true, &mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Specials {
            bos_token: text(tokenizer.bos),
            eos_token: text(tokenizer.eos),
            add_bos: tokenizer.add_bos,
        }
    }
}

/// A model's chat template, compiled, with the token texts it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The model file, for error messages.
    model: String,
    specials: Specials,
    sha256: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("model", &self.model)
            .field("specials", &self.specials)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The template in `gguf`'s metadata (errors name the file).
    pub fn from_gguf(gguf: &Gguf, tokenizer: &Tokenizer) -> Result<ChatTemplate, ChatError> {
        let model = gguf.path.display().to_string();
        let model = model.as_str();
        let source = match gguf.get(TEMPLATE_KEY) {
            None => {
                return Err(ChatError::NoTemplate {
                    model: model.into(),
                })
            }
            Some(v) => v.as_str().ok_or_else(|| ChatError::NotText {
                model: model.into(),
                found: describe(v),
            })?,
        };
        if source.trim().is_empty() {
            return Err(ChatError::NoTemplate {
                model: model.into(),
            });
        }
        ChatTemplate::from_source(source, Specials::of(tokenizer), model)
    }

    /// A template given as text (a model's, read elsewhere), rendered with `specials`; `model`
    /// names where it came from in errors.
    pub fn from_source(
        source: &str,
        specials: Specials,
        model: &str,
    ) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        // Hugging Face's and llama.cpp's template environments both trim blocks; without this,
        // every `{% if %}` line of a multi-line template leaves a newline in the prompt.
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are a valid syntax"),
        );
        // A chat prompt is plain text: no HTML escaping of `<` in `<|im_start|>`.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_spellings);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| ChatError::Syntax {
                model: model.into(),
                detail: detail(&e),
            })?;
        Ok(ChatTemplate {
            env,
            model: model.into(),
            specials,
            sha256: hex(&Sha256::digest(source.as_bytes())),
        })
    }

    /// SHA-256 of the template text (hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// `messages` rendered as the template writes them, with the time `now` for
    /// `strftime_now`, `datetime` and `date_string` (pass one fixed time to render the same
    /// text each time).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        now: &jiff::Zoned,
    ) -> Result<String, ChatError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let now_for_fn = now.clone();
        let strftime_now = Value::from_function(move |format: String| -> Result<String, Error> {
            strftime(&format, &now_for_fn)
        });
        let ctx = context! {
            messages => messages,
            bos_token => self.specials.bos_token.as_str(),
            eos_token => self.specials.eos_token.as_str(),
            add_generation_prompt => add_generation_prompt,
            enable_thinking => true,
            datetime => strftime("%b %d %Y", now).unwrap_or_default(),
            date_string => strftime("%d %b %Y", now).unwrap_or_default(),
            strftime_now => strftime_now,
        };
        let render_error = |e: Error| ChatError::Render {
            model: self.model.clone(),
            detail: detail(&e),
        };
        self.env
            .get_template(NAME)
            .and_then(|t| t.render(ctx))
            .map_err(render_error)
    }

    /// One user turn with the generation prompt after it: what an app sends for `text`.
    pub fn user_turn(&self, text: &str, now: &jiff::Zoned) -> Result<String, ChatError> {
        self.render(&[Message::user(text)], true, now)
    }

    /// Token ids of a rendered prompt: special tokens parsed, BOS added where the model asks
    /// for it unless the template already wrote it (then that text is dropped first, so the
    /// BOS it stood for is added once).
    pub fn encode(&self, tokenizer: &Tokenizer, rendered: &str) -> Vec<u32> {
        let bos = self.specials.bos_token.as_str();
        let text = match rendered.strip_prefix(bos) {
            Some(rest) if self.specials.add_bos && !bos.is_empty() => rest,
            _ => rendered,
        };
        // No EOS rule: llama.cpp strips a trailing EOS text only for models whose tokenizer
        // appends EOS itself (add_eos_token), and ours never appends EOS, so the text stays as
        // the template wrote it.
        tokenizer.encode(text, true, true)
    }
}

/// Prints `True`, `False` and `None` as Jinja2 and llama.cpp's template engine do (minijinja
/// writes `true`, `false`, `none`); everything else as minijinja does.
fn python_spellings(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    let word = match value.kind() {
        ValueKind::Bool if value.is_true() => "True",
        ValueKind::Bool => "False",
        ValueKind::None => "None",
        _ => return escape_formatter(out, state, value),
    };
    out.write_str(word)
        .map_err(|_| Error::new(ErrorKind::WriteFailure, "writing the prompt failed"))
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("the template raised an exception: {message}"),
    ))
}

fn strftime(format: &str, now: &jiff::Zoned) -> Result<String, Error> {
    jiff::fmt::strtime::format(format, now).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now({format:?}): {e}"),
        )
    })
}

/// minijinja's message with its causes (the template line is in the message).
fn detail(e: &Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

fn describe(v: &GgufValue) -> String {
    match v {
        GgufValue::Array(_, items) => format!("an array of {} items", items.len()),
        other => format!("the value {}", other.summary()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str) -> Result<ChatTemplate, ChatError> {
        let specials = Specials {
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            add_bos: false,
        };
        ChatTemplate::from_source(source, specials, "m.gguf")
    }

    fn now() -> jiff::Zoned {
        "2026-12-06T07:00:00[UTC]".parse().unwrap()
    }

    // Every expected string in these tests is what Python's jinja2 3.1.6 renders for the same
    // template (trim_blocks, lstrip_blocks, the same variables), checked by hand once.
    #[test]
    fn none_prints_as_python_does() {
        let t = template("{{ none }}|{{ messages[0].content == 'x' }}").unwrap();
        assert_eq!(t.user_turn("y", &now()).unwrap(), "None|False");
    }

    #[test]
    fn python_string_methods_work() {
        let t = template(
            "{% set c = messages[0].content %}{{ c.strip() }}|{{ c.startswith(' a') }}|\
             {{ c.split(',')[-1].lstrip() }}|{{ c.upper().strip() }}",
        )
        .unwrap();
        assert_eq!(t.user_turn(" a, b ", &now()).unwrap(), "a, b|True|b |A, B");
    }

    #[test]
    fn blocks_are_trimmed_like_hugging_face_does() {
        // trim_blocks drops the newline after a block tag; lstrip_blocks the indent before one.
        let t = template("{% for m in messages %}\n    {% if m.role == 'user' %}\nU:{{ m.content }}\n    {% endif %}\n{% endfor %}").unwrap();
        assert_eq!(t.user_turn("x", &now()).unwrap(), "U:x\n");
    }

    #[test]
    fn strftime_now_and_the_dates_use_the_given_time() {
        let t =
            template("{{ strftime_now('%Y-%m-%d') }} {{ date_string }} {{ datetime }}").unwrap();
        assert_eq!(
            t.user_turn("x", &now()).unwrap(),
            "2026-12-06 06 Dec 2026 Dec 06 2026"
        );
    }

    #[test]
    fn tools_are_undefined_and_specials_are_passed() {
        let t = template(
            "{% if tools is defined %}T{% endif %}{{ bos_token }}{{ eos_token }}\
             {{ add_generation_prompt }}{{ enable_thinking }}",
        )
        .unwrap();
        assert_eq!(t.user_turn("x", &now()).unwrap(), "<s></s>TrueTrue");
    }

    #[test]
    fn raise_exception_fails_the_render_naming_the_file() {
        let t = template(
            "{% if messages[0].role == 'user' %}{{ raise_exception('no users') }}{% endif %}",
        )
        .unwrap();
        let e = t.user_turn("x", &now()).unwrap_err();
        assert!(matches!(e, ChatError::Render { .. }));
        let msg = e.to_string();
        assert!(
            msg.starts_with("m.gguf: rendering the chat template"),
            "{msg}"
        );
        assert!(msg.contains("no users"), "{msg}");
    }

    #[test]
    fn a_broken_template_is_a_syntax_error_with_its_line() {
        let e = template("line one\n{% for m in messages %}\n{{ m.content }").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ChatError::Syntax { .. }), "{msg}");
        assert!(
            msg.starts_with("m.gguf: the chat template in tokenizer.chat_template does not parse"),
            "{msg}"
        );
        assert!(msg.contains("tokenizer.chat_template:3"), "{msg}");
    }
}
