//! Command-line overrides, parsed with Hydra 1.3's grammar ([`super::override_parser`]).
//!
//! Forms: `key=value` (change; the key must exist), `+key=value` (add; must not exist),
//! `++key=value` (add or change), `~key` / `~key=value` (delete). A key naming a config group
//! (`model=unet_ae`) changes the defaults list instead of a value. Values are typed as Hydra
//! types them: ints, floats, bools, `null`, quoted strings, lists `[1,2]`, dicts `{a: 1}`;
//! `a,b,c`, `choice(a,b)` and `range(0,3)` are sweeps, only valid with `--multirun`.

use serde_norway::Value;

use super::error::ConfigError;
pub use super::override_parser::{Element, Num, OverrideValue, Quote, Sweep};

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

    /// The single value as parsed (quotes kept), if this is not a sweep.
    pub fn element(&self) -> Option<&Element> {
        match &self.value {
            Some(OverrideValue::Element(v)) => Some(v),
            _ => None,
        }
    }

    /// The single value as it goes into the config (quoted strings become strings).
    pub fn element_yaml(&self) -> Option<Value> {
        self.element().map(Element::to_yaml)
    }

    /// The key with its prefix and package (`+db@backup`): Hydra's `get_key_element`, which
    /// names an override in a sweep, so `~a` and `+a` are two entries.
    pub fn prefixed_key(&self) -> String {
        format!("{}{}", self.prefix(), self.key_element())
    }

    fn prefix(&self) -> &'static str {
        match self.kind {
            OverrideKind::Change => "",
            OverrideKind::Add => "+",
            OverrideKind::ForceAdd => "++",
            OverrideKind::Delete => "~",
        }
    }

    /// The same override with one value of its sweep, as Hydra's basic sweeper writes it
    /// into a job's overrides (`key=value`, the value rendered back by Hydra's rules).
    pub fn with_value_string(&self, value: &Element) -> String {
        format!("{}{}={}", self.prefix(), self.key_element(), value.render())
    }

    /// This (non-sweep) override as the basic sweeper writes it into every job; `~key`
    /// becomes `~key=null`, as in Hydra.
    pub fn canonical_string(&self) -> String {
        match self.element() {
            Some(v) => self.with_value_string(v),
            None => self.with_value_string(&Element::Null),
        }
    }
}

/// Parse one override as typed on the command line, with Hydra 1.3's grammar.
pub fn parse_override(input: &str) -> Result<Override, ConfigError> {
    let parsed = super::override_parser::parse(input).map_err(|reason| {
        let hint = if !input.contains('=') && !input.starts_with('~') {
            "; expected KEY=VALUE (or ~KEY to delete a key): did you forget '='?"
        } else {
            ""
        };
        ConfigError::OverrideParse {
            input: input.to_string(),
            reason: format!("{reason}{hint}"),
        }
    })?;
    let kind = match parsed.prefix {
        "+" => OverrideKind::Add,
        "++" => OverrideKind::ForceAdd,
        "~" => OverrideKind::Delete,
        _ => OverrideKind::Change,
    };
    Ok(Override {
        kind,
        key: parsed.key,
        package: parsed.package,
        value: parsed.value,
        input: input.to_string(),
    })
}

/// Parse the value side of an override (`1,2`, `[a, b]`, `choice(x, y)`).
pub fn parse_value(text: &str) -> Result<OverrideValue, String> {
    super::override_parser::parse(&format!("x={text}")).map(|p| {
        p.value
            .unwrap_or(OverrideValue::Element(Element::Str(String::new())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(s: &str) -> Value {
        match parse_value(s).unwrap() {
            OverrideValue::Element(v) => v.to_yaml(),
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

    fn sweep_values(s: &str) -> Vec<Value> {
        match parse_value(s).unwrap() {
            OverrideValue::Sweep(sw) => sw
                .values(&Vec::new)
                .unwrap()
                .iter()
                .map(Element::to_yaml)
                .collect(),
            other => panic!("expected a sweep, got {other:?}"),
        }
    }

    #[test]
    fn sweeps() {
        assert_eq!(
            sweep_values("1,2,3"),
            vec![Value::from(1), 2.into(), 3.into()]
        );
        assert_eq!(
            sweep_values("choice(a, b)"),
            vec![Value::from("a"), Value::from("b")]
        );
        assert_eq!(
            sweep_values("range(1,4)"),
            vec![Value::from(1), 2.into(), 3.into()]
        );
        assert_eq!(sweep_values("[1,2],[3]").len(), 2);
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
        for bad in ["a", "a=[1,2", "a={b:1", "a='x", "a b=1", "a=b=c"] {
            let e = parse_override(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn values_render_back() {
        for s in ["1", "x", "[1,2]", "'a b'", "null", "0.001", r"a\ b"] {
            let OverrideValue::Element(e) = parse_value(s).unwrap() else {
                panic!("{s}")
            };
            assert_eq!(e.render(), s);
        }
    }
}
