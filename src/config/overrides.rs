//! Command-line overrides, parsed with Hydra 1.3's grammar.
//!
//! Forms: `key=value` (change; the key must exist), `+key=value` (add; must not exist),
//! `++key=value` (add or change), `~key` / `~key=value` (delete). A key naming a config group
//! (`model=unet_ae`) changes the defaults list instead of a value. Values are typed as Hydra
//! types them: ints, floats, bools, `null`, quoted strings, lists `[1,2]`, dicts `{a: 1}`;
//! `a,b,c`, `choice(a,b)` and `range(0,3)` are sweeps, only valid with `--multirun`.

use serde_norway::{Mapping, Number, Value};

use super::error::ConfigError;

/// What an override does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideKind {
    /// `key=value`: the key must exist.
    Change,
    /// `+key=value`: the key must not exist.
    Add,
    /// `++key=value`: add or change.
    ForceAdd,
    /// `~key` or `~key=value`: delete.
    Delete,
}

/// The right-hand side of an override.
#[derive(Debug, Clone, PartialEq)]
pub enum OverrideValue {
    /// One value.
    Element(Value),
    /// Several values, one job each (`a,b`, `choice(a,b)`, `range(..)`).
    Sweep(Vec<Value>),
}

/// One parsed override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// What it does.
    pub kind: OverrideKind,
    /// The key or group (`trainer.lr`, `model`, `server/db`).
    pub key: String,
    /// The package after `@`, for group overrides (`db@backup=mysql`).
    pub package: Option<String>,
    /// The value; `None` only for `~key`.
    pub value: Option<OverrideValue>,
    /// The override as typed.
    pub input: String,
}

impl Override {
    /// The key with its package, as Hydra names defaults-list entries (`db@backup`).
    pub fn key_element(&self) -> String {
        match &self.package {
            Some(p) => format!("{}@{}", self.key, p),
            None => self.key.clone(),
        }
    }

    /// True for `a=1,2` and other sweeps.
    pub fn is_sweep(&self) -> bool {
        matches!(self.value, Some(OverrideValue::Sweep(_)))
    }

    /// The single value, if this is not a sweep.
    pub fn element(&self) -> Option<&Value> {
        match &self.value {
            Some(OverrideValue::Element(v)) => Some(v),
            _ => None,
        }
    }

    /// The same override with one value of its sweep, as a string Hydra would write in a job's
    /// `overrides.yaml`.
    pub fn with_value_string(&self, value: &Value) -> String {
        let prefix = match self.kind {
            OverrideKind::Change => "",
            OverrideKind::Add => "+",
            OverrideKind::ForceAdd => "++",
            OverrideKind::Delete => "~",
        };
        format!(
            "{prefix}{}={}",
            self.key_element(),
            value_to_override_string(value)
        )
    }

    /// This override as Hydra writes it back (used for non-sweep overrides in job lists).
    pub fn canonical_string(&self) -> String {
        match self.element() {
            Some(v) if !self.is_sweep() && self.kind != OverrideKind::Delete => {
                self.with_value_string(v)
            }
            _ => self.input.clone(),
        }
    }
}

/// Parse one override as typed on the command line.
pub fn parse_override(input: &str) -> Result<Override, ConfigError> {
    let err = |reason: String| ConfigError::OverrideParse {
        input: input.to_string(),
        reason,
    };
    let trimmed = input.trim();
    let (kind, rest) = if let Some(r) = trimmed.strip_prefix("++") {
        (OverrideKind::ForceAdd, r)
    } else if let Some(r) = trimmed.strip_prefix('+') {
        (OverrideKind::Add, r)
    } else if let Some(r) = trimmed.strip_prefix('~') {
        (OverrideKind::Delete, r)
    } else {
        (OverrideKind::Change, trimmed)
    };
    let (key_part, value_part) = match rest.find('=') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if value_part.is_none() && kind != OverrideKind::Delete {
        return Err(err(
            "expected KEY=VALUE (or ~KEY to delete a key); did you forget '='?".to_string(),
        ));
    }
    let key_part = key_part.trim();
    let (key, package) = match key_part.split_once('@') {
        Some((k, p)) => (k.to_string(), Some(p.to_string())),
        None => (key_part.to_string(), None),
    };
    if key.is_empty() {
        return Err(err("the key is empty".to_string()));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '$')))
    {
        return Err(err(format!("invalid character '{bad}' in key '{key}'")));
    }
    if let Some(p) = &package {
        if p.chars()
            .any(|c| !(c.is_alphanumeric() || matches!(c, '_' | '.')))
        {
            return Err(err(format!("invalid package '{p}'")));
        }
    }
    let value = match value_part {
        None => None,
        Some(text) => Some(parse_value(text).map_err(err)?),
    };
    Ok(Override {
        kind,
        key,
        package,
        value,
        input: input.to_string(),
    })
}

/// Parse the value side of an override: one element or a sweep.
pub fn parse_value(text: &str) -> Result<OverrideValue, String> {
    let mut p = Parser::new(text);
    p.skip_ws();
    if p.at_end() {
        return Ok(OverrideValue::Element(Value::String(String::new())));
    }
    // Sweep functions.
    for func in ["choice", "range"] {
        if let Some(rest) = p.rest().strip_prefix(func) {
            if rest.trim_start().starts_with('(') {
                p.pos += func.len();
                p.skip_ws();
                p.expect('(')?;
                let args = p.parse_seq(')')?;
                p.skip_ws();
                if !p.at_end() {
                    return Err(format!("unexpected text after {func}(...)"));
                }
                return if func == "choice" {
                    Ok(OverrideValue::Sweep(args))
                } else {
                    range_sweep(&args).map(OverrideValue::Sweep)
                };
            }
        }
    }
    let mut items = vec![p.parse_element(&[','])?];
    p.skip_ws();
    while !p.at_end() {
        p.expect(',')?;
        items.push(p.parse_element(&[','])?);
        p.skip_ws();
    }
    if items.len() == 1 {
        Ok(OverrideValue::Element(items.pop().unwrap_or(Value::Null)))
    } else {
        Ok(OverrideValue::Sweep(items))
    }
}

fn range_sweep(args: &[Value]) -> Result<Vec<Value>, String> {
    let nums: Vec<f64> = args
        .iter()
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| "range() takes numbers".to_string())
        })
        .collect::<Result<_, _>>()?;
    let all_int = args.iter().all(|v| v.as_i64().is_some());
    let (start, stop, step) = match nums.as_slice() {
        [stop] => (0.0, *stop, 1.0),
        [start, stop] => (*start, *stop, 1.0),
        [start, stop, step] => (*start, *stop, *step),
        _ => return Err("range() takes 1 to 3 arguments".to_string()),
    };
    if step == 0.0 {
        return Err("range() step must not be zero".to_string());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < stop) || (step < 0.0 && x > stop) {
        out.push(if all_int {
            Value::Number(Number::from(x as i64))
        } else {
            Value::Number(Number::from(x))
        });
        x += step;
        if out.len() > 100_000 {
            return Err("range() too long".to_string());
        }
    }
    Ok(out)
}

/// A small recursive-descent parser over Hydra's value grammar.
pub(crate) struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(crate) fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    /// Consume `c` (after optional whitespace) or fail saying what was found.
    pub(crate) fn consume(&mut self, c: char) -> Result<(), String> {
        self.expect(c)
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else {
            Err(match self.peek() {
                Some(found) => format!("expected '{c}' at position {}, found '{found}'", self.pos),
                None => format!("expected '{c}' at the end"),
            })
        }
    }

    /// Parse `elem, elem, ...` up to `close` (consumed).
    fn parse_seq(&mut self, close: char) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.parse_element(&[',', close])?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(c) => return Err(format!("unexpected '{c}' at position {}", self.pos)),
                None => return Err(format!("missing closing '{close}'")),
            }
        }
    }

    /// Parse one element; `stops` are the characters that end an unquoted primitive.
    pub(crate) fn parse_element(&mut self, stops: &[char]) -> Result<Value, String> {
        self.skip_ws();
        match self.peek() {
            Some('[') => {
                self.pos += 1;
                let items = self.parse_seq(']')?;
                Ok(Value::Sequence(items))
            }
            Some('{') => {
                self.pos += 1;
                self.parse_dict()
            }
            Some(q @ ('\'' | '"')) => {
                let s = self.parse_quoted(q)?;
                self.skip_ws();
                Ok(Value::String(s))
            }
            _ => {
                let raw = self.parse_primitive_text(stops)?;
                Ok(classify_primitive(&raw))
            }
        }
    }

    fn parse_dict(&mut self) -> Result<Value, String> {
        let mut map = Mapping::new();
        self.skip_ws();
        if self.peek() == Some('}') {
            self.pos += 1;
            return Ok(Value::Mapping(map));
        }
        loop {
            self.skip_ws();
            let key = match self.peek() {
                Some(q @ ('\'' | '"')) => self.parse_quoted(q)?,
                _ => self.parse_primitive_text(&[':'])?,
            };
            if key.is_empty() {
                return Err(format!("empty dict key at position {}", self.pos));
            }
            self.expect(':')?;
            let value = self.parse_element(&[',', '}'])?;
            map.insert(Value::String(key), value);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {
                    self.pos += 1;
                    return Ok(Value::Mapping(map));
                }
                Some(c) => return Err(format!("unexpected '{c}' at position {}", self.pos)),
                None => return Err("missing closing '}'".to_string()),
            }
        }
    }

    fn parse_quoted(&mut self, quote: char) -> Result<String, String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(format!(
                    "unterminated quoted string starting at position {start}"
                ));
            };
            self.pos += c.len_utf8();
            if c == '\\' {
                match self.peek() {
                    Some(n) if n == quote || n == '\\' => {
                        out.push(n);
                        self.pos += n.len_utf8();
                    }
                    _ => out.push('\\'),
                }
            } else if c == quote {
                return Ok(out);
            } else {
                out.push(c);
            }
        }
    }

    /// Unquoted text up to a stop character at nesting depth 0 (interpolations `${..}` may
    /// contain any character). Backslash escapes the next character. Trimmed.
    fn parse_primitive_text(&mut self, stops: &[char]) -> Result<String, String> {
        let mut out = String::new();
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            if depth == 0 && (stops.contains(&c) || matches!(c, ']' | '}' | ')' | '[' | '(')) {
                if c == '(' || c == '[' {
                    return Err(format!("unexpected '{c}' at position {}", self.pos));
                }
                break;
            }
            if c == '\\' {
                self.pos += 1;
                match self.peek() {
                    Some(n) => {
                        // Keep `\${` so that interpolation escapes survive to resolution.
                        if n == '$' {
                            out.push('\\');
                        }
                        out.push(n);
                        self.pos += n.len_utf8();
                    }
                    None => out.push('\\'),
                }
                continue;
            }
            if c == '$' && self.rest().starts_with("${") {
                depth += 1;
                out.push_str("${");
                self.pos += 2;
                continue;
            }
            if depth > 0 && c == '}' {
                depth -= 1;
            }
            if depth > 0 && c == '{' {
                depth += 1;
            }
            if depth == 0 && c == '=' {
                return Err(format!("unexpected '=' at position {}", self.pos));
            }
            out.push(c);
            self.pos += c.len_utf8();
        }
        if depth > 0 {
            return Err("unterminated interpolation '${'".to_string());
        }
        Ok(out.trim().to_string())
    }
}

fn is_int_literal(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body == "0" {
        return true;
    }
    match body.chars().next() {
        Some(c) if ('1'..='9').contains(&c) => digits_with_underscores(body, false),
        _ => false,
    }
}

/// `[0-9](_?[0-9])*`; `allow_empty` permits "".
fn digits_with_underscores(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    let bytes = s.as_bytes();
    if bytes[0] == b'_' || bytes[bytes.len() - 1] == b'_' {
        return false;
    }
    let mut prev_us = false;
    for &b in bytes {
        if b == b'_' {
            if prev_us {
                return false;
            }
            prev_us = true;
        } else if b.is_ascii_digit() {
            prev_us = false;
        } else {
            return false;
        }
    }
    true
}

fn is_float_literal(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "nan" {
        return true;
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() && digits_with_underscores(frac, false))
                || (digits_with_underscores(int, false) && digits_with_underscores(frac, true))
        }
        None => exponent.is_some() && digits_with_underscores(mantissa, false),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    };
    mantissa_ok && exponent_ok
}

/// Type an unquoted primitive as Hydra and OmegaConf do.
pub(crate) fn classify_primitive(raw: &str) -> Value {
    let lower = raw.to_ascii_lowercase();
    if lower == "null" {
        return Value::Null;
    }
    if lower == "true" {
        return Value::Bool(true);
    }
    if lower == "false" {
        return Value::Bool(false);
    }
    if is_int_literal(raw) {
        let clean: String = raw.chars().filter(|c| *c != '_').collect();
        if let Ok(i) = clean.parse::<i64>() {
            return Value::Number(Number::from(i));
        }
        if let Ok(f) = clean.parse::<f64>() {
            return Value::Number(Number::from(f));
        }
    }
    if is_float_literal(raw) {
        let clean: String = raw.chars().filter(|c| *c != '_').collect();
        let f = match clean.to_ascii_lowercase().trim_start_matches(['+', '-']) {
            "inf" => {
                if clean.starts_with('-') {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            }
            "nan" => f64::NAN,
            _ => clean.parse::<f64>().unwrap_or(f64::NAN),
        };
        return Value::Number(Number::from(f));
    }
    Value::String(raw.to_string())
}

/// Render a value back into override syntax (`[1, 2]`, `{a: 1}`, quoting strings that need it).
pub fn value_to_override_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if n.is_i64() => i.to_string(),
            (_, Some(f)) => super::interpolate::python_float_repr(f),
            _ => n.to_string(),
        },
        Value::String(s) => {
            let plain = !s.is_empty()
                && matches!(classify_primitive(s), Value::String(_))
                && !s.chars().any(|c| {
                    matches!(
                        c,
                        ',' | '[' | ']' | '{' | '}' | '(' | ')' | '\'' | '"' | '=' | ':' | '\\'
                    ) || c.is_whitespace()
                });
            if plain {
                s.clone()
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
        Value::Sequence(items) => format!(
            "[{}]",
            items
                .iter()
                .map(value_to_override_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Mapping(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!(
                    "{}:{}",
                    value_to_override_string(k),
                    value_to_override_string(v)
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Tagged(t) => value_to_override_string(&t.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(s: &str) -> Value {
        match parse_value(s).unwrap() {
            OverrideValue::Element(v) => v,
            other => panic!("expected element, got {other:?}"),
        }
    }

    #[test]
    fn primitives_are_typed_like_hydra() {
        assert_eq!(el("1"), Value::Number(1.into()));
        assert_eq!(el("-3"), Value::Number((-3).into()));
        assert_eq!(el("1_000"), Value::Number(1000.into()));
        assert_eq!(el("1.5").as_f64(), Some(1.5));
        assert_eq!(el("1e-3").as_f64(), Some(0.001));
        assert_eq!(el(".5").as_f64(), Some(0.5));
        assert_eq!(el("True"), Value::Bool(true));
        assert_eq!(el("false"), Value::Bool(false));
        assert_eq!(el("null"), Value::Null);
        assert_eq!(el("NULL"), Value::Null);
        assert_eq!(el("01"), Value::String("01".into()));
        assert_eq!(el("abc"), Value::String("abc".into()));
        assert_eq!(el("  hello world "), Value::String("hello world".into()));
        assert_eq!(el(""), Value::String("".into()));
        assert_eq!(el("'1,2'"), Value::String("1,2".into()));
        assert_eq!(el("\"it's\""), Value::String("it's".into()));
        assert_eq!(el("${a.b}"), Value::String("${a.b}".into()));
        assert_eq!(el("${oc.env:X,y}"), Value::String("${oc.env:X,y}".into()));
        assert_eq!(el("a\\,b"), Value::String("a,b".into()));
        assert!(el("inf").as_f64().unwrap().is_infinite());
    }

    #[test]
    fn lists_and_dicts() {
        assert_eq!(
            el("[1,2, x]"),
            Value::Sequence(vec![1.into(), 2.into(), Value::String("x".into())])
        );
        assert_eq!(el("[]"), Value::Sequence(vec![]));
        let d = el("{a: 1, b: [x, 'y z']}");
        let m = d.as_mapping().unwrap();
        assert_eq!(m.get("a"), Some(&Value::Number(1.into())));
        assert_eq!(m.get("b").unwrap().as_sequence().unwrap().len(), 2);
    }

    #[test]
    fn sweeps() {
        assert_eq!(
            parse_value("1,2,3").unwrap(),
            OverrideValue::Sweep(vec![1.into(), 2.into(), 3.into()])
        );
        assert_eq!(
            parse_value("choice(a, b)").unwrap(),
            OverrideValue::Sweep(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            parse_value("range(1,4)").unwrap(),
            OverrideValue::Sweep(vec![1.into(), 2.into(), 3.into()])
        );
        assert!(
            matches!(parse_value("[1,2],[3]").unwrap(), OverrideValue::Sweep(v) if v.len() == 2)
        );
    }

    #[test]
    fn override_forms() {
        let o = parse_override("+a.b=1").unwrap();
        assert_eq!((o.kind, o.key.as_str()), (OverrideKind::Add, "a.b"));
        let o = parse_override("++a=x").unwrap();
        assert_eq!(o.kind, OverrideKind::ForceAdd);
        let o = parse_override("~a.b").unwrap();
        assert_eq!((o.kind, o.value.is_none()), (OverrideKind::Delete, true));
        let o = parse_override("db@backup=mysql").unwrap();
        assert_eq!(
            (o.key.as_str(), o.package.as_deref()),
            ("db", Some("backup"))
        );
        assert_eq!(o.key_element(), "db@backup");
    }

    #[test]
    fn parse_errors_point_at_the_override() {
        for bad in ["a", "=1", "a=[1,2", "a={b:1", "a='x", "a b=1", "a=b=c"] {
            let e = parse_override(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn values_render_back() {
        for s in ["1", "x", "[1,2]", "'a b'", "null", "true", "0.001"] {
            assert_eq!(value_to_override_string(&el(s)), s);
        }
    }
}
