//! What a request is about, parsed from its path and query (upstream's
//! RequestInfo), plus content negotiation.

use std::collections::HashMap;

use crate::status::{ApiError, ApiResult};

/// A resource request, parsed from `/api/v1/...` or `/apis/<g>/<v>/...`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
    /// Path after the subresource (for proxy subresources).
    pub rest: Vec<String>,
    /// The legacy `/watch/` path prefix was used.
    pub watch_prefix: bool,
}

/// What a path is.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api`
    LegacyRoot,
    /// `/apis`
    GroupsRoot,
    /// `/apis/<g>`
    Group(String),
    /// `/api/v1` or `/apis/<g>/<v>`
    GroupVersion(String, String),
    Resource(RequestInfo),
    Other,
}

pub fn parse_path(path: &str) -> Target {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Target::LegacyRoot,
        ["apis"] => return Target::GroupsRoot,
        ["apis", g] => return Target::Group(g.to_string()),
        ["api", v] => return Target::GroupVersion(String::new(), v.to_string()),
        ["apis", g, v] => return Target::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Target::Other,
    };
    let mut info = RequestInfo {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    let mut rest = rest;
    if rest.first() == Some(&"watch") {
        info.watch_prefix = true;
        rest = &rest[1..];
    }
    // `namespaces/<ns>/status` and `/finalize` are subresources of the
    // namespace itself, as upstream's RequestInfo treats them.
    let namespace_sub = rest.len() >= 3 && matches!(rest[2], "status" | "finalize");
    let parts: &[&str] = if rest.first() == Some(&"namespaces") && rest.len() >= 3 && !namespace_sub {
        info.namespace = rest[1].into();
        &rest[2..]
    } else {
        rest
    };
    let Some(resource) = parts.first() else {
        return Target::Other;
    };
    info.resource = resource.to_string();
    if let Some(n) = parts.get(1) {
        info.name = n.to_string();
    }
    if let Some(s) = parts.get(2) {
        info.subresource = s.to_string();
    }
    if parts.len() > 3 {
        info.rest = parts[3..].iter().map(|s| s.to_string()).collect();
    }
    Target::Resource(info)
}

/// Query parameters, first value wins (as upstream's decoder).
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let mut m = HashMap::new();
        if let Some(q) = q {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        Self(m)
    }

    /// A copy without the given parameters.
    pub fn clone_without(&self, keys: &[&str]) -> Query {
        let mut m = self.0.clone();
        for k in keys {
            m.remove(*k);
        }
        Query(m)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    pub fn str(&self, k: &str) -> &str {
        self.get(k).unwrap_or("")
    }

    pub fn bool(&self, k: &str) -> ApiResult<bool> {
        match self.get(k) {
            // Go's strconv.ParseBool, as upstream's query decoding.
            None | Some("" | "0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for {k}: {other:?}: must be a boolean"
            ))),
        }
    }

    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v:?}: must be an integer"))),
        }
    }
}

/// The representation a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// `application/json;as=Table;g=meta.k8s.io;v=v1`
    Table,
    /// `application/json;as=PartialObjectMetadata...`
    Metadata,
    /// `application/json;as=PartialObjectMetadataList...`
    MetadataList,
}

/// Picks a representation from an `Accept` header.
pub fn negotiate(accept: Option<&str>, list: bool) -> ApiResult<Output> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Output::Json);
    };
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        let mut as_ = "";
        let mut g = "";
        let mut v = "";
        for p in params {
            if let Some((k, val)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = val.trim(),
                    "g" => g = val.trim(),
                    "v" => v = val.trim(),
                    _ => {}
                }
            }
        }
        let json_like = matches!(media.as_str(), "application/json" | "*/*" | "application/*");
        if !as_.is_empty() {
            if !json_like || g != "meta.k8s.io" || !matches!(v, "v1" | "v1beta1") {
                continue;
            }
            match as_ {
                "Table" => return Ok(Output::Table),
                "PartialObjectMetadata" if !list => return Ok(Output::Metadata),
                "PartialObjectMetadataList" if list => return Ok(Output::MetadataList),
                _ => continue,
            }
        }
        if json_like {
            return Ok(Output::Json);
        }
        if media == "application/yaml" {
            return Ok(Output::Yaml);
        }
    }
    Err(ApiError::NotAcceptable {
        message: "only the following media types are accepted: application/json, application/yaml".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> RequestInfo {
        match parse_path(path) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_parse_like_upstream() {
        let r = res("/api/v1/namespaces/default/pods/web/log");
        assert_eq!((r.namespace.as_str(), r.resource.as_str()), ("default", "pods"));
        assert_eq!((r.name.as_str(), r.subresource.as_str()), ("web", "log"));
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.namespace.as_str()),
            ("namespaces", "kube-system", "")
        );
        let r = res("/api/v1/namespaces/kube-system/status");
        assert_eq!((r.resource.as_str(), r.subresource.as_str()), ("namespaces", "status"));
        let r = res("/apis/apps/v1/watch/namespaces/a/deployments");
        assert!(r.watch_prefix);
        assert_eq!(
            (r.group.as_str(), r.namespace.as_str(), r.resource.as_str()),
            ("apps", "a", "deployments")
        );
        let r = res("/apis/apps/v1/deployments");
        assert_eq!((r.namespace.as_str(), r.resource.as_str()), ("", "deployments"));
        assert_eq!(
            parse_path("/apis/apps/v1"),
            Target::GroupVersion("apps".into(), "v1".into())
        );
        assert_eq!(parse_path("/api"), Target::LegacyRoot);
        assert_eq!(parse_path("/healthz"), Target::Other);
    }

    #[test]
    fn accept_headers_negotiate() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl), true).expect("ok"), Output::Table);
        assert_eq!(negotiate(None, false).expect("ok"), Output::Json);
        assert_eq!(negotiate(Some("application/yaml"), false).expect("ok"), Output::Yaml);
        assert_eq!(negotiate(Some("*/*"), false).expect("ok"), Output::Json);
        assert!(negotiate(Some("application/vnd.kubernetes.protobuf"), false).is_err());
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf,application/json"), false).expect("ok"),
            Output::Json
        );
    }
}
