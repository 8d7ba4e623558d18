//! The cluster's PKI: a CA, the apiserver's serving certificate, a key for
//! signing service-account tokens, and client certificates with their
//! kubeconfigs (admin and one identity per component). All are created on
//! first start under the cert dir and reused afterwards.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVING_CERT: &str = "apiserver.crt";
pub const SERVING_KEY: &str = "apiserver.key";
pub const SA_KEY: &str = "sa.key";
pub const SA_PUB: &str = "sa.pub";
pub const KUBELET_CLIENT_CERT: &str = "apiserver-kubelet-client.crt";
pub const KUBELET_CLIENT_KEY: &str = "apiserver-kubelet-client.key";

/// The PKI as loaded from the cert dir.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub sa_key_pem: String,
    pub sa_pub_pem: String,
    /// The apiserver's identity towards kubelets (logs, exec, attach,
    /// port-forward), as upstream's `apiserver-kubelet-client`.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn read(dir: &Path, name: &str) -> Result<String> {
    fs::read_to_string(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))
}

impl Pki {
    /// Loads the PKI from `dir`, creating what is missing. `sans` are the
    /// serving certificate's extra names and addresses.
    pub fn ensure(dir: &Path, sans: &[String]) -> Result<Pki> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Several apiservers may share one cert dir; one creates, the
        // others wait for it.
        let _lock = DirLock::acquire(dir)?;
        if !dir.join(CA_CERT).exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = dn("kubernetes", &[]);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let cert = params.self_signed(&key)?;
            write_private(&dir.join(CA_KEY), &key.serialize_pem())?;
            write_private(&dir.join(CA_CERT), &cert.pem())?;
        }
        let ca_cert_pem = read(dir, CA_CERT)?;
        let ca_key_pem = read(dir, CA_KEY)?;
        if !dir.join(SERVING_CERT).exists() {
            let issuer = issuer(&ca_cert_pem, &ca_key_pem)?;
            let key = KeyPair::generate()?;
            let mut names: Vec<String> = vec![
                "localhost".into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
                "127.0.0.1".into(),
                "::1".into(),
            ];
            for s in sans {
                if !names.contains(s) {
                    names.push(s.clone());
                }
            }
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.subject_alt_names = names
                .iter()
                .map(|n| match n.parse::<IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
                })
                .collect::<Result<Vec<_>, rcgen::Error>>()?;
            params.distinguished_name = dn("kube-apiserver", &[]);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let cert = params.signed_by(&key, &issuer)?;
            write_private(&dir.join(SERVING_KEY), &key.serialize_pem())?;
            write_private(&dir.join(SERVING_CERT), &cert.pem())?;
        }
        if !dir.join(SA_KEY).exists() {
            let key = KeyPair::generate()?;
            write_private(&dir.join(SA_PUB), &key.public_key_pem())?;
            write_private(&dir.join(SA_KEY), &key.serialize_pem())?;
        }
        if !dir.join(KUBELET_CLIENT_CERT).exists() {
            let (cert, key) = issue_client(
                &ca_cert_pem,
                &ca_key_pem,
                "kube-apiserver-kubelet-client",
                &["system:masters"],
            )?;
            write_private(&dir.join(KUBELET_CLIENT_KEY), &key)?;
            write_private(&dir.join(KUBELET_CLIENT_CERT), &cert)?;
        }
        Ok(Pki {
            dir: dir.to_path_buf(),
            kubelet_client_cert_pem: read(dir, KUBELET_CLIENT_CERT)?,
            kubelet_client_key_pem: read(dir, KUBELET_CLIENT_KEY)?,
            serving_cert_pem: read(dir, SERVING_CERT)?,
            serving_key_pem: read(dir, SERVING_KEY)?,
            sa_key_pem: read(dir, SA_KEY)?,
            sa_pub_pem: read(dir, SA_PUB)?,
            ca_cert_pem,
            ca_key_pem,
        })
    }

    /// Issues a client certificate for `user` in `groups`; returns (cert,
    /// key) PEMs.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<(String, String)> {
        issue_client(&self.ca_cert_pem, &self.ca_key_pem, user, groups)
    }

    /// Writes a kubeconfig for `user` that reaches `server`.
    pub fn write_kubeconfig(&self, path: &Path, server: &str, user: &str, groups: &[&str]) -> Result<()> {
        let (cert, key) = self.issue_client(user, groups)?;
        let text = kubeconfig(server, &self.ca_cert_pem, user, &cert, &key);
        write_private(path, &text)
    }
}

fn issuer(ca_cert_pem: &str, ca_key_pem: &str) -> Result<Issuer<'static, KeyPair>> {
    let key = KeyPair::from_pem(ca_key_pem).context("parsing the CA key")?;
    Issuer::from_ca_cert_pem(ca_cert_pem, key).context("parsing the CA certificate")
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for o in orgs {
        d.push(DnType::OrganizationName, *o);
    }
    d.push(DnType::CommonName, cn);
    d
}

/// Issues a client certificate signed by the CA.
pub fn issue_client(ca_cert_pem: &str, ca_key_pem: &str, user: &str, groups: &[&str]) -> Result<(String, String)> {
    let issuer = issuer(ca_cert_pem, ca_key_pem)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn(user, groups);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a serving certificate for `cn` valid for `names` (DNS names or
/// IP addresses), signed by the CA; returns (cert, key) PEMs.
pub fn issue_serving(ca_cert_pem: &str, ca_key_pem: &str, cn: &str, names: &[String]) -> Result<(String, String)> {
    let issuer = issuer(ca_cert_pem, ca_key_pem)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<Vec<_>, rcgen::Error>>()?;
    params.distinguished_name = dn(cn, &[]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A kubeconfig with embedded credentials, as `kubeadm` writes them.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let cluster = "kubernetes";
    let context = format!("{user}@{cluster}");
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: {cluster}
contexts:
- context:
    cluster: {cluster}
    user: {user}
  name: {context}
current-context: {context}
preferences: {{}}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

/// An exclusive lock on a directory (a lock file created with O_EXCL),
/// released on drop. Stale locks older than a minute are broken.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(".pki.lock");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(DirLock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > std::time::Duration::from_secs(60));
                    if stale {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if std::time::Instant::now() > deadline {
                        anyhow::bail!("timed out waiting for the lock {}", path.display());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Pki::ensure(dir.path(), &["10.0.0.1".into(), "node-a".into()]).expect("create");
        let b = Pki::ensure(dir.path(), &[]).expect("reuse");
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.serving_cert_pem, b.serving_cert_pem);
        let (cert, _key) = a.issue_client("admin", &["system:masters"]).expect("client cert");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c)
            .expect("pem");
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let subject = parsed.subject().to_string();
        assert!(subject.contains("CN=admin"), "{subject}");
        assert!(subject.contains("O=system:masters"), "{subject}");
    }
}
