//! Real peers for meltbench's tests: an OpenSSH `sshd` on loopback with throwaway keys, and an
//! ADB device simulator (the one stand-in: a phone's `adbd` cannot run here) that the real adb
//! server attaches with `adb connect`. Both are started by tests and stopped when dropped.

pub mod adb_device;
pub mod battery_model;
pub mod cutting_proxy;
pub mod llama_server;
pub mod procs;
pub mod sshd;
pub mod stepper;
pub mod thermal_model;
