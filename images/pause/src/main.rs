//! The pod sandbox's first process (`registry.k8s.io/pause`).
//!
//! It holds the pod's namespaces open and, being PID 1 of a shared PID
//! namespace, adopts every orphan in the pod: it must reap them, or they
//! stay zombies until the pod goes. PID 1 also gets no default signal
//! actions from the kernel, so SIGTERM and SIGINT need a handler to end it
//! (exit 0, like upstream's pause).
//!
//! Signals arrive through signal-hook's self-pipe (no unsafe code here):
//! the main thread sleeps on it and wakes only for a signal.

use rustix::process::{WaitOptions, waitpid};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("pause (rust) {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGCHLD]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("pause: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    };
    // Children that exited before the handler was installed sent their
    // SIGCHLD to nobody.
    reap_zombies();
    for signal in signals.forever() {
        match signal {
            SIGCHLD => reap_zombies(),
            _ => {
                eprintln!("Shutting down, got signal {signal}");
                std::process::exit(0);
            }
        }
    }
}

/// Waits for every child that has exited; SIGCHLDs coalesce, so one
/// signal may stand for several.
fn reap_zombies() {
    while let Ok(Some(_)) = waitpid(None, WaitOptions::NOHANG) {}
}
