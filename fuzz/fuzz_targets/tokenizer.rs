//! Both tokenizer families (BPE and SentencePiece) on arbitrary text, special tokens parsed or
//! not: ids inside the vocabulary, and (byte-level BPE) decoding what was encoded gives the text
//! back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meltbench_engine::synth::{write_synth, SynthConfig, SynthVocab};
use meltbench_engine::tokenizer::Tokenizer;
use std::sync::OnceLock;

fn tokenizers() -> &'static [Tokenizer] {
    static T: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        [SynthVocab::Bpe, SynthVocab::Spm]
            .into_iter()
            .map(|vocab| {
                let path = dir.path().join("synth.gguf");
                write_synth(
                    &path,
                    &SynthConfig {
                        vocab,
                        ..Default::default()
                    },
                )
                .expect("synth");
                meltbench_engine::load::load_tokenizer(&path).expect("its tokenizer")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (i, t) in tokenizers().iter().enumerate() {
        for special in [false, true] {
            let ids = t.encode(text, false, special);
            assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
            // Byte-level BPE maps every byte one to one. SentencePiece does not: it writes
            // spaces as U+2581 and decodes U+2581 in the input as a space too, as llama.cpp does.
            if i == 0 && !special {
                assert_eq!(t.decode(&ids), text, "round trip");
            }
        }
    }
});
