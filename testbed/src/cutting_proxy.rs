//! A TCP proxy that breaks one connection: it forwards to a real server and, once the bytes
//! sent back to clients cross a threshold, shuts that connection down mid-response, as a
//! dropped Wi-Fi link or a crashed proxy would. Every other byte passes unchanged. A fault
//! injector in front of a real peer, not a stand-in for one.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub struct CuttingProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
}

impl CuttingProxy {
    /// Listens on a free loopback port, forwarding to `127.0.0.1:upstream`; cuts the connection
    /// that carries the `cut_after`-th byte of responses.
    pub fn start(upstream: u16, cut_after: u64) -> std::io::Result<CuttingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let shared = Arc::clone(&cut);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                std::thread::spawn(move || copy(client, server));
                let (cut, sent) = (Arc::clone(&shared), Arc::clone(&sent));
                std::thread::spawn(move || respond(s2, c2, cut_after, &sent, &cut));
            }
        });
        Ok(CuttingProxy { port, cut })
    }

    /// Whether the cut happened.
    pub fn has_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Server to client, cutting both directions once the threshold is crossed.
fn respond(
    mut server: TcpStream,
    mut client: TcpStream,
    cut_after: u64,
    sent: &AtomicU64,
    cut: &AtomicBool,
) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 {
            break;
        }
        let before = sent.fetch_add(n as u64, Ordering::SeqCst);
        if before + n as u64 >= cut_after && !cut.swap(true, Ordering::SeqCst) {
            let keep = cut_after.saturating_sub(before).min(n as u64) as usize;
            let _ = client.write_all(&buf[..keep]);
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}
