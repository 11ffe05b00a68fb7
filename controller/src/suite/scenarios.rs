//! The suite's `scenarios:` checked: token counts, prompts, chat templates, depth.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScenarioFile {
    #[serde(default, deserialize_with = "present")]
    name: Field<String>,
    #[serde(default, deserialize_with = "present")]
    prompt: Field<String>,
    #[serde(default, deserialize_with = "present")]
    prompt_file: Field<String>,
    #[serde(default, deserialize_with = "present")]
    prompt_tokens: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    new_tokens: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    chat: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    depth: Field<Raw>,
    #[serde(default, deserialize_with = "present")]
    models: Field<Vec<Spanned<String>>>,
}

/// A model as scenarios see it: its label, and its context length when the file is at hand.
pub(super) struct ModelContext {
    pub label: String,
    pub context_length: Option<u64>,
}

pub(super) fn check_scenarios(
    r: &mut Report,
    list: Option<&Spanned<Vec<Spanned<ScenarioFile>>>>,
    base: &Path,
    suite_models: &[ModelContext],
) -> Vec<Scenario> {
    let model_labels: Vec<String> = suite_models.iter().map(|m| m.label.clone()).collect();
    let example = r#"`scenarios: [{name: chat, prompt: "Hello", new_tokens: 32}]`"#;
    let Some(list) = r.required(list, "scenarios", example) else {
        return Vec::new();
    };
    r.non_empty(list, "scenarios", "list at least one scenario");
    let mut out = Vec::new();
    let mut names: BTreeMap<String, Pos> = BTreeMap::new();
    for entry in &list.value {
        let s = &entry.value;
        let name = match &s.name {
            None => {
                r.on(entry, "scenario has no 'name' (e.g. `name: short-chat`)");
                None
            }
            Some(n) if !yaml::is_simple_name(&n.value) => {
                r.on(
                    n,
                    format!(
                        "invalid scenario name '{}' (allowed: {})",
                        n.value,
                        yaml::SIMPLE_NAME_RULE
                    ),
                );
                None
            }
            Some(n) => {
                if let Some(first) = names.get(&n.value) {
                    r.on(
                        n,
                        format!("duplicate scenario name '{}' (first used at line {}); scenario names must be unique", n.value, first.line),
                    );
                    None
                } else {
                    names.insert(n.value.clone(), Pos::of(n));
                    Some(n.value.clone())
                }
            }
        };
        let what = name
            .as_deref()
            .map_or_else(|| "scenario".to_string(), |n| format!("scenario '{n}'"));
        let prompt = check_prompt(r, entry, &what, base);
        let new_tokens = match &s.new_tokens {
            None => {
                r.on(entry, format!("{what} has no 'new_tokens' (how many tokens to generate per pass, e.g. `new_tokens: 32`)"));
                None
            }
            Some(v) => r.whole("new_tokens", v, 1, MAX_TOKENS),
        };
        let chat = match &s.chat {
            None => Some(false),
            Some(v) => match v.value {
                Raw::Bool(b) => Some(b),
                _ => {
                    let shown = match r.source(v) {
                        t if t.is_empty() => format!("'{}'", v.value),
                        t => format!("'{t}'"),
                    };
                    r.on(
                        v,
                        format!(
                            "chat must be true or false (true sends the prompt as one user turn \
                             of the model's chat template), got {shown}"
                        ),
                    );
                    None
                }
            },
        };
        let depth = match &s.depth {
            None => Some(0),
            Some(v) => r.whole("depth", v, 0, MAX_TOKENS),
        };
        let models = s.models.as_ref().map(|list| {
            if list.value.is_empty() {
                r.on(
                    list,
                    format!("{what} has an empty 'models' list: name some of the suite's models ({}) or drop the key", model_labels.join(", ")),
                );
            }
            for m in &list.value {
                if !model_labels.contains(&m.value) {
                    r.on(
                        m,
                        format!(
                            "{what} names model '{}', which the suite does not list (its models: {})",
                            m.value,
                            model_labels.join(", ")
                        ),
                    );
                }
            }
            list.value.iter().map(|m| m.value.clone()).collect::<Vec<_>>()
        });
        if let (Some(prompt), Some(new_tokens), Some(depth), Some(at)) =
            (&prompt, new_tokens, depth, &s.new_tokens)
        {
            // A text prompt's length in tokens is known only to the tokenizer: count it as one.
            let prompt_tokens = match prompt {
                Prompt::Tokens(n) => *n as u64,
                Prompt::Text(_) => 1,
            };
            let needed = depth + prompt_tokens + new_tokens;
            for m in suite_models {
                let runs_here = models.as_ref().is_none_or(|l| l.contains(&m.label));
                if let Some(ctx) = m.context_length.filter(|&c| runs_here && needed > c) {
                    r.on(
                        at,
                        format!(
                            "{what} needs {needed} tokens of context (depth {depth} + prompt {} + \
                             new_tokens {new_tokens}), but model '{}' holds {ctx} \
                             (its context_length)",
                            match prompt {
                                Prompt::Tokens(n) => n.to_string(),
                                Prompt::Text(_) => "at least 1".into(),
                            },
                            m.label
                        ),
                    );
                }
            }
        }
        if let (Some(name), Some(prompt), Some(new_tokens), Some(chat), Some(depth)) =
            (name, prompt, new_tokens, chat, depth)
        {
            out.push(Scenario {
                name,
                prompt,
                new_tokens: new_tokens as usize,
                chat,
                depth: depth as usize,
                models,
            });
        }
    }
    out
}

pub(super) fn check_prompt(
    r: &mut Report,
    entry: &Spanned<ScenarioFile>,
    what: &str,
    base: &Path,
) -> Option<Prompt> {
    let s = &entry.value;
    let given: Vec<(&str, Pos)> = [
        ("prompt", s.prompt.as_ref().map(Pos::of)),
        ("prompt_file", s.prompt_file.as_ref().map(Pos::of)),
        ("prompt_tokens", s.prompt_tokens.as_ref().map(Pos::of)),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.map(|p| (k, p)))
    .collect();
    match given.as_slice() {
        [] => {
            r.on(
                entry,
                format!(
                    "{what} has no prompt (give exactly one of prompt, prompt_file, prompt_tokens)"
                ),
            );
            return None;
        }
        [_] => {}
        [(first, _), rest @ ..] => {
            for (key, pos) in rest {
                r.at(*pos, format!("{what} has both {first} and {key}; give exactly one of prompt, prompt_file, prompt_tokens"));
            }
            return None;
        }
    }
    if let Some(p) = &s.prompt {
        if p.value.trim().is_empty() {
            r.on(p, format!("{what} has an empty prompt"));
            return None;
        }
        return Some(Prompt::Text(p.value.clone()));
    }
    if let Some(f) = &s.prompt_file {
        let path = suite_relative(&f.value, base);
        return match crate::yaml::read_bounded(&path) {
            Err(e) => {
                r.on(
                    f,
                    format!(
                        "cannot read prompt_file '{}' ({}: {e}; paths are relative to the suite file)",
                        f.value,
                        path.display()
                    ),
                );
                None
            }
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) if text.trim().is_empty() => {
                    r.on(f, format!("prompt_file '{}' is empty", f.value));
                    None
                }
                Ok(text) => Some(Prompt::Text(text)),
                Err(_) => {
                    r.on(f, format!("prompt_file '{}' is not UTF-8 text", f.value));
                    None
                }
            },
        };
    }
    let t = s.prompt_tokens.as_ref()?;
    r.whole("prompt_tokens", t, 1, MAX_TOKENS)
        .map(|n| Prompt::Tokens(n as usize))
}
