//! AWS IoT Jobs through the API: `POST /jobs` and `POST /jobs/{jobId}/cancel` bodies, checked,
//! and a job and its executions as the API shows them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{invalid, present, TimelineEntry};
use crate::error::ApiError;
use crate::ids::{DeviceId, JobId};
use crate::jobs::{JobExecutionStatus, JobStatus};

/// Targets of one job.
pub const MAX_JOB_TARGETS: usize = 100;
/// Largest job document, serialized (AWS: 32 KB).
pub const MAX_JOB_DOCUMENT_BYTES: usize = 32 * 1024;
/// `rollout.maximumPerMinute` (AWS: 1–1000).
pub const ROLLOUT_PER_MINUTE: std::ops::RangeInclusive<u32> = 1..=1000;
/// `timeoutMinutes` (AWS: 1 minute to 7 days).
pub const JOB_TIMEOUT_MINUTES: std::ops::RangeInclusive<u32> = 1..=10_080;
/// `retry[].retries` (AWS: 0–10).
pub const JOB_RETRIES: std::ops::RangeInclusive<u32> = 0..=10;
/// Longest description and comment (AWS: 2028 characters).
pub const MAX_JOB_TEXT: usize = 2028;

/// `rollout`: how fast executions are created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    pub maximum_per_minute: u32,
}

/// Which failures an abort or retry rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureType {
    Failed,
    Rejected,
    TimedOut,
    All,
}

impl FailureType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "FAILED",
            Self::Rejected => "REJECTED",
            Self::TimedOut => "TIMED_OUT",
            Self::All => "ALL",
        }
    }
}

/// `abort[]`: cancel the job once `thresholdPercentage` of at least `minExecuted` finished
/// executions failed this way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortRule {
    pub failure_type: FailureType,
    pub threshold_percentage: f64,
    pub min_executed: u32,
}

/// `retry[]`: queue an execution that failed this way again, at most `retries` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryRule {
    pub failure_type: FailureType,
    pub retries: u32,
}

/// `POST /jobs` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateJobRequest {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub job_id: Option<String>,
    pub targets: Vec<String>,
    pub document: Value,
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
    pub rollout: Option<Rollout>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub abort: Option<Vec<AbortRule>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_minutes: Option<u32>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry: Option<Vec<RetryRule>>,
}

/// A `POST /jobs` body that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub job_id: Option<JobId>,
    pub targets: Vec<DeviceId>,
    /// The document, a JSON object, as the devices get it.
    pub document: Map<String, Value>,
    pub description: Option<String>,
    pub rollout: Option<Rollout>,
    pub abort: Vec<AbortRule>,
    pub timeout_minutes: Option<u32>,
    pub retry: Vec<RetryRule>,
}

fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(t) if t.chars().count() > max => {
            Err(invalid(format!("{field} must be at most {max} characters")))
        }
        other => Ok(other),
    }
}

impl CreateJobRequest {
    pub fn validate(self) -> Result<NewJob, ApiError> {
        let job_id = self
            .job_id
            .map(|id| JobId::parse(id).map_err(|e| invalid(e.to_string())))
            .transpose()?;
        if !(1..=MAX_JOB_TARGETS).contains(&self.targets.len()) {
            return Err(invalid(format!(
                "targets must list 1 to {MAX_JOB_TARGETS} device ids"
            )));
        }
        let mut seen = BTreeSet::new();
        let mut targets = Vec::with_capacity(self.targets.len());
        for (i, target) in self.targets.into_iter().enumerate() {
            let device =
                DeviceId::parse(target).map_err(|e| invalid(format!("targets[{i}]: {e}")))?;
            if !seen.insert(device.clone()) {
                return Err(invalid(format!("targets[{i}]: {device} is listed twice")));
            }
            targets.push(device);
        }
        let Value::Object(document) = self.document else {
            return Err(invalid("document must be a JSON object"));
        };
        if Value::Object(document.clone()).to_string().len() > MAX_JOB_DOCUMENT_BYTES {
            return Err(invalid(format!(
                "document must be at most {MAX_JOB_DOCUMENT_BYTES} bytes as JSON"
            )));
        }
        if let Some(rollout) = &self.rollout {
            if !ROLLOUT_PER_MINUTE.contains(&rollout.maximum_per_minute) {
                return Err(invalid("rollout.maximumPerMinute must be 1 to 1000"));
            }
        }
        let abort = self.abort.unwrap_or_default();
        for (i, rule) in abort.iter().enumerate() {
            if !(rule.threshold_percentage > 0.0 && rule.threshold_percentage <= 100.0) {
                return Err(invalid(format!(
                    "abort[{i}].thresholdPercentage must be over 0 and at most 100"
                )));
            }
            if rule.min_executed == 0 {
                return Err(invalid(format!(
                    "abort[{i}].minExecuted must be at least 1"
                )));
            }
        }
        if let Some(minutes) = self.timeout_minutes {
            if !JOB_TIMEOUT_MINUTES.contains(&minutes) {
                return Err(invalid("timeoutMinutes must be 1 to 10080"));
            }
        }
        let retry = self.retry.unwrap_or_default();
        for (i, rule) in retry.iter().enumerate() {
            if rule.failure_type == FailureType::Rejected {
                return Err(invalid(format!(
                    "retry[{i}].failureType must be FAILED, TIMED_OUT or ALL: a rejected job is not retried"
                )));
            }
            if !JOB_RETRIES.contains(&rule.retries) {
                return Err(invalid(format!("retry[{i}].retries must be 0 to 10")));
            }
        }
        Ok(NewJob {
            job_id,
            targets,
            document,
            description: text("description", self.description, MAX_JOB_TEXT)?,
            rollout: self.rollout,
            abort,
            timeout_minutes: self.timeout_minutes,
            retry,
        })
    }
}

/// `POST /jobs/{jobId}/cancel` body (it may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelJobRequest {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub comment: Option<String>,
    /// Cancel IN_PROGRESS executions too (devices already running the job are told to stop).
    #[serde(default)]
    pub force: bool,
}

impl CancelJobRequest {
    pub fn validate(self) -> Result<Self, ApiError> {
        Ok(Self {
            comment: text("comment", self.comment, MAX_JOB_TEXT)?,
            force: self.force,
        })
    }
}

/// `201` of `POST /jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedJob {
    pub job_id: String,
    pub job_arn: String,
}

/// A job as `GET /jobs/{jobId}` shows it (and, without `targets` and `counts`, as `GET /jobs`
/// lists it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: String,
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Executions per status; `PENDING_ROLLOUT` counts targets whose executions the rollout
    /// has not created yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_canceled: bool,
}

/// A job execution as `GET /jobs/{jobId}/executions` and `GET /devices/{deviceId}/jobs` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionView {
    pub job_id: String,
    pub device_id: String,
    pub status: JobExecutionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<BTreeMap<String, String>>,
    pub queued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub execution_number: i64,
    /// What AWS IoT announced of this execution (its events), oldest first. Left out of the
    /// per-device list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(body: Value) -> Result<NewJob, ApiError> {
        serde_json::from_value::<CreateJobRequest>(body)
            .map_err(|e| ApiError::Validation(e.to_string()))?
            .validate()
    }

    #[test]
    fn a_full_job_request_is_accepted() {
        let new = job(json!({
            "jobId": "fw-2", "targets": ["a", "b"], "document": {"op": "upgrade"},
            "description": "firmware 2", "rollout": {"maximumPerMinute": 10},
            "abort": [{"failureType": "FAILED", "thresholdPercentage": 50, "minExecuted": 2}],
            "timeoutMinutes": 30, "retry": [{"failureType": "TIMED_OUT", "retries": 2}]
        }))
        .unwrap();
        assert_eq!(new.targets.len(), 2);
        assert_eq!(new.job_id.unwrap().as_str(), "fw-2");
        assert_eq!(new.abort[0].min_executed, 2);
    }

    #[test]
    fn bad_job_requests_name_the_field() {
        let big = "x".repeat(MAX_JOB_DOCUMENT_BYTES);
        let cases = [
            (json!({"targets": [], "document": {}}), "targets"),
            (json!({"targets": ["a", "a"], "document": {}}), "twice"),
            (json!({"targets": ["a/b"], "document": {}}), "targets[0]"),
            (json!({"targets": ["a"], "document": [1]}), "object"),
            (json!({"targets": ["a"], "document": {"x": big}}), "bytes"),
            (
                json!({"targets": ["a"], "document": {}, "jobId": "a b"}),
                "jobId",
            ),
            (
                json!({"targets": ["a"], "document": {}, "rollout": {"maximumPerMinute": 0}}),
                "maximumPerMinute",
            ),
            (
                json!({"targets": ["a"], "document": {}, "timeoutMinutes": 0}),
                "timeoutMinutes",
            ),
            (
                json!({"targets": ["a"], "document": {}, "retry": [{"failureType": "REJECTED", "retries": 1}]}),
                "retry[0]",
            ),
            (
                json!({"targets": ["a"], "document": {}, "abort": [{"failureType": "ALL", "thresholdPercentage": 0, "minExecuted": 1}]}),
                "abort[0]",
            ),
            (
                json!({"targets": ["a"], "document": {}, "extra": 1}),
                "unknown field",
            ),
            (
                json!({"targets": ["a"], "document": {}, "description": null}),
                "null",
            ),
        ];
        for (body, expected) in cases {
            let err = job(body.clone()).unwrap_err().to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
        let many: Vec<String> = (0..=MAX_JOB_TARGETS).map(|i| format!("d{i}")).collect();
        assert!(job(json!({"targets": many, "document": {}})).is_err());
    }

    #[test]
    fn views_serialize_without_empty_fields() {
        let view = JobView {
            job_id: "j".into(),
            status: JobStatus::InProgress,
            description: None,
            targets: None,
            created_at: "t".into(),
            updated_at: None,
            completed_at: None,
            counts: None,
            comment: None,
            reason_code: None,
            force_canceled: false,
        };
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            json!({"jobId": "j", "status": "IN_PROGRESS", "createdAt": "t"})
        );
    }
}
