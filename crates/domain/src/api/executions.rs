//! `POST /commands/{commandId}/executions`: the body, checked into [`StartExecutions`], and the
//! answer, one entry a target.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{invalid, present, EXECUTION_TIMEOUT_S, MAX_TARGETS, WAIT_MS};
use crate::error::ApiError;
use crate::ids::DeviceId;
use crate::status::{ExecutionStatus, StatusReason};
use crate::topics::TargetKind;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
