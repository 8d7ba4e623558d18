//! Label selectors, following `k8s.io/apimachinery/pkg/labels`.
//!
//! A [`Selector`] is an AND of [`Requirement`]s; the empty selector matches
//! everything. Selectors come from the string syntax used by `?labelSelector=`
//! and `kubectl -l` ([`Selector::parse`]) or from a `metav1.LabelSelector`
//! JSON object ([`Selector::from_label_selector`]). Errors carry upstream's
//! messages.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::validation::{self, FieldError};

/// A selector parse or construction error, rendered with upstream's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(String);

impl SelectorError {
    /// The error message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// A requirement operator (Go's `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `k in (a,b)`: the label is set to one of the values.
    In,
    /// `k notin (a,b)`: the label is unset or set to none of the values.
    NotIn,
    /// `k=v`.
    Equals,
    /// `k==v` (same meaning as `=`, kept for round-tripping).
    DoubleEquals,
    /// `k!=v`: the label is unset or differs.
    NotEquals,
    /// `k`: the label is set.
    Exists,
    /// `!k`: the label is unset.
    DoesNotExist,
    /// `k>5`: the label is an integer greater than the value.
    GreaterThan,
    /// `k<5`: the label is an integer less than the value.
    LessThan,
}

impl Operator {
    /// Upstream's spelling of the operator (`in`, `notin`, `=`, `==`, `!=`,
    /// `exists`, `!`, `gt`, `lt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Operators that take values, in upstream's order (used in error messages).
const BINARY_OPERATORS: [Operator; 7] = [
    Operator::In,
    Operator::NotIn,
    Operator::Equals,
    Operator::DoubleEquals,
    Operator::NotEquals,
    Operator::GreaterThan,
    Operator::LessThan,
];

/// One `key op values` clause of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a validated requirement (Go's `NewRequirement`): the key must be
    /// a qualified name, values valid label values; `In`/`NotIn` need at least
    /// one value, `=`/`==`/`!=` exactly one, `Exists`/`DoesNotExist` none, and
    /// `Gt`/`Lt` exactly one integer.
    pub fn new(key: impl Into<String>, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let key = key.into();
        let mut errs: Vec<FieldError> = Vec::new();
        if let Some(err) = validate_label_key(&key, "key") {
            errs.push(err);
        }
        let values_path = "values";
        let values_json = || Value::from(values.clone());
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(FieldError::invalid(
                values_path,
                values_json(),
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                errs.push(FieldError::invalid(
                    values_path,
                    values_json(),
                    "exact-match compatibility requires one single value",
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(FieldError::invalid(
                values_path,
                values_json(),
                "values set must be empty for exists and does not exist",
            )),
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        values_path,
                        values_json(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, value) in values.iter().enumerate() {
                    if value.parse::<i64>().is_err() {
                        errs.push(FieldError::invalid(
                            validation::path_index(values_path, i),
                            value.as_str(),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, value) in values.iter().enumerate() {
            let msgs = validation::is_valid_label_value(value);
            if !msgs.is_empty() {
                let path = validation::path_key(&validation::path_index(values_path, i), &key);
                errs.push(FieldError::invalid(path, value.as_str(), msgs.join("; ")));
            }
        }
        match validation::aggregate_message(&errs) {
            Some(message) => Err(SelectorError(message)),
            None => Ok(Requirement { key, operator, values }),
        }
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Whether labels, looked up through `get`, satisfy this requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                get(&self.key).is_some_and(|v| self.has_value(v))
            }
            Operator::NotIn | Operator::NotEquals => get(&self.key).is_none_or(|v| !self.has_value(v)),
            Operator::Exists => get(&self.key).is_some(),
            Operator::DoesNotExist => get(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(label) = get(&self.key).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [bound] = self.values.as_slice() else { return false };
                let Ok(bound) = bound.parse::<i64>() else { return false };
                if self.operator == Operator::GreaterThan {
                    label > bound
                } else {
                    label < bound
                }
            }
        }
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        match self.operator {
            Operator::In | Operator::NotIn => write!(f, "{}{op}({values})", self.key),
            _ => write!(f, "{}{op}{values}", self.key),
        }
    }
}

/// Validates a label key, reporting all problems in one error at `path`.
fn validate_label_key(key: &str, path: &str) -> Option<FieldError> {
    let msgs = validation::is_qualified_name(key);
    (!msgs.is_empty()).then(|| FieldError::invalid(path, key, msgs.join("; ")))
}

/// A label selector: an AND of requirements, kept sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the label selector string syntax, e.g.
    /// `app=web,tier in (fe,be),!canary,version>2`.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(selector).parse().map_err(SelectorError)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// Converts a `metav1.LabelSelector` JSON object (`matchLabels`,
    /// `matchExpressions`) into a selector. `{}` matches everything. A null
    /// selector (which upstream treats as matching nothing) must be handled
    /// by the caller; here it is an error like any non-object.
    pub fn from_label_selector(selector: &Value) -> Result<Self, SelectorError> {
        let Value::Object(obj) = selector else {
            return Err(SelectorError("label selector must be an object".to_string()));
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (key, value) in entries {
                    let Some(value) = value.as_str() else {
                        return Err(SelectorError(format!("matchLabels[{key}]: value must be a string")));
                    };
                    requirements.push(Requirement::new(
                        key.as_str(),
                        Operator::Equals,
                        vec![value.to_string()],
                    )?);
                }
            }
            Some(_) => return Err(SelectorError("matchLabels must be an object".to_string())),
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    requirements.push(expression_requirement(expr, i)?);
                }
            }
            Some(_) => return Err(SelectorError("matchExpressions must be an array".to_string())),
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// A selector requiring every label of `labels` to be set to its value
    /// (Go's `SelectorFromSet`; not validated).
    pub fn from_set(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        Selector { requirements }
    }

    /// Adds a requirement (Go's `Add`), keeping requirements sorted by key.
    pub fn push(&mut self, requirement: Requirement) {
        self.requirements.push(requirement);
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether labels, looked up through `get`, satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str> + Copy) -> bool {
        self.requirements.iter().all(|r| r.matches_with(get))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Whether an object's `metadata.labels` JSON (possibly absent or null)
    /// satisfies every requirement. Non-string label values count as unset.
    pub fn matches_value(&self, labels: Option<&Value>) -> bool {
        let map = labels.and_then(Value::as_object);
        self.matches_with(|k| map.and_then(|m| m.get(k)).and_then(Value::as_str))
    }

    /// If the selector pins `label` to a single value (`=`, `==`, or `in`
    /// with one value), returns that value.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Display for Selector {
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

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// Converts one `matchExpressions` entry (Go's `LabelSelectorAsSelector`).
fn expression_requirement(expr: &Value, index: usize) -> Result<Requirement, SelectorError> {
    let bad_shape = |what: &str| SelectorError(format!("matchExpressions[{index}]: {what}"));
    let Value::Object(expr) = expr else {
        return Err(bad_shape("must be an object"));
    };
    let key = match expr.get("key") {
        None | Some(Value::Null) => "",
        Some(Value::String(key)) => key,
        Some(_) => return Err(bad_shape("key must be a string")),
    };
    let operator = match expr.get("operator") {
        None | Some(Value::Null) => "",
        Some(Value::String(op)) => op,
        Some(_) => return Err(bad_shape("operator must be a string")),
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad_shape("values must be strings"))?,
        Some(_) => return Err(bad_shape("values must be an array")),
    };
    let operator = match operator {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(SelectorError(format!(
                "{} is not a valid label selector operator",
                validation::go_quote(other)
            )));
        }
    };
    Requirement::new(key, operator, values)
}

// ---------------------------------------------------------------------------
// Lexer and parser (mirrors upstream's hand-written recursive descent so that
// accepted inputs and error messages agree).
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// Maps literal tokens (everything but identifiers) to their token.
fn literal_token(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    /// Returns the next token and its literal.
    fn lex(&mut self) -> (Token, String) {
        while self.peek().is_some_and(is_whitespace) {
            self.pos += 1;
        }
        match self.peek() {
            None => (Token::EndOfString, String::new()),
            Some(b) if is_special_symbol(b) => self.scan_special_symbol(),
            Some(_) => self.scan_id_or_keyword(),
        }
    }

    /// Scans up to the next special symbol or whitespace; keywords `in` and
    /// `notin` are recognized here.
    fn scan_id_or_keyword(&mut self) -> (Token, String) {
        let start = self.pos;
        while self.peek().is_some_and(|b| !is_special_symbol(b) && !is_whitespace(b)) {
            self.pos += 1;
        }
        // Only ASCII bytes end an identifier, so this is a char boundary.
        let lit = &self.s[start..self.pos];
        (literal_token(lit).unwrap_or(Token::Identifier), lit.to_string())
    }

    /// Scans the longest operator made of special symbols (`!=`, `==`, ...).
    fn scan_special_symbol(&mut self) -> (Token, String) {
        let start = self.pos;
        let mut last: Option<(Token, usize)> = None;
        while self.peek().is_some_and(is_special_symbol) {
            self.pos += 1;
            match literal_token(&self.s[start..self.pos]) {
                Some(tok) => last = Some((tok, self.pos)),
                None if last.is_some() => {
                    self.pos -= 1;
                    break;
                }
                None => {}
            }
        }
        match last {
            Some((tok, end)) => (tok, self.s[start..end].to_string()),
            None => (
                Token::Error,
                format!("error expected: keyword found '{}'", &self.s[start..self.pos]),
            ),
        }
    }
}

/// Whether `in`/`notin` are keywords (key-and-operator position) or plain
/// identifiers (value position).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(selector: &str) -> Self {
        let mut lexer = Lexer { s: selector, pos: 0 };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let done = item.0 == Token::EndOfString;
            items.push(item);
            if done {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn item(&self, context: Context) -> (Token, String) {
        let (tok, lit) = self
            .items
            .get(self.position)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        match tok {
            Token::In | Token::NotIn if context == Context::Values => (Token::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        self.item(context)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.item(context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!("found '{l2}', expected: identifier after ','"));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => return Err(format!("found '{lit}', expected: !, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = operator {
            return Requirement::new(key, op, Vec::new()).map_err(|e| e.0);
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values.into_iter().collect()).map_err(|e| e.0)
    }

    /// Parses `[!]key`, inferring `Exists`/`DoesNotExist` when no operator follows.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        // Upstream validates the key here against a nil path, hence "<nil>".
        if let Some(err) = validate_label_key(&lit, "<nil>") {
            return Err(err.message());
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((lit, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                let expected: Vec<&str> = BINARY_OPERATORS.iter().map(|op| op.as_str()).collect();
                return Err(format!("found '{lit}', expected: {}", expected.join(", ")));
            }
        })
    }

    /// Parses `(v1,v2,...)`; empty entries stand for the empty value.
    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    values.insert(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // Leading, trailing and doubled commas denote the empty value.
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        values.insert(String::new());
                        return Ok(values);
                    }
                    if tok2 == Token::Comma {
                        values.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    /// Parses the single value after `=`, `==`, `!=`, `>` or `<` (possibly empty).
    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if matches!(tok, Token::EndOfString | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(BTreeSet::from([lit]))
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parse_valid_and_canonical_string() {
        let table = [
            ("", ""),
            ("   ", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            ("x=", "x="),
            ("x= ", "x="),
            ("x=,z= ", "x=,z="),
            ("x=a,y!=b", "x=a,y!=b"),
            ("y!=b,x=a", "x=a,y!=b"),
            (" x = a , y != b ", "x=a,y!=b"),
            ("x>1", "x>1"),
            ("x<1", "x<1"),
            ("x>1,z<5", "x>1,z<5"),
            ("x in (a)", "x in (a)"),
            ("x in (b,a)", "x in (a,b)"),
            ("x in (a,a,b)", "x in (a,b)"),
            ("x notin (a,b)", "x notin (a,b)"),
            ("x in ()", "x in ()"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,)", "x in (,a)"),
            ("x in (a,,b)", "x in (,a,b)"),
            ("x in (,)", "x in ()"),
            ("x in(a)", "x in (a)"),
            ("x", "x"),
            ("!x", "!x"),
            (" !x ", "!x"),
            ("x,y", "x,y"),
            ("!x,y", "!x,y"),
            ("x,z in (a),y notin (b)", "x,y notin (b),z in (a)"),
            ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
            ("in in (in,notin)", "in in (in,notin)"),
            ("notin=in", "notin=in"),
            ("example.com/app=web", "example.com/app=web"),
            ("a.b/c-d_e=F.g-h_I", "a.b/c-d_e=F.g-h_I"),
            ("x=a\t,\ny\r=b", "x=a,y=b"),
        ];
        for (input, want) in table {
            let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), want, "input {input:?}");
            let reparsed = Selector::parse(&sel.to_string()).unwrap_or_else(|e| panic!("{want:?}: {e}"));
            assert_eq!(reparsed.to_string(), want, "round trip of {input:?}");
        }
    }

    #[test]
    fn parse_invalid() {
        let table = [
            ("x=a||y=b", "values[0][x]: Invalid value: \"a||y\""),
            ("x==a==b", "found '==', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            ("x<a", "the value must be an integer"),
            ("x>1.5", "the value must be an integer"),
            ("x in (a b)", "found 'b', expected: ',' or ')'"),
            ("x in a", "found 'a' expected: '('"),
            ("x in", "found '' expected: '('"),
            ("x notin ( a", "found '', expected: ',' or ')'"),
            ("x in (=)", "found '=', expected: ',', ')' or identifier"),
            ("x in (a,=)", "found '=', expected: ',', or identifier"),
            ("x y", "found 'y', expected: in, notin, =, ==, !=, gt, lt"),
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            ("x,", "found '', expected: identifier after ','"),
            (",x", "found ',', expected: !, identifier, or 'end of string'"),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
            ("!", "found '', expected: identifier"),
            ("!!x", "found '!', expected: identifier"),
            ("x=(", "found '(', expected: identifier"),
            ("x=a_", "values[0][x]: Invalid value: \"a_\""),
            ("Foo_bar/x=y", "<nil>: Invalid value: \"Foo_bar/x\": prefix part"),
            ("a/b/c", "<nil>: Invalid value: \"a/b/c\": a qualified name"),
            ("-x", "<nil>: Invalid value: \"-x\": name part"),
        ];
        for (input, want) in table {
            let err = Selector::parse(input).expect_err(input);
            assert!(
                err.message().contains(want),
                "input {input:?}: got {err}, want it to contain {want:?}"
            );
        }
    }

    #[test]
    fn parse_exact_messages() {
        let table = [
            (
                "x=a_",
                "unable to parse requirement: values[0][x]: Invalid value: \"a_\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ),
            (
                "x_=a",
                "unable to parse requirement: <nil>: Invalid value: \"x_\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ),
            (
                "x>a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "x y",
                "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("x=a y", "found 'y', expected: ',' or 'end of string'"),
            ("x,,y", "found ',', expected: identifier after ','"),
        ];
        for (input, want) in table {
            let got = Selector::parse(input).expect_err(input).to_string();
            assert_eq!(got, want, "input {input:?}");
        }
        let long_value = "a".repeat(64);
        let err = Selector::parse(&format!("x={long_value}_")).expect_err("too long");
        assert!(
            err.message()
                .contains("must be no more than 63 characters; a valid label"),
            "{err}"
        );
    }

    #[test]
    fn requirement_new() {
        let ok = [
            ("x", Operator::In, vec!["a"]),
            ("x", Operator::NotIn, vec!["a", "b"]),
            ("x", Operator::Equals, vec![""]),
            ("x", Operator::Exists, vec![]),
            ("x", Operator::DoesNotExist, vec![]),
            ("x", Operator::GreaterThan, vec!["5"]),
            ("x", Operator::LessThan, vec!["10"]),
            ("example.com/x", Operator::Equals, vec!["y"]),
        ];
        for (key, op, values) in ok {
            let values: Vec<String> = values.into_iter().map(String::from).collect();
            assert!(Requirement::new(key, op, values).is_ok(), "{key} {op}");
        }
        let bad = [
            (
                "x",
                Operator::In,
                vec![],
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                "x",
                Operator::Equals,
                vec!["a", "b"],
                "values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility requires one single value",
            ),
            (
                "x",
                Operator::Exists,
                vec!["a"],
                "values: Invalid value: []string{\"a\"}: values set must be empty for exists and does not exist",
            ),
            (
                "x",
                Operator::GreaterThan,
                vec![],
                "values: Invalid value: []string{}: for 'Gt', 'Lt' operators, exactly one value is required",
            ),
            (
                "x",
                Operator::LessThan,
                vec!["1", "2"],
                "values: Invalid value: []string{\"1\", \"2\"}: for 'Gt', 'Lt' operators, exactly one value is required",
            ),
        ];
        for (key, op, values, want) in bad {
            let values: Vec<String> = values.into_iter().map(String::from).collect();
            assert_eq!(Requirement::new(key, op, values).expect_err(want).to_string(), want);
        }
        let err = Requirement::new("x_", Operator::In, Vec::new()).expect_err("two errors");
        assert!(
            err.message()
                .starts_with("[key: Invalid value: \"x_\": name part must consist"),
            "{err}"
        );
        assert!(
            err.message().ends_with(
                ", values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty]"
            ),
            "{err}"
        );
    }

    #[test]
    fn matching() {
        let set = labels(&[("app", "web"), ("tier", "fe"), ("n", "7"), ("empty", "")]);
        let table = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("missing=x", false),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("missing in (x)", false),
            ("app notin (db)", true),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("n>5", true),
            ("n>7", false),
            ("n<8", true),
            ("n<7", false),
            ("app>1", false),
            ("missing<100", false),
            ("empty=", true),
            ("empty in ()", true),
            ("app in ()", false),
            ("app=web,tier=fe", true),
            ("app=web,tier=be", false),
            ("app=web,!missing,n>1,tier in (fe)", true),
        ];
        for (input, want) in table {
            let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.matches(&set), want, "{input:?} against map");
            let as_json = serde_json::to_value(&set).ok();
            assert_eq!(sel.matches_value(as_json.as_ref()), want, "{input:?} against JSON");
        }
    }

    #[test]
    fn matches_value_absent_and_odd_labels() {
        let not_app = Selector::parse("!app").unwrap_or_default();
        let app = Selector::parse("app").unwrap_or_default();
        assert!(not_app.matches_value(None));
        assert!(not_app.matches_value(Some(&Value::Null)));
        assert!(!app.matches_value(None));
        assert!(
            !app.matches_value(Some(&json!({"app": 1}))),
            "non-string label values count as unset"
        );
        assert!(Selector::everything().matches_value(None));
    }

    #[test]
    fn from_label_selector() {
        let table = [
            (json!({}), ""),
            (json!({"matchLabels": null, "matchExpressions": null}), ""),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2"),
            (
                json!({"matchExpressions": [
                    {"key": "z", "operator": "In", "values": ["y", "x"]},
                    {"key": "c", "operator": "NotIn", "values": ["v"]},
                    {"key": "e", "operator": "Exists"},
                    {"key": "d", "operator": "DoesNotExist", "values": []},
                ]}),
                "c notin (v),!d,e,z in (x,y)",
            ),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "app", "operator": "Exists"}]}),
                "app=web,app",
            ),
        ];
        for (input, want) in table {
            let sel = Selector::from_label_selector(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sel.to_string(), want, "{input}");
        }
        let sel = Selector::from_label_selector(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["be"]}],
        }))
        .unwrap_or_default();
        assert!(sel.matches(&labels(&[("app", "web")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "be")])));
        assert!(!sel.matches(&labels(&[])));
        assert!(Selector::from_label_selector(&json!({})).is_ok_and(|s| s.is_empty()));
    }

    #[test]
    fn from_label_selector_errors() {
        let table = [
            (json!(null), "label selector must be an object"),
            (json!([]), "label selector must be an object"),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                "\"Equals\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a"}]}),
                "\"\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}),
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchLabels": {"a": "b c"}}),
                "values[0][a]: Invalid value: \"b c\": a valid label must be an empty string",
            ),
            (
                json!({"matchLabels": {"a_": "b"}}),
                "key: Invalid value: \"a_\": name part must consist",
            ),
            (
                json!({"matchLabels": {"a": 1}}),
                "matchLabels[a]: value must be a string",
            ),
            (json!({"matchLabels": []}), "matchLabels must be an object"),
            (json!({"matchExpressions": {}}), "matchExpressions must be an array"),
            (
                json!({"matchExpressions": [1]}),
                "matchExpressions[0]: must be an object",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
                "matchExpressions[0]: values must be strings",
            ),
        ];
        for (input, want) in table {
            let err = Selector::from_label_selector(&input).expect_err(want);
            assert!(
                err.message().starts_with(want),
                "{input}: got {err}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn selector_helpers() {
        let sel = Selector::parse("b=2,a in (1),c in (x,y),d!=4").unwrap_or_default();
        assert_eq!(
            sel.requirements().iter().map(Requirement::key).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(sel.requires_exact_match("a"), Some("1"));
        assert_eq!(sel.requires_exact_match("b"), Some("2"));
        assert_eq!(sel.requires_exact_match("c"), None);
        assert_eq!(sel.requires_exact_match("d"), None);
        assert_eq!(sel.requires_exact_match("zz"), None);
        assert!(!sel.is_empty());
        assert!(Selector::everything().is_empty());
        assert_eq!(
            Selector::from_set(&labels(&[("b", "2"), ("a", "1")])).to_string(),
            "a=1,b=2"
        );
        let mut added = Selector::parse("b=2").unwrap_or_default();
        added.push(Requirement::new("a", Operator::Exists, Vec::new()).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(added.to_string(), "a,b=2");
        let parsed: Selector = "x=1".parse().unwrap_or_default();
        assert_eq!(parsed.requirements()[0].operator(), Operator::Equals);
        assert_eq!(parsed.requirements()[0].values(), ["1"]);
        assert_eq!(Operator::GreaterThan.to_string(), "gt");
    }
}
