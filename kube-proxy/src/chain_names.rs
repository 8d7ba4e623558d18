//! Upstream's chain names: a hash of the name in front so that names stay
//! unique when truncated and tell near-identical ones apart.

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

/// nftables' limit on a chain name, less the longest prefix we use
/// (`affinity-`, `endpoint-`, `firewall-`: upstream reserves 16).
const NFT_BASE_MAX: usize = 256 - 16;

/// `HASH8-name`, truncated with `...` past nftables' limit (upstream's
/// `hashAndTruncate`).
pub fn hash_and_truncate(name: &str) -> String {
    let encoded = BASE32.encode(&Sha256::digest(name.as_bytes()));
    let mut out = format!("{}-{name}", &encoded[..8]);
    if out.len() > NFT_BASE_MAX {
        out.truncate(NFT_BASE_MAX - 3);
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names upstream's nftables proxier tests expect.
    #[test]
    fn upstream_names() {
        assert_eq!(hash_and_truncate("ns1/svc1/tcp/p80"), "ULMVA6XW-ns1/svc1/tcp/p80");
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80"),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
        let long = "x".repeat(300);
        assert_eq!(hash_and_truncate(&long).len(), NFT_BASE_MAX);
        assert!(hash_and_truncate(&long).ends_with("..."));
    }
}
