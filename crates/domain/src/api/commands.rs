//! Command resources: `POST /commands` and `PATCH /commands/{commandId}` bodies, checked, and a
//! command as the API shows it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{invalid, present};
use crate::error::ApiError;

/// A static command payload: JSON content is given as JSON, anything else as base64 text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandPayload {
    pub content: Value,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<String>,
}

/// `POST /commands` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCommandRequest {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub command_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub payload: Option<CommandPayload>,
    /// A JSON document with `${aws:iot:commandexecution::parameter:<name>}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_template: Option<Value>,
    /// AWS CommandParameter objects, passed through as the AWS API shapes them.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub mandatory_parameters: Option<Vec<Value>>,
}

/// A command as the API shows it: `GET /commands/{commandId}` fills every field it has;
/// `GET /commands` items carry the summary (no payload, template or parameters).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResource {
    pub command_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub deprecated: bool,
    /// Deleted, and AWS IoT is still removing it: it can start nothing.
    pub pending_deletion: bool,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<CommandPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_template: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mandatory_parameters: Option<Vec<CommandParameter>>,
}

/// A parameter a command's payload template needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandParameter {
    pub name: String,
    /// `STRING`, `INTEGER`, ... as AWS names the type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<crate::parameter::ParameterValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Largest static payload or payload template of a command (AWS IoT: 32 KB).
pub const MAX_COMMAND_PAYLOAD: usize = 32 * 1024;

/// Whether a content type is JSON (`application/json`, parameters aside); none is JSON.
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/json")
    })
}

/// What a new command sends to devices, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandDocument {
    /// A static payload: its bytes (JSON content as JSON text, other content decoded from
    /// base64) and content type (`application/json` when none was given).
    Static {
        bytes: Vec<u8>,
        content_type: String,
    },
    /// A JSON payload template, as text.
    Template(String),
}

impl CreateCommandRequest {
    /// The rules of a new command: display name and description lengths, a payload or a
    /// payload template (not both, not neither), base64 content for non-JSON payloads, and
    /// at most [`MAX_COMMAND_PAYLOAD`] bytes. Returns what devices will be sent.
    pub fn validate(&self) -> Result<CommandDocument, ApiError> {
        use base64::Engine as _;
        check_text("displayName", self.display_name.as_deref(), 64)?;
        check_text("description", self.description.as_deref(), 2028)?;
        let too_large = |size: usize| ApiError::PayloadTooLarge {
            size,
            limit: MAX_COMMAND_PAYLOAD,
        };
        match (&self.payload, &self.payload_template) {
            (Some(_), Some(_)) => Err(invalid("give payload or payloadTemplate, not both")),
            (None, None) => Err(invalid("a command needs a payload or a payloadTemplate")),
            (Some(payload), None) => {
                let bytes = if is_json_content_type(payload.content_type.as_deref()) {
                    payload.content.to_string().into_bytes()
                } else {
                    let text = payload.content.as_str().ok_or_else(|| {
                        invalid("payload.content must be base64 text unless contentType is application/json")
                    })?;
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|_| invalid("payload.content is not valid base64"))?
                };
                if bytes.len() > MAX_COMMAND_PAYLOAD {
                    return Err(too_large(bytes.len()));
                }
                Ok(CommandDocument::Static {
                    bytes,
                    content_type: payload
                        .content_type
                        .clone()
                        .unwrap_or_else(|| "application/json".into()),
                })
            }
            (None, Some(template)) => {
                let text = template.to_string();
                if text.len() > MAX_COMMAND_PAYLOAD {
                    return Err(too_large(text.len()));
                }
                Ok(CommandDocument::Template(text))
            }
        }
    }
}

/// `PATCH /commands/{commandId}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateCommandRequest {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub display_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub deprecated: Option<bool>,
}

impl UpdateCommandRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.display_name.is_none() && self.description.is_none() && self.deprecated.is_none() {
            return Err(invalid(
                "give at least one of displayName, description, deprecated",
            ));
        }
        check_text("displayName", self.display_name.as_deref(), 64)?;
        check_text("description", self.description.as_deref(), 2028)
    }
}

/// Checks a free-text field's length (in characters, as AWS counts) and refuses control
/// characters.
pub fn check_text(field: &str, text: Option<&str>, max: usize) -> Result<(), ApiError> {
    match text {
        Some(t) if t.chars().count() > max => {
            Err(invalid(format!("{field} must be at most {max} characters")))
        }
        Some(t) if t.chars().any(char::is_control) => Err(invalid(format!(
            "{field} must not contain control characters"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_command_has_a_payload_or_a_template_within_the_limits() {
        let with = |payload: Option<Value>, template: Option<Value>| CreateCommandRequest {
            command_id: None,
            display_name: None,
            description: None,
            payload: payload.map(|p| serde_json::from_value(p).unwrap()),
            payload_template: template,
            mandatory_parameters: None,
        };
        assert_eq!(
            with(Some(serde_json::json!({"content": {"on": true}})), None).validate(),
            Ok(CommandDocument::Static {
                bytes: br#"{"on":true}"#.to_vec(),
                content_type: "application/json".into()
            })
        );
        assert_eq!(
            with(Some(serde_json::json!({"content": "AAE=", "contentType": "application/octet-stream"})), None).validate(),
            Ok(CommandDocument::Static {
                bytes: vec![0, 1],
                content_type: "application/octet-stream".into()
            })
        );
        let big = "x".repeat(MAX_COMMAND_PAYLOAD);
        for (request, status) in [
            (with(None, None), 400),
            (
                with(
                    Some(serde_json::json!({"content": 1})),
                    Some(serde_json::json!({})),
                ),
                400,
            ),
            (
                with(
                    Some(serde_json::json!({"content": "***", "contentType": "text/plain"})),
                    None,
                ),
                400,
            ),
            (
                with(Some(serde_json::json!({"content": {"a": big}})), None),
                413,
            ),
            (with(None, Some(serde_json::json!({"a": big}))), 413),
        ] {
            assert_eq!(
                request.validate().unwrap_err().status(),
                status,
                "{request:?}"
            );
        }
        let mut long = with(None, Some(serde_json::json!({})));
        long.display_name = Some("n".repeat(65));
        assert!(long.validate().is_err());
    }

    #[test]
    fn update_command_needs_a_field_and_bounded_text() {
        assert!(UpdateCommandRequest::default().validate().is_err());
        let long = UpdateCommandRequest {
            display_name: Some("n".repeat(65)),
            ..Default::default()
        };
        assert!(long.validate().is_err());
        let ok = UpdateCommandRequest {
            deprecated: Some(true),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
    }
}
