//! [`Value`]: the plain data that replicated structures hold and that crosses every boundary.
//!
//! Values are data, not pickles (None, bool, int, float, str, bytes, list, dict). Decoding
//! refuses nesting deeper than [`MAX_DEPTH`] so a hostile payload cannot overflow the stack.

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Deepest nesting of lists and dicts a decoded value may have (the refusals name it).
pub const MAX_DEPTH: usize = 128;

/// A replicated value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    List(Vec<Value>),
    /// Insertion-ordered pairs, as a Python dict keeps them.
    Dict(Vec<(Value, Value)>),
}

/// The wire shape of [`Value`]; `Value`'s own `Deserialize` wraps it with a depth guard.
#[derive(Deserialize)]
#[serde(rename = "Value")]
enum ValueRepr {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Why the last decode on this thread was refused by the depth guard: postcard reports
    /// custom errors without their text, so the codec asks here for it.
    static REFUSED: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Takes the depth guard's last refusal on this thread, if any.
pub(crate) fn take_refusal() -> Option<&'static str> {
    REFUSED.with(|r| r.take())
}

// The refusals below spell the limit out.
const _: () = assert!(MAX_DEPTH == 128);

fn refuse<E: serde::de::Error>(what: &'static str) -> E {
    REFUSED.with(|r| r.set(Some(what)));
    E::custom(what)
}

struct DepthGuard;

impl DepthGuard {
    fn enter() -> Option<DepthGuard> {
        DEPTH.with(|d| {
            if d.get() >= MAX_DEPTH {
                None
            } else {
                d.set(d.get() + 1);
                Some(DepthGuard)
            }
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Deserializes a recursive field (such as a forwarded request inside a request) under the
/// same depth guard as values, so nesting costs a bounded stack whatever the input claims.
pub(crate) fn nested<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let Some(_guard) = DepthGuard::enter() else {
        return Err(refuse("message nested deeper than 128 levels"));
    };
    T::deserialize(deserializer)
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Some(_guard) = DepthGuard::enter() else {
            return Err(refuse("value nested deeper than 128 levels"));
        };
        Ok(match ValueRepr::deserialize(deserializer)? {
            ValueRepr::None => Value::None,
            ValueRepr::Bool(b) => Value::Bool(b),
            ValueRepr::Int(i) => Value::Int(i),
            ValueRepr::Float(f) => Value::Float(f),
            ValueRepr::Str(s) => Value::Str(s),
            ValueRepr::Bytes(b) => Value::Bytes(b),
            ValueRepr::List(l) => Value::List(l),
            ValueRepr::Dict(d) => Value::Dict(d),
        })
    }
}

impl Value {
    /// Parses the command-line form of a value: JSON when it parses as JSON, else a string.
    pub fn parse_cli(text: &str) -> Value {
        match serde_json::from_str::<serde_json_shim::Json>(text) {
            Ok(json) => json.into(),
            Err(_) => Value::Str(text.to_string()),
        }
    }

    /// The Python type name of this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
        }
    }
}

/// Python-style repr, so the CLI prints what a Python user would type.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 => {
                write!(f, "{x:.1}")
            }
            Value::Float(x) if x.is_nan() => f.write_str("nan"),
            Value::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { "inf" } else { "-inf" })
            }
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write_py_str(f, s),
            Value::Bytes(b) => {
                f.write_str("b'")?;
                for &byte in b {
                    match byte {
                        b'\'' => f.write_str("\\'")?,
                        b'\\' => f.write_str("\\\\")?,
                        b'\n' => f.write_str("\\n")?,
                        0x20..=0x7e => write!(f, "{}", byte as char)?,
                        _ => write!(f, "\\x{byte:02x}")?,
                    }
                }
                f.write_str("'")
            }
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Dict(pairs) => {
                f.write_str("{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_py_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    write!(f, "{quote}")?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c == quote => write!(f, "\\{c}")?,
            c if (c as u32) < 0x20 => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    write!(f, "{quote}")
}

/// JSON as an intermediate for the command line; kept private so the wire type stays `Value`.
mod serde_json_shim {
    use super::Value;

    pub type Json = serde_json::Value;

    impl From<Json> for Value {
        fn from(json: Json) -> Value {
            match json {
                Json::Null => Value::None,
                Json::Bool(b) => Value::Bool(b),
                Json::Number(n) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                Json::String(s) => Value::Str(s),
                Json::Array(a) => Value::List(a.into_iter().map(Value::from).collect()),
                Json::Object(o) => Value::Dict(
                    o.into_iter()
                        .map(|(k, v)| (Value::Str(k), Value::from(v)))
                        .collect(),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn round_trip() {
        let v = Value::Dict(vec![
            (
                Value::Str("a".into()),
                Value::List(vec![Value::Int(1), Value::Float(2.5)]),
            ),
            (Value::Int(3), Value::Bytes(vec![0, 255])),
            (Value::None, Value::Bool(true)),
        ]);
        let back: Value = decode(&encode(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut v = Value::None;
        for _ in 0..MAX_DEPTH + 10 {
            v = Value::List(vec![v]);
        }
        let bytes = encode(&v).unwrap();
        let err = decode::<Value>(&bytes).unwrap_err().to_string();
        assert!(err.contains("nested deeper"), "{err}");

        // A hand-made bomb: a million levels of single-element lists.
        let mut bomb = Vec::new();
        for _ in 0..1_000_000 {
            bomb.extend_from_slice(&[6, 1]);
        }
        bomb.push(0);
        assert!(decode::<Value>(&bomb).is_err());
    }

    #[test]
    fn python_repr_and_cli_parsing() {
        let v = Value::parse_cli(r#"{"k": [1, 2.0, null, true, "it's"]}"#);
        assert_eq!(v.to_string(), r#"{'k': [1, 2.0, None, True, "it's"]}"#);
        assert_eq!(Value::parse_cli("hello").to_string(), "'hello'");
        assert_eq!(Value::Bytes(vec![b'a', 0]).to_string(), "b'a\\x00'");
    }
}
