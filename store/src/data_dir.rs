//! A member's data dir: two sled databases, like etcd's WAL and backend.
//!
//! * `wal/`: the Raft log and hard state. Synced (fsync) once per Raft
//!   Ready, before anything that depends on it is acknowledged or sent.
//! * `state/`: the MVCC state machine, written by the Raft thread after each
//!   Ready and fsynced every 100 ms by a background syncer; the log is
//!   compacted only up to what it has synced. After a crash it may be
//!   behind the log; the missing entries are replayed.
//!
//! Keeping them apart halves what each Ready must fsync and lets each check
//! the other on open: a state machine ahead of its log, or behind the log's
//! start, means data was lost, and the member refuses to start.

use std::path::Path;

use crate::error::{Result, StoreError};

pub struct DataDir {
    pub wal: sled::Db,
    pub state: sled::Db,
}

impl DataDir {
    pub fn open(dir: &Path) -> Result<Self> {
        let open = |name: &str, flush_every_ms| {
            sled::Config::new()
                .path(dir.join(name))
                .flush_every_ms(flush_every_ms)
                .open()
                .map_err(|e| match e {
                    sled::Error::Corruption { .. } => StoreError::Corrupt(format!("{name}: {e}")),
                    other => StoreError::Storage(format!("opening {}: {other}", dir.join(name).display())),
                })
        };
        // The state database is synced by its syncer thread (see mvcc).
        Ok(Self {
            wal: open("wal", None)?,
            state: open("state", None)?,
        })
    }

    /// Bytes both databases occupy.
    pub fn size(&self) -> u64 {
        self.wal.size_on_disk().unwrap_or(0) + self.state.size_on_disk().unwrap_or(0)
    }
}
