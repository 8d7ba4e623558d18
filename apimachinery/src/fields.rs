//! Field selectors, following `k8s.io/apimachinery/pkg/fields`.
//!
//! A [`FieldSelector`] is an AND of `field=value` / `field!=value` terms
//! (`==` is accepted for `=`), e.g. `metadata.name=web,status.phase!=Running`.
//! In values, `\,`, `\=` and `\\` escape a literal comma, equals sign and
//! backslash; field names are not escaped.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A field selector parse error, rendered with upstream's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term has no `=`, `==` or `!=` operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidTerm { selector: String, term: String },
    /// A value contains a backslash not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// A value contains an unescaped `,` or `=`. As upstream (which formats
    /// the rune with `%v`), the character is rendered as its code point number.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedRune(char),
}

/// A field selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

impl Operator {
    /// The canonical spelling (`=` or `!=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
        }
    }
}

/// One term of a field selector; `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    pub field: String,
    pub op: Operator,
    pub value: String,
}

impl FieldRequirement {
    /// Whether the object's value of `field` (empty when absent) satisfies the term.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        match self.op {
            Operator::Equals => actual == self.value,
            Operator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.field, self.op.as_str(), escape_value(&self.value))
    }
}

/// A field selector: an AND of terms. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector with the single term `field=value`.
    pub fn one_term_equal(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldSelector {
            requirements: vec![FieldRequirement {
                field: field.into(),
                op: Operator::Equals,
                value: value.into(),
            }],
        }
    }

    /// A selector requiring each field of `fields` to equal its value.
    pub fn from_set(fields: &BTreeMap<String, String>) -> Self {
        let requirements = fields
            .iter()
            .map(|(field, value)| FieldRequirement {
                field: field.clone(),
                op: Operator::Equals,
                value: value.clone(),
            })
            .collect();
        FieldSelector { requirements }
    }

    /// Parses `a=b,c!=d` (also `a==b`). Terms are split on unescaped commas
    /// and, as upstream, kept sorted by their raw text; empty terms are ignored.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, op, raw_value)) = split_term(term) else {
                return Err(FieldSelectorError::InvalidTerm {
                    selector: selector.to_string(),
                    term: term.to_string(),
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value: unescape_value(raw_value)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The terms, in parse order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether the selector has no terms (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object, whose selectable fields are looked up through
    /// `get`, satisfies every term. A field `get` does not know is treated as
    /// the empty string.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches(get(&r.field).as_deref()))
    }

    /// Like [`FieldSelector::matches`], over a map of field values.
    pub fn matches_fields(&self, fields: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(fields.get(&r.field).map(String::as_str)))
    }

    /// If some `=` term pins `field`, returns its value.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == Operator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Rewrites every term's field and value (Go's `Transform`), e.g. to map
    /// versioned field labels to internal ones or to reject unsupported fields.
    pub fn transform<E>(self, mut f: impl FnMut(&str, &str) -> Result<(String, String), E>) -> Result<Self, E> {
        let requirements = self
            .requirements
            .into_iter()
            .map(|r| f(&r.field, &r.value).map(|(field, value)| FieldRequirement { field, op: r.op, value }))
            .collect::<Result<Vec<_>, E>>()?;
        Ok(FieldSelector { requirements })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Escapes `\`, `,` and `=` in a literal value for use in a field selector.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`], rejecting unknown escapes and unescaped `,`/`=`.
pub fn unescape_value(value: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => out.push(escaped),
                Some(other) => return Err(FieldSelectorError::InvalidEscapeSequence(format!("\\{other}"))),
                None => return Err(FieldSelectorError::InvalidEscapeSequence("\\".to_string())),
            },
            ',' | '=' => return Err(FieldSelectorError::UnescapedRune(c)),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Splits a selector on commas not preceded by an escaping backslash.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first operator (`!=`, `==`, `=` tried in that order
/// at each position), returning the raw, still-escaped value.
fn split_term(term: &str) -> Option<(&str, Operator, &str)> {
    const OPERATORS: [(&str, Operator); 3] = [
        ("!=", Operator::NotEquals),
        ("==", Operator::Equals),
        ("=", Operator::Equals),
    ];
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        OPERATORS
            .iter()
            .find(|(token, _)| rest.starts_with(token))
            .map(|(token, op)| (&term[..i], *op, &rest[token.len()..]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(sel: &FieldSelector) -> Vec<(String, Operator, String)> {
        sel.requirements()
            .iter()
            .map(|r| (r.field.clone(), r.op, r.value.clone()))
            .collect()
    }

    #[test]
    fn parse_valid() {
        use Operator::{Equals as Eq, NotEquals as Ne};
        type Case = (&'static str, Vec<(&'static str, Operator, &'static str)>, &'static str);
        let table: Vec<Case> = vec![
            ("", vec![], ""),
            (",", vec![], ""),
            ("a=b", vec![("a", Eq, "b")], "a=b"),
            ("a==b", vec![("a", Eq, "b")], "a=b"),
            ("a!=b", vec![("a", Ne, "b")], "a!=b"),
            ("a=", vec![("a", Eq, "")], "a="),
            ("=b", vec![("", Eq, "b")], "=b"),
            ("x=a,y!=b", vec![("x", Eq, "a"), ("y", Ne, "b")], "x=a,y!=b"),
            ("y!=b,x=a", vec![("x", Eq, "a"), ("y", Ne, "b")], "x=a,y!=b"),
            ("x=a,,y=b,", vec![("x", Eq, "a"), ("y", Eq, "b")], "x=a,y=b"),
            (
                "metadata.name=web",
                vec![("metadata.name", Eq, "web")],
                "metadata.name=web",
            ),
            ("spec.nodeName!=", vec![("spec.nodeName", Ne, "")], "spec.nodeName!="),
            ("a=b\\,c", vec![("a", Eq, "b,c")], "a=b\\,c"),
            ("a=b\\=c", vec![("a", Eq, "b=c")], "a=b\\=c"),
            ("a=b\\\\c", vec![("a", Eq, "b\\c")], "a=b\\\\c"),
            (
                "a=\\,\\=\\\\,b=1",
                vec![("a", Eq, ",=\\"), ("b", Eq, "1")],
                "a=\\,\\=\\\\,b=1",
            ),
            ("a= b ", vec![("a", Eq, " b ")], "a= b "),
            ("a=ä", vec![("a", Eq, "ä")], "a=ä"),
        ];
        for (input, want, display) in table {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            let want: Vec<(String, Operator, String)> = want
                .into_iter()
                .map(|(f, op, v)| (f.to_string(), op, v.to_string()))
                .collect();
            assert_eq!(reqs(&sel), want, "input {input:?}");
            assert_eq!(sel.to_string(), display, "input {input:?}");
            assert_eq!(
                FieldSelector::parse(&sel.to_string()).ok(),
                Some(sel),
                "round trip of {input:?}"
            );
        }
    }

    #[test]
    fn parse_invalid() {
        let table = [
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("x=1,b", "invalid selector: 'x=1,b'; can't understand 'b'"),
            ("a<b", "invalid selector: 'a<b'; can't understand 'a<b'"),
            ("a=b=c", "invalid field selector: unescaped character in value: 61"),
            // `!=` wins at the first position, leaving the unescaped `=b` as the value.
            ("a!==b", "invalid field selector: unescaped character in value: 61"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            ("a=\\x", "invalid field selector: invalid escape sequence: \\x"),
            ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
            ("a=b\\\\\\", "invalid field selector: invalid escape sequence: \\"),
        ];
        for (input, want) in table {
            let err = FieldSelector::parse(input).expect_err(input);
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
        assert_eq!(
            FieldSelector::parse("a").expect_err("a"),
            FieldSelectorError::InvalidTerm {
                selector: "a".into(),
                term: "a".into()
            }
        );
    }

    #[test]
    fn escaping() {
        let table = [
            ("", ""),
            ("plain", "plain"),
            ("a,b", "a\\,b"),
            ("a=b", "a\\=b"),
            ("a\\b", "a\\\\b"),
            (",=\\", "\\,\\=\\\\"),
        ];
        for (raw, escaped) in table {
            assert_eq!(escape_value(raw), escaped);
            assert_eq!(unescape_value(escaped).ok().as_deref(), Some(raw));
        }
        assert_eq!(unescape_value("a,b"), Err(FieldSelectorError::UnescapedRune(',')));
        assert_eq!(
            unescape_value("a,b").map_err(|e| e.to_string()),
            Err("invalid field selector: unescaped character in value: 44".to_string())
        );
    }

    #[test]
    fn matching() {
        let fields: BTreeMap<String, String> = [
            ("metadata.name", "web"),
            ("status.phase", "Running"),
            ("spec.nodeName", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let table = [
            ("", true),
            ("metadata.name=web", true),
            ("metadata.name==web", true),
            ("metadata.name=db", false),
            ("metadata.name!=db", true),
            ("metadata.name!=web", false),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            ("missing=", true),
            ("missing!=", false),
            ("missing=x", false),
            ("missing!=x", true),
            ("metadata.name=web,status.phase!=Pending", true),
            ("metadata.name=web,status.phase=Pending", false),
        ];
        for (input, want) in table {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.matches(|f| fields.get(f).cloned()), want, "{input:?}");
            assert_eq!(sel.matches_fields(&fields), want, "{input:?} via map");
        }
        let sel = FieldSelector::parse("a=x\\,y").unwrap_or_default();
        assert!(sel.matches(|_| Some("x,y".to_string())));
    }

    #[test]
    fn helpers() {
        assert!(FieldSelector::everything().is_empty());
        assert!(FieldSelector::parse(",,").is_ok_and(|s| s.is_empty()));
        let sel = FieldSelector::parse("a=1,b!=2").unwrap_or_default();
        assert!(!sel.is_empty());
        assert_eq!(sel.requires_exact_match("a"), Some("1"));
        assert_eq!(sel.requires_exact_match("b"), None);
        assert_eq!(sel.requires_exact_match("c"), None);
        assert_eq!(
            FieldSelector::one_term_equal("metadata.name", "a,b").to_string(),
            "metadata.name=a\\,b"
        );
        let set: BTreeMap<String, String> =
            [("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())].into();
        assert_eq!(FieldSelector::from_set(&set).to_string(), "a=1,b=2");
        let parsed: FieldSelector = "x=1".parse().unwrap_or_default();
        assert_eq!(parsed.to_string(), "x=1");

        let renamed = sel
            .clone()
            .transform(|f, v| Ok::<_, String>((format!("spec.{f}"), v.to_uppercase())));
        assert_eq!(renamed.map(|s| s.to_string()), Ok("spec.a=1,spec.b!=2".to_string()));
        let rejected = sel.transform(|f, _| Err::<(String, String), _>(format!("field label not supported: {f}")));
        assert_eq!(rejected, Err("field label not supported: a".to_string()));
    }
}
