//! Device states a cell asks for, established before its passes: [`request`] parses the
//! cell's `state`, [`battery`] establishes its `+battery<LEVEL>-<MODE>` part first, then
//! [`thermal`] its thermal part; [`wait`] holds what both share (timeouts, polling, signals).

pub mod battery;
pub mod request;
pub mod thermal;
pub mod wait;
