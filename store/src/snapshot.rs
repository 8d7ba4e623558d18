//! The snapshot format: every entry of the state machine's tree, framed and
//! checksummed. Used for Raft snapshots sent to lagging members, for
//! `Maintenance.Snapshot` (`etcdctl snapshot save`) and for offline restore.
//!
//! ```text
//! "KSTSNAP1" | (u32 key len, key, u32 value len, value)* | u32::MAX | u64 count | u32 crc32
//! ```
//! All integers big-endian; the CRC covers every byte before it.

use crate::error::{Result, StoreError};

const MAGIC: &[u8; 8] = b"KSTSNAP1";
const END: u32 = u32::MAX;

pub fn encode(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size: usize = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + size + 16);
    out.extend_from_slice(MAGIC);
    for (k, v) in entries {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&END.to_be_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

pub fn decode(data: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("snapshot: {why}"));
    if data.len() < MAGIC.len() + 16 || &data[..MAGIC.len()] != MAGIC {
        return Err(corrupt("not a store snapshot or truncated"));
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt("checksum mismatch"));
    }
    let mut pos = MAGIC.len();
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = body.get(pos..pos + n).ok_or_else(|| corrupt("truncated"))?;
        pos += n;
        Ok(s)
    };
    let mut entries = Vec::new();
    loop {
        let len = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes"));
        if len == END {
            break;
        }
        let k = take(len as usize)?.to_vec();
        let vlen = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes"));
        let v = take(vlen as usize)?.to_vec();
        entries.push((k, v));
    }
    let count = u64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
    if count != entries.len() as u64 {
        return Err(corrupt("entry count mismatch"));
    }
    Ok(entries)
}

/// A snapshot as `Maintenance.Snapshot` streams it and snapshot files hold
/// it, in the envelope etcd's tools check: the length of the data (u64 BE),
/// the data, zero padding to a multiple of 512 bytes, then the SHA-256 of
/// everything before it.
pub fn wrap(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut out = Vec::with_capacity(data.len() + 512 + 40);
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    let digest = sha2::Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Checks and removes the envelope of [`wrap`].
pub fn unwrap(file: &[u8]) -> Result<&[u8]> {
    use sha2::Digest;
    let corrupt = |why: &str| StoreError::Corrupt(format!("snapshot file: {why}"));
    if file.len() < 8 + 32 || !(file.len() - 32).is_multiple_of(512) {
        return Err(corrupt("wrong size for a snapshot file"));
    }
    let (body, digest) = file.split_at(file.len() - 32);
    if sha2::Sha256::digest(body).as_slice() != digest {
        return Err(corrupt("sha256 mismatch"));
    }
    let len = u64::from_be_bytes(body[..8].try_into().expect("8 bytes")) as usize;
    body.get(8..8 + len).ok_or_else(|| corrupt("length past the end"))
}

/// Streams a snapshot from a running member's etcd API.
pub async fn fetch(endpoint: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use futures::StreamExt;
    let mut client = proto::etcdserverpb::maintenance_client::MaintenanceClient::connect(endpoint.to_string())
        .await
        .with_context(|| format!("connecting to {endpoint}"))?
        .max_decoding_message_size(usize::MAX);
    let mut stream = client
        .snapshot(proto::etcdserverpb::SnapshotRequest {})
        .await?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk?.blob);
    }
    decode(unwrap(&data)?).context("the received snapshot failed its checks")?;
    Ok(data)
}

/// Writes a snapshot file atomically (temp file, fsync, rename).
pub fn write_file(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("part");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Creates the data dir of a new cluster's member from a snapshot file
/// (`etcdutl snapshot restore`): the keys, leases and history are kept; the
/// membership comes from `initial_cluster`.
pub fn restore_file(
    file: &std::path::Path,
    data_dir: &std::path::Path,
    name: &str,
    initial_cluster: &str,
    token: &str,
) -> anyhow::Result<()> {
    use anyhow::{Context, bail};
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let entries = unwrap(&data)
        .and_then(decode)
        .with_context(|| format!("{} is not a valid snapshot", file.display()))?;
    let members = crate::member::parse_initial_cluster(initial_cluster, token)?;
    if !members.iter().any(|m| m.name == name) {
        bail!("--initial-cluster has no member named {name:?}");
    }
    if data_dir.join("state").exists() || data_dir.join("wal").exists() {
        bail!(
            "data dir {} already has data; restore needs a new one",
            data_dir.display()
        );
    }
    std::fs::create_dir_all(data_dir)?;
    let data = crate::DataDir::open(data_dir)?;
    let mvcc = crate::mvcc::Mvcc::open(&data.state)?;
    mvcc.restore(entries)?;
    mvcc.reset_applied()?;
    mvcc.reset_members(&members)?;
    mvcc.close();
    mvcc.sync()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let entries = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (vec![], vec![]),
            (b"k".to_vec(), vec![7; 1000]),
        ];
        assert_eq!(decode(&encode(&entries)).unwrap(), entries);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn envelope_round_trip_and_damage() {
        let data = encode(&[(b"k".to_vec(), vec![1; 700])]);
        let file = wrap(&data);
        assert_eq!((file.len() - 32) % 512, 0, "etcdctl checks this shape");
        assert_eq!(unwrap(&file).unwrap(), &data[..]);
        let mut bad = file.clone();
        bad[20] ^= 1;
        assert!(unwrap(&bad).is_err());
        assert!(unwrap(&file[..file.len() - 1]).is_err());
    }

    #[test]
    fn rejects_damage() {
        let data = encode(&[(b"key".to_vec(), b"value".to_vec())]);
        for cut in [0, 5, data.len() - 1] {
            assert!(decode(&data[..cut]).is_err(), "truncated at {cut}");
        }
        let mut flipped = data.clone();
        flipped[12] ^= 1;
        assert!(matches!(decode(&flipped), Err(StoreError::Corrupt(_))));
        assert!(decode(b"not a snapshot at all, just text").is_err());
    }
}
