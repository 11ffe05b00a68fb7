//! The lines the controller reads from agents and the agent reads from the engine: each parses
//! or is refused, never a panic; what parses writes back to JSON that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meltbench_protocol::agent::AgentEvent;
use meltbench_protocol::engine::EngineRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(event) = serde_json::from_str::<AgentEvent>(line) {
        let again = serde_json::to_string(&event).expect("an event serialises");
        let back: AgentEvent = serde_json::from_str(&again).expect("its own JSON parses");
        assert_eq!(serde_json::to_string(&back).unwrap(), again);
    }
    if let Ok(record) = serde_json::from_str::<EngineRecord>(line) {
        let again = serde_json::to_string(&record).expect("a record serialises");
        let _: EngineRecord = serde_json::from_str(&again).expect("its own JSON parses");
    }
});
