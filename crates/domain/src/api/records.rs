//! What the read routes show: executions and invocations with their timelines, and a device's
//! connectivity.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::status::{ExecutionStatus, InvocationStatus, StatusReason};

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
