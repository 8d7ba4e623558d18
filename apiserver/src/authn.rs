//! Authentication: client certificates (CN = user, O = groups), bearer
//! tokens from a static token file, and service-account tokens (JWTs this
//! apiserver signs). Anonymous requests get `system:anonymous`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::certs::Pki;

pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }

    fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self { name, uid, groups }
    }

    /// The user of a verified client certificate (DER).
    pub fn from_certificate(der: &[u8]) -> Option<User> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Some(User::authenticated(name, String::new(), groups))
    }
}

/// Claims of a service-account token (as upstream's bound tokens).
#[derive(Debug, Serialize, Deserialize)]
pub struct SaClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: SaClaimsK8s,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SaClaimsK8s {
    pub namespace: String,
    pub serviceaccount: SaRef,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SaRef {
    pub name: String,
    pub uid: String,
}

pub struct Authenticator {
    tokens: HashMap<String, User>,
    sa_encoding: EncodingKey,
    sa_decoding: DecodingKey,
}

impl Authenticator {
    pub fn new(pki: &Pki, token_file: Option<&Path>) -> Result<Self> {
        let tokens = match token_file {
            Some(p) => {
                parse_token_file(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                    .with_context(|| format!("parsing {}", p.display()))?
            }
            None => HashMap::new(),
        };
        Ok(Self {
            tokens,
            sa_encoding: EncodingKey::from_ec_pem(pki.sa_key_pem.as_bytes()).context("service-account key")?,
            sa_decoding: DecodingKey::from_ec_pem(pki.sa_pub_pem.as_bytes()).context("service-account public key")?,
        })
    }

    /// The user a bearer token stands for, if any.
    pub fn authenticate_token(&self, token: &str) -> Option<User> {
        if let Some(u) = self.tokens.get(token) {
            return Some(u.clone());
        }
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[SA_ISSUER]);
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<SaClaims>(token, &self.sa_decoding, &v).ok()?;
        let c = data.claims;
        Some(User::authenticated(
            c.sub,
            c.kubernetes.serviceaccount.uid,
            vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", c.kubernetes.namespace),
            ],
        ))
    }

    /// Signs a token for a service account, valid for `ttl_secs`.
    pub fn issue_sa_token(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: Vec<String>,
        ttl_secs: i64,
    ) -> Result<(String, i64)> {
        let now = jiff::Timestamp::now().as_second();
        let claims = SaClaims {
            iss: SA_ISSUER.into(),
            sub: format!("system:serviceaccount:{namespace}:{name}"),
            aud: if audiences.is_empty() {
                vec![SA_ISSUER.into()]
            } else {
                audiences
            },
            exp: now + ttl_secs,
            iat: now,
            nbf: now,
            kubernetes: SaClaimsK8s {
                namespace: namespace.into(),
                serviceaccount: SaRef {
                    name: name.into(),
                    uid: uid.into(),
                },
            },
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.sa_encoding)?;
        Ok((token, now + ttl_secs))
    }
}

/// Parses upstream's static token file: `token,user,uid[,"group1,group2"]`.
pub fn parse_token_file(text: &str) -> Result<HashMap<String, User>> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_csv(line);
        if fields.len() < 3 {
            anyhow::bail!(
                "line {}: want token,user,uid[,groups], got {} fields",
                n + 1,
                fields.len()
            );
        }
        let groups = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            fields[0].clone(),
            User::authenticated(fields[1].clone(), fields[2].clone(), groups),
        );
    }
    Ok(out)
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

/// The TLS configuration: our serving certificate; client certificates are
/// verified against the CA when offered, and optional.
pub fn server_tls(pki: &Pki) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
        roots.add(c.context("CA certificate")?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("client verifier")?;
    let certs = CertificateDer::pem_slice_iter(pki.serving_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key_pem.as_bytes()).context("serving key")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_parses_quoted_groups() {
        let t = parse_token_file("# comment\nabc,alice,1001,\"dev,ops\"\ndef,bob,1002\n").expect("parse");
        assert_eq!(t["abc"].name, "alice");
        assert_eq!(t["abc"].groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(t["def"].groups, vec!["system:authenticated"]);
        assert!(parse_token_file("onlytoken\n").is_err());
    }

    #[test]
    fn service_account_tokens_verify_and_forgeries_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::ensure(dir.path(), &[]).expect("pki");
        let a = Authenticator::new(&pki, None).expect("authn");
        let (tok, _) = a
            .issue_sa_token("default", "builder", "u1", vec![], 3600)
            .expect("issue");
        let u = a.authenticate_token(&tok).expect("valid");
        assert_eq!(u.name, "system:serviceaccount:default:builder");
        assert!(u.groups.contains(&"system:serviceaccounts:default".to_string()));
        let mut forged = tok.clone();
        forged.pop();
        assert!(a.authenticate_token(&forged).is_none());
        assert!(a.authenticate_token("nonsense").is_none());
    }
}
