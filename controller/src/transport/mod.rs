//! Reaching devices. Today: the local machine; ssh and adb arrive with the issue "Device farm".

pub mod local;
