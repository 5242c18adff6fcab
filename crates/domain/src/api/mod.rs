//! The HTTP API's shapes (see docs/ARCHITECTURE.md "HTTP API") and limits.
//!
//! Requests are parsed into `*Request` types that refuse unknown fields, then checked into
//! validated forms by `validate()`, whose errors name the field at fault.
//!
//! Layout:
//! - `invoke`: the direct invocation's body and answer;
//! - `commands`: command resources (create, update, show) and the payload they send;
//! - `executions`: starting executions on targets, and what each target got;
//! - `jobs`: AWS IoT Jobs: the create and cancel bodies, a job and its executions;
//! - `records`: the histories of executions and invocations, and device connectivity;
//! - `paging`: list pages and the list routes' query.

use serde::Deserialize;

use crate::error::ApiError;

mod commands;
mod executions;
mod invoke;
mod jobs;
mod paging;
mod records;

pub use commands::{
    check_text, is_json_content_type, CommandDocument, CommandParameter, CommandPayload,
    CommandResource, CreateCommandRequest, UpdateCommandRequest, MAX_COMMAND_PAYLOAD,
};
pub use executions::{
    StartExecutions, StartExecutionsRequest, StartExecutionsResponse, StartedExecution,
};
pub use invoke::{Invocation, InvokeRequest, InvokeResponse};
pub use jobs::{
    AbortRule, CancelJobRequest, CreateJobRequest, CreatedJob, FailureType, JobExecutionView,
    JobView, NewJob, RetryRule, Rollout, JOB_RETRIES, JOB_TIMEOUT_MINUTES, MAX_JOB_DOCUMENT_BYTES,
    MAX_JOB_TARGETS, MAX_JOB_TEXT, ROLLOUT_PER_MINUTE,
};
pub use paging::{ListQuery, Page};
pub use records::{DeviceConnectivity, ExecutionRecord, InvocationRecord, TimelineEntry};

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Parses and validates an invoke body, as the invoke function does.
    pub(super) fn invoke(body: Value) -> Result<Invocation, ApiError> {
        serde_json::from_value::<InvokeRequest>(body)
            .map_err(|e| ApiError::Validation(e.to_string()))?
            .validate()
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
}
