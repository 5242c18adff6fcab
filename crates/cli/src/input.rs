//! What a person types: durations (`500ms`, `5s`, `2m`), JSON given inline, from a file
//! (`@file`) or from stdin (`-`), and command parameters (`name=value`, `name:TYPE=value`).

use std::io::Read;
use std::time::Duration;

use serde_json::{Map, Value};
use tether_domain::parameter::ParameterValue;

use crate::exit::CliError;

/// Parses `500ms`, `5s`, `2m` (a whole number and a unit).
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: 500ms, 5s or 2m"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration: a whole number and a unit (500ms, 5s, 2m)")
    })?;
    let ms = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        _ => return Err(format!("{text:?}: the unit is ms, s or m")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// A JSON document: inline text, `@path` for a file, `-` for stdin.
pub fn json_argument(what: &str, argument: &str) -> Result<Value, CliError> {
    let text = if argument == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::bad_input(format!("{what}: reading stdin: {e}")))?;
        text
    } else if let Some(path) = argument.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::bad_input(format!("{what}: reading {path}: {e}")))?
    } else {
        argument.to_owned()
    };
    serde_json::from_str(&text)
        .map_err(|e| CliError::bad_input(format!("{what} is not valid JSON: {e}")))
}

/// Command parameters from `name=value` (a string, or a value in AWS's union shape such as
/// `{"B":true}`) and `name:TYPE=value` with TYPE one of S, B, I, L, D, BIN, UL; each checked
/// by the domain's rules.
pub fn parameters(items: &[String]) -> Result<Option<Map<String, Value>>, CliError> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut parameters = Map::new();
    for item in items {
        let (name, value) = parameter(item)?;
        if parameters.insert(name.clone(), value).is_some() {
            return Err(CliError::bad_input(format!(
                "--param {name} is given twice"
            )));
        }
    }
    Ok(Some(parameters))
}

pub fn parameter(item: &str) -> Result<(String, Value), CliError> {
    let bad = |why: String| CliError::bad_input(format!("--param {item:?}: {why}"));
    let (key, text) = item
        .split_once('=')
        .ok_or_else(|| bad("write name=value or name:TYPE=value".into()))?;
    let (name, kind) = match key.split_once(':') {
        Some((name, kind)) => (name, Some(kind)),
        None => (key, None),
    };
    if name.is_empty() {
        return Err(bad("the name is empty".into()));
    }
    let union = match kind {
        None if text.trim_start().starts_with('{') => {
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?
        }
        None | Some("S") => serde_json::json!({ "S": text }),
        Some("B") => {
            serde_json::json!({ "B": text.parse::<bool>().map_err(|_| bad("B is true or false".into()))? })
        }
        Some("BIN" | "UL") => serde_json::json!({ kind.unwrap_or_default(): text }),
        Some(kind @ ("I" | "L" | "D")) => {
            let number: Value = serde_json::from_str(text)
                .ok()
                .filter(Value::is_number)
                .ok_or_else(|| bad(format!("{kind} is a number")))?;
            serde_json::json!({ kind: number })
        }
        Some(other) => {
            return Err(bad(format!(
                "unknown type {other}: one of S, B, I, L, D, BIN, UL"
            )))
        }
    };
    ParameterValue::parse(&union).map_err(|e| bad(e.to_string()))?;
    Ok((name.to_owned(), union))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["5", "", "s", "1.5s", "5h", "-1s", "99999999999999999999m"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameters_are_strings_unions_or_typed() {
        let got = parameters(&[
            "door=front".into(),
            "open:B=true".into(),
            "count:UL=18446744073709551615".into(),
            "level:D=0.5".into(),
            r#"raw={"I": 7}"#.into(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"door": {"S": "front"}, "open": {"B": true},
                   "count": {"UL": "18446744073709551615"}, "level": {"D": 0.5}, "raw": {"I": 7}})
        );
        for bad in [
            "door",
            "=x",
            "n:I=1.5",
            "n:I=99999999999",
            "n:B=yes",
            "n:X=1",
            "n:BIN=%%",
            r#"n={"S": 1}"#,
        ] {
            assert!(parameters(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parameters(&["a=1".into(), "a=2".into()]).is_err());
        assert_eq!(parameters(&[]).unwrap(), None);
    }

    #[test]
    fn json_comes_inline_or_from_a_file() {
        assert_eq!(
            json_argument("payload", r#"{"a":1}"#).unwrap(),
            json!({"a": 1})
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "[1, 2]").unwrap();
        let from_file = json_argument("payload", &format!("@{}", path.display())).unwrap();
        assert_eq!(from_file, json!([1, 2]));
        assert!(json_argument("payload", "{nope").is_err());
        assert!(json_argument("payload", "@/no/such/file").is_err());
    }
}
