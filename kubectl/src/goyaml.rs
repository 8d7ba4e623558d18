//! YAML text exactly as kubectl writes it: `sigs.k8s.io/yaml` marshals the
//! object to JSON and re-encodes that with go-yaml v2, whose emitter (a port
//! of libyaml) decides quoting, folds long scalars at 80 columns, writes
//! sequences inside mappings without indentation and sorts map keys in its
//! "natural" order (digit runs compare as numbers). This module reproduces
//! those choices for `serde_json::Value`s.

use std::cmp::Ordering;

use serde_json::{Map, Value};

const BEST_INDENT: usize = 2;
const BEST_WIDTH: usize = 80;

/// Serializes `v` as a YAML document (no leading `---`), ending in a newline.
pub fn to_string(v: &Value) -> String {
    let mut e = Emitter::default();
    e.document(v);
    if e.column != 0 {
        e.out.push('\n');
    }
    e.out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
}

impl Default for Emitter {
    fn default() -> Self {
        Emitter {
            out: String::new(),
            column: 0,
            whitespace: true,
            indention: true,
        }
    }
}

impl Emitter {
    fn document(&mut self, v: &Value) {
        match v {
            Value::Object(m) if !m.is_empty() => self.block_mapping(m, 0),
            Value::Array(a) if !a.is_empty() => self.block_sequence(a, 0),
            other => {
                // A top-level scalar: written at indent 0 (continuations at 2).
                self.scalar_node(other, 0, false);
            }
        }
    }

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write_str(&mut self, s: &str) {
        for c in s.chars() {
            self.put(c);
        }
    }

    fn write_indent(&mut self, indent: usize) {
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(&mut self, indicator: &str, need_whitespace: bool, is_whitespace: bool, is_indention: bool) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        self.write_str(indicator);
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    /// A block mapping whose entries sit at `indent`.
    fn block_mapping(&mut self, map: &Map<String, Value>, indent: usize) {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_by(|a, b| natural_cmp(a, b));
        for key in keys {
            let value = &map[key];
            self.write_indent(indent);
            // Keys are written in simple-key context: no folding, no block styles.
            self.string_scalar(key, indent, true);
            self.write_indicator(":", false, false, false);
            self.node(value, indent, true);
        }
    }

    /// A block sequence whose `-` indicators sit at `indent`.
    fn block_sequence(&mut self, items: &[Value], indent: usize) {
        for item in items {
            self.write_indent(indent);
            self.write_indicator("-", true, false, true);
            match item {
                Value::Object(m) if !m.is_empty() => self.block_mapping(m, indent + BEST_INDENT),
                Value::Array(a) if !a.is_empty() => self.block_sequence(a, indent + BEST_INDENT),
                other => self.scalar_node(other, indent, false),
            }
        }
    }

    /// The value of a mapping entry at `indent` (`in_mapping`) or an item.
    fn node(&mut self, v: &Value, indent: usize, in_mapping: bool) {
        match v {
            Value::Object(m) if !m.is_empty() => self.block_mapping(m, indent + BEST_INDENT),
            // Sequences in a mapping are "indentless".
            Value::Array(a) if !a.is_empty() => {
                let seq_indent = if in_mapping { indent } else { indent + BEST_INDENT };
                self.block_sequence(a, seq_indent);
            }
            other => self.scalar_node(other, indent, false),
        }
    }

    /// A scalar (or empty collection) whose parent node sits at `indent`.
    fn scalar_node(&mut self, v: &Value, indent: usize, simple_key: bool) {
        match v {
            Value::Null => self.plain("null", indent, simple_key),
            Value::Bool(b) => self.plain(if *b { "true" } else { "false" }, indent, simple_key),
            Value::Number(n) => {
                let text = format_number(n);
                self.plain(&text, indent, simple_key);
            }
            Value::String(s) => self.string_scalar(s, indent, simple_key),
            Value::Array(_) => self.write_indicator("[]", true, false, false),
            Value::Object(_) => self.write_indicator("{}", true, false, false),
        }
    }

    fn string_scalar(&mut self, s: &str, indent: usize, simple_key: bool) {
        // Scalars are written one indentation level deeper than their parent
        // (libyaml increases the indent before processing a scalar).
        let scalar_indent = indent + BEST_INDENT;
        match select_style(s, simple_key) {
            Style::Plain => self.write_plain(s, scalar_indent, !simple_key),
            Style::SingleQuoted => self.write_single_quoted(s, scalar_indent, !simple_key),
            Style::DoubleQuoted => self.write_double_quoted(s, scalar_indent, !simple_key),
            Style::Literal => self.write_literal(s, scalar_indent),
        }
    }

    fn plain(&mut self, s: &str, indent: usize, simple_key: bool) {
        self.write_plain(s, indent + BEST_INDENT, !simple_key);
    }

    fn write_plain(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_is_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks && !spaces && self.column > BEST_WIDTH && !next_is_space {
                    self.write_indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                self.indention = false;
                spaces = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single_quoted(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_is_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i != 0
                    && i != chars.len() - 1
                    && !next_is_space
                {
                    self.write_indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
            }
        }
        self.write_indicator("'", false, false, false);
    }

    fn write_double_quoted(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write_indicator("\"", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if !is_printable(c) || c == '\u{feff}' || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                let escaped = match c {
                    '\0' => "0".to_string(),
                    '\u{7}' => "a".to_string(),
                    '\u{8}' => "b".to_string(),
                    '\t' => "t".to_string(),
                    '\n' => "n".to_string(),
                    '\u{b}' => "v".to_string(),
                    '\u{c}' => "f".to_string(),
                    '\r' => "r".to_string(),
                    '\u{1b}' => "e".to_string(),
                    '"' => "\"".to_string(),
                    '\\' => "\\".to_string(),
                    '\u{85}' => "N".to_string(),
                    '\u{a0}' => "_".to_string(),
                    '\u{2028}' => "L".to_string(),
                    '\u{2029}' => "P".to_string(),
                    c if (c as u32) <= 0xff => format!("x{:02X}", c as u32),
                    c if (c as u32) <= 0xffff => format!("u{:04X}", c as u32),
                    c => format!("U{:08X}", c as u32),
                };
                self.write_str(&escaped);
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i != 0 && i != chars.len() - 1 {
                    self.write_indent(indent);
                    if chars.get(i + 1) == Some(&' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.write_indicator("\"", false, false, false);
    }

    fn write_literal(&mut self, s: &str, indent: usize) {
        self.write_indicator("|", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        // Block scalar hints: an indentation indicator when the text starts
        // with a space or break, and a chomping indicator.
        if chars.first().is_some_and(|&c| c == ' ' || is_break(c)) {
            self.write_str(&BEST_INDENT.to_string());
        }
        match chars.last() {
            None => self.write_str("-"),
            Some(&last) if !is_break(last) => self.write_str("-"),
            Some(_) => {
                if chars.len() == 1 || chars.get(chars.len() - 2).is_some_and(|&c| is_break(c)) {
                    self.write_str("+");
                }
            }
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for &c in &chars {
            if is_break(c) {
                self.put_break();
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent(indent);
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
        // The next write starts on a fresh line if the text ended with a break.
        self.whitespace = true;
        self.indention = self.column == 0;
    }
}

/// How go-yaml writes a string: quoted when it would read back as another
/// type, literal block when multi-line, else plain unless the emitter's
/// analysis forbids it.
fn select_style(s: &str, simple_key: bool) -> Style {
    let mut style = if !resolves_to_string(s) || is_base60_float(s) {
        Style::DoubleQuoted
    } else if s.contains('\n') {
        Style::Literal
    } else {
        Style::Plain
    };
    let a = analyze(s);
    if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && simple_key)) {
        style = Style::SingleQuoted;
    }
    if style == Style::SingleQuoted && !a.single_quoted_allowed {
        style = Style::DoubleQuoted;
    }
    if style == Style::Literal && (!a.block_allowed || simple_key) {
        style = Style::DoubleQuoted;
    }
    style
}

struct Analysis {
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blankz(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => c == ' ' || c == '\t' || is_break(c) || c == '\0',
    }
}

fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0a
        || (0x20..=0x7e).contains(&u)
        || u == 0x85
        || (0xa0..=0xd7ff).contains(&u)
        || ((0xe000..=0xfffd).contains(&u) && u != 0xfeff)
        || (0x10000..=0x10ffff).contains(&u)
}

/// libyaml's `yaml_emitter_analyze_scalar`, reduced to the block context.
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = false;
    if s.starts_with("---") || s.starts_with("...") {
        block_indicators = true;
    }
    let mut preceded_by_whitespace = true;
    let mut followed_by_whitespace = is_blankz(chars.get(1).copied());
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) = (false, false, false, false);
    let (mut break_space, mut space_break, mut previous_space, mut previous_break) = (false, false, false, false);
    let (mut line_breaks, mut special_characters) = (false, false);
    let last = chars.len() - 1;
    for (i, &c) in chars.iter().enumerate() {
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                block_indicators = true;
            }
            if (c == '?' || c == ':' || c == '-') && followed_by_whitespace {
                block_indicators = true;
            }
        } else if (c == ':' && followed_by_whitespace) || (c == '#' && preceded_by_whitespace) {
            block_indicators = true;
        }
        if !is_printable(c) || c == '\u{feff}' {
            special_characters = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == last {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            if i == 0 {
                leading_break = true;
            }
            if i == last {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_break = true;
            previous_space = false;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blankz(Some(c));
        followed_by_whitespace = is_blankz(chars.get(i + 2).copied());
    }
    let mut a = Analysis {
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special_characters {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// Whether go-yaml v2 would read the plain scalar `s` back as a string
/// (and not as null, a bool, a number or a timestamp).
fn resolves_to_string(s: &str) -> bool {
    const NON_STRINGS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO",
        "off", "Off", "OFF", "true", "True", "TRUE", "false", "False", "FALSE", ".nan", ".NaN", ".NAN", ".inf", ".Inf",
        ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", "<<",
    ];
    if NON_STRINGS.contains(&s) {
        return false;
    }
    let Some(first) = s.chars().next() else {
        return false;
    };
    match first {
        '.' => s.parse::<f64>().is_err() || !is_go_float_syntax(s),
        '+' | '-' | '0'..='9' => {
            if is_timestamp(s) {
                return false;
            }
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            if parse_go_int(&plain) || (is_yaml_style_float(&plain) && plain.parse::<f64>().is_ok()) {
                return false;
            }
            if let Some(rest) = plain.strip_prefix("0b").or_else(|| plain.strip_prefix("-0b"))
                && !rest.is_empty()
                && rest.chars().all(|c| c == '0' || c == '1')
            {
                return false;
            }
            true
        }
        _ => true,
    }
}

/// Go's `strconv.ParseFloat` accepts what Rust's parser accepts for the
/// `.5` forms that reach here, except for words like `.infinity`.
fn is_go_float_syntax(s: &str) -> bool {
    s[1..].chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// `strconv.ParseInt(s, 0, 64)` or `ParseUint` success.
fn parse_go_int(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.is_empty() {
        return false;
    }
    let (digits, radix) = if let Some(rest) = unsigned.strip_prefix("0x").or_else(|| unsigned.strip_prefix("0X")) {
        (rest, 16)
    } else if let Some(rest) = unsigned.strip_prefix("0o").or_else(|| unsigned.strip_prefix("0O")) {
        (rest, 8)
    } else if let Some(rest) = unsigned.strip_prefix("0b").or_else(|| unsigned.strip_prefix("0B")) {
        (rest, 2)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (&unsigned[1..], 8)
    } else {
        (unsigned, 10)
    };
    !digits.is_empty() && u64::from_str_radix(digits, radix).is_ok()
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// go-yaml's `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 2 {
            i += 1;
        }
        let n = i - start;
        if n == 0 || (n == 2 && b[start] > b'5') {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// go-yaml v2's timestamp check: `YYYY-M-D` alone, or followed by `T`, `t`
/// or a space and `H:M:S[.frac]` (with a zone after `T`/`t`).
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |i: &mut usize, min: usize, max: usize| -> Option<u32> {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - start < max {
            *i += 1;
        }
        if *i - start < min {
            return None;
        }
        s[start..*i].parse().ok()
    };
    let mut i = 0;
    let Some(_year) = num(&mut i, 4, 4) else { return false };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(month) = num(&mut i, 1, 2) else { return false };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(day) = num(&mut i, 1, 2) else { return false };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let sep = b[i];
    if sep != b'T' && sep != b't' && sep != b' ' {
        return false;
    }
    i += 1;
    let Some(h) = num(&mut i, 1, 2) else { return false };
    if b.get(i) != Some(&b':') {
        return false;
    }
    i += 1;
    let Some(m) = num(&mut i, 1, 2) else { return false };
    if b.get(i) != Some(&b':') {
        return false;
    }
    i += 1;
    let Some(sec) = num(&mut i, 1, 2) else { return false };
    if h > 23 || m > 59 || sec > 59 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if num(&mut i, 1, 9).is_none() {
            return false;
        }
    }
    if sep == b' ' {
        return i == b.len();
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+') | Some(b'-') => {
            i += 1;
            let ok_h = num(&mut i, 2, 2).is_some();
            if !ok_h || b.get(i) != Some(&b':') {
                return false;
            }
            i += 1;
            num(&mut i, 2, 2).is_some() && i == b.len()
        }
        _ => false,
    }
}

/// A JSON number the way it reads after a JSON → YAML round trip in Go:
/// integral values as integers, others in `strconv.FormatFloat(f, 'g', -1)`.
fn format_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let Some(f) = n.as_f64() else { return n.to_string() };
    if f.fract() == 0.0 && f.abs() < 1e18 {
        return format!("{}", f as i64);
    }
    go_format_g(f)
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`.
pub fn go_format_g(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_string();
    }
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let (sign, digits) = if exp < 0 { ('-', -exp) } else { ('+', exp) };
        return format!("{mantissa}e{sign}{digits:02}");
    }
    format!("{f}")
}

/// go-yaml v2's key order: letters compare by code point, a non-letter sorts
/// before a letter, and runs of digits compare by numeric value.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl { Ordering::Less } else { Ordering::Greater };
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalar_styles() {
        // (value, how go-yaml writes it as a map value)
        let cases = [
            ("plain", "plain"),
            ("", "\"\""),
            ("123", "\"123\""),
            ("1.5", "\"1.5\""),
            ("true", "\"true\""),
            ("yes", "\"yes\""),
            ("null", "\"null\""),
            ("~", "\"~\""),
            ("0x1F", "\"0x1F\""),
            ("08", "\"08\""),
            ("2026-11-23T06:43:05Z", "\"2026-11-23T06:43:05Z\""),
            ("2024-01-01", "\"2024-01-01\""),
            ("1:20", "\"1:20\""),
            ("a: b", "'a: b'"),
            ("*x", "'*x'"),
            ("<a&b>", "<a&b>"),
            ("-", "'-'"),
            ("-x", "-x"),
            (" lead", "' lead'"),
            ("trail ", "'trail '"),
            ("it's", "it's"),
            ("'q'", "'''q'''"),
            ("tab\there", "\"tab\\there\""),
            ("nginx:1.25", "nginx:1.25"),
            ("10.0.0.1", "10.0.0.1"),
            ("80/TCP", "80/TCP"),
            ("a #b", "'a #b'"),
            ("a#b", "a#b"),
            ("{x}", "'{x}'"),
            ("1e3", "\"1e3\""),
            ("v1", "v1"),
        ];
        for (input, want) in cases {
            let got = to_string(&json!({ "k": input }));
            assert_eq!(got, format!("k: {want}\n"), "{input:?}");
        }
    }

    #[test]
    fn documents() {
        let cases = [
            (json!({}), "{}\n"),
            (json!({"a": {}, "b": []}), "a: {}\nb: []\n"),
            (
                json!({"items": [{"a": 1, "b": [1, 2]}, "x", [1, [2]]]}),
                "items:\n- a: 1\n  b:\n  - 1\n  - 2\n- x\n- - 1\n  - - 2\n",
            ),
            (
                json!({"m": {"multi": "line1\nline2\n", "nonl": "a\nb", "extra": "a\n\n"}}),
                "m:\n  extra: |+\n    a\n\n  multi: |\n    line1\n    line2\n  nonl: |-\n    a\n    b\n",
            ),
            (
                json!({"z": null, "f": 1.5, "i": 2, "t": true}),
                "f: 1.5\ni: 2\nt: true\nz: null\n",
            ),
            (json!({"n": "y"}), "\"n\": \"y\"\n"),
            (
                json!({"a10": 1, "a9": 2, "A": 3, "_x": 4}),
                "_x: 4\nA: 3\na9: 2\na10: 1\n",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(to_string(&input), want, "{input}");
        }
    }

    #[test]
    fn folds_long_plain_scalars_like_go_yaml() {
        let long = "this is a very long string value that goes on and on and on and on past the eighty column limit for sure yes";
        let got = to_string(&json!({"data": {"long": long}}));
        assert_eq!(
            got,
            "data:\n  long: this is a very long string value that goes on and on and on and on past the\n    eighty column limit for sure yes\n"
        );
    }

    #[test]
    fn natural_key_order() {
        let mut keys = vec!["b", "a10", "a9", "a", "app.kubernetes.io/name", "app", "_z", "Z"];
        keys.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            keys,
            vec!["_z", "Z", "a", "a9", "a10", "app", "app.kubernetes.io/name", "b"]
        );
    }

    #[test]
    fn go_g_format() {
        let cases = [
            (1.5, "1.5"),
            (1234567.5, "1.2345675e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
        ];
        for (f, want) in cases {
            assert_eq!(go_format_g(f), want);
        }
    }
}
