//! `meltbench-testbed` (dev only): real peers for integration tests, such as OpenSSH `sshd` on
//! loopback with throwaway keys, an ADB device simulator that the real `adb` server connects
//! to, and sysfs trees captured from real devices.
//!
//! Placeholder: this crate is filled in by the issue "Device farm". It deliberately exports
//! nothing yet.
