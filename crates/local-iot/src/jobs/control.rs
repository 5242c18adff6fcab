//! The Jobs control plane (`iot`): CreateJob, DescribeJob, GetJobDocument, ListJobs,
//! CancelJob, DeleteJob, ListJobExecutionsForJob, ListJobExecutionsForThing,
//! DescribeJobExecution and CancelJobExecution.
//!
//! Things are implicit: a target `arn:aws:iot:{region}:{account}:thing/{name}` is accepted for
//! any valid thing name, registered or not (the emulator has no thing registry).

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde_json::{json, Map, Value};

use tether_domain::jobs::{JobExecutionStatus, JobStatus};
use tether_domain::{DeviceId, JobId};

use super::lifecycle::process_details;
use super::secs;
use super::state::{AbortCriterion, Execution, FailureType, Job, Jobs, RetryCriterion};
use crate::aws::{arn_resource, AwsError};
use crate::commands::paging::{max_results, paginate};

/// Largest job document (AWS: 32 KB).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Most targets of one job in this emulator (AWS allows more through thing groups).
const MAX_TARGETS: usize = 1000;

fn job_id(text: &str) -> Result<JobId, AwsError> {
    JobId::parse(text).map_err(|e| AwsError::invalid_request(e.to_string()))
}

fn thing_name(text: &str) -> Result<DeviceId, AwsError> {
    DeviceId::parse(text).map_err(|e| AwsError::invalid_request(e.to_string()))
}

fn object<'a>(body: &'a Value, name: &str) -> Result<Option<&'a Map<String, Value>>, AwsError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(AwsError::invalid_request(format!(
            "{name} must be an object"
        ))),
    }
}

fn failure_type(c: &Value, allowed: &[&str]) -> Result<FailureType, AwsError> {
    c.get("failureType")
        .and_then(Value::as_str)
        .filter(|t| allowed.contains(t))
        .and_then(FailureType::parse)
        .ok_or_else(|| {
            AwsError::invalid_request(format!("failureType must be one of {}", allowed.join(", ")))
        })
}

fn criteria<'a>(config: &'a Map<String, Value>, name: &str) -> Result<&'a Vec<Value>, AwsError> {
    config
        .get("criteriaList")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            AwsError::invalid_request(format!(
                "{name}.criteriaList must list at least one criterion"
            ))
        })
}

fn abort_criteria(body: &Value) -> Result<Vec<AbortCriterion>, AwsError> {
    let Some(config) = object(body, "abortConfig")? else {
        return Ok(Vec::new());
    };
    criteria(config, "abortConfig")?
        .iter()
        .map(|c| {
            if c.get("action").and_then(Value::as_str) != Some("CANCEL") {
                return Err(AwsError::invalid_request("abort action must be CANCEL"));
            }
            let threshold_percentage = c
                .get("thresholdPercentage")
                .and_then(Value::as_f64)
                .filter(|t| *t > 0.0 && *t <= 100.0)
                .ok_or_else(|| {
                    AwsError::invalid_request("thresholdPercentage must be over 0 and at most 100")
                })?;
            let min_executed = c
                .get("minNumberOfExecutedThings")
                .and_then(Value::as_u64)
                .filter(|m| *m >= 1)
                .ok_or_else(|| {
                    AwsError::invalid_request("minNumberOfExecutedThings must be at least 1")
                })?;
            Ok(AbortCriterion {
                failure_type: failure_type(c, &["FAILED", "REJECTED", "TIMED_OUT", "ALL"])?,
                threshold_percentage,
                min_executed,
            })
        })
        .collect()
}

fn retry_criteria(body: &Value) -> Result<Vec<RetryCriterion>, AwsError> {
    let Some(config) = object(body, "jobExecutionsRetryConfig")? else {
        return Ok(Vec::new());
    };
    criteria(config, "jobExecutionsRetryConfig")?
        .iter()
        .map(|c| {
            let retries = c
                .get("numberOfRetries")
                .and_then(Value::as_u64)
                .filter(|n| *n <= 10)
                .ok_or_else(|| AwsError::invalid_request("numberOfRetries must be 0-10"))?;
            Ok(RetryCriterion {
                failure_type: failure_type(c, &["FAILED", "TIMED_OUT", "ALL"])?,
                retries: retries as u32,
            })
        })
        .collect()
}

/// The things a CreateJob's targets name, each once.
fn targets(body: &Value) -> Result<(Vec<String>, Vec<DeviceId>), AwsError> {
    let list = body
        .get("targets")
        .and_then(Value::as_array)
        .filter(|l| (1..=MAX_TARGETS).contains(&l.len()))
        .ok_or_else(|| {
            AwsError::invalid_request(format!("targets must list 1-{MAX_TARGETS} thing ARNs"))
        })?;
    let mut arns = Vec::new();
    let mut things = Vec::new();
    let mut seen = BTreeSet::new();
    for target in list {
        let arn = target
            .as_str()
            .ok_or_else(|| AwsError::invalid_request("each target must be an ARN"))?;
        let Some(("thing", name)) = arn_resource(arn) else {
            return Err(AwsError::invalid_request(format!(
                "target {arn} is not a thing ARN (local-iot has no thing groups)"
            )));
        };
        let thing = thing_name(name)?;
        if seen.insert(thing.clone()) {
            arns.push(arn.to_owned());
            things.push(thing);
        }
    }
    Ok((arns, things))
}

/// The job document: a JSON object given as text, at most 32 KB.
fn document(body: &Value) -> Result<Value, AwsError> {
    if body.get("documentSource").is_some() {
        return Err(AwsError::invalid_request(
            "local-iot takes the job document inline (document), not from S3 (documentSource)",
        ));
    }
    let text = body
        .get("document")
        .and_then(Value::as_str)
        .ok_or_else(|| AwsError::invalid_request("document is required"))?;
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(AwsError::invalid_request("document exceeds 32 KB"));
    }
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| AwsError::invalid_request("document must be a JSON object"))
}

/// The job's execution summary in the control plane's shape.
fn execution_summary(e: &Execution) -> Value {
    let mut out = json!({
        "status": e.status.as_str(),
        "queuedAt": secs(e.queued_at),
        "lastUpdatedAt": secs(e.last_updated_at),
        "executionNumber": e.number,
        "retryAttempt": e.retry_attempt,
    });
    if let Some(at) = e.started_at {
        out["startedAt"] = secs(at);
    }
    out
}

fn status_filter(query: &HashMap<String, String>) -> Result<Option<JobExecutionStatus>, AwsError> {
    query
        .get("status")
        .map(|s| {
            JobExecutionStatus::parse(s).ok_or_else(|| {
                AwsError::invalid_request(format!("{s} is not a job execution status"))
            })
        })
        .transpose()
}

fn force(query: &HashMap<String, String>) -> bool {
    query.get("force").is_some_and(|f| f == "true")
}

impl Jobs {
    fn job_json(&self, job: &Job, details: Value) -> Value {
        let mut out = json!({
            "jobArn": self.account.arn(&format!("job/{}", job.id)),
            "jobId": job.id,
            "targetSelection": "SNAPSHOT",
            "status": job.status.as_str(),
            "forceCanceled": job.force_canceled,
            "targets": job.targets,
            "createdAt": secs(job.created_at),
            "lastUpdatedAt": secs(job.last_updated_at),
            "jobProcessDetails": details,
            "isConcurrent": false,
        });
        for (name, config) in &job.configs {
            out[name] = config.clone();
        }
        for (name, value) in [
            ("description", &job.description),
            ("comment", &job.comment),
            ("reasonCode", &job.reason_code),
        ] {
            if let Some(value) = value {
                out[name] = json!(value);
            }
        }
        if let Some(at) = job.completed_at {
            out["completedAt"] = secs(at);
        }
        out
    }

    /// CreateJob: `PUT /jobs/{jobId}`.
    pub async fn create_job(&self, id: &str, body: &Value) -> Result<Value, AwsError> {
        let id = job_id(id)?;
        let (targets, things) = targets(body)?;
        let document = document(body)?;
        match body.get("targetSelection").and_then(Value::as_str) {
            None | Some("SNAPSHOT") => {}
            Some(other) => {
                return Err(AwsError::invalid_request(format!(
                    "targetSelection {other}: local-iot runs SNAPSHOT jobs only"
                )))
            }
        }
        let description = match body.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d.chars().count() <= 2028 => Some(d.clone()),
            Some(_) => {
                return Err(AwsError::invalid_request(
                    "description must be text of at most 2028 characters",
                ))
            }
        };
        let rollout_per_minute =
            match object(body, "jobExecutionsRolloutConfig")? {
                None => None,
                Some(config) => match config.get("maximumPerMinute") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().filter(|m| (1..=1000).contains(m)).ok_or_else(
                        || AwsError::invalid_request("maximumPerMinute must be 1-1000"),
                    )? as u32),
                },
            };
        let in_progress_timeout_minutes = match object(body, "timeoutConfig")? {
            None => None,
            Some(config) => match config.get("inProgressTimeoutInMinutes") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().filter(|m| (1..=10_080).contains(m)).ok_or_else(
                    || AwsError::invalid_request("inProgressTimeoutInMinutes must be 1-10080"),
                )?),
            },
        };
        let abort = abort_criteria(body)?;
        let retry = retry_criteria(body)?;
        let configs = [
            "jobExecutionsRolloutConfig",
            "abortConfig",
            "timeoutConfig",
            "jobExecutionsRetryConfig",
        ]
        .into_iter()
        .filter_map(|name| {
            body.get(name)
                .filter(|v| !v.is_null())
                .map(|v| (name.to_owned(), v.clone()))
        })
        .collect();
        let arn = self.account.arn(&format!("job/{id}"));
        let created = self
            .change(|state, now, _| {
                if state.jobs.contains_key(&id) {
                    return Err(AwsError::new(
                        409,
                        "ResourceAlreadyExistsException",
                        format!("job {id} already exists"),
                    ));
                }
                state.jobs.insert(
                    id.clone(),
                    Job {
                        id: id.clone(),
                        description: description.clone(),
                        document,
                        targets,
                        things: things.clone(),
                        status: JobStatus::InProgress,
                        force_canceled: false,
                        reason_code: None,
                        comment: None,
                        rollout_per_minute,
                        abort,
                        in_progress_timeout_minutes,
                        retry,
                        configs,
                        unrolled: VecDeque::from(things),
                        created_at: now,
                        last_updated_at: now,
                        completed_at: None,
                    },
                );
                Ok(())
            })
            .await;
        created?;
        tracing::debug!(job = %id, "CreateJob");
        self.roll_out(id.clone());
        let mut out = json!({ "jobArn": arn, "jobId": id });
        if let Some(description) = description {
            out["description"] = json!(description);
        }
        Ok(out)
    }

    /// DescribeJob: `GET /jobs/{jobId}`.
    pub fn describe_job(&self, id: &str) -> Result<Value, AwsError> {
        let id = job_id(id)?;
        let state = self.lock();
        let job = state.jobs.get(&id).ok_or_else(|| not_found_job(&id))?;
        Ok(json!({ "job": self.job_json(job, process_details(&state, job)) }))
    }

    /// GetJobDocument: `GET /jobs/{jobId}/job-document`.
    pub fn job_document(&self, id: &str) -> Result<Value, AwsError> {
        let id = job_id(id)?;
        let state = self.lock();
        let job = state.jobs.get(&id).ok_or_else(|| not_found_job(&id))?;
        Ok(json!({ "document": job.document.to_string() }))
    }

    /// ListJobs: `GET /jobs`, oldest first.
    pub fn list_jobs(&self, query: &HashMap<String, String>) -> Result<Value, AwsError> {
        let status = query
            .get("status")
            .map(|s| {
                JobStatus::parse(s)
                    .ok_or_else(|| AwsError::invalid_request(format!("{s} is not a job status")))
            })
            .transpose()?;
        let max = max_results(query)?;
        let state = self.lock();
        let mut jobs: Vec<&Job> = state
            .jobs
            .values()
            .filter(|j| status.is_none_or(|s| j.status == s))
            .collect();
        jobs.sort_by_key(|j| (j.created_at, j.id.clone()));
        let (page, next) = paginate(
            jobs,
            |j| j.id.as_str(),
            max,
            query.get("nextToken").map(String::as_str),
        )?;
        let jobs: Vec<Value> = page
            .iter()
            .map(|j| {
                let mut summary = json!({
                    "jobArn": self.account.arn(&format!("job/{}", j.id)),
                    "jobId": j.id,
                    "targetSelection": "SNAPSHOT",
                    "status": j.status.as_str(),
                    "createdAt": secs(j.created_at),
                    "lastUpdatedAt": secs(j.last_updated_at),
                    "isConcurrent": false,
                });
                if let Some(at) = j.completed_at {
                    summary["completedAt"] = secs(at);
                }
                summary
            })
            .collect();
        let mut out = json!({ "jobs": jobs });
        if let Some(next) = next {
            out["nextToken"] = json!(next);
        }
        Ok(out)
    }

    /// CancelJob: `PUT /jobs/{jobId}/cancel?force=`.
    pub async fn cancel_job_request(
        &self,
        id: &str,
        query: &HashMap<String, String>,
        body: &Value,
    ) -> Result<Value, AwsError> {
        let id = job_id(id)?;
        let text = |name: &str, max: usize| -> Result<Option<String>, AwsError> {
            match body.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
                Some(_) => Err(AwsError::invalid_request(format!(
                    "{name} must be text of at most {max} characters"
                ))),
            }
        };
        let comment = text("comment", 2028)?;
        let reason_code = text("reasonCode", 128)?;
        let force = force(query);
        let arn = self.account.arn(&format!("job/{id}"));
        self.change(|state, now, changes| {
            let job = state.jobs.get(&id).ok_or_else(|| not_found_job(&id))?;
            match job.status {
                JobStatus::InProgress => {}
                // Cancelling again may add force to a cancellation.
                JobStatus::Canceled if force && !job.force_canceled => {}
                status => {
                    return Err(AwsError::new(
                        409,
                        "InvalidStateTransitionException",
                        format!("job {id} is {status}"),
                    ))
                }
            }
            self.cancel_job(state, &id, force, reason_code, comment, now, changes);
            Ok(json!({ "jobArn": arn, "jobId": id }))
        })
        .await
    }

    /// DeleteJob: `DELETE /jobs/{jobId}?force=`. A job in progress needs `force`; its
    /// executions are deleted with it.
    pub async fn delete_job(
        &self,
        id: &str,
        query: &HashMap<String, String>,
    ) -> Result<(), AwsError> {
        let id = job_id(id)?;
        let force = force(query);
        self.change(|state, now, changes| {
            let job = state
                .jobs
                .get(&id)
                .ok_or_else(|| not_found_job(&id))?
                .clone();
            if !job.status.is_finished() && !force {
                return Err(AwsError::new(
                    409,
                    "InvalidStateTransitionException",
                    format!("job {id} is {}; deleting it needs force", job.status),
                ));
            }
            for thing in &job.things {
                if let Some(e) = state.executions.remove(&(thing.clone(), id.clone())) {
                    changes
                        .messages
                        .push(self.execution_event(&e, "deleted", now));
                    changes.things.insert(thing.clone());
                }
            }
            let mut job = state.jobs.remove(&id).expect("looked up above");
            job.status = JobStatus::DeletionInProgress;
            job.last_updated_at = now;
            changes
                .messages
                .push(self.job_event(state, &job, "deleted", now));
            Ok(())
        })
        .await
    }

    /// ListJobExecutionsForJob: `GET /jobs/{jobId}/things`.
    pub fn executions_for_job(
        &self,
        id: &str,
        query: &HashMap<String, String>,
    ) -> Result<Value, AwsError> {
        let id = job_id(id)?;
        let status = status_filter(query)?;
        let max = max_results(query)?;
        let state = self.lock();
        let job = state.jobs.get(&id).ok_or_else(|| not_found_job(&id))?;
        let executions: Vec<&Execution> = state
            .executions_of(job)
            .filter(|e| status.is_none_or(|s| e.status == s))
            .collect();
        let (page, next) = paginate(
            executions,
            |e| e.thing.as_str(),
            max,
            query.get("nextToken").map(String::as_str),
        )?;
        let summaries: Vec<Value> = page
            .iter()
            .map(|e| {
                json!({
                    "thingArn": self.account.arn(&format!("thing/{}", e.thing)),
                    "jobExecutionSummary": execution_summary(e),
                })
            })
            .collect();
        let mut out = json!({ "executionSummaries": summaries });
        if let Some(next) = next {
            out["nextToken"] = json!(next);
        }
        Ok(out)
    }

    /// ListJobExecutionsForThing: `GET /things/{thingName}/jobs` (signed for `iot`).
    pub fn executions_for_thing(
        &self,
        thing: &str,
        query: &HashMap<String, String>,
    ) -> Result<Value, AwsError> {
        let thing = thing_name(thing)?;
        let status = status_filter(query)?;
        let max = max_results(query)?;
        let state = self.lock();
        let mut executions: Vec<&Execution> = state
            .executions
            .values()
            .filter(|e| e.thing == thing && status.is_none_or(|s| e.status == s))
            .collect();
        executions.sort_by_key(|e| e.seq);
        let (page, next) = paginate(
            executions,
            |e| e.job.as_str(),
            max,
            query.get("nextToken").map(String::as_str),
        )?;
        let summaries: Vec<Value> = page
            .iter()
            .map(|e| json!({ "jobId": e.job, "jobExecutionSummary": execution_summary(e) }))
            .collect();
        let mut out = json!({ "executionSummaries": summaries });
        if let Some(next) = next {
            out["nextToken"] = json!(next);
        }
        Ok(out)
    }

    /// DescribeJobExecution (`iot`): `GET /things/{thingName}/jobs/{jobId}`.
    pub fn describe_execution(&self, thing: &str, job: &str) -> Result<Value, AwsError> {
        let thing = thing_name(thing)?;
        let job = job_id(job)?;
        let state = self.lock();
        let e = state
            .executions
            .get(&(thing.clone(), job.clone()))
            .ok_or_else(|| AwsError::not_found(format!("no execution of job {job} on {thing}")))?;
        let mut out = execution_summary(e);
        out["jobId"] = json!(e.job);
        out["thingArn"] = json!(self.account.arn(&format!("thing/{}", e.thing)));
        out["forceCanceled"] = json!(e.force_canceled);
        out["versionNumber"] = json!(e.version);
        out["statusDetails"] = json!({ "detailsMap": e.status_details });
        if let Some(s) = e.seconds_before_timeout(tether_domain::clock::now_ms()) {
            out["approximateSecondsBeforeTimedOut"] = json!(s);
        }
        Ok(json!({ "execution": out }))
    }

    /// CancelJobExecution: `PUT /things/{thingName}/jobs/{jobId}/cancel?force=`. An
    /// IN_PROGRESS execution needs `force`.
    pub async fn cancel_execution(
        &self,
        thing: &str,
        job: &str,
        query: &HashMap<String, String>,
        body: &Value,
    ) -> Result<(), AwsError> {
        let thing = thing_name(thing)?;
        let job = job_id(job)?;
        let force = force(query);
        let expected = body.get("expectedVersion").and_then(Value::as_i64);
        self.change(|state, now, changes| {
            let key = (thing.clone(), job.clone());
            let e = state.executions.get(&key).ok_or_else(|| {
                AwsError::not_found(format!("no execution of job {job} on {thing}"))
            })?;
            if expected.is_some_and(|v| v != e.version) {
                return Err(AwsError::new(
                    409,
                    "VersionConflictException",
                    "expectedVersion does not match",
                ));
            }
            match e.status {
                JobExecutionStatus::Queued => {}
                JobExecutionStatus::InProgress if force => {}
                status => {
                    return Err(AwsError::new(
                        409,
                        "InvalidStateTransitionException",
                        format!(
                            "the execution is {status}{}",
                            if status == JobExecutionStatus::InProgress {
                                "; cancelling it needs force"
                            } else {
                                ""
                            }
                        ),
                    ))
                }
            }
            let in_progress = e.status == JobExecutionStatus::InProgress;
            if let Some(e) = state.executions.get_mut(&key) {
                e.force_canceled = in_progress;
            }
            self.finish(state, &key, JobExecutionStatus::Canceled, now, changes);
            Ok(())
        })
        .await
    }
}

fn not_found_job(id: &JobId) -> AwsError {
    AwsError::not_found(format!("job {id} not found"))
}
