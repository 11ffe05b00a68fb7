//! What a server answers the agent's adapters: text as llama-server's `/health`, `/props`,
//! `/v1/models` and `/tokenize` answers and as a streamed completion (plain and chat), each
//! parsed or refused with an error, never a panic; a stream that parses has no more token
//! arrivals than `data:` lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meltbench_agent::adapter::llama_server::{first_model, healthy, props, token_count};
use meltbench_agent::adapter::openai::read_stream;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = healthy(200, text);
    let _ = healthy(503, text);
    let _ = props(text);
    let _ = first_model(text);
    let _ = token_count(text);
    for chat in [false, true] {
        if let Ok(s) = read_stream(text.as_bytes(), chat) {
            let lines = text.lines().filter(|l| l.starts_with("data:")).count();
            assert!(s.arrivals.len() <= lines);
            assert!(s.arrivals.windows(2).all(|w| w[0] <= w[1]));
        }
    }
});
