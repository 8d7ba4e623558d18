//! Authentication: client certificates (CN = user, O = groups), bearer
//! tokens from a static token file, and service-account tokens (JWTs this
//! apiserver signs). Anonymous requests get `system:anonymous`.
//!
//! Tokens are checked against audiences, as upstream's authenticators: a
//! request to the API wants one of the API audiences (`--api-audiences`,
//! by default the service-account issuer); a TokenReview may name others.
//! A service-account token names its audiences; a static token has none of
//! its own and counts for the API audiences only. What a service-account
//! token refers to (its service account, and the pod, secret or node it is
//! bound to) must still exist with the same UID: [`Authenticator`] checks
//! the signature and claims, the server then looks the objects up
//! (`server::Server::authenticate_bearer`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::certs::Pki;

pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The issuer of legacy service-account tokens: those the
/// controller-manager's token controller writes into
/// `kubernetes.io/service-account-token` Secrets (no expiry; valid while
/// the Secret holds them).
pub const LEGACY_SA_ISSUER: &str = "kubernetes/serviceaccount";

/// Claims of a legacy service-account token (upstream's flat keys).
#[derive(Debug, Serialize, Deserialize)]
pub struct LegacyClaims {
    pub iss: String,
    pub sub: String,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    pub namespace: String,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    pub secret_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    pub service_account_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    pub service_account_uid: String,
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Further attributes (upstream's `user.Info.GetExtra`), such as the
    /// pod a service-account token is bound to.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }

    fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self {
            name,
            uid,
            groups,
            extra: BTreeMap::new(),
        }
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
    /// The credential's id, reported as `authentication.kubernetes.io/credential-id`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: SaClaimsK8s,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SaClaimsK8s {
    pub namespace: String,
    pub serviceaccount: SaRef,
    /// The object the token is bound to: it is valid only while that object
    /// exists (a pod's token also names the pod's node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<SaRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SaRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<SaRef>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SaRef {
    pub name: String,
    pub uid: String,
}

/// A token that passed its authenticator's own checks.
#[derive(Debug)]
pub struct TokenAuth {
    pub user: User,
    /// The audiences it was accepted for: those asked for that it carries.
    pub audiences: Vec<String>,
    /// For a service-account token: the objects it refers to, which must
    /// still exist for it to count.
    pub service_account: Option<SaClaimsK8s>,
    /// For a legacy token: it counts only while its Secret (named in
    /// `service_account.secret`, no uid) still holds this token.
    pub legacy_token: Option<String>,
}

/// Why a token was not accepted: upstream's messages (a TokenReview reports
/// them in `status.error`).
pub const INVALID_BEARER_TOKEN: &str = "invalid bearer token";

pub struct Authenticator {
    tokens: HashMap<String, User>,
    sa_encoding: EncodingKey,
    sa_decoding: DecodingKey,
    api_audiences: Vec<String>,
}

impl Authenticator {
    pub fn new(pki: &Pki, token_file: Option<&Path>, api_audiences: Vec<String>) -> Result<Self> {
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
            api_audiences,
        })
    }

    /// The audiences a request to the API must present a token for.
    pub fn api_audiences(&self) -> &[String] {
        &self.api_audiences
    }

    /// Checks a bearer token for `audiences` (the API's when None).
    /// `Err` carries upstream's message for a token that was not accepted.
    pub fn authenticate_token(&self, token: &str, audiences: Option<&[String]>) -> Result<TokenAuth, String> {
        let wanted = audiences.unwrap_or(&self.api_audiences);
        if let Some(u) = self.tokens.get(token) {
            // Audience-agnostic (upstream's WrapAudienceAgnosticToken): good
            // for the API audiences only.
            let auds = intersect(&self.api_audiences, wanted);
            if auds.is_empty() {
                return Err(INVALID_BEARER_TOKEN.into());
            }
            return Ok(TokenAuth {
                user: u.clone(),
                audiences: auds,
                service_account: None,
                legacy_token: None,
            });
        }
        if unverified_issuer(token).as_deref() == Some(LEGACY_SA_ISSUER) {
            return self.authenticate_legacy(token, wanted);
        }
        let Some(claims) = self.service_account_claims(token)? else {
            return Err(INVALID_BEARER_TOKEN.into());
        };
        let auds = intersect(&claims.aud, wanted);
        if auds.is_empty() {
            return Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_quoted(&claims.aud),
                go_quoted(wanted)
            ));
        }
        let k = claims.kubernetes;
        let mut user = User::authenticated(
            claims.sub,
            k.serviceaccount.uid.clone(),
            vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", k.namespace),
            ],
        );
        let mut extra = |key: &str, value: &str| {
            user.extra
                .insert(format!("authentication.kubernetes.io/{key}"), vec![value.to_string()]);
        };
        if !claims.jti.is_empty() {
            extra("credential-id", &format!("JTI={}", claims.jti));
        }
        if let Some(node) = &k.node {
            extra("node-name", &node.name);
            extra("node-uid", &node.uid);
        }
        if let Some(pod) = &k.pod {
            extra("pod-name", &pod.name);
            extra("pod-uid", &pod.uid);
        }
        Ok(TokenAuth {
            user,
            audiences: auds,
            service_account: Some(k),
            legacy_token: None,
        })
    }

    /// A legacy token: signed by our service-account key, audience-agnostic
    /// (good for the API's audiences), bound to its Secret.
    fn authenticate_legacy(&self, token: &str, wanted: &[String]) -> Result<TokenAuth, String> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[LEGACY_SA_ISSUER]);
        v.validate_aud = false;
        v.validate_exp = false;
        v.set_required_spec_claims(&["iss", "sub"]);
        let claims = match jsonwebtoken::decode::<LegacyClaims>(token, &self.sa_decoding, &v) {
            Ok(d) => d.claims,
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                return Err(match e.kind() {
                    ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidAlgorithm => {
                        "token could not be verified: invalid signature".into()
                    }
                    _ => format!("service account token claims could not be validated: {e}"),
                });
            }
        };
        let auds = intersect(&self.api_audiences, wanted);
        if auds.is_empty() {
            return Err(INVALID_BEARER_TOKEN.into());
        }
        let user = User::authenticated(
            format!(
                "system:serviceaccount:{}:{}",
                claims.namespace, claims.service_account_name
            ),
            claims.service_account_uid.clone(),
            vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", claims.namespace),
            ],
        );
        Ok(TokenAuth {
            user,
            audiences: auds,
            service_account: Some(SaClaimsK8s {
                namespace: claims.namespace,
                serviceaccount: SaRef {
                    name: claims.service_account_name,
                    uid: claims.service_account_uid,
                },
                pod: None,
                secret: Some(SaRef {
                    name: claims.secret_name,
                    uid: String::new(),
                }),
                node: None,
            }),
            legacy_token: Some(token.to_string()),
        })
    }

    /// The claims of a token this apiserver signed. Ok(None): not one of
    /// ours (another issuer, or not a JWT at all).
    fn service_account_claims(&self, token: &str) -> Result<Option<SaClaims>, String> {
        use jsonwebtoken::errors::ErrorKind;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[SA_ISSUER]);
        v.validate_aud = false;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        match jsonwebtoken::decode::<SaClaims>(token, &self.sa_decoding, &v) {
            Ok(data) => Ok(Some(data.claims)),
            Err(e) => match e.kind() {
                ErrorKind::ExpiredSignature => Err("service account token has expired".into()),
                ErrorKind::ImmatureSignature => Err("service account token is not valid yet".into()),
                // Ours only if it names our issuer (upstream tries an
                // issuer's keys only on tokens naming that issuer).
                _ if unverified_issuer(token).as_deref() != Some(SA_ISSUER) => Ok(None),
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::Base64(_) => Err("token could not be verified: invalid signature".into()),
                _ => Err(format!("service account token claims could not be validated: {e}")),
            },
        }
    }

    /// Signs a token for a service account, valid for `ttl_secs`, bound to
    /// the objects in `refs` (besides the service account itself).
    pub fn issue_sa_token(&self, refs: SaClaimsK8s, audiences: Vec<String>, ttl_secs: i64) -> Result<(String, i64)> {
        let now = jiff::Timestamp::now().as_second();
        let claims = SaClaims {
            iss: SA_ISSUER.into(),
            sub: format!("system:serviceaccount:{}:{}", refs.namespace, refs.serviceaccount.name),
            aud: if audiences.is_empty() {
                self.api_audiences.clone()
            } else {
                audiences
            },
            exp: now + ttl_secs,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: refs,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.sa_encoding)?;
        Ok((token, now + ttl_secs))
    }
}

/// The members of `a` also in `b`, in `a`'s order.
fn intersect(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| b.contains(x)).cloned().collect()
}

/// A string list as Go's `%q` prints it: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// The `iss` claim of a JWT, read without verifying it.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(String::from)
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
        let a = Authenticator::new(&pki, None, vec![SA_ISSUER.into()]).expect("authn");
        let refs = SaClaimsK8s {
            namespace: "default".into(),
            serviceaccount: SaRef {
                name: "builder".into(),
                uid: "u1".into(),
            },
            pod: Some(SaRef {
                name: "p".into(),
                uid: "pu".into(),
            }),
            ..Default::default()
        };
        let (tok, _) = a.issue_sa_token(refs.clone(), vec![], 3600).expect("issue");
        let t = a.authenticate_token(&tok, None).expect("valid");
        assert_eq!(t.user.name, "system:serviceaccount:default:builder");
        assert_eq!(t.user.uid, "u1");
        assert!(t.user.groups.contains(&"system:serviceaccounts:default".to_string()));
        assert_eq!(t.user.extra["authentication.kubernetes.io/pod-name"], vec!["p"]);
        assert!(t.user.extra["authentication.kubernetes.io/credential-id"][0].starts_with("JTI="));
        assert_eq!(t.audiences, vec![SA_ISSUER]);
        assert_eq!(t.service_account.expect("claims").pod.expect("pod").uid, "pu");
        let mut forged = tok.clone();
        forged.pop();
        assert_eq!(
            a.authenticate_token(&forged, None).unwrap_err(),
            "token could not be verified: invalid signature"
        );
        assert_eq!(
            a.authenticate_token("nonsense", None).unwrap_err(),
            INVALID_BEARER_TOKEN
        );

        // A token for another audience is no good for the API, but is for
        // that audience.
        let (vault, _) = a.issue_sa_token(refs, vec!["vault".into()], 3600).expect("issue");
        assert_eq!(
            a.authenticate_token(&vault, None).unwrap_err(),
            format!("token audiences [\"vault\"] is invalid for the target audiences [\"{SA_ISSUER}\"]")
        );
        let auds = ["vault".to_string(), "other".to_string()];
        assert_eq!(
            a.authenticate_token(&vault, Some(&auds)).expect("ok").audiences,
            vec!["vault"]
        );
    }

    #[test]
    fn static_tokens_count_for_the_api_audiences_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::ensure(dir.path(), &[]).expect("pki");
        let file = dir.path().join("tokens.csv");
        std::fs::write(&file, "s3cret,alice,1001,dev\n").expect("write");
        let a = Authenticator::new(&pki, Some(&file), vec!["api".into()]).expect("authn");
        let t = a.authenticate_token("s3cret", None).expect("api");
        assert_eq!((t.user.name.as_str(), t.audiences), ("alice", vec!["api".to_string()]));
        assert!(t.service_account.is_none());
        assert_eq!(
            a.authenticate_token("s3cret", Some(&["vault".to_string()]))
                .unwrap_err(),
            INVALID_BEARER_TOKEN
        );
    }
}
