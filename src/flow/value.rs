//! Values of call variables: answers typed on the keypad, choices, patient attributes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The variables of one call, by name (`temperature`, `patient.birth_md`, …).
pub type Vars = BTreeMap<String, Value>;

/// A variable's value. Numbers are exact decimals: `raw / 10^scale` (36.5 is raw 365, scale 1),
/// so what the patient typed is what is stored and read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Number { raw: i64, scale: u8 },
    Text(String),
}

impl Value {
    pub fn text(s: impl Into<String>) -> Self {
        Value::Text(s.into())
    }

    pub fn int(n: i64) -> Self {
        Value::Number { raw: n, scale: 0 }
    }

    /// Parses `36.5`, `97`, `true` as typed values; anything else is text. Digits with a
    /// leading zero (`0412`, a month-day or a phone number) stay text, zeros and all.
    pub fn parse_literal(s: &str) -> Self {
        match s {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ if s.len() > 1 && s.starts_with('0') && !s.starts_with("0.") => {
                return Value::text(s);
            }
            _ => {}
        }
        parse_decimal(s).map_or_else(|| Value::Text(s.to_string()), |(raw, scale)| Value::Number { raw, scale })
    }

    /// Compares with another value: numbers exactly as decimals, otherwise by their text.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Number { raw: a, scale: sa }, Value::Number { raw: b, scale: sb }) => {
                let a = *a as i128 * 10i128.pow(u32::from(*sb));
                let b = *b as i128 * 10i128.pow(u32::from(*sa));
                Some(a.cmp(&b))
            }
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Equality as an operator means it: `93` equals `93.0`, `"true"` equals `true`.
    pub fn same_as(&self, other: &Value) -> bool {
        match self.compare(other) {
            Some(o) => o == Ordering::Equal,
            None => self.to_string() == other.to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Text(s) => f.write_str(s),
            Value::Number { raw, scale: 0 } => write!(f, "{raw}"),
            Value::Number { raw, scale } => {
                let p = 10i64.pow(u32::from(*scale));
                let sign = if *raw < 0 { "-" } else { "" };
                let (int, frac) = (raw.abs() / p, raw.abs() % p);
                write!(f, "{sign}{int}.{frac:0width$}", width = *scale as usize)
            }
        }
    }
}

/// `"36.5"` → `(365, 1)`; at most 9 decimals.
pub fn parse_decimal(s: &str) -> Option<(i64, u8)> {
    let (neg, body) = s.strip_prefix('-').map_or((false, s), |b| (true, b));
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if body.contains('.') && frac.is_empty() || frac.len() > 9 {
        return None;
    }
    let raw: i64 = format!("{int}{frac}").parse().ok()?;
    Some((if neg { -raw } else { raw }, frac.len() as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_and_read_back_as_typed() {
        let t = Value::parse_literal("36.5");
        assert_eq!(t, Value::Number { raw: 365, scale: 1 });
        assert_eq!(t.to_string(), "36.5");
        assert_eq!(Value::Number { raw: 370, scale: 1 }.to_string(), "37.0");
        assert_eq!(Value::Number { raw: 5, scale: 2 }.to_string(), "0.05");
    }

    #[test]
    fn numbers_compare_across_scales() {
        let a = Value::parse_literal("93");
        let b = Value::Number { raw: 930, scale: 1 };
        assert!(a.same_as(&b));
        assert_eq!(Value::parse_literal("92.9").compare(&a), Some(Ordering::Less));
    }

    #[test]
    fn text_that_is_not_a_number_stays_text() {
        assert_eq!(Value::parse_literal("0412x"), Value::text("0412x"));
        assert_eq!(Value::parse_literal("1."), Value::text("1."));
        assert!(Value::parse_literal("true").same_as(&Value::text("true")));
        assert_eq!(Value::parse_literal("0412"), Value::text("0412"));
    }
}
