//! Validation of list and watch options, as upstream's
//! `ValidateListOptions` with the WatchList feature on: a failure is a 422
//! Invalid `ListOptions.meta.k8s.io` with one cause per field.

use apimachinery::validation::FieldError;

use crate::request::Query;
use crate::status::{ApiError, ApiResult, Target};

const NOT_OLDER_THAN: &str = "NotOlderThan";
const EXACT: &str = "Exact";

/// The options a list or watch request carries that this checks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListOptions {
    pub watch: bool,
    pub resource_version: String,
    pub resource_version_match: String,
    pub continue_token: String,
    /// `sendInitialEvents`; None when not given.
    pub send_initial_events: Option<bool>,
}

impl ListOptions {
    pub fn from_query(q: &Query, watch: bool) -> ApiResult<Self> {
        let send_initial_events = match q.get("sendInitialEvents") {
            None | Some("") => None,
            Some(_) => Some(q.bool("sendInitialEvents")?),
        };
        Ok(ListOptions {
            watch,
            resource_version: q.str("resourceVersion").to_string(),
            resource_version_match: q.str("resourceVersionMatch").to_string(),
            continue_token: q.str("continue").to_string(),
            send_initial_events,
        })
    }

    /// Upstream's defaulting with WatchList on: a watch from "" or "0"
    /// without either option is a watch that sends the initial events.
    pub fn defaulted(mut self) -> Self {
        if self.watch
            && self.send_initial_events.is_none()
            && self.resource_version_match.is_empty()
            && matches!(self.resource_version.as_str(), "" | "0")
        {
            self.send_initial_events = Some(true);
            self.resource_version_match = NOT_OLDER_THAN.into();
        }
        self
    }

    /// The field errors upstream's `ValidateListOptions` finds.
    pub fn errors(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let m = self.resource_version_match.as_str();
        if self.watch {
            if self.send_initial_events.is_some() && m != NOT_OLDER_THAN {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    format!("sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}"),
                ));
            }
            if !m.is_empty() {
                if self.send_initial_events.is_none() {
                    errs.push(FieldError::forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    ));
                }
                if m != NOT_OLDER_THAN {
                    errs.push(FieldError::not_supported("resourceVersionMatch", m, &[NOT_OLDER_THAN]));
                }
                if !self.continue_token.is_empty() {
                    errs.push(FieldError::forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden when continue is provided",
                    ));
                }
            }
            return errs;
        }
        if !m.is_empty() {
            if self.resource_version.is_empty() {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if !self.continue_token.is_empty() {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m != EXACT && m != NOT_OLDER_THAN {
                errs.push(FieldError::not_supported(
                    "resourceVersionMatch",
                    m,
                    &[EXACT, NOT_OLDER_THAN, ""],
                ));
            }
            if m == EXACT && self.resource_version == "0" {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if self.send_initial_events.is_some() {
            errs.push(FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
        errs
    }

    /// [`ListOptions::errors`] as the API error upstream answers with.
    pub fn validate(&self) -> ApiResult<()> {
        let errors = self.errors();
        if errors.is_empty() {
            return Ok(());
        }
        Err(ApiError::Invalid {
            target: Target {
                group: "meta.k8s.io".into(),
                resource: String::new(),
                kind: "ListOptions".into(),
                name: String::new(),
            },
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(watch: bool, rv: &str, m: &str, cont: &str, sie: Option<bool>) -> ListOptions {
        ListOptions {
            watch,
            resource_version: rv.into(),
            resource_version_match: m.into(),
            continue_token: cont.into(),
            send_initial_events: sie,
        }
    }

    #[test]
    fn upstream_list_options_validation() {
        // (options, the fields of the expected errors)
        let cases: &[(ListOptions, &[&str])] = &[
            (opts(true, "", "", "", None), &[]),
            (opts(true, "", NOT_OLDER_THAN, "", Some(true)), &[]),
            (opts(true, "0", NOT_OLDER_THAN, "", Some(false)), &[]),
            (opts(true, "", "", "", Some(true)), &["resourceVersionMatch"]),
            (
                opts(true, "5", EXACT, "", Some(true)),
                &["resourceVersionMatch", "resourceVersionMatch"],
            ),
            (opts(true, "5", NOT_OLDER_THAN, "", None), &["resourceVersionMatch"]),
            (
                opts(true, "", NOT_OLDER_THAN, "abc", Some(true)),
                &["resourceVersionMatch"],
            ),
            (opts(false, "", "", "", None), &[]),
            (opts(false, "5", EXACT, "", None), &[]),
            (opts(false, "", EXACT, "", None), &["resourceVersionMatch"]),
            (opts(false, "0", EXACT, "", None), &["resourceVersionMatch"]),
            (opts(false, "5", "Newest", "", None), &["resourceVersionMatch"]),
            (opts(false, "", "", "", Some(true)), &["sendInitialEvents"]),
        ];
        for (o, want) in cases {
            let got: Vec<String> = o.errors().into_iter().map(|e| e.field).collect();
            assert_eq!(got, *want, "{o:?}");
        }
    }

    #[test]
    fn watches_from_now_default_to_initial_events() {
        let d = opts(true, "0", "", "", None).defaulted();
        assert_eq!(d.send_initial_events, Some(true));
        assert_eq!(d.resource_version_match, NOT_OLDER_THAN);
        assert!(d.errors().is_empty());
        // A watch from a given revision, or with sendInitialEvents set, is left alone.
        assert_eq!(opts(true, "7", "", "", None).defaulted().send_initial_events, None);
        let explicit = opts(true, "0", NOT_OLDER_THAN, "", Some(false));
        assert_eq!(explicit.clone().defaulted(), explicit);
        assert_eq!(opts(false, "", "", "", None).defaulted().send_initial_events, None);
    }

    #[test]
    fn the_error_is_an_invalid_list_options() {
        let e = opts(true, "", "", "", Some(true)).validate().expect_err("invalid");
        let status = e.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["kind"], "ListOptions");
        assert_eq!(status["details"]["group"], "meta.k8s.io");
        assert_eq!(status["details"]["causes"][0]["field"], "resourceVersionMatch");
        assert_eq!(
            status["message"],
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
        );
    }
}
