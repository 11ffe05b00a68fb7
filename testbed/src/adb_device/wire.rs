//! ADB's transport messages on the wire: 24-byte headers (command, two arguments, length, checksum,
//! magic) and their payloads.

use super::*;

pub(super) const fn id(s: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*s)
}

pub(super) const CNXN: u32 = id(b"CNXN");

pub(super) const AUTH: u32 = id(b"AUTH");

pub(super) const STLS: u32 = id(b"STLS");

pub(super) const OPEN: u32 = id(b"OPEN");

pub(super) const OKAY: u32 = id(b"OKAY");

pub(super) const WRTE: u32 = id(b"WRTE");

pub(super) const CLSE: u32 = id(b"CLSE");

/// The protocol version that lets both ends skip the data checksum.
pub(super) const VERSION: u32 = 0x0100_0001;

/// The largest message payload this device accepts (as modern adbd).
pub(super) const MAX_PAYLOAD: usize = 1024 * 1024;

pub(super) fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

/// One ADB message: header fields and payload.
pub(super) struct Message {
    pub(super) command: u32,
    pub(super) arg0: u32,
    pub(super) arg1: u32,
    pub(super) data: Vec<u8>,
}

pub(super) fn command_name(c: u32) -> String {
    String::from_utf8_lossy(&c.to_le_bytes()).into_owned()
}

/// Reads one message. The checksum is not verified: hosts at version 0x01000001 may send 0 and
/// the transport (TCP) already guarantees integrity.
pub(super) fn read_message(r: &mut impl Read) -> io::Result<Message> {
    let mut h = [0u8; 24];
    r.read_exact(&mut h)?;
    let (command, arg0, arg1, len, magic) = (
        word(&h, 0),
        word(&h, 4),
        word(&h, 8),
        word(&h, 12),
        word(&h, 20),
    );
    if magic != command ^ 0xffff_ffff {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad magic for {:08x}", command),
        ));
    }
    if len as usize > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("payload of {len} bytes"),
        ));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    Ok(Message {
        command,
        arg0,
        arg1,
        data,
    })
}

pub(super) fn encode_message(command: u32, arg0: u32, arg1: u32, data: &[u8]) -> Vec<u8> {
    let sum = data
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)));
    let mut out = Vec::with_capacity(24 + data.len());
    for w in [
        command,
        arg0,
        arg1,
        data.len() as u32,
        sum,
        command ^ 0xffff_ffff,
    ] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(data);
    out
}

// ---------------------------------------------------------------------------------------------
// The device
// ---------------------------------------------------------------------------------------------
