//! The SQL subset of the topic rules (see the [module docs](super)): parsed when the rules are
//! loaded, evaluated on each message.

use serde_json::{json, Map, Value};

use super::{sql_error, RuleError};

/// One selected item.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    All,
    /// `encode(*, 'base64')`: the payload's bytes as base64 text.
    EncodedPayload {
        alias: String,
    },
    Topic {
        level: usize,
        alias: String,
    },
    /// `topic()`: the whole topic.
    FullTopic {
        alias: String,
    },
    Timestamp {
        alias: String,
    },
    Literal {
        value: Value,
        alias: String,
    },
    Field {
        path: Vec<String>,
        alias: String,
    },
}

/// Splits on commas outside quotes and parentheses.
fn split_items(list: &str) -> Vec<String> {
    let (mut items, mut current, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in list.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                items.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current.trim().to_owned());
    items
}

/// Parses `SELECT ... FROM '...'`.
pub fn parse_sql(rule: &str, sql: &str) -> Result<(Vec<Select>, String), RuleError> {
    let text = sql.trim();
    let upper = text.to_ascii_uppercase();
    if !upper.starts_with("SELECT ") {
        return Err(sql_error(rule, "must start with SELECT"));
    }
    let from = upper
        .rfind(" FROM ")
        .ok_or_else(|| sql_error(rule, "has no FROM"))?;
    let source = text[from + 6..].trim();
    if source.to_ascii_uppercase().contains(" WHERE ") || upper.contains(" WHERE ") {
        return Err(sql_error(
            rule,
            "WHERE clauses are not supported by local-iot",
        ));
    }
    let filter = source
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .ok_or_else(|| sql_error(rule, "FROM must be a quoted topic filter"))?
        .to_owned();
    // `SELECT FROM '…'`: the space after SELECT is the one before FROM (found by cargo fuzz).
    let items = text
        .get(7..from)
        .filter(|items| !items.trim().is_empty())
        .ok_or_else(|| sql_error(rule, "selects nothing"))?;
    let select = split_items(items)
        .iter()
        .map(|item| parse_item(rule, item))
        .collect::<Result<_, _>>()?;
    Ok((select, filter))
}

/// Parses one item of the SELECT list: `<expression> [AS <name>]`.
fn parse_item(rule: &str, item: &str) -> Result<Select, RuleError> {
    let (expr, alias) = match item.to_ascii_uppercase().rfind(" AS ") {
        Some(at) => (
            item[..at].trim().to_owned(),
            Some(item[at + 4..].trim().to_owned()),
        ),
        None => (item.to_owned(), None),
    };
    let lower = expr.to_ascii_lowercase();
    let need_alias = |what: &str| {
        alias
            .clone()
            .ok_or_else(|| sql_error(rule, format!("{what} needs AS <name>")))
    };
    let parsed = if expr == "*" {
        Select::All
    } else if lower.replace(' ', "") == "encode(*,'base64')" {
        Select::EncodedPayload {
            alias: need_alias(&expr)?,
        }
    } else if lower.replace(' ', "") == "topic()" {
        Select::FullTopic {
            alias: need_alias(&expr)?,
        }
    } else if let Some(n) = lower
        .strip_prefix("topic(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let level = n
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| sql_error(rule, format!("bad topic index in {expr}")))?;
        Select::Topic {
            level,
            alias: need_alias(&expr)?,
        }
    } else if lower == "timestamp()" {
        Select::Timestamp {
            alias: need_alias(&expr)?,
        }
    } else if let Some(text) = expr.strip_prefix('\'').and_then(|e| e.strip_suffix('\'')) {
        Select::Literal {
            value: json!(text),
            alias: need_alias(&expr)?,
        }
    } else if !expr.is_empty()
        && expr
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        let path: Vec<String> = expr.split('.').map(str::to_owned).collect();
        let alias = alias.unwrap_or_else(|| path.last().cloned().unwrap_or_default());
        Select::Field { path, alias }
    } else {
        return Err(sql_error(
            rule,
            format!("{expr} is not supported by local-iot"),
        ));
    };
    Ok(parsed)
}

/// Evaluates a rule's SELECT on a message. A payload that is not a JSON object can only be
/// used with items that do not read it.
pub fn evaluate(select: &[Select], topic: &str, payload: &[u8], now: i64) -> Result<Value, String> {
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(payload).ok();
    let levels: Vec<&str> = topic.split('/').collect();
    let mut out = Map::new();
    for item in select {
        match item {
            Select::All => match &parsed {
                Some(object) => out.extend(object.clone()),
                None => return Err("SELECT * needs a JSON object payload".into()),
            },
            Select::EncodedPayload { alias } => {
                use base64::Engine as _;
                let text = base64::engine::general_purpose::STANDARD.encode(payload);
                out.insert(alias.clone(), json!(text));
            }
            Select::Topic { level, alias } => {
                if let Some(value) = levels.get(level - 1) {
                    out.insert(alias.clone(), json!(value));
                }
            }
            Select::FullTopic { alias } => {
                out.insert(alias.clone(), json!(topic));
            }
            Select::Timestamp { alias } => {
                out.insert(alias.clone(), json!(now));
            }
            Select::Literal { value, alias } => {
                out.insert(alias.clone(), value.clone());
            }
            Select::Field { path, alias } => {
                let object = parsed
                    .as_ref()
                    .ok_or("a field needs a JSON object payload")?;
                let mut value = object.get(&path[0]);
                for key in &path[1..] {
                    value = value.and_then(|v| v.get(key));
                }
                if let Some(value) = value {
                    out.insert(alias.clone(), value.clone());
                }
            }
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_subset_parses() {
        let (select, filter) =
            parse_sql("r", "SELECT *, topic(4) AS commandId, timestamp() AS receivedAt, 'x' AS kind, a.b FROM '$aws/events/commandExecution/+/#'").unwrap();
        assert_eq!(filter, "$aws/events/commandExecution/+/#");
        assert_eq!(select.len(), 5);
        assert_eq!(
            select[1],
            Select::Topic {
                level: 4,
                alias: "commandId".into()
            }
        );
        assert_eq!(
            select[4],
            Select::Field {
                path: vec!["a".into(), "b".into()],
                alias: "b".into()
            }
        );
    }

    #[test]
    fn the_payload_can_be_selected_whole_as_base64_whatever_it_is() {
        let sql = "SELECT encode(*, 'base64') AS payload, topic() AS topic, timestamp() AS receivedAt FROM 'tether/replies/+/+'";
        let (select, _) = parse_sql("r", sql).unwrap();

        for payload in [
            &br#"{"topic":"spoofed","receivedAt":1,"Records":[]}"#[..],
            b"\xff\x00 not json",
            b"",
        ] {
            let out = evaluate(&select, "tether/replies/dev-1/r1", payload, 7).unwrap();
            use base64::Engine as _;
            let expected = base64::engine::general_purpose::STANDARD.encode(payload);
            assert_eq!(
                out,
                json!({"payload": expected, "topic": "tether/replies/dev-1/r1", "receivedAt": 7}),
                "the payload's own fields never reach the top level"
            );
        }
        assert!(
            parse_sql("r", "SELECT encode(*, 'base64') FROM 'a'").is_err(),
            "needs AS"
        );
        assert!(parse_sql("r", "SELECT encode(*, 'hex') AS p FROM 'a'").is_err());
    }

    #[test]
    fn unsupported_sql_is_refused_not_ignored() {
        for sql in [
            "SELECT * FROM 'a/b' WHERE x > 1",
            "SELECT upper(x) AS y FROM 'a'",
            "SELECT topic(3) FROM 'a'",
            "SELECT * FROM a/b",
            "DELETE FROM 'a'",
            // Found by `make fuzz` (rule_sql): an empty SELECT list once panicked.
            "SELECT FROM 'a'",
            "SELECt FROM 'tether/replies/+/+'",
            "SELECT   FROM 'a'",
        ] {
            assert!(parse_sql("r", sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn evaluation_selects_fields_and_topic_levels() {
        let sql = "SELECT *, topic(3) AS deviceId, topic(4) AS requestId, topic() AS topic FROM 'tether/replies/+/+'";
        let (select, _) = parse_sql("r", sql).unwrap();
        let payload = br#"{"status":"SUCCEEDED","topic":"spoofed"}"#;

        let out = evaluate(&select, "tether/replies/dev-1/r1", payload, 7).unwrap();

        assert_eq!(
            out,
            json!({"status": "SUCCEEDED", "deviceId": "dev-1", "requestId": "r1", "topic": "tether/replies/dev-1/r1"}),
            "selected items win over payload fields of the same name"
        );
        assert!(evaluate(&select, "tether/replies/dev-1/r1", b"not json", 7).is_err());
    }
}
