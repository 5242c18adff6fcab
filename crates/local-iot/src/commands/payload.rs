//! Command payloads: parameter values (`{"S": ..}`, `{"B": ..}`, ...), payload templates and
//! their `${aws:iot:commandexecution::...}` placeholders, checked when a command is created and
//! rendered when an execution starts.

use serde_json::{json, Map, Value};
use tether_domain::parameter::ParameterValue;

use super::state::Command;
use crate::aws::AwsError;

const PARAMETER_PREFIX: &str = "${aws:iot:commandexecution::parameter:";
const TIMEOUT_PLACEHOLDER: &str = "${aws:iot:commandexecution::executionTimeoutSec}";

/// Checks one CommandParameterValue (`{"S": ..}`, `{"B": ..}`, ...) by the domain's rules:
/// exactly one member, of its type and range.
pub(super) fn check_parameter_value(name: &str, value: &Value) -> Result<(), AwsError> {
    ParameterValue::parse(value).map(drop).map_err(|_| {
        AwsError::validation(format!(
            "parameter {name}: a value has exactly one of S, B, I, L, D, BIN, UL"
        ))
    })
}

/// Checks a command's `mandatoryParameters`: each has a valid name, and a valid default value
/// if it has one.
pub(super) fn check_mandatory_parameters(parameters: &[Value]) -> Result<(), AwsError> {
    for p in parameters {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        let name_ok = (1..=192).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._$-".contains(&b));
        if !name_ok {
            return Err(AwsError::validation(
                "mandatoryParameters[].name must be 1-192 characters of [.$a-zA-Z0-9_-]",
            ));
        }
        if let Some(default) = p.get("defaultValue") {
            check_parameter_value(name, default)?;
        }
    }
    Ok(())
}

/// Checks a new command's payload template: JSON with at least one placeholder, a JSON
/// `awsJsonSubstitution` preprocessor, and mandatory parameters to fill it.
pub(super) fn check_payload_template(
    template: &str,
    preprocessor: Option<&Value>,
    mandatory_parameters: &[Value],
) -> Result<(), AwsError> {
    serde_json::from_str::<Value>(template)
        .map_err(|_| AwsError::validation("payloadTemplate must be valid JSON"))?;
    if !template.contains("${aws:iot:commandexecution::") {
        return Err(AwsError::validation(
            "payloadTemplate must contain at least one placeholder",
        ));
    }
    let format = preprocessor
        .and_then(|p| p.pointer("/awsJsonSubstitution/outputFormat"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            AwsError::validation(
                "a payloadTemplate needs preprocessor.awsJsonSubstitution.outputFormat",
            )
        })?;
    if format != "JSON" {
        return Err(AwsError::validation(format!(
            "outputFormat {format} is not supported by local-iot (only JSON)"
        )));
    }
    if mandatory_parameters.is_empty() {
        return Err(AwsError::validation(
            "a payloadTemplate needs mandatoryParameters",
        ));
    }
    Ok(())
}

/// The bytes and content type of an execution's request: the command's static payload, or its
/// template rendered with the execution's parameters (a missing one takes its default).
pub(super) fn request_payload(
    command: &Command,
    parameters: &Map<String, Value>,
    timeout_s: i64,
) -> Result<(Vec<u8>, String), AwsError> {
    match (&command.payload, &command.payload_template) {
        (Some((content, content_type)), _) => Ok((
            content.clone(),
            content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        )),
        (None, Some(template)) => {
            let mut values = Map::new();
            for p in &command.mandatory_parameters {
                let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                let value = parameters
                    .get(name)
                    .or_else(|| p.get("defaultValue"))
                    .ok_or_else(|| {
                        AwsError::validation(format!(
                            "parameter {name} has no value and no default"
                        ))
                    })?;
                values.insert(name.to_owned(), value.clone());
            }
            let template: Value = serde_json::from_str(template)
                .map_err(|_| AwsError::validation("stored payloadTemplate is not JSON"))?;
            let rendered = render(&template, &values, timeout_s)?;
            Ok((
                rendered.to_string().into_bytes(),
                "application/json".to_owned(),
            ))
        }
        (None, None) => Err(AwsError::validation("command has no payload")),
    }
}

/// The JSON a parameter value stands for in a rendered payload (values were checked on the
/// way in; anything else renders as null).
fn parameter_json(value: &Value) -> Value {
    ParameterValue::parse(value).map_or(Value::Null, |v| v.plain())
}

/// The value of one placeholder (`${...}`, braces included).
fn placeholder_value(
    placeholder: &str,
    parameters: &Map<String, Value>,
    timeout_s: i64,
) -> Result<Value, AwsError> {
    if placeholder == TIMEOUT_PLACEHOLDER {
        return Ok(json!(timeout_s));
    }
    let name = placeholder
        .strip_prefix(PARAMETER_PREFIX)
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| AwsError::validation(format!("unknown placeholder {placeholder}")))?;
    parameters
        .get(name)
        .map(parameter_json)
        .ok_or_else(|| AwsError::validation(format!("no value for parameter {name}")))
}

/// Substitutes the placeholders of a payload template. A string that is exactly one
/// placeholder becomes the typed value; placeholders inside longer strings become text.
fn render(
    template: &Value,
    parameters: &Map<String, Value>,
    timeout_s: i64,
) -> Result<Value, AwsError> {
    let lookup = |placeholder: &str| placeholder_value(placeholder, parameters, timeout_s);
    Ok(match template {
        Value::String(text) => {
            if text.starts_with("${") && text.ends_with('}') && text.matches("${").count() == 1 {
                lookup(text)?
            } else {
                let mut out = String::new();
                let mut rest = text.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..]
                        .find('}')
                        .ok_or_else(|| AwsError::validation("unterminated placeholder"))?
                        + start;
                    let value = lookup(&rest[start..=end])?;
                    out.push_str(&match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    });
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                Value::String(out)
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render(i, parameters, timeout_s))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| Ok((k.clone(), render(v, parameters, timeout_s)?)))
                .collect::<Result<_, AwsError>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_string_placeholders_keep_their_type() {
        let template = json!({
            "door": "${aws:iot:commandexecution::parameter:door}",
            "open": "${aws:iot:commandexecution::parameter:open}",
            "label": "door ${aws:iot:commandexecution::parameter:door} in ${aws:iot:commandexecution::executionTimeoutSec}s",
            "list": ["${aws:iot:commandexecution::parameter:count}"],
        });
        let parameters: Map<String, Value> = serde_json::from_value(json!({
            "door": {"S": "front"}, "open": {"B": true}, "count": {"UL": "18446744073709551615"},
        }))
        .unwrap();
        let rendered = render(&template, &parameters, 30).unwrap();
        assert_eq!(
            rendered,
            json!({"door": "front", "open": true, "label": "door front in 30s", "list": [18_446_744_073_709_551_615u64]})
        );
    }

    #[test]
    fn a_missing_parameter_is_a_validation_error() {
        let template = json!({"x": "${aws:iot:commandexecution::parameter:nope}"});
        assert_eq!(
            render(&template, &Map::new(), 1).unwrap_err().kind,
            "ValidationException"
        );
    }

    #[test]
    fn parameter_values_have_exactly_one_member() {
        for good in [
            json!({"S": "x"}),
            json!({"B": false}),
            json!({"I": 5}),
            json!({"L": 5_000_000_000i64}),
            json!({"D": 1.5}),
            json!({"BIN": "AAE="}),
            json!({"UL": "12"}),
        ] {
            assert!(check_parameter_value("p", &good).is_ok(), "{good}");
        }
        for bad in [
            json!({}),
            json!({"S": 1}),
            json!({"S": "a", "B": true}),
            json!({"I": 5_000_000_000i64}),
            json!({"X": 1}),
            json!("S"),
            json!({"UL": "-1"}),
        ] {
            assert!(check_parameter_value("p", &bad).is_err(), "{bad}");
        }
    }
}
