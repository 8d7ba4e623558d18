//! Container logs: the CRI log format the runtime writes
//! (`<RFC3339Nano> <stdout|stderr> <P|F> <text>` per line, under
//! `/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log`), read back
//! for `kubectl logs` (tail, since, timestamps, limit, follow), and rotated
//! by size (`--container-log-max-size`, `--container-log-max-files`).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::Kubelet;

/// One parsed log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub timestamp: String,
    pub stream: String,
    /// The text, with the newline when the line was complete.
    pub text: String,
}

pub fn parse_line(raw: &str) -> Option<Line> {
    let mut parts = raw.splitn(4, ' ');
    let timestamp = parts.next()?.to_string();
    let stream = parts.next()?.to_string();
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    let full = tag.split(':').next() == Some("F");
    Some(Line {
        timestamp,
        stream,
        text: if full { format!("{text}\n") } else { text.to_string() },
    })
}

/// The log files of one container instance, oldest first (rotated ones
/// are `<path>.<timestamp>`).
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        rotated.sort();
        out.extend(rotated);
    }
    out.push(path.to_path_buf());
    out
}

/// `kubectl logs` options as the kubelet API takes them.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub follow: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<usize>,
}

fn render(l: &Line, opts: &Options) -> String {
    if opts.timestamps {
        format!("{} {}", l.timestamp, l.text)
    } else {
        l.text.clone()
    }
}

fn keep(l: &Line, opts: &Options) -> bool {
    match opts.since {
        Some(since) => l.timestamp.parse::<jiff::Timestamp>().is_ok_and(|t| t >= since),
        None => true,
    }
}

/// Everything logged so far, filtered; returns the text and the offset
/// reached in the current file (for following).
pub fn read_all(path: &Path, opts: &Options) -> (String, u64) {
    let mut lines: Vec<Line> = Vec::new();
    let mut offset = 0;
    for f in files(path) {
        let Ok(file) = std::fs::File::open(&f) else { continue };
        let mut reader = BufReader::new(file);
        let mut buf = String::new();
        while reader.read_line(&mut buf).unwrap_or(0) > 0 {
            if buf.ends_with('\n') {
                if let Some(l) = parse_line(buf.trim_end_matches('\n'))
                    && keep(&l, opts)
                {
                    lines.push(l);
                }
                buf.clear();
            } else {
                break;
            }
        }
        if f == path {
            offset = reader.stream_position().unwrap_or(0) - buf.len() as u64;
        }
    }
    if let Some(n) = opts.tail_lines {
        let start = lines.len().saturating_sub(n);
        lines.drain(..start);
    }
    let mut out: String = lines.iter().map(|l| render(l, opts)).collect();
    if let Some(limit) = opts.limit_bytes {
        out.truncate(floor_char_boundary(&out, limit));
    }
    (out, offset)
}

fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The last `lines` lines of a log, at most `bytes` (a termination
/// message for FallbackToLogsOnError).
pub fn tail_message(path: &Path, lines: usize, bytes: usize) -> String {
    let (text, _) = read_all(
        path,
        &Options {
            tail_lines: Some(lines),
            ..Default::default()
        },
    );
    let start = text.len().saturating_sub(bytes);
    let mut start = start;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Streams a container's log: what is there, then, when following, what
/// is appended until `running` says the container stopped.
pub fn stream<F, Fut>(path: PathBuf, opts: Options, running: F) -> mpsc::Receiver<Bytes>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let (text, mut offset) = read_all(&path, &opts);
        let mut sent = text.len();
        if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
            return;
        }
        if !opts.follow {
            return;
        }
        let mut pending = String::new();
        let mut idle = 0u32;
        loop {
            if opts.limit_bytes.is_some_and(|l| sent >= l) {
                return;
            }
            let mut chunk = String::new();
            if let Ok(mut f) = std::fs::File::open(&path) {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    // Rotated: the current file starts over.
                    offset = 0;
                }
                if f.seek(SeekFrom::Start(offset)).is_ok() {
                    let mut buf = Vec::new();
                    if f.read_to_end(&mut buf).is_ok() {
                        offset += buf.len() as u64;
                        chunk = String::from_utf8_lossy(&buf).into_owned();
                    }
                }
            }
            if chunk.is_empty() {
                idle += 1;
                // Every second of quiet, check whether it still runs.
                if idle.is_multiple_of(10) && !running().await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            idle = 0;
            pending.push_str(&chunk);
            let mut out = String::new();
            while let Some(i) = pending.find('\n') {
                let raw: String = pending.drain(..=i).collect();
                if let Some(l) = parse_line(raw.trim_end_matches('\n'))
                    && keep(&l, &opts)
                {
                    out.push_str(&render(&l, &opts));
                }
            }
            if let Some(limit) = opts.limit_bytes {
                out.truncate(floor_char_boundary(&out, limit.saturating_sub(sent)));
            }
            sent += out.len();
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Rotates running containers' logs above the size limit.
pub async fn rotate_loop(k: Arc<Kubelet>) -> anyhow::Result<()> {
    let max = apimachinery::quantity::Quantity::parse(&k.opts.container_log_max_size)
        .map_err(|e| anyhow::anyhow!("--container-log-max-size {:?}: {e}", k.opts.container_log_max_size))?
        .value()
        .max(1024) as u64;
    let keep = k.opts.container_log_max_files.max(2) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let Ok(list) = k.runtime.list_containers().await else {
            continue;
        };
        for c in list
            .iter()
            .filter(|c| c.state == crate::cri::ContainerState::ContainerRunning as i32)
        {
            let Ok(Some(st)) = k.runtime.container_status(&c.id).await else {
                continue;
            };
            if st.log_path.is_empty() {
                continue;
            }
            let path = PathBuf::from(&st.log_path);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size < max {
                continue;
            }
            let stamp = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S%.f").to_string();
            let rotated = PathBuf::from(format!("{}.{stamp}", st.log_path));
            if std::fs::rename(&path, &rotated).is_err() {
                continue;
            }
            if let Err(e) = k.runtime.reopen_container_log(&c.id).await {
                tracing::warn!(container = %c.id, error = %e, "reopening a rotated log");
                let _ = std::fs::rename(&rotated, &path);
                continue;
            }
            let all = files(&path);
            let rotated: Vec<&PathBuf> = all.iter().filter(|p| **p != path).collect();
            for old in rotated.iter().take(rotated.len().saturating_sub(keep - 1)) {
                let _ = std::fs::remove_file(old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cri_logs_with_tail_since_and_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(
            &p,
            "2026-12-06T10:00:00.000000001Z stdout F one\n\
             2026-12-06T10:00:01.000000001Z stderr P tw\n\
             2026-12-06T10:00:01.000000002Z stderr F o\n\
             2026-12-06T10:00:02.000000001Z stdout F three\n",
        )
        .unwrap();
        assert_eq!(read_all(&p, &Options::default()).0, "one\ntwo\nthree\n");
        let tail = Options {
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(read_all(&p, &tail).0, "three\n");
        let since = Options {
            since: Some("2026-12-06T10:00:01Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(read_all(&p, &since).0, "two\nthree\n");
        let ts = Options {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(read_all(&p, &ts).0, "2026-12-06T10:00:02.000000001Z three\n");
        let limit = Options {
            limit_bytes: Some(5),
            ..Default::default()
        };
        assert_eq!(read_all(&p, &limit).0, "one\nt");
        assert_eq!(tail_message(&p, 80, 6), "three\n");
    }
}
