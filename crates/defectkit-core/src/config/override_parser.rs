//! Hydra 1.3's override grammar, token for token: the lexer of `OverrideLexer.g4` (longest
//! match, ties to the earlier rule, a `KEY` mode up to the first `=` and a `VALUE` mode after
//! it), a recursive-descent parser of `OverrideParser.g4`, and the evaluation that
//! `overrides_visitor.py` and `grammar_functions.py` do: typed primitives, escapes, quoted
//! strings, typed dict keys, and the functions `int/float/str/bool`, `choice`, `range`,
//! `interval`, `tag`, `sort`, `shuffle` and `glob`.
//!
//! The parse keeps what Hydra keeps: a quoted string stays [`Element::Quoted`] (a job's
//! override string is written back with its quotes), a sweep stays a [`Sweep`] until the
//! sweeper expands it ([`Sweep::values`]). [`Element::render`] writes an element back the
//! way Hydra's `_get_value_element_as_str` does.

use std::cmp::Ordering;

use num_bigint::BigInt;
use serde_norway::{Mapping, Number, Value};

use super::pyrepr::python_float_repr;

/// Which quote a quoted string was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// `'text'`
    Single,
    /// `"text"`
    Double,
}

/// One parsed element: what Hydra's visitor returns for `element`.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    /// `null`
    Null,
    /// `true` / `false`, any case.
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A float literal (`1.5`, `1e-3`, `inf`, `nan`).
    Float(f64),
    /// An unquoted string (escapes removed) or the result of a function.
    Str(String),
    /// A quoted string, unescaped, with its quote (rendered back with it).
    Quoted(String, Quote),
    /// `[a, b]`
    List(Vec<Element>),
    /// `{k: v}`; keys are typed like primitives and unique in Python's sense (`1 == true`).
    Dict(Vec<(Element, Element)>),
}

/// A number of a `range()` or `interval()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An int (or a bool, which Python's `range` takes as one).
    Int(i64),
    /// A float.
    Float(f64),
}

/// A sweep: several values, one job each (Hydra's `ChoiceSweep`, `RangeSweep`,
/// `IntervalSweep`, `Glob`).
#[derive(Debug, Clone, PartialEq)]
pub enum Sweep {
    /// `a,b` (simple form) or `choice(a,b)`.
    Choice {
        /// The values, in order.
        items: Vec<Element>,
        /// Written as `a,b` rather than `choice(a,b)`.
        simple: bool,
        /// Shuffled when expanded.
        shuffle: bool,
    },
    /// `range(start, stop, step)`.
    Range {
        /// First value.
        start: Num,
        /// Exclusive bound.
        stop: Num,
        /// Step (not zero).
        step: Num,
        /// Shuffled when expanded.
        shuffle: bool,
    },
    /// `interval(a, b)`: continuous, so the basic sweeper cannot expand it.
    Interval {
        /// Lower bound.
        start: f64,
        /// Upper bound.
        end: f64,
    },
    /// `glob(include, exclude)` over a config group's options.
    Glob {
        /// Patterns an option must match.
        include: Vec<String>,
        /// Patterns it must not match.
        exclude: Vec<String>,
    },
}

/// The value of an override: one element or a sweep.
#[derive(Debug, Clone, PartialEq)]
pub enum OverrideValue {
    /// One value.
    Element(Element),
    /// Several.
    Sweep(Sweep),
}

/// What the `KEY` part of an override says.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedOverride {
    /// `""`, `"+"`, `"++"` or `"~"`.
    pub prefix: &'static str,
    /// The key or group (`a.b`, `db`, `hydra/launcher`).
    pub key: String,
    /// The package after `@`.
    pub package: Option<String>,
    /// The value after `=`; `None` for `~key`. `key=` gives the empty string.
    pub value: Option<OverrideValue>,
}

// ----------------------------------------------------------------------------------------
// Lexer
// ----------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    POpen,
    Comma,
    PClose,
    BracketOpen,
    BracketClose,
    BraceOpen,
    BraceClose,
    Colon,
    Equal,
    Float,
    Int,
    Bool,
    Null,
    UnquotedChar,
    Id,
    Esc,
    Ws,
    Quoted,
    Interpolation,
    Tilde,
    Plus,
    At,
    Slash,
    KeySpecial,
    DotPath,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn ws_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    i
}

/// `[ \t]* c [ \t]*` (the WS on either side optional per the rule).
fn punct(s: &[u8], i: usize, c: u8, before: bool, after: bool) -> Option<usize> {
    let j = if before { ws_end(s, i) } else { i };
    if s.get(j) != Some(&c) {
        return None;
    }
    Some(if after { ws_end(s, j + 1) } else { j + 1 })
}

/// End positions of `DIGIT ('_'? DIGIT)*` starting at `i`.
fn digit_run_ends(s: &[u8], i: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    if !s.get(i).is_some_and(u8::is_ascii_digit) {
        return ends;
    }
    let mut p = i + 1;
    ends.push(p);
    loop {
        if s.get(p).is_some_and(u8::is_ascii_digit) {
            p += 1;
        } else if s.get(p) == Some(&b'_') && s.get(p + 1).is_some_and(u8::is_ascii_digit) {
            p += 2;
        } else {
            break;
        }
        ends.push(p);
    }
    ends
}

/// End positions of `INT_UNSIGNED: '0' | [1-9] ('_'? DIGIT)*`.
fn int_unsigned_ends(s: &[u8], i: usize) -> Vec<usize> {
    match s.get(i) {
        Some(b'0') => vec![i + 1],
        Some(b'1'..=b'9') => digit_run_ends(s, i),
        _ => Vec::new(),
    }
}

fn sign_end(s: &[u8], i: usize) -> usize {
    if matches!(s.get(i), Some(b'+' | b'-')) {
        i + 1
    } else {
        i
    }
}

fn word_ci(s: &[u8], i: usize, word: &str) -> Option<usize> {
    let end = i + word.len();
    (end <= s.len() && s[i..end].eq_ignore_ascii_case(word.as_bytes())).then_some(end)
}

/// End positions of `POINT_FLOAT: INT_UNSIGNED '.' | INT_UNSIGNED? '.' DIGIT ('_'? DIGIT)*`.
fn point_float_ends(s: &[u8], i: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let ints = int_unsigned_ends(s, i);
    for &e in &ints {
        if s.get(e) == Some(&b'.') {
            ends.push(e + 1);
        }
    }
    for start in std::iter::once(i).chain(ints.iter().copied()) {
        if s.get(start) == Some(&b'.') {
            ends.extend(digit_run_ends(s, start + 1));
        }
    }
    ends
}

fn float_end(s: &[u8], i: usize) -> Option<usize> {
    let j = sign_end(s, i);
    let mut best = None;
    let mut take = |e: usize| best = Some(best.map_or(e, |b: usize| b.max(e)));
    for w in ["inf", "nan"] {
        if let Some(e) = word_ci(s, j, w) {
            take(e);
        }
    }
    let points = point_float_ends(s, j);
    for &e in &points {
        take(e);
    }
    for base in int_unsigned_ends(s, j).into_iter().chain(points) {
        if matches!(s.get(base), Some(b'e' | b'E')) {
            let k = sign_end(s, base + 1);
            for e in digit_run_ends(s, k) {
                take(e);
            }
        }
    }
    best
}

fn int_end(s: &[u8], i: usize) -> Option<usize> {
    int_unsigned_ends(s, sign_end(s, i)).into_iter().max()
}

fn is_char(b: u8) -> bool {
    b.is_ascii_alphabetic()
}

fn id_end(s: &[u8], i: usize, dollar: bool) -> Option<usize> {
    let first = *s.get(i)?;
    if !(is_char(first) || first == b'_' || (dollar && first == b'$')) {
        return None;
    }
    let mut p = i + 1;
    while let Some(&b) = s.get(p) {
        if is_char(b) || b.is_ascii_digit() || b == b'_' || b == b'-' || (dollar && b == b'$') {
            p += 1;
        } else {
            break;
        }
    }
    Some(p)
}

/// `ESC: ('\\\\' | '\\(' | .. | '\\ ' | '\\\t')+`.
fn esc_end(s: &[u8], i: usize) -> Option<usize> {
    let mut p = i;
    while s.get(p) == Some(&b'\\') && s.get(p + 1).is_some_and(|c| ESCAPED.contains(c)) {
        p += 2;
    }
    (p > i).then_some(p)
}

/// The characters `ESC` may follow a backslash with (Hydra's `_ESC`).
const ESCAPED: &[u8] = b"\\()[]{}:=, \t";

/// A quoted value closes at the first quote preceded by an even number of backslashes.
fn quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let q = *s.get(i)?;
    if q != b'\'' && q != b'"' {
        return None;
    }
    let mut backslashes = 0usize;
    let mut p = i + 1;
    while p < s.len() {
        let b = s[p];
        if b == q && backslashes % 2 == 0 {
            return Some(p + 1);
        }
        backslashes = if b == b'\\' { backslashes + 1 } else { 0 };
        p += 1;
    }
    None
}

/// `INTERPOLATION: '${' ~('}')+ '}'` (no nesting).
fn interpolation_end(s: &[u8], i: usize) -> Option<usize> {
    if !s[i..].starts_with(b"${") {
        return None;
    }
    let close = s[i + 2..].iter().position(|&b| b == b'}')?;
    (close > 0).then_some(i + 2 + close + 1)
}

fn dot_path_end(s: &[u8], i: usize) -> Option<usize> {
    let part = |p: usize| -> Option<usize> {
        let a = id_end(s, p, true);
        let b = int_unsigned_ends(s, p).into_iter().max();
        match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        }
    };
    let mut p = part(i)?;
    let mut dots = 0;
    while s.get(p) == Some(&b'.') {
        match part(p + 1) {
            Some(e) => {
                p = e;
                dots += 1;
            }
            None => break,
        }
    }
    (dots > 0).then_some(p)
}

fn value_token(s: &[u8], i: usize) -> Option<(Kind, usize)> {
    let candidates: [(Kind, Option<usize>); 19] = [
        (Kind::POpen, punct(s, i, b'(', true, true)),
        (Kind::Comma, punct(s, i, b',', true, true)),
        (Kind::PClose, punct(s, i, b')', true, false)),
        (Kind::BracketOpen, punct(s, i, b'[', false, true)),
        (Kind::BracketClose, punct(s, i, b']', true, false)),
        (Kind::BraceOpen, punct(s, i, b'{', false, true)),
        (Kind::BraceClose, punct(s, i, b'}', true, false)),
        (Kind::Colon, punct(s, i, b':', true, true)),
        (Kind::Equal, punct(s, i, b'=', true, true)),
        (Kind::Float, float_end(s, i)),
        (Kind::Int, int_end(s, i)),
        (
            Kind::Bool,
            word_ci(s, i, "true").or_else(|| word_ci(s, i, "false")),
        ),
        (Kind::Null, word_ci(s, i, "null")),
        (
            Kind::UnquotedChar,
            s.get(i)
                .filter(|b| b"/-\\+.$%*@?|".contains(b))
                .map(|_| i + 1),
        ),
        (Kind::Id, id_end(s, i, false)),
        (Kind::Esc, esc_end(s, i)),
        (Kind::Ws, (ws_end(s, i) > i).then(|| ws_end(s, i))),
        (Kind::Quoted, quoted_end(s, i)),
        (Kind::Interpolation, interpolation_end(s, i)),
    ];
    longest(&candidates)
}

fn key_token(s: &[u8], i: usize) -> Option<(Kind, usize)> {
    let one = |c: u8| (s.get(i) == Some(&c)).then_some(i + 1);
    let candidates: [(Kind, Option<usize>); 9] = [
        (Kind::Equal, punct(s, i, b'=', false, true)),
        (Kind::Tilde, one(b'~')),
        (Kind::Plus, one(b'+')),
        (Kind::At, one(b'@')),
        (Kind::Colon, one(b':')),
        (Kind::Slash, one(b'/')),
        (Kind::Id, id_end(s, i, false)),
        (Kind::KeySpecial, id_end(s, i, true)),
        (Kind::DotPath, dot_path_end(s, i)),
    ];
    longest(&candidates)
}

/// The longest match; the earlier rule wins a tie (ANTLR's rule).
fn longest(candidates: &[(Kind, Option<usize>)]) -> Option<(Kind, usize)> {
    let mut best: Option<(Kind, usize)> = None;
    for &(kind, end) in candidates {
        if let Some(e) = end {
            if best.is_none_or(|(_, b)| e > b) {
                best = Some((kind, e));
            }
        }
    }
    best
}

fn tokenize(input: &str) -> Result<Vec<Token<'_>>, String> {
    let s = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut value_mode = false;
    while i < s.len() {
        let found = if value_mode {
            value_token(s, i)
        } else {
            key_token(s, i)
        };
        let Some((kind, end)) = found.filter(|&(_, e)| e > i) else {
            let c = input[i..].chars().next().unwrap_or(' ');
            let hint = if value_mode {
                "; outside quotes a value may hold only letters, digits, whitespace and \
                 /-\\+.$%*@?|:_ (as in Hydra): quote it, e.g. key='a~b'"
            } else {
                "; a key holds letters, digits, _ - $ . and / (as in Hydra)"
            };
            return Err(format!("token recognition error at: '{c}'{hint}"));
        };
        if kind == Kind::Equal && !value_mode {
            value_mode = true;
        }
        out.push(Token {
            kind,
            text: &input[i..end],
        });
        i = end;
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------------
// Parser
// ----------------------------------------------------------------------------------------

/// A function's evaluated argument or result.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    El(Element),
    Sw(Sweep),
}

/// The tokens an unquoted `primitive` is made of.
const PRIMITIVE_TOKENS: &[Kind] = &[
    Kind::Id,
    Kind::Null,
    Kind::Int,
    Kind::Float,
    Kind::Bool,
    Kind::Interpolation,
    Kind::UnquotedChar,
    Kind::Colon,
    Kind::Esc,
    Kind::Ws,
];

/// The tokens a `dictKey` is made of: a primitive's, without `:` and interpolations.
const DICT_KEY_TOKENS: &[Kind] = &[
    Kind::Id,
    Kind::Null,
    Kind::Int,
    Kind::Float,
    Kind::Bool,
    Kind::UnquotedChar,
    Kind::Esc,
    Kind::Ws,
];

struct TokenParser<'a> {
    toks: Vec<Token<'a>>,
    pos: usize,
}

impl<'a> TokenParser<'a> {
    fn peek(&self) -> Option<Kind> {
        self.toks.get(self.pos).map(|t| t.kind)
    }

    fn peek_at(&self, n: usize) -> Option<Kind> {
        self.toks.get(self.pos + n).map(|t| t.kind)
    }

    fn next_text(&self) -> String {
        match self.toks.get(self.pos) {
            Some(t) => format!("'{}'", t.text),
            None => "<EOF>".to_string(),
        }
    }

    fn expect(&mut self, kind: Kind, what: &str) -> Result<(), String> {
        if self.peek() == Some(kind) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "mismatched input {} expecting {what}",
                self.next_text()
            ))
        }
    }

    fn value(&mut self) -> Result<OverrideValue, String> {
        let first = self.element()?;
        if self.peek() != Some(Kind::Comma) {
            return Ok(match first {
                Arg::El(e) => OverrideValue::Element(e),
                Arg::Sw(s) => OverrideValue::Sweep(s),
            });
        }
        let mut items = vec![element_of(first)?];
        while self.peek() == Some(Kind::Comma) {
            self.pos += 1;
            items.push(element_of(self.element()?)?);
        }
        Ok(OverrideValue::Sweep(Sweep::Choice {
            items,
            simple: true,
            shuffle: false,
        }))
    }

    fn element(&mut self) -> Result<Arg, String> {
        match self.peek() {
            Some(Kind::BracketOpen) => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.peek() != Some(Kind::BracketClose) {
                    items.push(element_of(self.element()?)?);
                    while self.peek() == Some(Kind::Comma) {
                        self.pos += 1;
                        items.push(element_of(self.element()?)?);
                    }
                }
                self.expect(Kind::BracketClose, "']'")?;
                Ok(Arg::El(Element::List(items)))
            }
            Some(Kind::BraceOpen) => {
                self.pos += 1;
                let mut pairs = Vec::new();
                if self.peek() != Some(Kind::BraceClose) {
                    loop {
                        let key = self.dict_key()?;
                        self.expect(Kind::Colon, "':'")?;
                        let value = element_of(self.element()?)?;
                        dict_insert(&mut pairs, key, value);
                        if self.peek() == Some(Kind::Comma) {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(Kind::BraceClose, "'}'")?;
                Ok(Arg::El(Element::Dict(pairs)))
            }
            Some(Kind::Id) if self.peek_at(1) == Some(Kind::POpen) => self.function(),
            Some(Kind::Quoted) => {
                let text = self.toks[self.pos].text;
                self.pos += 1;
                Ok(Arg::El(unquote(text)))
            }
            _ => self.primitive_of(PRIMITIVE_TOKENS).map(Arg::El),
        }
    }

    fn dict_key(&mut self) -> Result<Element, String> {
        self.primitive_of(DICT_KEY_TOKENS)
    }

    /// The longest run of `kinds` as one primitive (`primitive` and `dictKey` differ only in
    /// the tokens they take).
    fn primitive_of(&mut self, kinds: &[Kind]) -> Result<Element, String> {
        let start = self.pos;
        while self.peek().is_some_and(|k| kinds.contains(&k)) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(format!(
                "no viable alternative at input {}",
                self.next_text()
            ));
        }
        primitive(&self.toks[start..self.pos])
    }

    fn function(&mut self) -> Result<Arg, String> {
        let name = self.toks[self.pos].text.to_string();
        let start = self.pos;
        self.pos += 2;
        let mut args = Vec::new();
        let mut kwargs: Vec<(String, Arg)> = Vec::new();
        if self.peek() != Some(Kind::PClose) {
            loop {
                if self.peek() == Some(Kind::Id) && self.peek_at(1) == Some(Kind::Equal) {
                    let arg_name = self.toks[self.pos].text.to_string();
                    self.pos += 2;
                    let v = self.element()?;
                    match kwargs.iter_mut().find(|(k, _)| *k == arg_name) {
                        Some(slot) => slot.1 = v,
                        None => kwargs.push((arg_name, v)),
                    }
                } else {
                    let v = self.element()?;
                    if !kwargs.is_empty() {
                        return Err("positional argument follows keyword argument".to_string());
                    }
                    args.push(v);
                }
                if self.peek() == Some(Kind::Comma) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        self.expect(Kind::PClose, "')'")?;
        let text: String = self.toks[start..self.pos].iter().map(|t| t.text).collect();
        let unquote_top = |a: Arg| match a {
            Arg::El(Element::Quoted(t, _)) => Arg::El(Element::Str(t)),
            other => other,
        };
        let args = args.into_iter().map(unquote_top).collect();
        let kwargs = kwargs
            .into_iter()
            .map(|(k, v)| (k, unquote_top(v)))
            .collect();
        eval_function(&name, args, kwargs)
            .map_err(|e| format!("{e} while evaluating '{}'", text.replace([' ', '\t'], "")))
    }
}

fn element_of(a: Arg) -> Result<Element, String> {
    match a {
        Arg::El(e) => Ok(e),
        Arg::Sw(_) => Err("a sweep cannot be used inside a list, a dict or another sweep".into()),
    }
}

/// Python's `==` between dict keys (`1 == 1.0 == True`).
fn py_key_eq(a: &Element, b: &Element) -> bool {
    match (py_number(a), py_number(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a == b,
        _ => false,
    }
}

fn py_number(e: &Element) -> Option<f64> {
    match e {
        Element::Bool(b) => Some(f64::from(u8::from(*b))),
        Element::Int(i) => Some(*i as f64),
        Element::Float(f) => Some(*f),
        _ => None,
    }
}

/// A Python dict assignment: an equal key keeps its first spelling and takes the new value.
fn dict_insert(pairs: &mut Vec<(Element, Element)>, key: Element, value: Element) {
    match pairs.iter_mut().find(|(k, _)| py_key_eq(k, &key)) {
        Some(slot) => slot.1 = value,
        None => pairs.push((key, value)),
    }
}

/// `_createPrimitive`: one token is typed, several are joined as a string (escapes removed,
/// the outer whitespace dropped).
fn primitive(toks: &[Token<'_>]) -> Result<Element, String> {
    let mut first = 0;
    let mut last = toks.len();
    if toks[0].kind == Kind::Ws {
        if toks.len() == 1 {
            return Err("Trying to parse a primitive that is all whitespaces".to_string());
        }
        first = 1;
    }
    if toks[toks.len() - 1].kind == Kind::Ws {
        last -= 1;
    }
    if last - first > 1 {
        let text: String = toks[first..last]
            .iter()
            .map(|t| {
                if t.kind == Kind::Esc {
                    unescape(t.text)
                } else {
                    t.text.to_string()
                }
            })
            .collect();
        return Ok(Element::Str(text));
    }
    let t = toks[first];
    Ok(match t.kind {
        Kind::Int => Element::Int(parse_int_literal(t.text)?),
        Kind::Float => Element::Float(parse_float_literal(t.text)),
        Kind::Null => Element::Null,
        Kind::Bool => Element::Bool(t.text.eq_ignore_ascii_case("true")),
        Kind::Esc => Element::Str(unescape(t.text)),
        _ => Element::Str(t.text.to_string()),
    })
}

fn unescape(esc: &str) -> String {
    esc.chars().skip(1).step_by(2).collect()
}

fn parse_int_literal(text: &str) -> Result<i64, String> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    clean
        .parse::<i64>()
        .map_err(|_| format!("integer {text} is out of the 64-bit range"))
}

fn parse_float_literal(text: &str) -> f64 {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let body = clean.trim_start_matches(['+', '-']);
    let neg = clean.starts_with('-');
    let v = match body.to_ascii_lowercase().as_str() {
        "inf" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => body.parse::<f64>().unwrap_or(f64::NAN),
    };
    if neg {
        -v
    } else {
        v
    }
}

/// `_unescape_quoted_string`: only backslashes before a quote of the same kind are escapes
/// (`\'` is a quote; `\\'` a backslash then the quote); every other backslash stays.
fn unquote(text: &str) -> Element {
    let quote = if text.starts_with('"') {
        Quote::Double
    } else {
        Quote::Single
    };
    let qc = if quote == Quote::Double { '"' } else { '\'' };
    let chars: Vec<char> = text.chars().collect();
    let body = &chars[1..]; // keeps the closing quote
    let mut out = String::new();
    let mut i = 0;
    while i < body.len() {
        if body[i] == '\\' {
            let mut j = i;
            while j < body.len() && body[j] == '\\' {
                j += 1;
            }
            if j < body.len() && body[j] == qc {
                // n backslashes then a quote: keep every second one, then the quote unless it
                // is the closing one.
                let n = j - i;
                out.extend(std::iter::repeat_n('\\', n / 2));
                if j + 1 < body.len() {
                    out.push(qc);
                }
                i = j + 1;
            } else {
                out.extend(&body[i..j]);
                i = j;
            }
        } else if i + 1 == body.len() {
            i += 1; // the closing quote
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    Element::Quoted(out, quote)
}

/// Parse a whole override line with Hydra's grammar.
pub fn parse(input: &str) -> Result<ParsedOverride, String> {
    let toks = tokenize(input)?;
    let mut p = TokenParser { toks, pos: 0 };
    let prefix = match p.peek() {
        Some(Kind::Tilde) => {
            p.pos += 1;
            "~"
        }
        Some(Kind::Plus) => {
            p.pos += 1;
            if p.peek() == Some(Kind::Plus) {
                p.pos += 1;
                "++"
            } else {
                "+"
            }
        }
        _ => "",
    };
    let (key, package) = parse_key(&mut p)?;
    let value = match p.peek() {
        None if prefix == "~" => None,
        Some(Kind::Equal) => {
            p.pos += 1;
            if p.peek().is_none() {
                Some(OverrideValue::Element(Element::Str(String::new())))
            } else {
                let v = p.value()?;
                if p.peek().is_some() {
                    return Err(format!(
                        "extraneous input {} expecting <EOF>",
                        p.next_text()
                    ));
                }
                Some(v)
            }
        }
        _ => return Err(format!("mismatched input {} expecting '='", p.next_text())),
    };
    Ok(ParsedOverride {
        prefix,
        key,
        package,
        value,
    })
}

/// `key: packageOrGroup ('@' package)?`, `packageOrGroup: package | ID ('/' ID)+`,
/// `package: ( | ID | KEY_SPECIAL | DOT_PATH)`.
fn parse_key(p: &mut TokenParser<'_>) -> Result<(String, Option<String>), String> {
    let package_tok = |p: &mut TokenParser<'_>| -> String {
        match p.peek() {
            Some(Kind::Id | Kind::KeySpecial | Kind::DotPath) => {
                p.pos += 1;
                p.toks[p.pos - 1].text.to_string()
            }
            _ => String::new(),
        }
    };
    let mut key = String::new();
    if p.peek() == Some(Kind::Id) && p.peek_at(1) == Some(Kind::Slash) {
        key.push_str(p.toks[p.pos].text);
        p.pos += 1;
        while p.peek() == Some(Kind::Slash) {
            p.pos += 1;
            if p.peek() != Some(Kind::Id) {
                return Err(format!("mismatched input {} expecting ID", p.next_text()));
            }
            key.push('/');
            key.push_str(p.toks[p.pos].text);
            p.pos += 1;
        }
    } else {
        key = package_tok(p);
    }
    let package = if p.peek() == Some(Kind::At) {
        p.pos += 1;
        Some(package_tok(p))
    } else {
        None
    };
    Ok((key, package))
}

// ----------------------------------------------------------------------------------------
// Functions
// ----------------------------------------------------------------------------------------

/// Python's `inspect.Signature.bind`: positional parameters by name, then keywords.
fn bind(
    params: &[&str],
    var_positional: bool,
    args: Vec<Arg>,
    kwargs: Vec<(String, Arg)>,
) -> Result<(Vec<Arg>, Vec<Option<Arg>>), String> {
    let mut named: Vec<Option<Arg>> = vec![None; params.len()];
    let mut rest = Vec::new();
    for (i, a) in args.into_iter().enumerate() {
        if var_positional {
            rest.push(a);
        } else if i < params.len() {
            named[i] = Some(a);
        } else {
            return Err(format!(
                "TypeError: too many positional arguments (takes {})",
                params.len()
            ));
        }
    }
    for (k, v) in kwargs {
        let Some(i) = params.iter().position(|p| *p == k) else {
            return Err(format!(
                "TypeError: got an unexpected keyword argument '{k}'"
            ));
        };
        if named[i].is_some() {
            return Err(format!("TypeError: multiple values for argument '{k}'"));
        }
        named[i] = Some(v);
    }
    Ok((rest, named))
}

fn type_error(name: &str, a: &Arg) -> String {
    format!(
        "TypeError: mismatch type argument {name}: {} is incompatible",
        arg_type(a)
    )
}

fn arg_type(a: &Arg) -> &'static str {
    match a {
        Arg::El(Element::Null) => "NoneType",
        Arg::El(Element::Bool(_)) => "bool",
        Arg::El(Element::Int(_)) => "int",
        Arg::El(Element::Float(_)) => "float",
        Arg::El(Element::Str(_)) => "str",
        Arg::El(Element::Quoted(..)) => "QuotedString",
        Arg::El(Element::List(_)) => "list",
        Arg::El(Element::Dict(_)) => "dict",
        Arg::Sw(Sweep::Choice { .. }) => "ChoiceSweep",
        Arg::Sw(Sweep::Range { .. }) => "RangeSweep",
        Arg::Sw(Sweep::Interval { .. }) => "IntervalSweep",
        Arg::Sw(Sweep::Glob { .. }) => "Glob",
    }
}

fn is_number(a: &Arg) -> bool {
    matches!(
        a,
        Arg::El(Element::Int(_) | Element::Float(_) | Element::Bool(_))
    )
}

fn num_of(a: &Arg) -> Num {
    match a {
        Arg::El(Element::Int(i)) => Num::Int(*i),
        Arg::El(Element::Bool(b)) => Num::Int(i64::from(*b)),
        Arg::El(Element::Float(f)) => Num::Float(*f),
        _ => Num::Int(0),
    }
}

/// `ElementType`: str, int, float, bool, list or dict (not None).
fn is_element_type(a: &Arg) -> bool {
    matches!(
        a,
        Arg::El(
            Element::Str(_)
                | Element::Int(_)
                | Element::Float(_)
                | Element::Bool(_)
                | Element::List(_)
                | Element::Dict(_)
        )
    )
}

fn eval_function(name: &str, args: Vec<Arg>, kwargs: Vec<(String, Arg)>) -> Result<Arg, String> {
    match name {
        "int" | "float" | "str" | "bool" => {
            let (args, named) = bind(&["value"], true, args, kwargs)?;
            let value = match (args.len(), named.into_iter().next().flatten()) {
                (n, Some(_)) if n > 0 => {
                    return Err("TypeError: cannot use both position and named arguments".into())
                }
                (_, Some(v)) => v,
                (0, None) => return Err("TypeError: No positional args or value specified".into()),
                (1, None) => args.into_iter().next().unwrap_or(Arg::El(Element::Null)),
                _ => Arg::Sw(simple_choice(args)?),
            };
            cast(name, value)
        }
        "choice" => {
            if !kwargs.is_empty() {
                return Err("TypeError: choice() takes no keyword arguments".into());
            }
            for (i, a) in args.iter().enumerate() {
                if !(is_element_type(a) || matches!(a, Arg::Sw(Sweep::Choice { .. }))) {
                    return Err(type_error(&format!("args[{i}]"), a));
                }
            }
            if args.is_empty() {
                return Err("ValueError: empty choice is not legal".into());
            }
            if args.len() == 1 {
                if let Arg::Sw(Sweep::Choice {
                    items,
                    simple,
                    shuffle,
                }) = &args[0]
                {
                    if *simple {
                        return Ok(Arg::Sw(Sweep::Choice {
                            items: items.clone(),
                            simple: false,
                            shuffle: *shuffle,
                        }));
                    }
                    return Err("ValueError: nesting choices is not supported".into());
                }
            }
            let items = args
                .into_iter()
                .map(element_of)
                .collect::<Result<_, _>>()?;
            Ok(Arg::Sw(Sweep::Choice {
                items,
                simple: false,
                shuffle: false,
            }))
        }
        "range" => {
            let (_, named) = bind(&["start", "stop", "step"], false, args, kwargs)?;
            let mut it = named.into_iter();
            let start = it
                .next()
                .flatten()
                .ok_or("TypeError: missing a required argument: 'start'")?;
            let stop = it.next().flatten();
            let step = it.next().flatten().unwrap_or(Arg::El(Element::Int(1)));
            if !is_number(&start) {
                return Err(type_error("start", &start));
            }
            if let Some(s) = &stop {
                if !is_number(s) {
                    return Err(type_error("stop", s));
                }
            }
            if !is_number(&step) {
                return Err(type_error("step", &step));
            }
            let (start, stop) = match stop {
                Some(stop) => (num_of(&start), num_of(&stop)),
                None => (Num::Int(0), num_of(&start)),
            };
            Ok(Arg::Sw(Sweep::Range {
                start,
                stop,
                step: num_of(&step),
                shuffle: false,
            }))
        }
        "interval" => {
            let (_, named) = bind(&["start", "end"], false, args, kwargs)?;
            let mut it = named.into_iter();
            let start = it.next().flatten().ok_or("TypeError: missing 'start'")?;
            let end = it.next().flatten().ok_or("TypeError: missing 'end'")?;
            for (n, a) in [("start", &start), ("end", &end)] {
                if !is_number(a) {
                    return Err(type_error(n, a));
                }
            }
            Ok(Arg::Sw(Sweep::Interval {
                start: num_f64(num_of(&start)),
                end: num_f64(num_of(&end)),
            }))
        }
        "tag" => {
            let (mut args, named) = bind(&["sweep"], true, args, kwargs)?;
            for (i, a) in args.iter().enumerate() {
                if !matches!(a, Arg::El(Element::Str(_)) | Arg::Sw(_)) {
                    return Err(type_error(&format!("args[{i}]"), a));
                }
            }
            let sweep = named.into_iter().next().flatten();
            if let Some(s) = &sweep {
                if !matches!(s, Arg::Sw(_)) {
                    return Err(type_error("sweep", s));
                }
            }
            if args.is_empty() {
                return Err(
                    "ValueError: Not enough arguments to tag, must take at least a sweep".into(),
                );
            }
            if let Some(s) = sweep {
                args.push(s);
            }
            match args.pop() {
                Some(Arg::Sw(s)) => {
                    if let Some(bad) = args.iter().find(|a| !matches!(a, Arg::El(Element::Str(_))))
                    {
                        return Err(format!(
                            "ValueError: tag arguments type must be string, got {}",
                            arg_type(bad)
                        ));
                    }
                    Ok(Arg::Sw(s))
                }
                _ => Err(
                    "ValueError: Last argument to tag() must be a choice(), range() or interval()"
                        .into(),
                ),
            }
        }
        "sort" => {
            let (args, named) = bind(&["sweep", "list", "reverse"], true, args, kwargs)?;
            check_sort_shuffle_args(&args)?;
            let mut it = named.into_iter();
            let sweep = it.next().flatten();
            let list = it.next().flatten();
            let reverse = match it.next().flatten() {
                None => false,
                Some(Arg::El(Element::Bool(b))) => b,
                Some(other) => return Err(type_error("reverse", &other)),
            };
            check_sweep_kw(&sweep)?;
            if let Some(l) = &list {
                if !matches!(l, Arg::El(Element::List(_))) {
                    return Err(type_error("list", l));
                }
            }
            if let Some(l) = list {
                return sort_one(l, reverse);
            }
            if let Some(s) = sweep {
                return sort_one(s, reverse);
            }
            if args.len() == 1 {
                return sort_one(args.into_iter().next().unwrap_or(Arg::El(Element::Null)), reverse);
            }
            if args
                .iter()
                .any(|a| !matches!(a, Arg::El(Element::Int(_) | Element::Float(_) | Element::Bool(_) | Element::Str(_))))
            {
                return Err("TypeError: Invalid arguments".into());
            }
            if args.is_empty() {
                return Err("ValueError: empty sort input".into());
            }
            sort_one(Arg::Sw(simple_choice(args)?), reverse)
        }
        "shuffle" => {
            let (args, named) = bind(&["sweep", "list"], true, args, kwargs)?;
            check_sort_shuffle_args(&args)?;
            let mut it = named.into_iter();
            let sweep = it.next().flatten();
            let list = it.next().flatten();
            check_sweep_kw(&sweep)?;
            if let Some(l) = &list {
                if !matches!(l, Arg::El(Element::List(_))) {
                    return Err(type_error("list", l));
                }
            }
            if let Some(l) = list.or(sweep) {
                return shuffle_one(l);
            }
            if args.len() == 1 {
                return shuffle_one(args.into_iter().next().unwrap_or(Arg::El(Element::Null)));
            }
            match simple_choice(args)? {
                Sweep::Choice { items, simple, .. } => Ok(Arg::Sw(Sweep::Choice {
                    items,
                    simple,
                    shuffle: true,
                })),
                other => Ok(Arg::Sw(other)),
            }
        }
        "glob" => {
            let (_, named) = bind(&["include", "exclude"], false, args, kwargs)?;
            let mut it = named.into_iter();
            let include = it
                .next()
                .flatten()
                .ok_or("TypeError: missing a required argument: 'include'")?;
            let exclude = it.next().flatten();
            let strings = |name: &str, a: Arg| -> Result<Vec<String>, String> {
                match a {
                    Arg::El(Element::Str(s)) => Ok(vec![s]),
                    Arg::El(Element::List(items)) => Ok(items
                        .into_iter()
                        .map(|e| match e {
                            Element::Str(s) | Element::Quoted(s, _) => s,
                            other => render(&other),
                        })
                        .collect()),
                    other => Err(type_error(name, &other)),
                }
            };
            let include = strings("include", include)?;
            let exclude = match exclude {
                None | Some(Arg::El(Element::Null)) => Vec::new(),
                Some(e) => strings("exclude", e)?,
            };
            Ok(Arg::Sw(Sweep::Glob { include, exclude }))
        }
        other => Err(format!(
            "Unknown function '{other}'\nAvailable: bool,choice,float,glob,int,interval,range,shuffle,sort,str,tag"
        )),
    }
}

fn check_sort_shuffle_args(args: &[Arg]) -> Result<(), String> {
    for (i, a) in args.iter().enumerate() {
        if !(is_element_type(a) || matches!(a, Arg::Sw(Sweep::Choice { .. } | Sweep::Range { .. })))
        {
            return Err(type_error(&format!("args[{i}]"), a));
        }
    }
    Ok(())
}

fn check_sweep_kw(sweep: &Option<Arg>) -> Result<(), String> {
    match sweep {
        None | Some(Arg::Sw(Sweep::Choice { .. } | Sweep::Range { .. })) => Ok(()),
        Some(other) => Err(type_error("sweep", other)),
    }
}

/// `_list_to_simple_choice`: the arguments as a simple choice sweep.
fn simple_choice(args: Vec<Arg>) -> Result<Sweep, String> {
    let items = args
        .into_iter()
        .map(|a| match a {
            Arg::El(e) => Ok(e),
            Arg::Sw(_) => Err("AssertionError: a sweep cannot be an item of a choice".to_string()),
        })
        .collect::<Result<_, _>>()?;
    Ok(Sweep::Choice {
        items,
        simple: true,
        shuffle: false,
    })
}

fn num_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

fn cast(func: &str, value: Arg) -> Result<Arg, String> {
    match value {
        Arg::El(e) => cast_element(func, e).map(Arg::El),
        Arg::Sw(Sweep::Choice {
            items,
            simple,
            shuffle,
        }) => Ok(Arg::Sw(Sweep::Choice {
            items: items
                .into_iter()
                .map(|e| cast_element(func, e))
                .collect::<Result<_, _>>()?,
            simple,
            shuffle,
        })),
        Arg::Sw(Sweep::Range {
            start,
            stop,
            step,
            shuffle,
        }) => {
            let f = |n: Num| -> Result<Num, String> {
                match func {
                    "int" => match cast_element("int", num_element(n))? {
                        Element::Int(i) => Ok(Num::Int(i)),
                        _ => Ok(n),
                    },
                    "float" => Ok(Num::Float(num_f64(n))),
                    _ => Err("ValueError: Range can only be cast to int or float".to_string()),
                }
            };
            Ok(Arg::Sw(Sweep::Range {
                start: f(start)?,
                stop: f(stop)?,
                step: f(step)?,
                shuffle,
            }))
        }
        Arg::Sw(Sweep::Interval { start, end }) => match func {
            "int" => Ok(Arg::Sw(Sweep::Interval {
                start: start.trunc(),
                end: end.trunc(),
            })),
            "float" => Ok(Arg::Sw(Sweep::Interval { start, end })),
            _ => Err(format!("ValueError: Intervals cannot be cast to {func}")),
        },
        Arg::Sw(Sweep::Glob { .. }) => Err("AssertionError: a glob cannot be cast".to_string()),
    }
}

fn num_element(n: Num) -> Element {
    match n {
        Num::Int(i) => Element::Int(i),
        Num::Float(f) => Element::Float(f),
    }
}

/// Python's `int()`, `float()`, `str()` and Hydra's `bool()` cast of one element.
fn cast_element(func: &str, e: Element) -> Result<Element, String> {
    match e {
        Element::Quoted(t, _) => cast_element(func, Element::Str(t)),
        Element::Dict(pairs) => Ok(Element::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| cast_element(func, v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        )),
        Element::List(items) => Ok(Element::List(
            items
                .into_iter()
                .map(|v| cast_element(func, v))
                .collect::<Result<_, _>>()?,
        )),
        Element::Null if func == "bool" => Ok(Element::Bool(false)),
        Element::Null => Err("AssertionError: null cannot be cast".to_string()),
        scalar => match func {
            "int" => match scalar {
                Element::Bool(b) => Ok(Element::Int(i64::from(b))),
                Element::Int(i) => Ok(Element::Int(i)),
                Element::Float(f) if f.is_nan() => {
                    Err("ValueError: cannot convert float NaN to integer".to_string())
                }
                Element::Float(f) if f.is_infinite() => {
                    Err("OverflowError: cannot convert float infinity to integer".to_string())
                }
                Element::Float(f) => Ok(Element::Int(f.trunc() as i64)),
                Element::Str(s) => python_int(&s).map(Element::Int).ok_or_else(|| {
                    format!("ValueError: invalid literal for int() with base 10: '{s}'")
                }),
                _ => Err("AssertionError".to_string()),
            },
            "float" => match scalar {
                Element::Bool(b) => Ok(Element::Float(f64::from(u8::from(b)))),
                Element::Int(i) => Ok(Element::Float(i as f64)),
                Element::Float(f) => Ok(Element::Float(f)),
                Element::Str(s) => python_float(&s)
                    .map(Element::Float)
                    .ok_or_else(|| format!("ValueError: could not convert string to float: '{s}'")),
                _ => Err("AssertionError".to_string()),
            },
            "str" => Ok(Element::Str(match scalar {
                Element::Bool(b) => b.to_string(),
                Element::Int(i) => i.to_string(),
                Element::Float(f) => python_float_repr(f),
                Element::Str(s) => s,
                _ => return Err("AssertionError".to_string()),
            })),
            _ => match scalar {
                Element::Str(s) if s.eq_ignore_ascii_case("true") => Ok(Element::Bool(true)),
                Element::Str(s) if s.eq_ignore_ascii_case("false") => Ok(Element::Bool(false)),
                Element::Str(s) => Err(format!("ValueError: Cannot cast '{s}' to bool")),
                Element::Bool(b) => Ok(Element::Bool(b)),
                Element::Int(i) => Ok(Element::Bool(i != 0)),
                Element::Float(f) => Ok(Element::Bool(f != 0.0)),
                _ => Err("AssertionError".to_string()),
            },
        },
    }
}

/// Digits with single underscores between them (PEP 515).
fn underscored_digits(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__")
        && s.chars().all(|c| c.is_ascii_digit() || c == '_')
}

/// Python's `int(str)` in base 10 (surrounding whitespace, a sign, underscores).
fn python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if !underscored_digits(body) {
        return None;
    }
    let clean: String = t.chars().filter(|c| *c != '_').collect();
    clean.parse().ok()
}

/// Python's `float(str)`.
fn python_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = body.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => {
            let (mant, exp) = match lower.find('e') {
                Some(i) => (&lower[..i], Some(&lower[i + 1..])),
                None => (lower.as_str(), None),
            };
            let (int, frac) = match mant.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (mant, None),
            };
            let ok_part = |p: &str| p.is_empty() || underscored_digits(p);
            let has_digits = !int.is_empty() || frac.is_some_and(|f| !f.is_empty());
            let exp_ok = exp.is_none_or(|e| {
                let e = e.strip_prefix(['+', '-']).unwrap_or(e);
                underscored_digits(e)
            });
            if !(has_digits && ok_part(int) && frac.is_none_or(ok_part) && exp_ok) {
                return None;
            }
            lower.replace('_', "").parse::<f64>().ok()?
        }
    };
    Some(if neg { -v } else { v })
}

/// Python's `<` for the values `sorted()` compares (numbers with numbers, strings with
/// strings, lists element-wise); anything else is a TypeError.
fn py_lt(a: &Element, b: &Element) -> Result<bool, String> {
    match (py_number(a), py_number(b)) {
        (Some(x), Some(y)) => return Ok(x < y),
        (Some(_), None) | (None, Some(_)) => {}
        (None, None) => match (a, b) {
            (Element::Str(x), Element::Str(y)) => return Ok(x < y),
            (Element::List(x), Element::List(y)) => {
                for (u, v) in x.iter().zip(y) {
                    if !py_eq(u, v) {
                        return py_lt(u, v);
                    }
                }
                return Ok(x.len() < y.len());
            }
            _ => {}
        },
    }
    Err("TypeError: '<' not supported between these values".to_string())
}

fn py_eq(a: &Element, b: &Element) -> bool {
    match (a, b) {
        (Element::List(x), Element::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(u, v)| py_eq(u, v))
        }
        _ => py_key_eq(a, b),
    }
}

/// A stable sort with a comparison that may fail (Python's `sorted`).
fn py_sorted(items: Vec<Element>, reverse: bool) -> Result<Vec<Element>, String> {
    let mut out: Vec<Element> = Vec::with_capacity(items.len());
    for item in items {
        let mut i = out.len();
        while i > 0 {
            let before = if reverse {
                py_lt(&out[i - 1], &item)?
            } else {
                py_lt(&item, &out[i - 1])?
            };
            if !before {
                break;
            }
            i -= 1;
        }
        out.insert(i, item);
    }
    Ok(out)
}

fn sort_one(a: Arg, reverse: bool) -> Result<Arg, String> {
    match a {
        Arg::El(Element::List(items)) => Ok(Arg::El(Element::List(py_sorted(items, reverse)?))),
        Arg::El(e) => Ok(Arg::El(e)),
        Arg::Sw(Sweep::Choice {
            items,
            simple,
            shuffle,
        }) => Ok(Arg::Sw(Sweep::Choice {
            items: py_sorted(items, reverse)?,
            simple,
            shuffle,
        })),
        Arg::Sw(Sweep::Range {
            start,
            stop,
            step,
            shuffle,
        }) => {
            let (s, e) = (num_f64(start), num_f64(stop));
            let abs = num_abs(step);
            let flip = (!reverse && s > e) || (reverse && s < e);
            if !flip {
                return Ok(Arg::Sw(Sweep::Range {
                    start,
                    stop,
                    step,
                    shuffle,
                }));
            }
            let (new_start, new_stop) = if reverse {
                (num_sub(stop, abs), num_sub(start, abs))
            } else {
                (num_add(stop, abs), num_add(start, abs))
            };
            Ok(Arg::Sw(Sweep::Range {
                start: new_start,
                stop: new_stop,
                step: num_neg(step),
                shuffle,
            }))
        }
        other => Err(format!(
            "TypeError: Invalid arguments: {}",
            arg_type(&other)
        )),
    }
}

// Integer arithmetic falls back to floats where i64 would overflow (Python's ints do not).
fn num_abs(n: Num) -> Num {
    match n {
        Num::Int(i) => i
            .checked_abs()
            .map_or(Num::Float((i as f64).abs()), Num::Int),
        Num::Float(f) => Num::Float(f.abs()),
    }
}

fn num_neg(n: Num) -> Num {
    match n {
        Num::Int(i) => i.checked_neg().map_or(Num::Float(-(i as f64)), Num::Int),
        Num::Float(f) => Num::Float(-f),
    }
}

fn num_add(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x
            .checked_add(y)
            .map_or(Num::Float(x as f64 + y as f64), Num::Int),
        _ => Num::Float(num_f64(a) + num_f64(b)),
    }
}

fn num_sub(a: Num, b: Num) -> Num {
    num_add(a, num_neg(b))
}

fn shuffle_one(a: Arg) -> Result<Arg, String> {
    match a {
        Arg::Sw(Sweep::Choice { items, simple, .. }) => Ok(Arg::Sw(Sweep::Choice {
            items,
            simple,
            shuffle: true,
        })),
        Arg::Sw(Sweep::Range {
            start, stop, step, ..
        }) => Ok(Arg::Sw(Sweep::Range {
            start,
            stop,
            step,
            shuffle: true,
        })),
        Arg::El(Element::List(mut items)) => {
            shuffle_in_place(&mut items);
            Ok(Arg::El(Element::List(items)))
        }
        Arg::El(e) => Ok(Arg::El(Element::List(vec![e]))),
        other => Err(format!("TypeError: cannot shuffle {}", arg_type(&other))),
    }
}

/// Fisher–Yates with a clock-seeded generator (`shuffle()` is random in Hydra too).
fn shuffle_in_place<T>(items: &mut [T]) {
    use rand::{Rng, SeedableRng};
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

// ----------------------------------------------------------------------------------------
// Expansion and rendering
// ----------------------------------------------------------------------------------------

/// The most jobs one sweep may expand to (a guard against `range(0, 1e12)`).
pub const MAX_SWEEP_VALUES: usize = 100_000;

impl Sweep {
    /// The values of a discrete sweep in job order, as Hydra's basic sweeper takes them;
    /// `options` lists the group's options for `glob()`.
    pub fn values(&self, options: &dyn Fn() -> Vec<String>) -> Result<Vec<Element>, String> {
        match self {
            Sweep::Choice { items, shuffle, .. } => {
                let mut v = items.clone();
                if *shuffle {
                    shuffle_in_place(&mut v);
                }
                Ok(v)
            }
            Sweep::Range {
                start,
                stop,
                step,
                shuffle,
            } => {
                let mut v = range_values(*start, *stop, *step)?;
                if *shuffle {
                    shuffle_in_place(&mut v);
                }
                Ok(v)
            }
            Sweep::Interval { .. } => {
                Err("BasicSweeper does not support sweep type : INTERVAL_SWEEP".to_string())
            }
            Sweep::Glob { include, exclude } => Ok(options()
                .into_iter()
                .filter(|name| {
                    include.iter().any(|g| fnmatch(name, g))
                        && !exclude.iter().any(|g| fnmatch(name, g))
                })
                .map(Element::Str)
                .collect()),
        }
    }
}

/// `RangeSweep.range()`: Python's `range` for ints, else Hydra's `FloatRange`, which steps
/// in `decimal.Decimal` (28 significant digits) from the exact values of the floats.
fn range_values(start: Num, stop: Num, step: Num) -> Result<Vec<Element>, String> {
    let mut out = Vec::new();
    if let (Num::Int(a), Num::Int(b), Num::Int(s)) = (start, stop, step) {
        if s == 0 {
            return Err("ValueError: range() arg 3 must not be zero".to_string());
        }
        let mut x = a;
        while (s > 0 && x < b) || (s < 0 && x > b) {
            out.push(Element::Int(x));
            if out.len() > MAX_SWEEP_VALUES {
                return Err(format!("range() has more than {MAX_SWEEP_VALUES} values"));
            }
            x = match x.checked_add(s) {
                Some(v) => v,
                None => break,
            };
        }
        return Ok(out);
    }
    let mut x = Decimal::from_num(start)?;
    let end = Decimal::from_num(stop)?;
    let st = Decimal::from_num(step)?;
    let sign = st.coef.sign();
    if sign == num_bigint::Sign::NoSign {
        return Err(format!(
            "Invalid range values (start:{}, stop:{}, step:{})",
            num_f64(start),
            num_f64(stop),
            num_f64(step)
        ));
    }
    loop {
        let go_on = match sign {
            num_bigint::Sign::Plus => x.cmp(&end) == Ordering::Less,
            _ => x.cmp(&end) == Ordering::Greater,
        };
        if !go_on {
            return Ok(out);
        }
        out.push(Element::Float(x.to_f64()));
        if out.len() > MAX_SWEEP_VALUES {
            return Err(format!("range() has more than {MAX_SWEEP_VALUES} values"));
        }
        x = x.add_rounded(&st, 28);
    }
}

/// A decimal number `coef × 10^exp`, enough of Python's `decimal` for `FloatRange`.
#[derive(Debug, Clone)]
struct Decimal {
    coef: BigInt,
    exp: i64,
}

impl Decimal {
    /// The exact value of an int or a float (`decimal.Decimal(x)`).
    fn from_num(n: Num) -> Result<Self, String> {
        match n {
            Num::Int(i) => Ok(Self {
                coef: BigInt::from(i),
                exp: 0,
            }),
            Num::Float(f) => {
                if !f.is_finite() {
                    return Err(format!("range() cannot step over {f}"));
                }
                let bits = f.to_bits();
                let neg = bits >> 63 == 1;
                let biased = ((bits >> 52) & 0x7ff) as i64;
                let frac = bits & ((1u64 << 52) - 1);
                let (mant, e2) = if biased == 0 {
                    (frac, -1074)
                } else {
                    (frac | (1u64 << 52), biased - 1075)
                };
                let mut coef = BigInt::from(mant);
                let exp = if e2 >= 0 {
                    coef <<= e2 as usize;
                    0
                } else {
                    coef *= num_bigint::BigInt::from(5u32).pow((-e2) as u32);
                    e2
                };
                if neg {
                    coef = -coef;
                }
                Ok(Self { coef, exp })
            }
        }
    }

    fn aligned(&self, other: &Self) -> (BigInt, BigInt, i64) {
        let exp = self.exp.min(other.exp);
        let scale = |d: &Self| &d.coef * BigInt::from(10u32).pow((d.exp - exp) as u32);
        (scale(self), scale(other), exp)
    }

    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b, _) = self.aligned(other);
        a.cmp(&b)
    }

    /// `self + other` rounded to `prec` significant digits, half to even.
    fn add_rounded(&self, other: &Self, prec: usize) -> Self {
        let (a, b, exp) = self.aligned(other);
        let sum = a + b;
        let digits = sum.magnitude().to_string().len();
        if sum.sign() == num_bigint::Sign::NoSign || digits <= prec {
            return Self { coef: sum, exp };
        }
        let drop = (digits - prec) as u32;
        let div = BigInt::from(10u32).pow(drop);
        let neg = sum.sign() == num_bigint::Sign::Minus;
        let mag = BigInt::from(sum.magnitude().clone());
        let (mut q, r) = (&mag / &div, &mag % &div);
        let twice = &r * 2;
        if twice > div || (twice == div && (&q % 2u32) == BigInt::from(1u32)) {
            q += 1;
        }
        Self {
            coef: if neg { -q } else { q },
            exp: exp + i64::from(drop),
        }
    }

    /// `float(Decimal)`: the nearest float (through the decimal string, as Python does).
    fn to_f64(&self) -> f64 {
        format!("{}e{}", self.coef, self.exp)
            .parse()
            .unwrap_or(f64::NAN)
    }
}

/// Python's `fnmatch.fnmatchcase`: `*`, `?`, `[seq]`, `[!seq]`.
fn fnmatch(name: &str, pattern: &str) -> bool {
    fn go(n: &[char], p: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&n[i..], &p[1..])),
            Some('?') => !n.is_empty() && go(&n[1..], &p[1..]),
            Some('[') => {
                let Some(close) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                    return n.first() == Some(&'[') && go(&n[1..], &p[1..]);
                };
                let Some(c) = n.first() else { return false };
                let (negate, set) = match p[1] {
                    '!' => (true, &p[2..close]),
                    _ => (false, &p[1..close]),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= *c && *c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == *c;
                        i += 1;
                    }
                }
                hit != negate && go(&n[1..], &p[close + 1..])
            }
            Some(c) => n.first() == Some(c) && go(&n[1..], &p[1..]),
        }
    }
    let n: Vec<char> = name.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&n, &p)
}

impl Element {
    /// The value this element puts into the config (quoted strings become plain strings).
    pub fn to_yaml(&self) -> Value {
        match self {
            Element::Null => Value::Null,
            Element::Bool(b) => Value::Bool(*b),
            Element::Int(i) => Value::Number(Number::from(*i)),
            Element::Float(f) => Value::Number(Number::from(*f)),
            Element::Str(s) | Element::Quoted(s, _) => Value::String(s.clone()),
            Element::List(items) => Value::Sequence(items.iter().map(Element::to_yaml).collect()),
            Element::Dict(pairs) => {
                let mut m = Mapping::new();
                for (k, v) in pairs {
                    m.insert(k.to_yaml(), v.to_yaml());
                }
                Value::Mapping(m)
            }
        }
    }

    /// The element as Hydra writes it into a job's override (`_get_value_element_as_str`).
    pub fn render(&self) -> String {
        render(self)
    }
}

fn render(e: &Element) -> String {
    match e {
        Element::Null => "null".to_string(),
        Element::Bool(true) => "True".to_string(),
        Element::Bool(false) => "False".to_string(),
        Element::Int(i) => i.to_string(),
        Element::Float(f) => python_float_repr(*f),
        Element::Str(s) => escape_special_characters(s),
        Element::Quoted(t, q) => with_quotes(t, *q),
        Element::List(items) => format!(
            "[{}]",
            items.iter().map(render).collect::<Vec<_>>().join(",")
        ),
        Element::Dict(pairs) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", render(k), render(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Hydra's `escape_special_characters`: a backslash before each of `\()[]{}:=,` space, tab.
pub fn escape_special_characters(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() && ESCAPED.contains(&(c as u8)) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `QuotedString.with_quotes`: quotes escaped, and the backslashes before a quote doubled.
fn with_quotes(text: &str, quote: Quote) -> String {
    let qc = if quote == Quote::Single { '\'' } else { '"' };
    let mut out = String::new();
    out.push(qc);
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' {
            let mut j = i;
            while j < chars.len() && chars[j] == '\\' {
                j += 1;
            }
            let n = j - i;
            // Backslashes before a quote, or at the very end (before the closing quote).
            let before_quote = j == chars.len() || chars[j] == qc;
            out.extend(std::iter::repeat_n(
                '\\',
                if before_quote { 2 * n } else { n },
            ));
            i = j;
        } else if chars[i] == qc {
            out.push('\\');
            out.push(qc);
            i += 1;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out.push(qc);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> OverrideValue {
        parse(&format!("x={s}")).unwrap().value.unwrap()
    }

    fn el(s: &str) -> Element {
        match value(s) {
            OverrideValue::Element(e) => e,
            other => panic!("{s}: not an element: {other:?}"),
        }
    }

    #[test]
    fn lexer_takes_the_longest_token_and_the_first_rule_on_ties() {
        assert_eq!(el("1"), Element::Int(1));
        assert_eq!(el("01"), Element::Str("01".into()));
        assert_eq!(el("1e3"), Element::Float(1000.0));
        assert_eq!(el("true"), Element::Bool(true));
        assert_eq!(el("trueish"), Element::Str("trueish".into()));
        assert_eq!(el("inf"), Element::Float(f64::INFINITY));
        assert_eq!(el("1_000"), Element::Int(1000));
        assert_eq!(el("1___0"), Element::Str("1___0".into()));
    }

    #[test]
    fn escapes_follow_hydra() {
        assert_eq!(
            el(r"c:\foo\a-b.txt"),
            Element::Str(r"c:\foo\a-b.txt".into())
        );
        assert_eq!(el(r"a\,b"), Element::Str("a,b".into()));
        assert_eq!(el(r"\ ab\ "), Element::Str(" ab ".into()));
        assert_eq!(
            el(r"'a\\b'"),
            Element::Quoted(r"a\\b".into(), Quote::Single)
        );
        assert_eq!(el(r"'a\'b'"), Element::Quoted("a'b".into(), Quote::Single));
        assert_eq!(el(r"'a\\'"), Element::Quoted(r"a\".into(), Quote::Single));
    }

    #[test]
    fn dict_keys_are_typed_and_unique_like_python() {
        assert_eq!(
            el("{1: a, true: b, x: c}"),
            Element::Dict(vec![
                (Element::Int(1), Element::Str("b".into())),
                (Element::Str("x".into()), Element::Str("c".into())),
            ])
        );
        assert!(parse("x={'a': 1}").is_err());
    }

    #[test]
    fn casts_and_ranges() {
        assert_eq!(el("int('5')"), Element::Int(5));
        assert_eq!(el("str(true)"), Element::Str("true".into()));
        assert_eq!(el("float(1)"), Element::Float(1.0));
        assert!(parse("x=bool(abc)").is_err());
        let OverrideValue::Sweep(s) = value("range(1.0, 1.5, 0.1)") else {
            panic!()
        };
        let v: Vec<String> = s.values(&Vec::new).unwrap().iter().map(render).collect();
        assert_eq!(v, ["1.0", "1.1", "1.2", "1.3", "1.4"]);
        let OverrideValue::Sweep(s) = value("range(start=1, stop=10, step=4)") else {
            panic!()
        };
        assert_eq!(s.values(&Vec::new).unwrap().len(), 3);
    }

    #[test]
    fn rendering_round_trips() {
        for s in ["'a b'", r"a\ b", "[1,'x',null]", "{a:1,2:True}", r"'it\'s'"] {
            let e = el(s);
            assert_eq!(el(&render(&e)), e, "{s}");
        }
    }

    #[test]
    fn unicode_outside_quotes_is_refused_like_hydra() {
        assert!(parse("x=café").is_err());
        assert!(parse("x='café'").is_ok());
    }
}
