//! What devices send back.
//!
//! - [`DeviceReply`]: a direct-invocation reply on `{prefix}/replies/{deviceId}/{requestId}`.
//! - [`CommandResponse`]: an AWS IoT Commands response on `.../response/json`, validated with
//!   the service's rules (statuses, lower-case `s`/`b`/`bin` result values, reason codes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::status::{ExecutionStatus, ReasonError, StatusReason};

/// A direct-invocation reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceReply {
    pub status: ReplyStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<StatusReason>,
}

/// What a device can say to a direct invocation: that it is working on it (`IN_PROGRESS`,
/// optionally with progress details as `result`, any number of times), then its final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplyStatus {
    InProgress,
    Succeeded,
    Failed,
    Rejected,
}

impl ReplyStatus {
    /// Whether this is the device's final answer.
    pub fn is_final(self) -> bool {
        self != ReplyStatus::InProgress
    }
}

impl From<ReplyStatus> for crate::status::InvocationStatus {
    fn from(status: ReplyStatus) -> Self {
        match status {
            ReplyStatus::InProgress => Self::InProgress,
            ReplyStatus::Succeeded => Self::Succeeded,
            ReplyStatus::Failed => Self::Failed,
            ReplyStatus::Rejected => Self::Rejected,
        }
    }
}

/// Why a device message is refused; `code()` is the AWS rejected-topic error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
}

impl ResponseError {
    pub fn code(&self) -> &'static str {
        match self {
            ResponseError::InvalidJson(_) => "InvalidJson",
            ResponseError::InvalidRequest(_) => "InvalidRequest",
        }
    }
}

impl From<ReasonError> for ResponseError {
    fn from(err: ReasonError) -> Self {
        ResponseError::InvalidRequest(err.to_string())
    }
}

impl DeviceReply {
    /// Parses and checks a reply payload.
    pub fn parse(payload: &[u8]) -> Result<Self, ResponseError> {
        let reply: DeviceReply = serde_json::from_slice(payload)
            .map_err(|e| ResponseError::InvalidJson(e.to_string()))?;
        if let Some(reason) = &reply.status_reason {
            reason.validate_from_device()?;
        }
        Ok(reply)
    }

    /// The result the record keeps: a final answer's. Progress details travel in
    /// `statusReason`, which the timeline keeps; a `result` sent with `IN_PROGRESS` is not
    /// kept, so it can never be mistaken for the answer.
    pub fn recorded_result(&self) -> Option<Value> {
        self.result.clone().filter(|_| self.status.is_final())
    }
}

/// One value of a Commands result, device side (lower-case keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum ResultValue {
    #[serde(rename = "s")]
    S(String),
    #[serde(rename = "b")]
    B(bool),
    /// Base64 text.
    #[serde(rename = "bin")]
    Bin(String),
}

impl ResultValue {
    /// The same value as the AWS HTTP API shows it (upper-case keys).
    pub fn to_api(&self) -> Value {
        match self {
            ResultValue::S(s) => serde_json::json!({ "S": s }),
            ResultValue::B(b) => serde_json::json!({ "B": b }),
            ResultValue::Bin(b) => serde_json::json!({ "BIN": b }),
        }
    }
}

/// A device's response to a Commands execution (the MQTT "UpdateCommandExecution").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResponse {
    pub status: ExecutionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<StatusReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<BTreeMap<String, ResultValue>>,
}

impl CommandResponse {
    /// Parses and validates a JSON response with the service's rules.
    pub fn parse(payload: &[u8]) -> Result<Self, ResponseError> {
        let raw: Value = serde_json::from_slice(payload)
            .map_err(|e| ResponseError::InvalidJson(e.to_string()))?;
        let invalid = |m: String| ResponseError::InvalidRequest(m);
        let object = raw
            .as_object()
            .ok_or_else(|| invalid("the response must be a JSON object".into()))?;
        if let Some(result) = object.get("result").and_then(Value::as_object) {
            for (key, value) in result {
                if value.is_string() {
                    return Err(invalid(format!("result.{key}: Value cannot be a STRING")));
                }
            }
        }
        let response: CommandResponse =
            serde_json::from_value(raw).map_err(|e| invalid(e.to_string()))?;
        if response.status == ExecutionStatus::Created {
            return Err(invalid("a device cannot report CREATED".into()));
        }
        if let Some(reason) = &response.status_reason {
            reason.validate_from_device()?;
        }
        if let Some(result) = &response.result {
            if result.is_empty() {
                return Err(invalid(
                    "At least 1 command execution result is required".into(),
                ));
            }
            for key in result.keys() {
                let ok = (1..=32).contains(&key.len())
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(invalid(format!(
                        "result key {key:?} must be 1-32 characters of [a-zA-Z0-9_-]"
                    )));
                }
            }
        }
        Ok(response)
    }

    /// The result in the HTTP API's shape (upper-case keys).
    pub fn api_result(&self) -> Option<Value> {
        self.result
            .as_ref()
            .map(|r| Value::Object(r.iter().map(|(k, v)| (k.clone(), v.to_api())).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_reply_parses_with_optional_parts() {
        let reply = DeviceReply::parse(br#"{"status":"SUCCEEDED","result":{"on":true}}"#).unwrap();
        assert_eq!(reply.status, ReplyStatus::Succeeded);
        assert_eq!(reply.result, Some(serde_json::json!({"on": true})));
        assert!(DeviceReply::parse(br#"{"status":"DONE"}"#).is_err());
        assert!(DeviceReply::parse(b"not json").is_err());
        assert!(DeviceReply::parse(
            br#"{"status":"FAILED","statusReason":{"reasonCode":"lower"}}"#
        )
        .is_err());
    }

    #[test]
    fn command_response_follows_the_service_rules() {
        let ok = CommandResponse::parse(
            br#"{"status":"SUCCEEDED","statusReason":{"reasonCode":"OK"},"result":{"battery":{"b":true},"msg":{"s":"hi"},"blob":{"bin":"AAE="}}}"#,
        )
        .unwrap();
        assert_eq!(
            ok.api_result().unwrap(),
            serde_json::json!({"battery": {"B": true}, "msg": {"S": "hi"}, "blob": {"BIN": "AAE="}})
        );
        let cases: [(&[u8], &str); 7] = [
            (b"{", "InvalidJson"),
            (br#"{"status":"CREATED"}"#, "InvalidRequest"),
            (br#"{"status":"SUCCEEDED","result":{}}"#, "InvalidRequest"),
            (
                br#"{"status":"SUCCEEDED","result":{"k":"bare"}}"#,
                "InvalidRequest",
            ),
            (
                br#"{"status":"SUCCEEDED","result":{"k":{"S":"upper"}}}"#,
                "InvalidRequest",
            ),
            (
                br#"{"status":"FAILED","statusReason":{"reasonDescription":"no code"}}"#,
                "InvalidRequest",
            ),
            (br#"[1,2]"#, "InvalidRequest"),
        ];
        for (payload, code) in cases {
            let err = CommandResponse::parse(payload).unwrap_err();
            assert_eq!(err.code(), code, "{}", String::from_utf8_lossy(payload));
        }
    }
}
