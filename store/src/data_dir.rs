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
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::error::{Result, StoreError};

pub struct DataDir {
    pub wal: Db,
    pub state: Db,
}

/// sled's segment (and IO buffer) size for a new database. sled writes a
/// page larger than a quarter of it to a file of its own under `blobs/`,
/// which a sync must then fsync. With sled's default (512 KiB), a full leaf
/// of the Raft log (16 chunks of a Ready's entries, ~10 KiB each at 64
/// clients) passed that on every rewrite: 5 blob files a second, each
/// created, fsynced and deleted on the path of the WAL's syncs. At 2 MiB
/// none are; creates on 3 apiservers went from 9.15k to 9.4k/s (p99 12.3
/// → 11.7 ms, three interleaved runs each).
const SEGMENT_SIZE: usize = 2 << 20;

/// The segment size of the database in `dir`: what its `conf` file says
/// (sled refuses to open it with another), [`SEGMENT_SIZE`] for a new one.
fn segment_size(dir: &Path) -> usize {
    const SLED_DEFAULT: usize = 512 << 10;
    match std::fs::read(dir.join("conf")) {
        // sled's format: "key: value" lines, then a CRC-32.
        Ok(conf) => String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse().ok())
            .unwrap_or(SLED_DEFAULT),
        Err(_) => SEGMENT_SIZE,
    }
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
    blobs: Mutex<Blobs>,
}

/// What the last scan of `blobs/` found and synced.
#[derive(Default)]
struct Blobs {
    synced: HashSet<OsString>,
    /// The directory's mtime before that scan, and when the scan began.
    scanned: Option<(SystemTime, SystemTime)>,
}

impl Blobs {
    /// Whether the directory may hold entries the last scan did not see.
    /// File timestamps come from a clock that lags by up to a tick, so an
    /// unchanged mtime proves nothing if it is that close to the scan.
    fn may_have_changed(&self, mtime: SystemTime) -> bool {
        const CLOCK_SLACK: Duration = Duration::from_millis(50);
        match self.scanned {
            Some((seen, began)) => seen != mtime || mtime + CLOCK_SLACK >= began,
            None => true,
        }
    }
}

impl Db {
    /// Opens (or creates) the database in `dir`. Nothing is flushed in the
    /// background: the WAL is synced per Ready, the state by its syncer
    /// thread (see mvcc).
    pub fn open(dir: &Path) -> Result<Self> {
        let db = open_sled(
            sled::Config::new()
                .path(dir)
                .flush_every_ms(None)
                .segment_size(segment_size(dir)),
        )
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
                blobs: Mutex::default(),
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
        // One stat instead of a directory listing per sync: sled rarely
        // writes a blob.
        let mtime = match std::fs::metadata(dir) {
            Ok(meta) => meta.modified()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut blobs = self.files.blobs.lock();
        if !blobs.may_have_changed(mtime) {
            return Ok(());
        }
        let began = SystemTime::now();
        let entries = std::fs::read_dir(dir)?;
        let synced = &mut blobs.synced;
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
        blobs.scanned = Some((mtime, began));
        Ok(())
    }
}

impl Deref for Db {
    type Target = sled::Db;

    fn deref(&self) -> &sled::Db {
        &self.db
    }
}

/// Opens a sled database; the first open in the process starts sled's IO
/// thread pool under `SCHED_BATCH`.
///
/// sled writes every log buffer on one of its pool's threads and wakes all
/// of the pool's idle threads (seven) for each write, one after another.
/// Each wakeup of a normal thread preempts what runs on its CPU, on two
/// CPUs often the very thread doing the write, or the Raft thread waiting
/// for it: a single client's put waited on that cascade. Batch threads
/// never preempt on wakeup and keep their full share of the CPU, so the
/// write runs undisturbed while the others find the queue empty (put with
/// one client: 2,007 → 2,275 ops/s).
///
/// The pool is process-wide and started by the first thread that uses it;
/// its threads inherit that thread's policy. So the first open (which is
/// when sled first uses the pool: recovery reads segments on it, and an
/// asynchronous flush makes sure) runs on a short-lived batch thread.
fn open_sled(config: sled::Config) -> sled::Result<sled::Db> {
    static POOL_STARTED: Mutex<bool> = Mutex::new(false);
    let mut started = POOL_STARTED.lock();
    if *started {
        drop(started);
        return config.open();
    }
    let db = std::thread::scope(|s| {
        s.spawn(|| {
            use thread_priority::{
                NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityOsValue, ThreadSchedulePolicy,
                set_thread_priority_and_policy, thread_native_id,
            };
            let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
            // The OS value is the nice value, 0 as for every other thread.
            let nice = ThreadPriority::Os(ThreadPriorityOsValue::default());
            if let Err(e) = set_thread_priority_and_policy(thread_native_id(), nice, batch) {
                tracing::warn!(error = ?e, "starting sled's IO threads under SCHED_BATCH");
            }
            let db = config.open()?;
            futures::executor::block_on(db.flush_async())?;
            Ok::<_, sled::Error>(db)
        })
        .join()
        .expect("opening sled panicked")
    })?;
    *started = true;
    Ok(db)
}

/// fsync of a directory: makes the entries of files created in it durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleds_io_threads_run_under_sched_batch() {
        const SCHED_BATCH: &str = "3";
        let dir = tempfile::tempdir().unwrap();
        let _data = DataDir::open(dir.path()).unwrap();
        let mut policies = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.starts_with("sled-io") {
                // Field 41 of stat is the policy; the name (field 2) has no spaces here.
                let stat = std::fs::read_to_string(task.join("stat")).unwrap();
                policies.push(stat.split(' ').nth(40).unwrap().to_string());
            }
        }
        assert!(!policies.is_empty(), "sled started no IO threads");
        assert!(policies.iter().all(|p| p == SCHED_BATCH), "policies {policies:?}");
    }

    #[test]
    fn databases_keep_the_segment_size_they_were_created_with() {
        let dir = tempfile::tempdir().unwrap();
        // A data dir from before the larger segments: sled's default.
        let old = dir.path().join("old");
        {
            // Through `open_sled`, as every open in this process must be:
            // the first one starts sled's IO threads (see the test above).
            let db = open_sled(sled::Config::new().path(&old)).unwrap();
            db.insert(b"k", b"v").unwrap();
            db.flush().unwrap();
        }
        assert_eq!(segment_size(&old), 512 << 10);
        let db = open_when_unlocked(&old);
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        drop(db);
        // A new one gets the larger size, and reopens with it.
        let new = dir.path().join("new");
        assert_eq!(segment_size(&new), SEGMENT_SIZE);
        drop(open_when_unlocked(&new));
        assert_eq!(segment_size(&new), SEGMENT_SIZE);
        drop(open_when_unlocked(&new));
    }

    /// Opens `path` once the previous handle's file lock is gone: sled
    /// releases it when its flusher thread lets go of the database, a
    /// moment after the last handle is dropped (longer on a busy machine).
    fn open_when_unlocked(path: &Path) -> Db {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Db::open(path) {
                Ok(db) => return db,
                Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("opening {}: {e}", path.display()),
            }
        }
    }

    #[test]
    fn blob_dir_is_rescanned_unless_its_mtime_predates_the_last_scan() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut blobs = Blobs::default();
        assert!(blobs.may_have_changed(t0), "never scanned");
        blobs.scanned = Some((t0, t0 + Duration::from_secs(1)));
        assert!(!blobs.may_have_changed(t0));
        assert!(blobs.may_have_changed(t0 + Duration::from_nanos(1)), "modified since");
        // A change in the same clock tick as the scan leaves the mtime alone.
        blobs.scanned = Some((t0, t0 + Duration::from_millis(4)));
        assert!(blobs.may_have_changed(t0));
    }

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
        assert_eq!(data.wal.files.blobs.lock().synced, written);
        data.wal.remove(b"big").unwrap();
        data.wal.insert(b"small", b"v".to_vec()).unwrap();
        data.wal.sync().unwrap();
        assert_eq!(data.wal.files.blobs.lock().synced, blobs());
        assert_eq!(data.wal.get(b"small").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
