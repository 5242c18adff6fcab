//! The HTTP API's shapes (see docs/ARCHITECTURE.md "HTTP API") and limits.
//!
//! Requests are parsed into `*Request` types that refuse unknown fields, then checked into
//! validated forms by `validate()`, whose errors name the field at fault.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::ids::{DeviceId, MethodName};
use crate::status::{ExecutionStatus, InvocationStatus, StatusReason};
use crate::topics::TargetKind;

/// Largest payload a device is sent or a command carries through Tether: 128 KiB, the AWS IoT
/// Core MQTT message limit.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
/// Allowed `timeoutMs` of a direct invocation, and its default. The top stays under the API
/// Gateway integration limit (30 s) with room for the work around the wait.
pub const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=25_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Targets of one `POST /commands/{id}/executions`.
pub const MAX_TARGETS: usize = 100;
/// `waitMs` of a start-executions call.
pub const WAIT_MS: std::ops::RangeInclusive<u64> = 0..=25_000;
/// `timeoutSeconds` of a command execution (AWS: at least 1 s, at most 12 h).
pub const EXECUTION_TIMEOUT_S: std::ops::RangeInclusive<u64> = 1..=43_200;
/// Page sizes of list routes, and the default.
pub const LIST_LIMIT: std::ops::RangeInclusive<u32> = 1..=100;
pub const DEFAULT_LIST_LIMIT: u32 = 25;

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::Validation(detail.into())
}

/// For an optional request field: absent is `None`, but an explicit `null` is refused like any
/// other value of the wrong type (the contract declares no nullable request field).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `POST /devices/{deviceId}/invoke` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvokeRequest {
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_ms: Option<u64>,
}

/// A direct invocation that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub method: MethodName,
    /// The payload as it will be published (JSON text; `{}` when none was given).
    pub payload: String,
    pub timeout_ms: u64,
}

impl InvokeRequest {
    pub fn validate(self) -> Result<Invocation, ApiError> {
        let method = MethodName::parse(self.method)?;
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !TIMEOUT_MS.contains(&timeout_ms) {
            return Err(invalid(format!(
                "timeoutMs must be between {} and {}",
                TIMEOUT_MS.start(),
                TIMEOUT_MS.end()
            )));
        }
        let payload = match self.payload {
            Some(value) => {
                serde_json::to_string(&value).map_err(|_| invalid("payload is not valid JSON"))?
            }
            None => "{}".to_owned(),
        };
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(ApiError::PayloadTooLarge {
                size: payload.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        Ok(Invocation {
            method,
            payload,
            timeout_ms,
        })
    }
}

/// `POST /devices/{deviceId}/invoke` answer (200).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvokeResponse {
    pub request_id: String,
    pub device_id: String,
    pub method: String,
    pub status: InvocationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<StatusReason>,
    pub elapsed_ms: u64,
}

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

/// `POST /commands/{commandId}/executions` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartExecutionsRequest {
    pub targets: Vec<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub target_type: Option<TargetKind>,
    /// Parameter values in the AWS union shape (`{"S": "..."}`, `{"B": true}`, ...).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub parameters: Option<Map<String, Value>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_seconds: Option<u64>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub wait_ms: Option<u64>,
}

/// A start-executions call that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct StartExecutions {
    pub targets: Vec<DeviceId>,
    pub target_type: TargetKind,
    pub parameters: Option<Map<String, Value>>,
    pub timeout_seconds: Option<u64>,
    pub wait_ms: Option<u64>,
}

impl StartExecutionsRequest {
    pub fn validate(self) -> Result<StartExecutions, ApiError> {
        if self.targets.is_empty() || self.targets.len() > MAX_TARGETS {
            return Err(invalid(format!(
                "targets must list 1 to {MAX_TARGETS} devices"
            )));
        }
        let mut targets = Vec::with_capacity(self.targets.len());
        for (i, target) in self.targets.into_iter().enumerate() {
            let device =
                DeviceId::parse(target).map_err(|e| invalid(format!("targets[{i}]: {e}")))?;
            if targets.contains(&device) {
                return Err(invalid(format!("targets[{i}]: {device} is listed twice")));
            }
            targets.push(device);
        }
        if let Some(t) = self.timeout_seconds {
            if !EXECUTION_TIMEOUT_S.contains(&t) {
                return Err(invalid(format!(
                    "timeoutSeconds must be between {} and {}",
                    EXECUTION_TIMEOUT_S.start(),
                    EXECUTION_TIMEOUT_S.end()
                )));
            }
        }
        if let Some(w) = self.wait_ms {
            if !WAIT_MS.contains(&w) {
                return Err(invalid(format!("waitMs must be at most {}", WAIT_MS.end())));
            }
        }
        if let Some(parameters) = &self.parameters {
            if parameters.is_empty() {
                return Err(invalid("parameters, when given, must not be empty"));
            }
        }
        Ok(StartExecutions {
            targets,
            target_type: self.target_type.unwrap_or_default(),
            parameters: self.parameters,
            timeout_seconds: self.timeout_seconds,
            wait_ms: self.wait_ms,
        })
    }
}

/// One target's outcome in a start-executions answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedExecution {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExecutionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<StatusReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why this target could not be started (a problem document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::Problem>,
}

/// `POST /commands/{commandId}/executions` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartExecutionsResponse {
    pub executions: Vec<StartedExecution>,
}

/// One status change in a record's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub status: String,
    /// RFC 3339.
    pub at: String,
    /// `cloud` or `device`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<StatusReason>,
}

/// A Commands execution as `GET /executions/{executionId}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    pub execution_id: String,
    pub command_id: String,
    pub target: String,
    pub status: ExecutionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<StatusReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The status history, oldest first; left out of list answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
    /// The history is longer than one answer carries (about 2 MB of it): `timeline` holds its
    /// oldest entries. Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timeline_truncated: bool,
}

/// A direct invocation as `GET /invocations/{requestId}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    pub request_id: String,
    pub device_id: String,
    pub method: String,
    pub status: InvocationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<StatusReason>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The status history, oldest first; left out of list answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
    /// The history is longer than one answer carries (about 2 MB of it): `timeline` holds its
    /// oldest entries. Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timeline_truncated: bool,
}

/// `GET /devices/{deviceId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceConnectivity {
    pub device_id: String,
    pub connected: bool,
    /// When the current state began (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The newest presence event seen (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_reason: Option<String>,
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Query of the list routes: `status`, `limit`, `nextToken`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    pub status: Option<crate::status::ExecutionStatus>,
    pub limit: u32,
    pub next_token: Option<String>,
}

impl ListQuery {
    /// Reads the query-string pairs of a list route; unknown keys are refused.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ApiError> {
        let mut query = ListQuery {
            limit: DEFAULT_LIST_LIMIT,
            ..Default::default()
        };
        for (key, value) in pairs {
            match key {
                "status" => {
                    query.status =
                        Some(crate::status::ExecutionStatus::parse(value).ok_or_else(|| {
                            invalid(format!("status {value:?} is not an execution status"))
                        })?)
                }
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|l| LIST_LIMIT.contains(l))
                        .ok_or_else(|| {
                            invalid(format!(
                                "limit must be between {} and {}",
                                LIST_LIMIT.start(),
                                LIST_LIMIT.end()
                            ))
                        })?
                }
                "nextToken" => query.next_token = Some(value.to_owned()),
                other => return Err(invalid(format!("unknown query parameter {other:?}"))),
            }
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invoke(body: Value) -> Result<Invocation, ApiError> {
        serde_json::from_value::<InvokeRequest>(body)
            .map_err(|e| ApiError::Validation(e.to_string()))?
            .validate()
    }

    #[test]
    fn invoke_defaults_timeout_and_payload() {
        let ok = invoke(json!({"method": "reboot"})).unwrap();
        assert_eq!(ok.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(ok.payload, "{}");
    }

    #[test]
    fn invoke_refuses_out_of_range_timeouts() {
        for t in [0, 99, 25_001, u64::MAX] {
            assert!(
                invoke(json!({"method": "m", "timeoutMs": t})).is_err(),
                "{t}"
            );
        }
        for t in [100, 25_000] {
            assert!(
                invoke(json!({"method": "m", "timeoutMs": t})).is_ok(),
                "{t}"
            );
        }
    }

    #[test]
    fn invoke_payload_at_the_limit_passes_and_over_it_is_413() {
        let filler = |n: usize| json!("x".repeat(n));
        // A JSON string of n characters serializes to n + 2 bytes.
        assert!(invoke(json!({"method": "m", "payload": filler(MAX_PAYLOAD_BYTES - 2)})).is_ok());
        let err =
            invoke(json!({"method": "m", "payload": filler(MAX_PAYLOAD_BYTES - 1)})).unwrap_err();
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn invoke_refuses_unknown_fields_and_hostile_methods() {
        assert!(invoke(json!({"method": "m", "extra": 1})).is_err());
        for bad in ["a/b", "+", "#", "$sys", "a b", "", "nul\u{0}"] {
            let err = invoke(json!({"method": bad})).unwrap_err();
            assert_eq!(err.code(), "VALIDATION_ERROR", "{bad:?}");
        }
    }

    #[test]
    fn an_explicit_null_is_refused_where_a_field_may_only_be_left_out() {
        for body in [
            json!({"commandId": null, "payload": {"content": {}}}),
            json!({"payload": {"content": {}, "contentType": null}}),
        ] {
            assert!(serde_json::from_value::<CreateCommandRequest>(body).is_err());
        }
        assert!(
            serde_json::from_value::<UpdateCommandRequest>(json!({"deprecated": null})).is_err()
        );
        assert!(serde_json::from_value::<StartExecutionsRequest>(
            json!({"targets": ["a"], "waitMs": null})
        )
        .is_err());
        assert!(invoke(json!({"method": "m", "timeoutMs": null})).is_err());
        let absent: CreateCommandRequest =
            serde_json::from_value(json!({"payload": {"content": {}}})).unwrap();
        assert_eq!(absent.command_id, None);
    }

    #[test]
    fn start_executions_checks_targets() {
        let start = |body: Value| {
            serde_json::from_value::<StartExecutionsRequest>(body)
                .unwrap()
                .validate()
        };
        assert!(start(json!({"targets": []})).is_err());
        assert!(start(json!({"targets": ["a", "a"]})).is_err());
        assert!(start(json!({"targets": ["a/b"]})).is_err());
        let many: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("d{i}")).collect();
        assert!(start(json!({ "targets": many })).is_err());
        assert!(start(json!({"targets": ["a"], "timeoutSeconds": 0})).is_err());
        assert!(start(json!({"targets": ["a"], "waitMs": 25_001})).is_err());
        let ok =
            start(json!({"targets": ["a", "b"], "targetType": "client", "waitMs": 1000})).unwrap();
        assert_eq!(ok.target_type, TargetKind::Client);
        assert_eq!(ok.targets.len(), 2);
    }

    #[test]
    fn list_query_reads_and_refuses() {
        let q = ListQuery::from_pairs([("status", "SUCCEEDED"), ("limit", "5")]).unwrap();
        assert_eq!(q.limit, 5);
        assert!(ListQuery::from_pairs([("limit", "0")]).is_err());
        assert!(ListQuery::from_pairs([("limit", "101")]).is_err());
        assert!(ListQuery::from_pairs([("status", "DONE")]).is_err());
        assert!(ListQuery::from_pairs([("sort", "asc")]).is_err());
        assert_eq!(ListQuery::from_pairs([]).unwrap().limit, DEFAULT_LIST_LIMIT);
    }

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

    #[test]
    fn records_serialize_in_camel_case_without_empty_options() {
        let record = InvocationRecord {
            request_id: "r".into(),
            device_id: "d".into(),
            method: "m".into(),
            status: InvocationStatus::Pending,
            result: None,
            status_reason: None,
            created_at: "t".into(),
            completed_at: None,
            timeline: Some(vec![]),
            timeline_truncated: false,
        };
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            json!({"requestId": "r", "deviceId": "d", "method": "m", "status": "PENDING", "createdAt": "t", "timeline": []})
        );
    }
}
