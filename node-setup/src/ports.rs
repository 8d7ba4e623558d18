//! Free loopback ports for the node's servers.
//!
//! A port from binding port 0 lies in the kernel's ephemeral range, where
//! any outgoing connection may take it before our server binds it. These
//! come from below that range (5000-9999), a block of 100 per process
//! (by PID), so parallel test processes rarely meet; the integration tests'
//! own helper uses 10000-29999.

use std::net::TcpListener;
use std::sync::Mutex;

use anyhow::bail;

const FIRST: u32 = 5_000;
const BLOCK: u32 = 100;
const BLOCKS: u32 = 50;

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    static NEXT: Mutex<Option<u32>> = Mutex::new(None);
    let base = FIRST + (std::process::id() % BLOCKS) * BLOCK;
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    // Start where a previous process with the same block is unlikely to be.
    let offset = next.get_or_insert_with(|| std::process::id() / BLOCKS % BLOCK);
    for _ in 0..BLOCK {
        let port = u16::try_from(base + *offset % BLOCK)?;
        *offset += 1;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port left in {base}..{}", base + BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_differ_and_stay_below_the_ephemeral_range() {
        let a = free_port().unwrap();
        let b = free_port().unwrap();
        assert_ne!(a, b);
        assert!((5_000..10_000).contains(&a) && (5_000..10_000).contains(&b));
    }
}
