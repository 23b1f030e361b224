//! The value grammar of interpolation arguments (`${oc.env:VAR,default}`, resolver
//! arguments): a recursive-descent [`Parser`] and how an unquoted primitive is typed
//! ([`classify_primitive`]), used by [`super::interpolate`]. Command-line overrides have their
//! own, exact port of Hydra's grammar in [`super::override_parser`].

use serde_norway::{Mapping, Number, Value};

/// A small recursive-descent parser over Hydra's value grammar.
pub(crate) struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread character.
    pub(crate) pos: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    /// The unread input.
    pub(crate) fn rest(&self) -> &'a str {
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

    /// Consumes `c` (after whitespace) or fails naming it.
    pub(crate) fn expect(&mut self, c: char) -> Result<(), String> {
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
    /// Comma-separated elements up to `close` (consumed).
    pub(crate) fn parse_seq(&mut self, close: char) -> Result<Vec<Value>, String> {
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
