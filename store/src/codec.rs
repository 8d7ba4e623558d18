//! Checked encoding of everything the store writes to disk: the payload
//! followed by its CRC-32 (IEEE) in little-endian. A record whose
//! checksum does not match is reported as corruption, never served.

use crate::error::StoreError;

const CRC_LEN: usize = 4;

/// Appends the checksum of `payload` to it.
pub fn seal(mut payload: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    payload
}

/// Verifies and strips the checksum. `what` names the record in the error.
pub fn open<'a>(sealed: &'a [u8], what: &str) -> Result<&'a [u8], StoreError> {
    let split = sealed
        .len()
        .checked_sub(CRC_LEN)
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: truncated record ({} bytes)", sealed.len())))?;
    let (payload, crc) = sealed.split_at(split);
    let want = u32::from_le_bytes(crc.try_into().expect("split at CRC_LEN"));
    if crc32fast::hash(payload) != want {
        return Err(StoreError::Corrupt(format!("{what}: checksum mismatch")));
    }
    Ok(payload)
}

/// Encodes a prost message and seals it.
pub fn seal_msg<M: prost::Message>(m: &M) -> Vec<u8> {
    seal(m.encode_to_vec())
}

/// Opens a sealed prost message.
pub fn open_msg<M: prost::Message + Default>(sealed: &[u8], what: &str) -> Result<M, StoreError> {
    let payload = open(sealed, what)?;
    M::decode(payload).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detects_damage() {
        let sealed = seal(b"hello".to_vec());
        assert_eq!(open(&sealed, "t").unwrap(), b"hello");
        let mut flipped = sealed.clone();
        flipped[1] ^= 0x40;
        assert!(matches!(open(&flipped, "t"), Err(StoreError::Corrupt(_))));
        assert!(matches!(open(&sealed[..2], "t"), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            open(&sealed[..sealed.len() - 1], "t"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
