//! OmegaConf-style interpolation: `${a.b}` (also inside strings, and relative `${.x}`),
//! `${oc.env:VAR,default}`, `${now:FORMAT}` and `${hydra:key}`.
//!
//! A string that is exactly one interpolation takes the referenced value with its type;
//! interpolations inside longer strings are converted to text as Python's `str()` would,
//! so results match Hydra's.

use std::collections::HashSet;

use chrono::format::{Item, StrftimeItems};
use serde_norway::{Mapping, Value};

use super::error::ConfigError;
use super::grammar::Parser;
pub use super::pyrepr::{python_float_repr, python_str};

/// What the resolvers may read: the clock (fixed once per command, like OmegaConf's cached
/// `now`) and the environment.
#[derive(Debug, Clone)]
pub struct ResolveContext {
    /// The time `${now:..}` formats.
    pub now: chrono::DateTime<chrono::Local>,
}

impl Default for ResolveContext {
    fn default() -> Self {
        Self {
            now: chrono::Local::now(),
        }
    }
}

/// True when `s` holds an interpolation to resolve.
pub fn has_interpolation(s: &str) -> bool {
    s.contains("${")
}

/// Resolve every interpolation in `root`, returning a tree without any.
pub fn resolve_tree(root: &Value, ctx: &ResolveContext) -> Result<Value, ConfigError> {
    let mut r = Resolver {
        root,
        ctx,
        visiting: HashSet::new(),
    };
    r.resolve_value(&[], root)
}

/// Resolve one node of `root` (dotted `key`), e.g. `hydra.run.dir`.
pub fn resolve_key(root: &Value, key: &str, ctx: &ResolveContext) -> Result<Value, ConfigError> {
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    let node = lookup(root, &path).ok_or_else(|| ConfigError::Interpolation {
        key: key.to_string(),
        value: String::new(),
        reason: format!("key '{key}' not found"),
    })?;
    let mut r = Resolver {
        root,
        ctx,
        visiting: HashSet::new(),
    };
    r.resolve_value(&path, node)
}

fn lookup<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = root;
    for seg in path {
        cur = match cur {
            Value::Mapping(m) => m.get(seg.as_str())?,
            Value::Sequence(s) => s.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

enum Piece {
    Text(String),
    Interp(String),
}

/// Split a string into literal text and `${...}` bodies, honouring `\${` escapes.
fn split_template(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with("\\${") {
            text.push_str("${");
            i += 3;
            continue;
        }
        if s[i..].starts_with("\\\\${") {
            text.push('\\');
            i += 2;
            continue;
        }
        if s[i..].starts_with("${") {
            let start = i + 2;
            let mut depth = 1usize;
            let mut j = start;
            let mut quote: Option<u8> = None;
            while j < s.len() && depth > 0 {
                let c = bytes[j];
                match quote {
                    Some(q) => {
                        if c == b'\\' {
                            j += 1;
                        } else if c == q {
                            quote = None;
                        }
                    }
                    None => {
                        if c == b'\'' || c == b'"' {
                            quote = Some(c);
                        } else if s[j..].starts_with("${") {
                            depth += 1;
                            j += 1;
                        } else if c == b'}' {
                            depth -= 1;
                        }
                    }
                }
                j += 1;
            }
            if depth > 0 {
                return Err("unterminated interpolation '${'".to_string());
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Interp(s[start..j - 1].to_string()));
            i = j;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        text.push(ch);
        i += ch.len_utf8();
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

struct Resolver<'a> {
    root: &'a Value,
    ctx: &'a ResolveContext,
    visiting: HashSet<String>,
}

impl Resolver<'_> {
    fn resolve_value(&mut self, path: &[String], value: &Value) -> Result<Value, ConfigError> {
        match value {
            Value::Mapping(m) => {
                let mut out = Mapping::new();
                for (k, v) in m {
                    let mut p = path.to_vec();
                    p.push(key_string(k));
                    out.insert(k.clone(), self.resolve_value(&p, v)?);
                }
                Ok(Value::Mapping(out))
            }
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    let mut p = path.to_vec();
                    p.push(i.to_string());
                    out.push(self.resolve_value(&p, v)?);
                }
                Ok(Value::Sequence(out))
            }
            Value::String(s) if has_interpolation(s) || s.contains("\\${") => {
                let key = path.join(".");
                if !self.visiting.insert(key.clone()) {
                    return Err(ConfigError::Interpolation {
                        key: key.clone(),
                        value: s.clone(),
                        reason: "recursive interpolation (the value refers to itself)".to_string(),
                    });
                }
                let container = &path[..path.len().saturating_sub(1)];
                let result = self.resolve_string(container, s);
                self.visiting.remove(&key);
                result.map_err(|e| match e {
                    ConfigError::Interpolation {
                        key: k,
                        value,
                        reason,
                    } if k.is_empty() => ConfigError::Interpolation {
                        key: key.clone(),
                        value: if value.is_empty() { s.clone() } else { value },
                        reason,
                    },
                    other => other,
                })
            }
            other => Ok(other.clone()),
        }
    }

    fn err(reason: impl Into<String>) -> ConfigError {
        ConfigError::Interpolation {
            key: String::new(),
            value: String::new(),
            reason: reason.into(),
        }
    }

    /// Resolve a string found in the container at `container`.
    fn resolve_string(&mut self, container: &[String], s: &str) -> Result<Value, ConfigError> {
        let pieces = split_template(s).map_err(Self::err)?;
        if let [Piece::Interp(body)] = pieces.as_slice() {
            return self.eval(container, body);
        }
        let mut out = String::new();
        for piece in &pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Interp(body) => out.push_str(&python_str(&self.eval(container, body)?)),
            }
        }
        Ok(Value::String(out))
    }

    /// Evaluate the body of one `${...}`.
    fn eval(&mut self, container: &[String], body: &str) -> Result<Value, ConfigError> {
        let body = body.trim();
        let resolver_split = body.find(':').filter(|&i| {
            let name = &body[..i];
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
                && !name.contains("${")
        });
        match resolver_split {
            Some(i) => {
                let name = &body[..i];
                let args = self.parse_args(container, &body[i + 1..])?;
                self.call_resolver(name, args)
            }
            None => {
                let target = self.node_path(container, body)?;
                let raw = lookup(self.root, &target)
                    .ok_or_else(|| Self::err(format!("Interpolation key '{body}' not found")))?;
                if raw.as_str() == Some("???") {
                    return Err(Self::err(format!(
                        "Missing mandatory value: '{}'",
                        target.join(".")
                    )));
                }
                self.resolve_value(&target, raw)
            }
        }
    }

    /// Turn `a.b`, `.x` or `..x` into an absolute path.
    fn node_path(&self, container: &[String], body: &str) -> Result<Vec<String>, ConfigError> {
        if body.is_empty() {
            return Err(Self::err("empty interpolation '${}'"));
        }
        let dots = body.chars().take_while(|c| *c == '.').count();
        let rest = &body[dots..];
        let mut path: Vec<String> = if dots == 0 {
            Vec::new()
        } else {
            let up = dots - 1;
            if up > container.len() {
                return Err(Self::err(format!(
                    "Interpolation '{body}' goes above the config root"
                )));
            }
            container[..container.len() - up].to_vec()
        };
        if !rest.is_empty() {
            for seg in rest.split('.') {
                // `a[0]` and `a.0` both index lists.
                let mut seg = seg;
                while let Some(open) = seg.find('[') {
                    path.push(seg[..open].to_string());
                    let close = seg.find(']').unwrap_or(seg.len());
                    path.push(seg[open + 1..close].to_string());
                    seg = seg.get(close + 1..).unwrap_or("");
                }
                if !seg.is_empty() {
                    path.push(seg.to_string());
                }
            }
        }
        Ok(path)
    }

    fn parse_args(&mut self, container: &[String], text: &str) -> Result<Vec<Value>, ConfigError> {
        let mut p = Parser::new(text);
        let mut args = Vec::new();
        p.skip_ws();
        if p.at_end() {
            return Ok(args);
        }
        loop {
            let v = p
                .parse_element(&[','])
                .map_err(|e| Self::err(format!("bad resolver arguments '{text}': {e}")))?;
            let v = match v {
                Value::String(s) if has_interpolation(&s) => self.resolve_string(container, &s)?,
                other => other,
            };
            args.push(v);
            p.skip_ws();
            if p.at_end() {
                break;
            }
            p.consume(',').map_err(Self::err)?;
        }
        Ok(args)
    }

    fn call_resolver(&mut self, name: &str, args: Vec<Value>) -> Result<Value, ConfigError> {
        match name {
            "oc.env" => {
                let (var, default) = match args.as_slice() {
                    [v] => (python_str(v), None),
                    [v, d] => (python_str(v), Some(d.clone())),
                    _ => {
                        return Err(Self::err(
                            "oc.env takes a variable name and an optional default",
                        ))
                    }
                };
                match std::env::var(&var) {
                    Ok(v) => Ok(Value::String(v)),
                    // Like OmegaConf: a default is returned as str(default), None as None.
                    Err(_) => match default {
                        Some(Value::Null) => Ok(Value::Null),
                        Some(d) => Ok(Value::String(python_str(&d))),
                        None => Err(Self::err(format!("Environment variable '{var}' not found"))),
                    },
                }
            }
            "now" => {
                let fmt = match args.as_slice() {
                    [f] => python_str(f),
                    _ => {
                        return Err(Self::err(
                            "now takes one strftime format, e.g. ${now:%Y-%m-%d}",
                        ))
                    }
                };
                if StrftimeItems::new(&fmt).any(|item| matches!(item, Item::Error)) {
                    return Err(Self::err(format!("invalid time format '{fmt}'")));
                }
                Ok(Value::String(self.ctx.now.format(&fmt).to_string()))
            }
            "hydra" => {
                let key = match args.as_slice() {
                    [k] => python_str(k),
                    _ => {
                        return Err(Self::err(
                            "hydra takes one key, e.g. ${hydra:runtime.output_dir}",
                        ))
                    }
                };
                let path: Vec<String> = std::iter::once("hydra".to_string())
                    .chain(key.split('.').map(str::to_string))
                    .collect();
                let raw = lookup(self.root, &path)
                    .ok_or_else(|| Self::err(format!("Hydra key '{key}' not found")))?;
                self.resolve_value(&path, raw)
            }
            other => Err(Self::err(format!(
                "Unsupported interpolation type {other} (known: oc.env, now, hydra)"
            ))),
        }
    }
}

fn key_string(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => python_str(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_norway::from_str(s).unwrap()
    }

    fn resolved(s: &str) -> Value {
        resolve_tree(&yaml(s), &ResolveContext::default()).unwrap()
    }

    #[test]
    fn float_repr_matches_python() {
        for (f, want) in [
            (0.001, "0.001"),
            (1e-5, "1e-05"),
            (1.0, "1.0"),
            (123.5, "123.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
        ] {
            assert_eq!(python_float_repr(f), want);
        }
    }

    #[test]
    fn whole_interpolation_keeps_type_and_embedded_becomes_text() {
        let v = resolved(
            "a: {b: 3, f: 0.5, t: true}\nx: ${a.b}\ny: 'n=${a.b} f=${a.f} t=${a.t}'\nz: ${a}\n",
        );
        assert_eq!(v["x"], Value::Number(3.into()));
        assert_eq!(v["y"], Value::String("n=3 f=0.5 t=True".into()));
        assert_eq!(v["z"]["b"], Value::Number(3.into()));
    }

    #[test]
    fn chained_relative_and_escaped() {
        let v =
            resolved("a:\n  b: ${c}\n  sib: ${.b}\n  up: ${..c}\nc: ${d}\nd: 7\ne: '\\${a.b}'\n");
        assert_eq!(v["a"]["b"], Value::Number(7.into()));
        assert_eq!(v["a"]["sib"], Value::Number(7.into()));
        assert_eq!(v["a"]["up"], Value::Number(7.into()));
        assert_eq!(v["e"], Value::String("${a.b}".into()));
    }

    #[test]
    fn env_and_now() {
        std::env::set_var("DEFECTKIT_TEST_ENV_X", "hello");
        let v = resolved(
            "a: ${oc.env:DEFECTKIT_TEST_ENV_X}\nb: ${oc.env:DEFECTKIT_TEST_UNSET_Y,fallback}\nc: ${oc.env:DEFECTKIT_TEST_UNSET_Y,null}\nd: ${now:%Y}\ne: ${oc.env:DEFECTKIT_TEST_UNSET_Y,5}\n",
        );
        assert_eq!(v["a"], Value::String("hello".into()));
        assert_eq!(v["b"], Value::String("fallback".into()));
        assert_eq!(v["c"], Value::Null);
        assert_eq!(v["e"], Value::String("5".into()));
        assert_eq!(v["d"].as_str().unwrap().len(), 4);
    }

    #[test]
    fn errors() {
        let ctx = ResolveContext::default();
        for bad in [
            "a: ${nope}",
            "a: ${b}\nb: ${a}",
            "a: ${oc.env:DEFECTKIT_TEST_UNSET_Z}",
            "a: ${foo:bar}",
            "a: ${b",
        ] {
            let e = resolve_tree(&yaml(bad), &ctx);
            assert!(e.is_err(), "{bad} should fail");
            assert!(
                e.unwrap_err().to_string().contains("'a"),
                "{bad}: key named"
            );
        }
    }
}
