//! The device side of Jobs, one implementation behind both transports: over MQTT
//! (`$aws/things/{thing}/jobs/...`, answered on `/accepted` or `/rejected`) and over HTTPS
//! (iot-jobs-data GetPendingJobExecutions, StartNextPendingJobExecution, DescribeJobExecution,
//! UpdateJobExecution).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use tether_domain::clock::now_ms;
use tether_domain::jobs::{
    check_device_update, JobExecutionStatus, JobRef, JobReply, JobRequest, JobTopic, JobTopicKind,
};
use tether_domain::{DeviceId, JobId};

use super::lifecycle::{epoch_s, Changes};
use super::state::{Execution, Jobs, State};
use super::{execution_mqtt, summary_mqtt};
use crate::aws::AwsError;
use crate::broker::JobsRequest;

/// A refused device request: the MQTT `code`, a message, and for a version mismatch the
/// execution's current state.
#[derive(Debug)]
pub(super) struct DeviceError {
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) state: Option<Value>,
}

impl DeviceError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            state: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidRequest", message)
    }

    fn not_found(thing: &DeviceId, job: &str) -> Self {
        Self::new(
            "ResourceNotFound",
            format!("no job execution of {job} on {thing}"),
        )
    }

    /// The iot-jobs-data error for the same refusal.
    pub(super) fn into_aws(self) -> AwsError {
        let (status, kind) = match self.code {
            "ResourceNotFound" => (404, "ResourceNotFoundException"),
            "InvalidStateTransition" => (409, "InvalidStateTransitionException"),
            "VersionMismatch" => (409, "ConflictException"),
            "TerminalStateReached" => (410, "TerminalStateException"),
            _ => (400, "InvalidRequestException"),
        };
        AwsError::new(status, kind, self.message)
    }
}

/// `statusDetails`: at most 10 string values, keys of `[a-zA-Z0-9:_-]` (1–128), values of
/// 1–1024 characters.
fn status_details(body: &Value) -> Result<Option<BTreeMap<String, String>>, DeviceError> {
    let Some(details) = body.get("statusDetails").filter(|d| !d.is_null()) else {
        return Ok(None);
    };
    let problem = || DeviceError::invalid("statusDetails must be a map of at most 10 strings");
    let map = details.as_object().ok_or_else(problem)?;
    if map.len() > 10 {
        return Err(problem());
    }
    map.iter()
        .map(|(k, v)| {
            let v = v.as_str().ok_or_else(problem)?;
            let key_ok = (1..=128).contains(&k.len())
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b));
            if !key_ok || !(1..=1024).contains(&v.chars().count()) {
                return Err(problem());
            }
            Ok((k.clone(), v.to_owned()))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// `stepTimeoutInMinutes`: 1–10080, or -1 to stop the step timer.
fn step_timeout(body: &Value) -> Result<Option<i64>, DeviceError> {
    match body.get("stepTimeoutInMinutes") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|m| *m == -1 || (1..=10_080).contains(m))
            .map(Some)
            .ok_or_else(|| DeviceError::invalid("stepTimeoutInMinutes must be -1 or 1-10080")),
    }
}

fn flag(body: &Value, name: &str, default: bool) -> Result<bool, DeviceError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(DeviceError::invalid(format!(
            "{name} must be true or false"
        ))),
    }
}

fn number(body: &Value, name: &str) -> Result<Option<i64>, DeviceError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| DeviceError::invalid(format!("{name} must be a whole number"))),
    }
}

/// An UpdateJobExecution request, checked.
pub(super) struct Update {
    status: JobExecutionStatus,
    details: Option<BTreeMap<String, String>>,
    expected_version: Option<i64>,
    execution_number: Option<i64>,
    include_state: bool,
    include_document: bool,
    step_timeout: Option<i64>,
}

impl Update {
    pub(super) fn parse(body: &Value) -> Result<Self, DeviceError> {
        let status = body
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| DeviceError::invalid("status is required"))?;
        let status = JobExecutionStatus::parse(status).ok_or_else(|| {
            DeviceError::invalid(format!("{status} is not a job execution status"))
        })?;
        Ok(Self {
            status,
            details: status_details(body)?,
            expected_version: number(body, "expectedVersion")?,
            execution_number: number(body, "executionNumber")?,
            include_state: flag(body, "includeJobExecutionState", false)?,
            include_document: flag(body, "includeJobDocument", false)?,
            step_timeout: step_timeout(body)?,
        })
    }
}

/// The execution's state as an update answers it.
fn execution_state(e: &Execution) -> Value {
    json!({
        "status": e.status.as_str(),
        "statusDetails": e.status_details,
        "versionNumber": e.version,
    })
}

impl Jobs {
    /// Starts or moves the step timer of an IN_PROGRESS execution.
    fn set_step_timer(
        &self,
        e: &mut Execution,
        minutes: Option<i64>,
        now: i64,
        changes: &mut Changes,
    ) {
        match minutes {
            None => {}
            Some(-1) => e.step_deadline = None,
            Some(m) => {
                let at = now + self.minutes_ms(m as f64);
                e.step_deadline = Some(at);
                changes
                    .timers
                    .push((at, e.job.clone(), e.thing.clone(), e.number));
            }
        }
    }

    /// QUEUED → IN_PROGRESS: the start time, and the job's in-progress timer.
    fn start(&self, state: &mut State, key: &(DeviceId, JobId), now: i64, changes: &mut Changes) {
        let timeout = state
            .jobs
            .get(&key.1)
            .and_then(|j| j.in_progress_timeout_minutes);
        let Some(e) = state.executions.get_mut(key) else {
            return;
        };
        e.status = JobExecutionStatus::InProgress;
        e.started_at = Some(now);
        if let Some(minutes) = timeout {
            let at = now + self.minutes_ms(minutes as f64);
            e.in_progress_deadline = Some(at);
            changes
                .timers
                .push((at, e.job.clone(), e.thing.clone(), e.number));
        }
        changes.things.insert(key.0.clone());
    }

    /// GetPendingJobExecutions: (IN_PROGRESS, QUEUED) summaries.
    pub(super) fn pending_summaries(&self, thing: &DeviceId) -> (Vec<Value>, Vec<Value>) {
        let state = self.lock();
        let (in_progress, queued): (Vec<&Execution>, Vec<&Execution>) = state
            .pending(thing)
            .into_iter()
            .partition(|e| e.status == JobExecutionStatus::InProgress);
        (
            in_progress.into_iter().map(summary_mqtt).collect(),
            queued.into_iter().map(summary_mqtt).collect(),
        )
    }

    /// StartNextPendingJobExecution: the next pending execution, started if it was QUEUED;
    /// `None` when nothing is pending.
    pub(super) async fn start_next(
        &self,
        thing: &DeviceId,
        body: &Value,
    ) -> Result<Option<(Execution, Value)>, DeviceError> {
        let details = status_details(body)?;
        let step = step_timeout(body)?;
        Ok(self
            .change(|state, now, changes| {
                let key = state
                    .pending(thing)
                    .first()
                    .map(|e| (e.thing.clone(), e.job.clone()))?;
                if state.executions[&key].status == JobExecutionStatus::Queued {
                    self.start(state, &key, now, changes);
                    let e = state.executions.get_mut(&key).expect("pending above");
                    if let Some(details) = details {
                        e.status_details = details;
                    }
                    e.version += 1;
                    e.last_updated_at = now;
                    self.set_step_timer(e, step, now, changes);
                }
                let e = state.executions[&key].clone();
                let document = state.jobs.get(&key.1).map(|j| j.document.clone())?;
                Some((e, document))
            })
            .await)
    }

    /// DescribeJobExecution (device side): one execution, or the next pending one.
    pub(super) fn describe(
        &self,
        thing: &DeviceId,
        job: &JobRef,
        execution_number: Option<i64>,
    ) -> Result<Option<(Execution, Value)>, DeviceError> {
        let state = self.lock();
        let e = match job {
            JobRef::Next => match state.pending(thing).first() {
                Some(e) => (*e).clone(),
                None => return Ok(None),
            },
            JobRef::Id(id) => state
                .executions
                .get(&(thing.clone(), id.clone()))
                .filter(|e| execution_number.is_none_or(|n| n == e.number))
                .cloned()
                .ok_or_else(|| DeviceError::not_found(thing, id.as_str()))?,
        };
        if e.status.is_terminal() {
            return Err(DeviceError::new(
                "TerminalStateReached",
                format!("the job execution is {}", e.status),
            ));
        }
        let document = state
            .jobs
            .get(&e.job)
            .map(|j| j.document.clone())
            .unwrap_or(Value::Null);
        Ok(Some((e, document)))
    }

    /// UpdateJobExecution: returns the execution after the update and the job document.
    pub(super) async fn update(
        &self,
        thing: &DeviceId,
        job: &JobId,
        update: Update,
    ) -> Result<Value, DeviceError> {
        self.change(|state, now, changes| {
            let key = (thing.clone(), job.clone());
            let e = state
                .executions
                .get(&key)
                .filter(|e| update.execution_number.is_none_or(|n| n == e.number))
                .ok_or_else(|| DeviceError::not_found(thing, job.as_str()))?;
            if update.expected_version.is_some_and(|v| v != e.version) {
                return Err(DeviceError {
                    code: "VersionMismatch",
                    message: format!(
                        "expectedVersion {} is not the current version {}",
                        update.expected_version.unwrap_or_default(),
                        e.version
                    ),
                    state: Some(execution_state(e)),
                });
            }
            check_device_update(e.status, update.status)
                .map_err(|err| DeviceError::new(err.code(), err.to_string()))?;
            if e.status == JobExecutionStatus::Queued {
                self.start(state, &key, now, changes);
            }
            let e = state.executions.get_mut(&key).expect("found above");
            if let Some(details) = update.details {
                e.status_details = details;
            }
            if update.status.is_terminal() {
                self.finish(state, &key, update.status, now, changes);
            } else {
                e.version += 1;
                e.last_updated_at = now;
                self.set_step_timer(e, update.step_timeout, now, changes);
            }
            let e = &state.executions[&key];
            let mut out = json!({});
            if update.include_state {
                out["executionState"] = execution_state(e);
            }
            if update.include_document {
                out["jobDocument"] = state
                    .jobs
                    .get(job)
                    .map(|j| j.document.clone())
                    .unwrap_or(Value::Null);
            }
            Ok(out)
        })
        .await
    }

    /// A device's request over MQTT: answered on `/accepted` or `/rejected` with its
    /// `clientToken`, to the requesting client alone, whether it subscribed or not.
    pub async fn device_request(&self, request: JobsRequest) {
        let Ok(topic) = JobTopic::parse(&request.topic) else {
            tracing::debug!(topic = %request.topic, "ignoring a malformed Jobs topic");
            return;
        };
        let JobTopicKind::Request(kind) = &topic.kind else {
            return;
        };
        let body: Result<Value, DeviceError> = if request.payload.is_empty() {
            Ok(json!({}))
        } else {
            serde_json::from_slice::<Value>(&request.payload)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| DeviceError::new("InvalidJson", "the request is not a JSON object"))
        };
        let token = body
            .as_ref()
            .ok()
            .and_then(|b| b.get("clientToken"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let result = match body {
            Ok(body) => self.answer(&topic.thing, kind, &body).await,
            Err(err) => Err(err),
        };
        let (reply, mut payload) = match result {
            Ok(payload) => (JobReply::Accepted, payload),
            Err(err) => {
                let mut payload = json!({ "code": err.code, "message": err.message });
                if let Some(state) = err.state {
                    payload["executionState"] = state;
                }
                (JobReply::Rejected, payload)
            }
        };
        payload["timestamp"] = json!(epoch_s(now_ms()));
        if let Some(token) = token {
            payload["clientToken"] = json!(token);
        }
        let reply_topic = topic
            .reply(reply)
            .expect("a request has replies")
            .to_string();
        // As in AWS IoT, the answer goes to the requesting client alone: it does not pass
        // through the message broker, so no other client and no rule sees it.
        self.direct
            .to_client(&request.client_id, &reply_topic, payload.to_string().into())
            .await;
    }

    async fn answer(
        &self,
        thing: &DeviceId,
        request: &JobRequest,
        body: &Value,
    ) -> Result<Value, DeviceError> {
        let now = now_ms();
        match request {
            JobRequest::GetPending => {
                let (in_progress, queued) = self.pending_summaries(thing);
                Ok(json!({ "inProgressJobs": in_progress, "queuedJobs": queued }))
            }
            JobRequest::StartNext => Ok(match self.start_next(thing, body).await? {
                Some((e, document)) => {
                    json!({ "execution": execution_mqtt(&e, Some(&document), now) })
                }
                None => json!({}),
            }),
            JobRequest::Describe(job) => {
                let include = flag(body, "includeJobDocument", true)?;
                let number = number(body, "executionNumber")?;
                Ok(match self.describe(thing, job, number)? {
                    Some((e, document)) => json!({
                        "execution": execution_mqtt(&e, include.then_some(&document), now)
                    }),
                    None => json!({}),
                })
            }
            JobRequest::Update(job) => self.update(thing, job, Update::parse(body)?).await,
        }
    }
}

/// The iot-jobs-data operations (HTTPS), in the service's shapes.
impl Jobs {
    fn https_thing(thing: &str) -> Result<DeviceId, AwsError> {
        DeviceId::parse(thing).map_err(|e| AwsError::invalid_request(e.to_string()))
    }

    /// GetPendingJobExecutions: `GET /things/{thingName}/jobs`.
    pub fn get_pending_https(&self, thing: &str) -> Result<Value, AwsError> {
        let (in_progress, queued) = self.pending_summaries(&Self::https_thing(thing)?);
        Ok(json!({ "inProgressJobs": in_progress, "queuedJobs": queued }))
    }

    /// StartNextPendingJobExecution: `PUT /things/{thingName}/jobs/$next`.
    pub async fn start_next_https(&self, thing: &str, body: &Value) -> Result<Value, AwsError> {
        let thing = Self::https_thing(thing)?;
        let started = self
            .start_next(&thing, body)
            .await
            .map_err(DeviceError::into_aws)?;
        Ok(match started {
            Some((e, document)) => {
                json!({ "execution": super::execution_https(&e, Some(&document), now_ms()) })
            }
            None => json!({}),
        })
    }

    /// DescribeJobExecution (iot-jobs-data): `GET /things/{thingName}/jobs/{jobId}`.
    pub fn describe_https(
        &self,
        thing: &str,
        job: &str,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<Value, AwsError> {
        let thing = Self::https_thing(thing)?;
        let job = if job == "$next" {
            JobRef::Next
        } else {
            JobRef::Id(JobId::parse(job).map_err(|e| AwsError::invalid_request(e.to_string()))?)
        };
        let include = query.get("includeJobDocument").is_none_or(|v| v != "false");
        let number = query
            .get("executionNumber")
            .map(|n| {
                n.parse::<i64>()
                    .map_err(|_| AwsError::invalid_request("executionNumber must be a number"))
            })
            .transpose()?;
        let (e, document) = self
            .describe(&thing, &job, number)
            .map_err(DeviceError::into_aws)?
            .ok_or_else(|| AwsError::not_found(format!("{thing} has no pending job execution")))?;
        Ok(
            json!({ "execution": super::execution_https(&e, include.then_some(&document), now_ms()) }),
        )
    }

    /// UpdateJobExecution: `POST /things/{thingName}/jobs/{jobId}`.
    pub async fn update_https(
        &self,
        thing: &str,
        job: &str,
        body: &Value,
    ) -> Result<Value, AwsError> {
        let thing = Self::https_thing(thing)?;
        let job = JobId::parse(job).map_err(|e| AwsError::invalid_request(e.to_string()))?;
        let update = Update::parse(body).map_err(DeviceError::into_aws)?;
        let mut out = self
            .update(&thing, &job, update)
            .await
            .map_err(DeviceError::into_aws)?;
        if let Some(document) = out.get("jobDocument").filter(|d| !d.is_string()) {
            out["jobDocument"] = json!(document.to_string());
        }
        Ok(out)
    }
}
