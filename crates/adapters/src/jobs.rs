//! AWS IoT Jobs as the `jobs` function uses it: the control plane (aws-sdk-iot), translated to
//! and from the API's shapes, inside the deployment's [`JobScope`].

use std::collections::BTreeMap;

use aws_sdk_iot::primitives::DateTime;
use aws_sdk_iot::types::{
    AbortAction, AbortConfig, AbortCriteria, JobExecutionFailureType, JobExecutionSummary,
    JobExecutionsRetryConfig, JobExecutionsRolloutConfig, RetryCriteria, RetryableFailureType,
    TimeoutConfig,
};
use serde_json::{Map, Value};
use tether_domain::api::{FailureType, JobExecutionView, JobView, NewJob, Page};
use tether_domain::error::Resource;
use tether_domain::jobs::{JobExecutionStatus, JobStatus};
use tether_domain::{ApiError, DeviceId, JobId, JobScope};

use crate::commands::api_error;

/// What CreateJob did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// A new job, with its ARN.
    New(String),
    /// A job with this id exists already.
    Exists,
}

/// A job as DescribeJob and GetJobDocument give it: the API's view, the document and the
/// target devices, to tell a retried creation from a different one.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    pub view: JobView,
    pub arn: String,
}

/// A time as the API writes every time: RFC 3339 with milliseconds (AWS sends epoch seconds
/// with a fraction; rounded, so `.297` does not print as `.296999`).
fn time(at: Option<&DateTime>) -> Option<String> {
    at.map(|t| tether_domain::clock::rfc3339((t.as_secs_f64() * 1000.0).round() as i64))
}

fn job_status(status: Option<&aws_sdk_iot::types::JobStatus>) -> Result<JobStatus, ApiError> {
    let text = status.map(|s| s.as_str()).unwrap_or_default();
    JobStatus::parse(text).ok_or_else(|| {
        tracing::error!(
            status = text,
            "AWS IoT answered a job status Tether does not know"
        );
        ApiError::Internal
    })
}

fn execution_status(
    status: Option<&aws_sdk_iot::types::JobExecutionStatus>,
) -> Result<JobExecutionStatus, ApiError> {
    let text = status.map(|s| s.as_str()).unwrap_or_default();
    JobExecutionStatus::parse(text).ok_or_else(|| {
        tracing::error!(
            status = text,
            "AWS IoT answered a job execution status Tether does not know"
        );
        ApiError::Internal
    })
}

/// The device a thing ARN names.
fn device_of(arn: &str) -> Option<DeviceId> {
    arn.split_once(":thing/")
        .and_then(|(_, name)| DeviceId::parse(name).ok())
}

/// An execution summary as the API shows it (no timeline: the store adds it).
fn execution_view(
    job: &JobId,
    device: &DeviceId,
    summary: Option<&JobExecutionSummary>,
) -> Result<JobExecutionView, ApiError> {
    let summary = summary.ok_or(ApiError::Internal)?;
    let status = execution_status(summary.status())?;
    let updated_at = time(summary.last_updated_at()).unwrap_or_default();
    Ok(JobExecutionView {
        job_id: job.to_string(),
        device_id: device.to_string(),
        status,
        status_details: None,
        queued_at: time(summary.queued_at()).unwrap_or_default(),
        started_at: time(summary.started_at()),
        completed_at: status.is_terminal().then(|| updated_at.clone()),
        updated_at,
        execution_number: summary.execution_number().unwrap_or(1),
        timeline: None,
    })
}

fn failure_type(t: FailureType) -> JobExecutionFailureType {
    JobExecutionFailureType::from(t.as_str())
}

/// Maps the Jobs errors the generic mapper does not know: a job that exists already and a
/// state that forbids the change are conflicts.
fn jobs_error<E>(
    operation: &'static str,
    err: aws_sdk_iot::error::SdkError<E, aws_sdk_iot::config::http::HttpResponse>,
    id: &JobId,
) -> ApiError
where
    E: aws_sdk_iot::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err.as_service_error().and_then(|e| e.code()) {
        Some("InvalidStateTransitionException") => ApiError::Conflict(format!(
            "job {id} cannot be changed that way in its current status"
        )),
        _ => api_error(operation, err, Resource::Job, id.as_str()),
    }
}

/// The `statusDetails` of a thing's execution of a job (DescribeJobExecution), for an event that
/// came without them; `None` when the execution has none or is gone (its job deleted).
pub async fn execution_details(
    client: &aws_sdk_iot::Client,
    aws_job_id: &str,
    thing: &DeviceId,
) -> Result<Option<BTreeMap<String, String>>, crate::iot::GatewayError> {
    let out = match client
        .describe_job_execution()
        .job_id(aws_job_id)
        .thing_name(thing.as_str())
        .send()
        .await
    {
        Ok(out) => out,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None)
        }
        Err(err) => {
            return Err(crate::iot::GatewayError::from_sdk(
                "DescribeJobExecution",
                err,
            ))
        }
    };
    Ok(out
        .execution
        .and_then(|e| e.status_details)
        .and_then(|d| d.details_map)
        .filter(|map| !map.is_empty())
        .map(|map| map.into_iter().collect()))
}

/// The Jobs control plane, within a scope.
#[derive(Debug, Clone)]
pub struct JobsGateway {
    client: aws_sdk_iot::Client,
    scope: JobScope,
    /// `arn:{partition}:iot:{region}:{account}`, to name things.
    arn_prefix: String,
}

impl JobsGateway {
    pub fn new(client: aws_sdk_iot::Client, arn_prefix: impl Into<String>) -> Self {
        Self {
            client,
            scope: JobScope::default(),
            arn_prefix: arn_prefix.into(),
        }
    }

    pub fn with_scope(mut self, scope: JobScope) -> Self {
        self.scope = scope;
        self
    }

    pub fn scope(&self) -> &JobScope {
        &self.scope
    }

    fn aws_id(&self, id: &JobId) -> Result<String, ApiError> {
        self.scope.aws_id(id)
    }

    /// CreateJob.
    pub async fn create(&self, id: &JobId, job: &NewJob) -> Result<Created, ApiError> {
        let aws_id = self.aws_id(id)?;
        let targets = job
            .targets
            .iter()
            .map(|d| format!("{}:thing/{d}", self.arn_prefix))
            .collect();
        let mut request = self
            .client
            .create_job()
            .job_id(&aws_id)
            .set_targets(Some(targets))
            .document(Value::Object(job.document.clone()).to_string())
            .set_description(job.description.clone());
        if let Some(rollout) = &job.rollout {
            request = request.job_executions_rollout_config(
                JobExecutionsRolloutConfig::builder()
                    .maximum_per_minute(rollout.maximum_per_minute as i32)
                    .build(),
            );
        }
        if !job.abort.is_empty() {
            let criteria = job
                .abort
                .iter()
                .map(|rule| {
                    AbortCriteria::builder()
                        .failure_type(failure_type(rule.failure_type))
                        .action(AbortAction::Cancel)
                        .threshold_percentage(rule.threshold_percentage)
                        .min_number_of_executed_things(rule.min_executed as i32)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| crate::http::internal(&e))?;
            request = request.abort_config(
                AbortConfig::builder()
                    .set_criteria_list(Some(criteria))
                    .build()
                    .map_err(|e| crate::http::internal(&e))?,
            );
        }
        if let Some(minutes) = job.timeout_minutes {
            request = request.timeout_config(
                TimeoutConfig::builder()
                    .in_progress_timeout_in_minutes(i64::from(minutes))
                    .build(),
            );
        }
        if !job.retry.is_empty() {
            let criteria = job
                .retry
                .iter()
                .map(|rule| {
                    RetryCriteria::builder()
                        .failure_type(RetryableFailureType::from(rule.failure_type.as_str()))
                        .number_of_retries(rule.retries as i32)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| crate::http::internal(&e))?;
            request = request.job_executions_retry_config(
                JobExecutionsRetryConfig::builder()
                    .set_criteria_list(Some(criteria))
                    .build()
                    .map_err(|e| crate::http::internal(&e))?,
            );
        }
        match request.send().await {
            Ok(out) => Ok(Created::New(out.job_arn().unwrap_or_default().to_owned())),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_already_exists_exception()) =>
            {
                Ok(Created::Exists)
            }
            Err(err) => Err(jobs_error("CreateJob", err, id)),
        }
    }

    /// DescribeJob, as the API shows a job.
    pub async fn describe(&self, id: &JobId) -> Result<Described, ApiError> {
        let out = self
            .client
            .describe_job()
            .job_id(self.aws_id(id)?)
            .send()
            .await
            .map_err(|e| jobs_error("DescribeJob", e, id))?;
        let job = out.job.ok_or(ApiError::Internal)?;
        let mut counts = BTreeMap::new();
        if let Some(d) = job.job_process_details() {
            for (status, n) in [
                (JobExecutionStatus::Queued, d.number_of_queued_things()),
                (
                    JobExecutionStatus::InProgress,
                    d.number_of_in_progress_things(),
                ),
                (
                    JobExecutionStatus::Succeeded,
                    d.number_of_succeeded_things(),
                ),
                (JobExecutionStatus::Failed, d.number_of_failed_things()),
                (JobExecutionStatus::Rejected, d.number_of_rejected_things()),
                (JobExecutionStatus::TimedOut, d.number_of_timed_out_things()),
                (JobExecutionStatus::Canceled, d.number_of_canceled_things()),
                (JobExecutionStatus::Removed, d.number_of_removed_things()),
            ] {
                counts.insert(status.as_str().to_owned(), n.unwrap_or(0).max(0) as u64);
            }
            counts.insert(
                "PENDING_ROLLOUT".to_owned(),
                d.processing_targets().len() as u64,
            );
        }
        let targets = job
            .targets()
            .iter()
            .map(|arn| {
                device_of(arn)
                    .map(|d| d.into_string())
                    .unwrap_or_else(|| arn.clone())
            })
            .collect();
        Ok(Described {
            arn: job.job_arn().unwrap_or_default().to_owned(),
            view: JobView {
                job_id: id.to_string(),
                status: job_status(job.status())?,
                description: job.description().map(str::to_owned),
                targets: Some(targets),
                created_at: time(job.created_at()).unwrap_or_default(),
                updated_at: time(job.last_updated_at()),
                completed_at: time(job.completed_at()),
                counts: Some(counts),
                comment: job.comment().map(str::to_owned),
                reason_code: job.reason_code().map(str::to_owned),
                force_canceled: job.force_canceled().unwrap_or(false),
            },
        })
    }

    /// GetJobDocument: the document as a JSON object.
    pub async fn document(&self, id: &JobId) -> Result<Map<String, Value>, ApiError> {
        let out = self
            .client
            .get_job_document()
            .job_id(self.aws_id(id)?)
            .send()
            .await
            .map_err(|e| jobs_error("GetJobDocument", e, id))?;
        match serde_json::from_str(out.document().unwrap_or_default()) {
            Ok(Value::Object(map)) => Ok(map),
            // A job of this scope made outside Tether: its document is not an object.
            _ => Ok(Map::new()),
        }
    }

    /// ListJobs: the scope's jobs. ListJobs has no id filter, so a page may hold fewer items
    /// than asked for (the account's other jobs are left out) and still have a next page.
    pub async fn list(&self, limit: u32, token: Option<String>) -> Result<Page<JobView>, ApiError> {
        let out = self
            .client
            .list_jobs()
            .max_results(limit as i32)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| api_error("ListJobs", e, Resource::Job, ""))?;
        let mut items = Vec::new();
        for summary in out.jobs() {
            let Some(id) = summary.job_id().and_then(|id| self.scope.api_id(id)) else {
                continue;
            };
            items.push(JobView {
                job_id: id.into_string(),
                status: job_status(summary.status())?,
                description: None,
                targets: None,
                created_at: time(summary.created_at()).unwrap_or_default(),
                updated_at: time(summary.last_updated_at()),
                completed_at: time(summary.completed_at()),
                counts: None,
                comment: None,
                reason_code: None,
                force_canceled: false,
            });
        }
        Ok(Page {
            items,
            next_token: out.next_token().map(str::to_owned),
        })
    }

    /// CancelJob.
    pub async fn cancel(
        &self,
        id: &JobId,
        comment: Option<&str>,
        force: bool,
    ) -> Result<(), ApiError> {
        self.client
            .cancel_job()
            .job_id(self.aws_id(id)?)
            .set_comment(comment.map(str::to_owned))
            .force(force)
            .send()
            .await
            .map_err(|e| jobs_error("CancelJob", e, id))?;
        Ok(())
    }

    /// DeleteJob (with `force`, also a job still in progress).
    pub async fn delete(&self, id: &JobId, force: bool) -> Result<(), ApiError> {
        self.client
            .delete_job()
            .job_id(self.aws_id(id)?)
            .force(force)
            .send()
            .await
            .map_err(|e| jobs_error("DeleteJob", e, id))?;
        Ok(())
    }

    /// ListJobExecutionsForJob.
    pub async fn executions(
        &self,
        id: &JobId,
        status: Option<JobExecutionStatus>,
        limit: u32,
        token: Option<String>,
    ) -> Result<Page<JobExecutionView>, ApiError> {
        let out = self
            .client
            .list_job_executions_for_job()
            .job_id(self.aws_id(id)?)
            .set_status(status.map(|s| aws_sdk_iot::types::JobExecutionStatus::from(s.as_str())))
            .max_results(limit as i32)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| jobs_error("ListJobExecutionsForJob", e, id))?;
        let items = out
            .execution_summaries()
            .iter()
            .filter_map(|s| {
                let device = device_of(s.thing_arn()?)?;
                Some(execution_view(id, &device, s.job_execution_summary()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next_token: out.next_token().map(str::to_owned),
        })
    }

    /// ListJobExecutionsForThing: the device's executions of the scope's jobs.
    pub async fn device_executions(
        &self,
        device: &DeviceId,
        status: Option<JobExecutionStatus>,
        limit: u32,
        token: Option<String>,
    ) -> Result<Page<JobExecutionView>, ApiError> {
        let out = self
            .client
            .list_job_executions_for_thing()
            .thing_name(device.as_str())
            .set_status(status.map(|s| aws_sdk_iot::types::JobExecutionStatus::from(s.as_str())))
            .max_results(limit as i32)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| {
                api_error(
                    "ListJobExecutionsForThing",
                    e,
                    Resource::Device,
                    device.as_str(),
                )
            })?;
        let items = out
            .execution_summaries()
            .iter()
            .filter_map(|s| {
                let id = self.scope.api_id(s.job_id()?)?;
                Some(execution_view(&id, device, s.job_execution_summary()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next_token: out.next_token().map(str::to_owned),
        })
    }
}
