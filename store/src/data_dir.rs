//! A member's data dir: two sled databases, like etcd's WAL and backend.
//!
//! * `wal/`: the Raft log and hard state. Synced ([`Db::sync`]) once per
//!   Ready that must be durable, before anything that depends on it is
//!   acknowledged or sent.
//! * `state/`: the MVCC state machine, written by the Raft thread after each
//!   Ready and fsynced every 100 ms by a background syncer; the log is
//!   compacted only up to what it has synced. After a crash it may be
//!   behind the log; the missing entries are replayed.
//!
//! Keeping them apart halves what each Ready must fsync and lets each check
//! the other on open: a state machine ahead of its log, or behind the log's
//! start, means data was lost, and the member refuses to start.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Result, StoreError};

pub struct DataDir {
    pub wal: Db,
    pub state: Db,
}

impl DataDir {
    pub fn open(dir: &Path) -> Result<Self> {
        let data = Self {
            wal: Db::open(&dir.join("wal"))?,
            state: Db::open(&dir.join("state"))?,
        };
        // The databases' directory entries, once.
        sync_dir(dir).map_err(|e| StoreError::Storage(format!("{}: {e}", dir.display())))?;
        Ok(data)
    }

    /// Bytes both databases occupy.
    pub fn size(&self) -> u64 {
        self.wal.size_on_disk().unwrap_or(0) + self.state.size_on_disk().unwrap_or(0)
    }
}

/// A sled database whose [`Db::sync`] reaches the disk.
///
/// sled's own `flush` writes its buffers with `sync_file_range`, which
/// neither flushes the device's write cache nor syncs metadata (such as the
/// file's growing size), and never syncs the separate files it keeps large
/// pages in (`blobs/`). A write acknowledged after that survives a killed
/// process but not a power loss. `sync` adds the `fdatasync`s that make it
/// durable, as etcd's WAL is.
#[derive(Clone)]
pub struct Db {
    db: sled::Db,
    files: Arc<Files>,
}

struct Files {
    dir: PathBuf,
    blob_dir: PathBuf,
    log: File,
    /// Blob files already synced.
    blobs: Mutex<HashSet<OsString>>,
}

impl Db {
    /// Opens (or creates) the database in `dir`. Nothing is flushed in the
    /// background: the WAL is synced per Ready, the state by its syncer
    /// thread (see mvcc).
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Corruption { .. } => StoreError::Corrupt(format!("{}: {e}", dir.display())),
                other => StoreError::Storage(format!("opening {}: {other}", dir.display())),
            })?;
        let io = |e: std::io::Error| StoreError::Storage(format!("{}: {e}", dir.display()));
        let log = File::open(dir.join("db")).map_err(io)?;
        let this = Self {
            db,
            files: Arc::new(Files {
                dir: dir.to_path_buf(),
                blob_dir: dir.join("blobs"),
                log,
                blobs: Mutex::new(HashSet::new()),
            }),
        };
        // What an earlier run left may never have been synced: the first
        // sync covers every blob file there is.
        this.sync()?;
        sync_dir(dir).map_err(io)?;
        Ok(this)
    }

    /// Makes everything written so far durable: sled's flush, then
    /// `fdatasync` of its log file and of any new blob file.
    pub fn sync(&self) -> Result<()> {
        self.db.flush()?;
        let io = |e: std::io::Error| StoreError::Storage(format!("syncing {}: {e}", self.files.dir.display()));
        self.files.log.sync_data().map_err(io)?;
        self.sync_blobs().map_err(io)
    }

    fn sync_blobs(&self) -> std::io::Result<()> {
        let dir = &self.files.blob_dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = self.files.blobs.lock();
        let mut present = HashSet::new();
        let mut new = false;
        for entry in entries {
            let name = entry?.file_name();
            if !synced.contains(&name) {
                match File::open(dir.join(&name)) {
                    Ok(f) => f.sync_data()?,
                    // Removed meanwhile (sled drops blobs it rewrote).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new = true;
            }
            present.insert(name);
        }
        *synced = present;
        if new {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

impl Deref for Db {
    type Target = sled::Db;

    fn deref(&self) -> &sled::Db {
        &self.db
    }
}

/// fsync of a directory: makes the entries of files created in it durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_covers_new_blob_files_and_forgets_removed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let blobs = || -> HashSet<OsString> {
            std::fs::read_dir(dir.path().join("wal").join("blobs"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect()
        };
        // A value over sled's inline limit (a quarter segment) goes to its
        // own file under blobs/.
        data.wal.insert(b"big", vec![7u8; 1 << 20]).unwrap();
        data.wal.sync().unwrap();
        let written = blobs();
        assert!(!written.is_empty(), "sled kept the value inline");
        assert_eq!(*data.wal.files.blobs.lock(), written);
        data.wal.remove(b"big").unwrap();
        data.wal.insert(b"small", b"v".to_vec()).unwrap();
        data.wal.sync().unwrap();
        assert_eq!(*data.wal.files.blobs.lock(), blobs());
        assert_eq!(data.wal.get(b"small").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
