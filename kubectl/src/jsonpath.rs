//! Kubernetes' JSONPath templates (`k8s.io/client-go/util/jsonpath`), as
//! `kubectl get -o jsonpath=...` and `custom-columns` use them: text with
//! `{...}` actions holding paths (`.a.b`, `..a`, `[0]`, `[1:3]`, `[*]`,
//! `['k']`, `[a,b]`, `[?(@.x=="y")]`), quoted literals, `{range}`/`{end}`.
//! Missing keys yield nothing (kubectl's `--allow-missing-template-keys`).

use std::fmt;

use serde_json::Value;

use crate::gojson;

/// A parse or execution failure, worded as upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPathError(pub String);

impl fmt::Display for JsonPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonPathError {}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    /// One `{...}` action: its results are printed separated by spaces.
    Action(Path),
    Range(Path, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
struct Path {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Root,
    Current,
    Field(String),
    /// `..`: the next step applies to every value below as well.
    Recursive,
    Wildcard,
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Index(i64),
    Union(Vec<Step>),
    Filter(Box<Filter>),
    Literal(Value),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Path,
    op: Option<(String, Path)>,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    /// Parses `text`; errors read `unclosed action`, `unrecognized character
    /// in action: ...`, `not in range, nothing to end`, ...
    pub fn parse(text: &str) -> Result<Template, JsonPathError> {
        let mut stack: Vec<(Path, Vec<Node>)> = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                None => {
                    nodes.push(Node::Text(rest.to_string()));
                    break;
                }
                Some(start) => {
                    if start > 0 {
                        nodes.push(Node::Text(rest[..start].to_string()));
                    }
                    let after = &rest[start + 1..];
                    let end = find_action_end(after).ok_or_else(|| JsonPathError("unclosed action".to_string()))?;
                    let action = after[..end].trim();
                    rest = &after[end + 1..];
                    if let Some(path) = action.strip_prefix("range")
                        && (path.is_empty() || path.starts_with([' ', '\t']))
                    {
                        let path = parse_path(path.trim())?;
                        stack.push((path, std::mem::take(&mut nodes)));
                        continue;
                    }
                    if action == "end" {
                        let (path, outer) = stack
                            .pop()
                            .ok_or_else(|| JsonPathError("not in range, nothing to end".to_string()))?;
                        let body = std::mem::replace(&mut nodes, outer);
                        nodes.push(Node::Range(path, body));
                        continue;
                    }
                    nodes.push(Node::Action(parse_path(action)?));
                }
            }
        }
        if !stack.is_empty() {
            return Err(JsonPathError("unclosed range".to_string()));
        }
        Ok(Template { nodes })
    }

    /// Executes the template against `data`.
    pub fn execute(&self, data: &Value) -> Result<String, JsonPathError> {
        let mut out = String::new();
        execute_nodes(&self.nodes, data, data, &mut out)?;
        Ok(out)
    }

    /// The values of the template's actions, one list per action (upstream's
    /// `FindResults`), for custom columns.
    pub fn find_results(&self, data: &Value) -> Result<Vec<Vec<Value>>, JsonPathError> {
        let mut results = Vec::new();
        for node in &self.nodes {
            match node {
                Node::Action(path) => results.push(eval_path(path, data, data)?),
                Node::Text(t) => results.push(vec![Value::String(t.clone())]),
                Node::Range(path, _) => results.push(eval_path(path, data, data)?),
            }
        }
        Ok(results)
    }
}

/// Finds the `}` closing an action, skipping quoted strings.
fn find_action_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '}' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Upstream's relaxed form for custom columns: `.a.b` or `a.b` becomes
/// `{.a.b}`.
pub fn relaxed(expr: &str) -> String {
    let trimmed = expr.trim();
    if trimmed.starts_with('{') && trimmed.ends_with('}') {
        return trimmed.to_string();
    }
    let inner = trimmed.trim_start_matches('{').trim_end_matches('}');
    if inner.starts_with('.') || inner.starts_with('[') || inner.starts_with('$') || inner.starts_with('@') {
        format!("{{{inner}}}")
    } else {
        format!("{{.{inner}}}")
    }
}

fn parse_path(s: &str) -> Result<Path, JsonPathError> {
    let chars: Vec<char> = s.chars().collect();
    let mut p = PathParser { chars: &chars, pos: 0 };
    let path = p.path()?;
    p.skip_spaces();
    if p.pos < chars.len() {
        return Err(JsonPathError(format!(
            "unrecognized character in action: {}",
            go_quote_rune(chars[p.pos])
        )));
    }
    Ok(path)
}

fn go_quote_rune(c: char) -> String {
    format!("U+{:04X} '{}'", c as u32, c)
}

struct PathParser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl PathParser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn path(&mut self) -> Result<Path, JsonPathError> {
        let mut steps = Vec::new();
        self.skip_spaces();
        match self.peek() {
            Some('$') => {
                self.pos += 1;
                steps.push(Step::Root);
            }
            Some('@') => {
                self.pos += 1;
                steps.push(Step::Current);
            }
            Some('"') | Some('\'') => {
                let s = self.quoted()?;
                steps.push(Step::Literal(Value::String(s)));
                return Ok(Path { steps });
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '-' || c == 'e' || c == '+')
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let v: Value = serde_json::from_str(&text)
                    .map_err(|_| JsonPathError(format!("unrecognized character in action: {text}")))?;
                steps.push(Step::Literal(v));
                return Ok(Path { steps });
            }
            Some('t') | Some('f') if self.word_is("true") || self.word_is("false") => {
                let b = self.word_is("true");
                self.pos += if b { 4 } else { 5 };
                steps.push(Step::Literal(Value::Bool(b)));
                return Ok(Path { steps });
            }
            Some(c) if c != '.' && c != '[' => {
                return Err(JsonPathError(format!(
                    "unrecognized character in action: {}",
                    go_quote_rune(c)
                )));
            }
            _ => steps.push(Step::Current),
        }
        loop {
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    if self.peek() == Some('.') {
                        self.pos += 1;
                        steps.push(Step::Recursive);
                    }
                    match self.peek() {
                        Some('*') => {
                            self.pos += 1;
                            steps.push(Step::Wildcard);
                        }
                        Some('[') => {}
                        _ => {
                            let name = self.field_name();
                            if !name.is_empty() {
                                steps.push(Step::Field(name));
                            }
                        }
                    }
                }
                Some('[') => {
                    self.pos += 1;
                    steps.push(self.bracket()?);
                }
                _ => break,
            }
        }
        Ok(Path { steps })
    }

    fn word_is(&self, w: &str) -> bool {
        let end = self.pos + w.len();
        end <= self.chars.len()
            && self.chars[self.pos..end].iter().copied().eq(w.chars())
            && !self.chars.get(end).is_some_and(|c| c.is_alphanumeric())
    }

    fn field_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' && self.chars.get(self.pos + 1).is_some() {
                name.push(self.chars[self.pos + 1]);
                self.pos += 2;
                continue;
            }
            if c.is_whitespace() || ".[](){}=<>!,'\"@$".contains(c) {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn quoted(&mut self) -> Result<String, JsonPathError> {
        let q = self.peek().unwrap_or('"');
        self.pos += 1;
        let mut s = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(JsonPathError("unterminated quoted string".to_string()));
            };
            self.pos += 1;
            if c == q {
                return Ok(s);
            }
            if c == '\\' {
                let Some(e) = self.peek() else {
                    return Err(JsonPathError("unterminated quoted string".to_string()));
                };
                self.pos += 1;
                s.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
            } else {
                s.push(c);
            }
        }
    }

    fn bracket(&mut self) -> Result<Step, JsonPathError> {
        self.skip_spaces();
        if self.peek() == Some('*') {
            self.pos += 1;
            self.expect(']')?;
            return Ok(Step::Wildcard);
        }
        if self.peek() == Some('?') {
            self.pos += 1;
            self.expect('(')?;
            let left = self.path()?;
            self.skip_spaces();
            let mut op = None;
            let ops = ["==", "!=", "<=", ">=", "<", ">", "="];
            for candidate in ops {
                if self.word_starts(candidate) {
                    self.pos += candidate.len();
                    let right = self.path()?;
                    let name = if candidate == "=" { "==" } else { candidate };
                    op = Some((name.to_string(), right));
                    break;
                }
            }
            self.skip_spaces();
            self.expect(')')?;
            self.expect(']')?;
            return Ok(Step::Filter(Box::new(Filter { left, op })));
        }
        let mut parts = Vec::new();
        loop {
            self.skip_spaces();
            match self.peek() {
                Some('\'') | Some('"') => parts.push(Step::Field(self.quoted()?)),
                _ => parts.push(self.slice()?),
            }
            self.skip_spaces();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(JsonPathError("unterminated array".to_string())),
            }
        }
        if parts.len() == 1 {
            Ok(parts.remove(0))
        } else {
            Ok(Step::Union(parts))
        }
    }

    fn word_starts(&self, w: &str) -> bool {
        let end = self.pos + w.len();
        end <= self.chars.len() && self.chars[self.pos..end].iter().copied().eq(w.chars())
    }

    fn expect(&mut self, c: char) -> Result<(), JsonPathError> {
        self.skip_spaces();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(JsonPathError(format!("expected {c:?}")))
        }
    }

    fn int(&mut self) -> Result<Option<i64>, JsonPathError> {
        self.skip_spaces();
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Ok(None);
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse()
            .map(Some)
            .map_err(|_| JsonPathError(format!("invalid array index {text}")))
    }

    fn slice(&mut self) -> Result<Step, JsonPathError> {
        let first = self.int()?;
        self.skip_spaces();
        if self.peek() != Some(':') {
            return match first {
                Some(i) => Ok(Step::Index(i)),
                None => Err(JsonPathError("invalid array index".to_string())),
            };
        }
        self.pos += 1;
        let second = self.int()?;
        self.skip_spaces();
        let mut third = None;
        if self.peek() == Some(':') {
            self.pos += 1;
            third = self.int()?;
        }
        Ok(Step::Slice(first, second, third))
    }
}

fn execute_nodes(nodes: &[Node], root: &Value, current: &Value, out: &mut String) -> Result<(), JsonPathError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(path) => {
                let results = eval_path(path, root, current)?;
                for (i, v) in results.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(&text_of(v));
                }
            }
            Node::Range(path, body) => {
                for item in eval_path(path, root, current)? {
                    execute_nodes(body, root, &item, out)?;
                }
            }
        }
    }
    Ok(())
}

/// How a result is printed: strings raw, collections as compact JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) => gojson::to_compact(v),
        Value::Null => "null".to_string(),
        other => crate::gofmt::sprint(other),
    }
}

fn eval_path(path: &Path, root: &Value, current: &Value) -> Result<Vec<Value>, JsonPathError> {
    let mut values = vec![current.clone()];
    let mut recursive = false;
    for step in &path.steps {
        if let Step::Recursive = step {
            recursive = true;
            continue;
        }
        if recursive {
            let mut all = Vec::new();
            for v in &values {
                collect_descendants(v, &mut all);
            }
            values = all;
            recursive = false;
        }
        values = eval_step(step, values, root)?;
    }
    Ok(values)
}

fn collect_descendants(v: &Value, out: &mut Vec<Value>) {
    out.push(v.clone());
    match v {
        Value::Object(m) => m.values().for_each(|c| collect_descendants(c, out)),
        Value::Array(a) => a.iter().for_each(|c| collect_descendants(c, out)),
        _ => {}
    }
}

fn eval_step(step: &Step, values: Vec<Value>, root: &Value) -> Result<Vec<Value>, JsonPathError> {
    let mut out = Vec::new();
    match step {
        Step::Root => out.push(root.clone()),
        Step::Current | Step::Recursive => out = values,
        Step::Literal(v) => out.push(v.clone()),
        Step::Field(name) => {
            for v in values {
                if let Some(child) = v.as_object().and_then(|m| m.get(name)) {
                    out.push(child.clone());
                }
            }
        }
        Step::Wildcard => {
            for v in values {
                match v {
                    Value::Array(a) => out.extend(a),
                    Value::Object(m) => out.extend(m.into_iter().map(|(_, v)| v)),
                    _ => {}
                }
            }
        }
        Step::Index(i) => {
            for v in values {
                if let Value::Array(a) = v {
                    let len = a.len() as i64;
                    let idx = if *i < 0 { len + i } else { *i };
                    if idx < 0 || idx >= len {
                        return Err(JsonPathError(format!(
                            "array index out of bounds: index {i}, length {len}"
                        )));
                    }
                    out.push(a[idx as usize].clone());
                }
            }
        }
        Step::Slice(start, end, step_by) => {
            for v in values {
                if let Value::Array(a) = v {
                    let len = a.len() as i64;
                    let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                    let s = norm(start.unwrap_or(0));
                    let e = norm(end.unwrap_or(len));
                    let by = step_by.unwrap_or(1).max(1);
                    let mut i = s;
                    while i < e {
                        out.push(a[i as usize].clone());
                        i += by;
                    }
                }
            }
        }
        Step::Union(parts) => {
            for part in parts {
                out.extend(eval_step(part, values.clone(), root)?);
            }
        }
        Step::Filter(filter) => {
            for v in values {
                let items: Vec<Value> = match v {
                    Value::Array(a) => a,
                    Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
                    other => vec![other],
                };
                for item in items {
                    if filter_matches(filter, &item, root)? {
                        out.push(item);
                    }
                }
            }
        }
    }
    Ok(out)
}

fn filter_matches(filter: &Filter, item: &Value, root: &Value) -> Result<bool, JsonPathError> {
    let lefts = eval_path(&filter.left, root, item)?;
    let Some((op, right)) = &filter.op else {
        return Ok(!lefts.is_empty());
    };
    let rights = eval_path(right, root, item)?;
    let (Some(l), Some(r)) = (lefts.first(), rights.first()) else {
        return Ok(false);
    };
    if lefts.len() > 1 || rights.len() > 1 {
        return Err(JsonPathError("can only compare one element at a time".to_string()));
    }
    let ord = match (l, r) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    };
    Ok(match op.as_str() {
        "==" => l == r || ord == Some(std::cmp::Ordering::Equal),
        "!=" => !(l == r || ord == Some(std::cmp::Ordering::Equal)),
        "<" => ord == Some(std::cmp::Ordering::Less),
        ">" => ord == Some(std::cmp::Ordering::Greater),
        "<=" => matches!(ord, Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)),
        ">=" => matches!(ord, Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> Value {
        json!({
            "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"},
                         "annotations": {"example.com/x": "1"}},
            "spec": {"clusterIPs": ["10.0.0.1"], "type": "ClusterIP",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP"}, {"name": "http", "port": 80}]}
        })
    }

    #[test]
    fn templates_print_like_upstream() {
        let cases = [
            (
                "{.metadata.labels}",
                r#"{"component":"apiserver","provider":"kubernetes"}"#,
            ),
            ("{.spec.ports[*].port}", "443 80"),
            ("{.spec.ports[0].port}{\"\\n\"}", "443\n"),
            ("{.nope}", ""),
            ("{.spec.clusterIPs}", r#"["10.0.0.1"]"#),
            ("{..port}", "443 80"),
            ("{.spec.ports[?(@.port==443)].name}", "https"),
            ("{.spec.ports[?(@.name==\"http\")].port}", "80"),
            ("{$.kind}", "Service"),
            ("{@.kind}", "Service"),
            ("kind={.kind}", "kind=Service"),
            ("{.metadata.labels['component']}", "apiserver"),
            ("{.spec.ports[-1].name}", "http"),
            ("{.spec.ports[0:1].name}", "https"),
            ("{.spec.ports[*].name}", "https http"),
            ("{range .spec.ports[*]}{.name}={.port};{end}", "https=443;http=80;"),
            ("{.metadata.annotations.example\\.com/x}", "1"),
            ("{.spec.ports[0,1].port}", "443 80"),
            ("{.spec.ports[?(@.port>100)].name}", "https"),
            ("plain text", "plain text"),
        ];
        for (template, want) in cases {
            let t = Template::parse(template).unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(t.execute(&svc()).unwrap(), want, "{template}");
        }
    }

    #[test]
    fn parse_errors() {
        let cases = [
            ("{.items[0]", "unclosed action"),
            ("{end}", "not in range, nothing to end"),
            ("{range .a}x", "unclosed range"),
        ];
        for (template, want) in cases {
            assert_eq!(Template::parse(template).unwrap_err().0, want, "{template}");
        }
    }

    #[test]
    fn relaxed_expressions() {
        let cases = [
            (".metadata.name", "{.metadata.name}"),
            ("metadata.name", "{.metadata.name}"),
            ("{.a}", "{.a}"),
        ];
        for (input, want) in cases {
            assert_eq!(relaxed(input), want);
        }
    }
}
