//! Values of call variables: answers typed on the keypad, choices, patient attributes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The variables of one call, by name (`temperature`, `patient.birth_md`, …).
pub type Vars = BTreeMap<String, Value>;

/// A variable's value. Numbers are exact decimals: `raw / 10^scale` (36.5 is raw 365, scale 1),
/// so what the patient typed is what is stored and read back.
///
/// Stored as JSON `true`, `{"raw":365,"scale":1}` or `"text"`. It is read back with a visitor of
/// its own rather than `#[serde(untagged)]`, which buffers every value and tries each variant
/// in turn: a call's state is read on every turn of every call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Number { raw: i64, scale: u8 },
    Text(String),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Accepts what the untagged form accepted: a bool, a string, or a number as a map (or a
/// sequence) of `raw` and `scale`.
struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bool, a string, or a number as {raw, scale}")
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Text(s.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::Text(s))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde::de::{Error, IgnoredAny};
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Raw,
            Scale,
            #[serde(other)]
            Other,
        }
        let (mut raw, mut scale) = (None, None);
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Raw if raw.is_some() => return Err(A::Error::duplicate_field("raw")),
                Field::Scale if scale.is_some() => return Err(A::Error::duplicate_field("scale")),
                Field::Raw => raw = Some(map.next_value::<i64>()?),
                Field::Scale => scale = Some(map.next_value::<u8>()?),
                Field::Other => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        match (raw, scale) {
            (Some(raw), Some(scale)) => Ok(Value::Number { raw, scale }),
            (None, _) => Err(A::Error::missing_field("raw")),
            (_, None) => Err(A::Error::missing_field("scale")),
        }
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        use serde::de::Error;
        let raw = seq.next_element::<i64>()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
        let scale = seq.next_element::<u8>()?.ok_or_else(|| A::Error::invalid_length(1, &self))?;
        match seq.next_element::<serde::de::IgnoredAny>()? {
            None => Ok(Value::Number { raw, scale }),
            Some(_) => Err(A::Error::invalid_length(3, &self)),
        }
    }
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
    fn values_are_stored_as_json_and_read_back_the_same() {
        let vars: Vars = [
            ("consent".to_string(), Value::Bool(true)),
            ("temperature".to_string(), Value::Number { raw: 365, scale: 1 }),
            ("debt".to_string(), Value::Number { raw: -7, scale: 0 }),
            ("name".to_string(), Value::text("患者 \"1\"")),
        ]
        .into();
        let json = serde_json::to_string(&vars).unwrap();
        assert_eq!(
            json,
            r#"{"consent":true,"debt":{"raw":-7,"scale":0},"name":"患者 \"1\"","temperature":{"raw":365,"scale":1}}"#
        );
        assert_eq!(serde_json::from_str::<Vars>(&json).unwrap(), vars);
    }

    #[test]
    fn a_stored_number_may_carry_other_fields_or_come_as_a_pair() {
        let read = |s: &str| serde_json::from_str::<Value>(s);
        assert_eq!(read(r#"{"scale":1,"unit":"C","raw":365}"#).unwrap(), Value::Number { raw: 365, scale: 1 });
        assert_eq!(read("[97, 0]").unwrap(), Value::int(97));
        for bad in ["12", "null", r#"{"raw":1}"#, r#"{"raw":1,"scale":300}"#, r#"{"raw":1,"raw":2,"scale":0}"#, "[1]"] {
            assert!(read(bad).is_err(), "{bad} is not a value");
        }
    }

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
