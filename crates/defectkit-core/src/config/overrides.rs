//! Command-line overrides, parsed with Hydra 1.3's grammar.
//!
//! Forms: `key=value` (change; the key must exist), `+key=value` (add; must not exist),
//! `++key=value` (add or change), `~key` / `~key=value` (delete). A key naming a config group
//! (`model=unet_ae`) changes the defaults list instead of a value. Values are typed as Hydra
//! types them: ints, floats, bools, `null`, quoted strings, lists `[1,2]`, dicts `{a: 1}`;
//! `a,b,c`, `choice(a,b)` and `range(0,3)` are sweeps, only valid with `--multirun`.

use serde_norway::{Number, Value};

use super::error::ConfigError;
use super::grammar::{classify_primitive, Parser};
use super::pyrepr::python_float_repr;

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

/// Render a value back into override syntax (`[1, 2]`, `{a: 1}`, quoting strings that need it).
pub fn value_to_override_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if n.is_i64() => i.to_string(),
            (_, Some(f)) => python_float_repr(f),
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
