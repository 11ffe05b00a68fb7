//! Chat templates: a model's own `tokenizer.chat_template` rendered as llama.cpp renders it
//! (one user turn, generation prompt on), and tokenized with special tokens parsed and BOS
//! added once.
//!
//! Every expected rendering below was derived by hand from the template text (walking the
//! template for `messages = [{role: user, content: ...}]`, `add_generation_prompt = true`, no
//! tools) and then cross-checked with Python's jinja2 3.1.6, set up as Hugging Face's
//! chat-template environment is (`ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True, extensions=[loopcontrols])`) and given the variables llama.cpp passes
//! (`bos_token`, `eos_token`, `enable_thinking=True`, `datetime`, `date_string`,
//! `raise_exception`, `strftime_now`, fixed at 2026-12-06 07:00). Both agreed byte for byte.

mod common;

use meltbench_engine::chat::{ChatError, ChatTemplate, Specials, TEMPLATE_KEY};
use meltbench_engine::dtype::DType;
use meltbench_engine::gguf::{self, Gguf, RawTensorOut, Value};
use meltbench_engine::load::load;
use meltbench_engine::synth::{write_synth, SynthConfig, SynthVocab};
use meltbench_engine::tokenizer::Tokenizer;
use meltbench_protocol::engine::EngineRecord;
use std::path::{Path, PathBuf};

fn at_fixed_time() -> jiff::Zoned {
    "2026-12-06T07:00:00[UTC]".parse().unwrap()
}

fn fixture_template(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/chat-templates")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn specials(bos: &str, eos: &str, add_bos: bool) -> Specials {
    Specials {
        bos_token: bos.into(),
        eos_token: eos.into(),
        add_bos,
    }
}

/// SmolLM2's template is ChatML with a default system turn, written on one line, so the
/// rendering is the three `{{ ... }}` strings in order: the system turn (first message is not a
/// system one), the user turn, then `<|im_start|>assistant\n`.
#[test]
fn smollm2_renders_its_own_template_and_parses_the_turn_markers() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let l = load(&path).unwrap();
    let t = ChatTemplate::from_gguf(&l.gguf, &l.tokenizer).unwrap();
    let rendered = t
        .user_turn("What is a thermal zone?", &at_fixed_time())
        .unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is a thermal zone?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    // add_bos_token is false and the template writes no BOS: the ids are the turn markers
    // (<|im_start|> = 1, <|im_end|> = 2) around the plain text of each piece, nothing before.
    let tok = &l.tokenizer;
    let plain = |s: &str| tok.encode(s, false, false);
    let mut want = vec![1];
    want.extend(plain(
        "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face",
    ));
    want.push(2);
    want.extend(plain("\n"));
    want.push(1);
    want.extend(plain("user\nWhat is a thermal zone?"));
    want.push(2);
    want.extend(plain("\n"));
    want.push(1);
    want.extend(plain("assistant\n"));
    assert_eq!(t.encode(tok, &rendered), want);
}

/// The Gemma 3 270M file meltbench pulls is the base model: it carries no chat template, so a
/// chat prompt cannot be made for it, and the error says which file and what is missing.
#[test]
fn gemma3_270m_has_no_template_and_says_so() {
    let Some(path) = common::gemma3() else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let e = ChatTemplate::from_gguf(&g, &tok).unwrap_err();
    assert!(matches!(e, ChatError::NoTemplate { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(TEMPLATE_KEY), "{msg}");
}

/// llama.cpp's BOS rule on Gemma's real vocabulary (add_bos_token = true, BOS `<bos>` = 2): a
/// template that writes `{{ bos_token }}` itself, as Gemma's templates do, still gives one BOS,
/// and `<start_of_turn>`/`<end_of_turn>` become their ids. The template is written here in
/// Gemma's turn format, since the 270M file has none of its own.
#[test]
fn gemma3_vocabulary_gets_one_bos_when_the_template_writes_it() {
    let Some(path) = common::gemma3() else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let source = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}\n\
                  {{ m.content | trim }}<end_of_turn>\n{% endfor %}\
                  {% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";
    let t = ChatTemplate::from_source(source, Specials::of(&tok), "gemma-test").unwrap();
    let rendered = t.user_turn("  Hello  ", &at_fixed_time()).unwrap();
    assert_eq!(
        rendered,
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"
    );
    let ids = t.encode(&tok, &rendered);
    let bos = tok.bos.unwrap();
    assert_eq!(tok.token_text(bos), Some("<bos>"));
    assert_eq!(ids[0], bos);
    assert_eq!(ids.iter().filter(|&&i| i == bos).count(), 1, "{ids:?}");
    let start = tok.encode("<start_of_turn>", false, true);
    assert_eq!(start.len(), 1, "<start_of_turn> is one token");
    assert_eq!(ids[1], start[0]);
    assert_eq!(ids.iter().filter(|&&i| i == start[0]).count(), 2);
}

/// Qwen2.5's template (with the tools branch, not taken): no system message given, so it writes
/// its default system turn, then the user turn and the assistant opener.
#[test]
fn qwen2_5_template_renders() {
    let t = ChatTemplate::from_source(
        &fixture_template("Qwen-Qwen2.5-7B-Instruct.jinja"),
        specials("", "<|im_end|>", false),
        "Qwen2.5",
    )
    .unwrap();
    assert_eq!(
        t.user_turn("Hi there", &at_fixed_time()).unwrap(),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
}

/// Qwen3's template walks the messages backwards with a namespace and calls `.startswith()` and
/// `.split()`; with `enable_thinking` true (llama.cpp's default) no empty think block is added.
#[test]
fn qwen3_template_renders() {
    let t = ChatTemplate::from_source(
        &fixture_template("Qwen-Qwen3-0.6B.jinja"),
        specials("", "<|im_end|>", false),
        "Qwen3",
    )
    .unwrap();
    assert_eq!(
        t.user_turn("Hi there", &at_fixed_time()).unwrap(),
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
}

/// Llama 3.2's template writes BOS, a system turn with llama.cpp's `date_string`, and trims the
/// user's text.
#[test]
fn llama3_2_template_renders_with_the_date() {
    let t = ChatTemplate::from_source(
        &fixture_template("meta-llama-Llama-3.2-3B-Instruct.jinja"),
        specials("<|begin_of_text|>", "<|eot_id|>", true),
        "Llama-3.2",
    )
    .unwrap();
    assert_eq!(
        t.user_turn(" Hi there\n", &at_fixed_time()).unwrap(),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
         Cutting Knowledge Date: December 2023\nToday Date: 06 Dec 2026\n\n<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

/// ChatML written for the synthetic vocabulary, whose specials are <|im_start|> (1) and
/// <|im_end|> (2).
const SYNTH_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}\
{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A copy of `src` with `template` added to its metadata.
fn with_template(src: &Path, dst: &Path, template: &str) {
    let g = Gguf::open(src).unwrap();
    let mut meta = g.metadata.clone();
    meta.push((TEMPLATE_KEY.into(), Value::String(template.into())));
    let tensors: Vec<RawTensorOut> = g
        .tensors
        .iter()
        .map(|t| RawTensorOut {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
            data: g.tensor_data(t).unwrap().to_vec(),
        })
        .collect();
    gguf::write_raw(dst, &meta, &tensors).unwrap();
}

fn synth_with_template(dir: &Path) -> PathBuf {
    let plain = common::synth_model(dir, DType::F32);
    let chat = dir.join("synth-chat.gguf");
    with_template(&plain, &chat, SYNTH_TEMPLATE);
    chat
}

/// The synthetic model's ChatML prompt for `text`, tokenized piece by piece.
fn synth_chat_ids(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let plain = |s: &str| tok.encode(s, false, false);
    let mut want = vec![1];
    want.extend(plain(&format!("user\n{text}")));
    want.push(2);
    want.extend(plain("\n"));
    want.push(1);
    want.extend(plain("assistant\n"));
    want
}

fn bench_lines(model: &Path, job: &str, dir: &Path) -> Vec<EngineRecord> {
    let job_path = dir.join("job.json");
    std::fs::write(&job_path, job).unwrap();
    let out = common::engine()
        .arg("bench")
        .arg(model)
        .arg("--job")
        .arg(&job_path)
        .args(["--kernels", "scalar"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_chat_bench_job_prefills_and_reports_the_templated_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_with_template(dir.path());
    let tok = load(&model).unwrap().tokenizer;
    let text = "the engine measured";
    let want = synth_chat_ids(&tok, text);
    let records = bench_lines(
        &model,
        &format!(
            r#"{{"prompt":{{"text":"{text}"}},"n_gen":2,"passes":2,"warmup":1,"threads":1,"chat":true}}"#
        ),
        dir.path(),
    );
    let EngineRecord::Load(load_rec) = &records[0] else {
        panic!("no load record first: {records:?}")
    };
    let chat = load_rec.chat.as_ref().expect("the load record says chat");
    assert_eq!(chat.prompt_tokens, want.len());
    assert_eq!(chat.user_tokens, tok.encode(text, false, false).len());
    assert!(chat.prompt_tokens > chat.user_tokens + 4);
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(SYNTH_TEMPLATE.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(chat.template_sha256, sha);
    let passes: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            EngineRecord::Pass(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(passes.len(), 3);
    for p in passes {
        assert!(p.chat);
        assert_eq!(p.prompt_tokens, want.len());
        assert_eq!(p.gen_tokens, 2);
    }

    // The same job without `chat` is the plain prompt, as before.
    let records = bench_lines(
        &model,
        &format!(r#"{{"prompt":{{"text":"{text}"}},"n_gen":1,"passes":1,"threads":1}}"#),
        dir.path(),
    );
    let EngineRecord::Load(load_rec) = &records[0] else {
        panic!()
    };
    assert!(load_rec.chat.is_none());
    let EngineRecord::Pass(p) = &records[1] else {
        panic!()
    };
    assert!(!p.chat);
    assert_eq!(p.prompt_tokens, tok.encode(text, true, false).len());
}

/// A token-count prompt under chat sends the English filler cut to that many tokens as the
/// user's text; the reported count is the templated one.
#[test]
fn a_chat_token_count_prompt_templates_the_filler() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_with_template(dir.path());
    let records = bench_lines(
        &model,
        r#"{"prompt":{"tokens":8},"n_gen":1,"passes":1,"threads":1,"chat":true}"#,
        dir.path(),
    );
    let EngineRecord::Load(load_rec) = &records[0] else {
        panic!()
    };
    let chat = load_rec.chat.as_ref().unwrap();
    assert_eq!(chat.user_tokens, 8);
    let EngineRecord::Pass(p) = &records[1] else {
        panic!()
    };
    assert_eq!(p.prompt_tokens, chat.prompt_tokens);
    // <|im_start|> "user\n" ... <|im_end|> "\n" <|im_start|> "assistant\n": at least 6 more.
    assert!(p.prompt_tokens >= 8 + 6, "{}", p.prompt_tokens);
}

#[test]
fn a_model_without_a_template_fails_a_chat_job_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth_model(dir.path(), DType::F32);
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        r#"{"prompt":{"text":"hi"},"n_gen":1,"passes":1,"chat":true}"#,
    )
    .unwrap();
    let out = common::engine()
        .arg("bench")
        .arg(&model)
        .arg("--job")
        .arg(&job)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&model.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("has no tokenizer.chat_template"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no records for a job that cannot run"
    );
}

/// `generate --chat` prefills the templated prompt (its stderr line counts the tokens).
#[test]
fn generate_chat_prefills_the_templated_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let model = synth_with_template(dir.path());
    let tok = load(&model).unwrap().tokenizer;
    let text = "the phone measured heat";
    let want = synth_chat_ids(&tok, text).len();
    let run = |chat: bool| {
        let mut c = common::engine();
        c.arg("generate")
            .arg(&model)
            .args(["-p", text, "-n", "2", "-t", "1", "--ids"]);
        if chat {
            c.arg("--chat");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run(true);
    assert!(
        stderr.contains(&format!("prompt {want} tokens")),
        "{stderr}"
    );
    let stderr = run(false);
    let plain = tok.encode(text, true, false).len();
    assert!(
        stderr.contains(&format!("prompt {plain} tokens")),
        "{stderr}"
    );
}

/// The SentencePiece synthetic vocabulary asks for BOS (`<s>`): a template that does not write
/// it gets it added; one that does keeps a single one.
#[test]
fn bos_is_added_once_whether_or_not_the_template_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spm.gguf");
    write_synth(
        &path,
        &SynthConfig {
            vocab: SynthVocab::Spm,
            ..Default::default()
        },
    )
    .unwrap();
    let g = Gguf::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert!(tok.add_bos);
    let bos = tok.bos.unwrap();
    let now = at_fixed_time();
    let without = ChatTemplate::from_source(
        "{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}",
        Specials::of(&tok),
        "spm",
    )
    .unwrap();
    let with = ChatTemplate::from_source(
        "{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}",
        Specials::of(&tok),
        "spm",
    )
    .unwrap();
    let a = without.encode(&tok, &without.user_turn("the battery", &now).unwrap());
    let rendered = with.user_turn("the battery", &now).unwrap();
    assert!(rendered.starts_with("<s>[INST]"), "{rendered}");
    let b = with.encode(&tok, &rendered);
    assert_eq!(a, b);
    assert_eq!(a[0], bos);
    assert_eq!(a.iter().filter(|&&i| i == bos).count(), 1);
    // Where the model does not ask for BOS (the byte-level synthetic vocabulary, whose BOS is
    // <|im_start|>), a BOS the template writes is kept as written, and none is added.
    let bpe =
        Tokenizer::from_gguf(&Gguf::open(&common::synth_model(dir.path(), DType::F32)).unwrap())
            .unwrap();
    assert!(!bpe.add_bos);
    let kept = ChatTemplate::from_source(
        "{{ bos_token }}{{ messages[0].content }}",
        Specials::of(&bpe),
        "bpe",
    )
    .unwrap();
    let rendered = kept.user_turn("hi", &now).unwrap();
    assert_eq!(rendered, "<|im_start|>hi");
    let ids = kept.encode(&bpe, &rendered);
    let mut want = vec![bpe.bos.unwrap()];
    want.extend(bpe.encode("hi", false, false));
    assert_eq!(ids, want);
}
