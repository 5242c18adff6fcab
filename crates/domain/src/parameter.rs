//! Commands parameter and result values in AWS's typed union shape: a JSON object with exactly
//! one member, `{"S": "text"}`, `{"B": true}`, `{"I": 7}`, `{"L": 7}`, `{"D": 0.5}`,
//! `{"BIN": "<base64>"}` or `{"UL": "18446744073709551615"}` (text: JSON numbers cannot hold
//! every u64). The HTTP API, the AWS adapter and local-iot all read and write this one type.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Number, Value};

/// One typed value (AWS `CommandParameterValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum ParameterValue {
    S(String),
    B(bool),
    /// A 32-bit integer.
    I(i32),
    /// A 64-bit integer.
    L(i64),
    /// A double, kept as the JSON number it was given as.
    D(Number),
    Bin(Vec<u8>),
    Ul(u64),
}

/// Why a JSON value is not a [`ParameterValue`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    /// Not an object with exactly one known member of the right JSON type.
    #[error("a parameter value has exactly one of S, B, I, L, D, BIN, UL")]
    Shape,
    /// A `BIN` member that is not base64 text.
    #[error("BIN values are base64")]
    Bin,
}

impl ParameterValue {
    /// Reads the union shape, checking the member's type and range.
    pub fn parse(value: &Value) -> Result<Self, ParameterError> {
        let (kind, inner) = match value.as_object() {
            Some(object) if object.len() == 1 => {
                object.iter().next().ok_or(ParameterError::Shape)?
            }
            _ => return Err(ParameterError::Shape),
        };
        let parsed = match (kind.as_str(), inner) {
            ("S", Value::String(s)) => Self::S(s.clone()),
            ("B", Value::Bool(b)) => Self::B(*b),
            ("I", v) => Self::I(
                v.as_i64()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or(ParameterError::Shape)?,
            ),
            ("L", v) => Self::L(v.as_i64().ok_or(ParameterError::Shape)?),
            ("D", Value::Number(n)) => Self::D(n.clone()),
            ("BIN", Value::String(b)) => {
                Self::Bin(BASE64.decode(b).map_err(|_| ParameterError::Bin)?)
            }
            ("UL", Value::String(u)) if u.len() <= 20 => {
                Self::Ul(u.parse().map_err(|_| ParameterError::Shape)?)
            }
            _ => return Err(ParameterError::Shape),
        };
        Ok(parsed)
    }

    /// The union shape, as the HTTP API and AWS show it.
    pub fn to_json(&self) -> Value {
        match self {
            Self::S(s) => json!({ "S": s }),
            Self::B(b) => json!({ "B": b }),
            Self::I(i) => json!({ "I": i }),
            Self::L(l) => json!({ "L": l }),
            Self::D(d) => json!({ "D": d }),
            Self::Bin(bytes) => json!({ "BIN": BASE64.encode(bytes) }),
            Self::Ul(u) => json!({ "UL": u.to_string() }),
        }
    }

    /// The plain JSON the value stands for where a payload template names it: the member's
    /// own value, a `UL` as a JSON number, a `BIN` as its base64 text.
    pub fn plain(&self) -> Value {
        match self {
            Self::S(s) => json!(s),
            Self::B(b) => json!(b),
            Self::I(i) => json!(i),
            Self::L(l) => json!(l),
            Self::D(d) => Value::Number(d.clone()),
            Self::Bin(bytes) => json!(BASE64.encode(bytes)),
            Self::Ul(u) => json!(u),
        }
    }
}

impl Serialize for ParameterValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ParameterValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_reads_and_writes_the_same_shape() {
        for value in [
            json!({"S": "front"}),
            json!({"B": true}),
            json!({"I": -7}),
            json!({"L": 9_007_199_254_740_993_i64}),
            json!({"D": 0.5}),
            json!({"D": 3}),
            json!({"BIN": "AAE="}),
            json!({"UL": "18446744073709551615"}),
        ] {
            let parsed = ParameterValue::parse(&value).unwrap();
            assert_eq!(parsed.to_json(), value);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), value);
        }
    }

    #[test]
    fn values_out_of_shape_or_range_are_refused() {
        for value in [
            json!("front"),
            json!({}),
            json!({"S": "a", "B": true}),
            json!({"X": 1}),
            json!({"S": 1}),
            json!({"I": 2_147_483_648_i64}),
            json!({"I": 1.5}),
            json!({"L": 18_446_744_073_709_551_615_u64}),
            json!({"D": "1"}),
            json!({"UL": "-1"}),
            json!({"UL": 12}),
            json!({"UL": "184467440737095516150"}),
        ] {
            assert_eq!(
                ParameterValue::parse(&value),
                Err(ParameterError::Shape),
                "{value}"
            );
        }
        assert_eq!(
            ParameterValue::parse(&json!({"BIN": "%%"})),
            Err(ParameterError::Bin)
        );
    }

    #[test]
    fn plain_values_are_what_a_template_substitutes() {
        let plain = |v: Value| ParameterValue::parse(&v).unwrap().plain();
        assert_eq!(plain(json!({"UL": "12"})), json!(12));
        assert_eq!(plain(json!({"BIN": "AAE="})), json!("AAE="));
        assert_eq!(plain(json!({"D": 3})), json!(3));
        assert_eq!(plain(json!({"S": "x"})), json!("x"));
    }
}
