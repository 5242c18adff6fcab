//! AWS IoT Jobs, as Tether, the emulator and the device agent agree on them
//! (`docs/aws-iot-reference.md` §3):
//! - [`JobExecutionStatus`] and the updates a device may make ([`check_device_update`]);
//! - [`JobStatus`], the job's own status;
//! - [`JobTopic`]: the device topics under `$aws/things/{thing}/jobs/`;
//! - [`JobEventTopic`]: `$aws/events/job/{jobId}/{operation}` and
//!   `$aws/events/jobExecution/{jobId}/{operation}`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, IdError, JobId};
use crate::topics::TopicError;

/// A job execution's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobExecutionStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    Rejected,
    TimedOut,
    Canceled,
    Removed,
}

impl JobExecutionStatus {
    pub const ALL: [JobExecutionStatus; 8] = [
        Self::Queued,
        Self::InProgress,
        Self::Succeeded,
        Self::Failed,
        Self::Rejected,
        Self::TimedOut,
        Self::Canceled,
        Self::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Rejected => "REJECTED",
            Self::TimedOut => "TIMED_OUT",
            Self::Canceled => "CANCELED",
            Self::Removed => "REMOVED",
        }
    }

    /// Parses the upper-case wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// QUEUED and IN_PROGRESS: the device still has work to do.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Queued | Self::InProgress)
    }

    pub fn is_terminal(self) -> bool {
        !self.is_pending()
    }

    /// The statuses a device may report: AWS IoT sets the others itself.
    pub fn device_may_set(self) -> bool {
        matches!(
            self,
            Self::InProgress | Self::Succeeded | Self::Failed | Self::Rejected
        )
    }

    /// The operation of the `$aws/events/jobExecution/{jobId}/{operation}` event announcing this
    /// status; `None` for the statuses that have no event (QUEUED, IN_PROGRESS).
    pub fn event_operation(self) -> Option<&'static str> {
        Some(match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::TimedOut => "timed_out",
            Self::Canceled => "canceled",
            Self::Removed => "removed",
            Self::Queued | Self::InProgress => return None,
        })
    }

    /// The order in which a record takes statuses: a status of a lower rank never replaces one
    /// of a higher rank, so late and repeated events converge on the last real status. Every
    /// terminal status outranks IN_PROGRESS, which outranks QUEUED.
    pub fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::InProgress => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for JobExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a device's update of a job execution is refused, with the `code` AWS IoT puts in the
/// `/rejected` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobUpdateError {
    #[error("a device may not set the status {0}")]
    NotADeviceStatus(JobExecutionStatus),
    #[error("the job execution is {0}, a terminal status: it can no longer be updated")]
    Terminal(JobExecutionStatus),
}

impl JobUpdateError {
    /// `InvalidRequest` for a status the device may not set, `InvalidStateTransition` for an
    /// update of a finished execution.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotADeviceStatus(_) => "InvalidRequest",
            Self::Terminal(_) => "InvalidStateTransition",
        }
    }
}

/// Whether a device may move an execution from `from` to `to`: QUEUED and IN_PROGRESS may
/// become IN_PROGRESS (again, to report progress), SUCCEEDED, FAILED or REJECTED; a terminal
/// execution stays as it is.
pub fn check_device_update(
    from: JobExecutionStatus,
    to: JobExecutionStatus,
) -> Result<(), JobUpdateError> {
    if !to.device_may_set() {
        return Err(JobUpdateError::NotADeviceStatus(to));
    }
    if from.is_terminal() {
        return Err(JobUpdateError::Terminal(from));
    }
    Ok(())
}

/// A job's own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    InProgress,
    Canceled,
    Completed,
    DeletionInProgress,
}

impl JobStatus {
    pub const ALL: [JobStatus; 4] = [
        Self::InProgress,
        Self::Canceled,
        Self::Completed,
        Self::DeletionInProgress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Canceled => "CANCELED",
            Self::Completed => "COMPLETED",
            Self::DeletionInProgress => "DELETION_IN_PROGRESS",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A job that is no longer in progress (COMPLETED or CANCELED) may be deleted without
    /// `force`.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Canceled | Self::Completed)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which execution a device asks about: a job's, or the next pending one (`$next`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRef {
    Next,
    Id(JobId),
}

impl JobRef {
    fn parse(topic: &str, level: &str) -> Result<Self, TopicError> {
        if level == "$next" {
            return Ok(Self::Next);
        }
        JobId::parse(level)
            .map(Self::Id)
            .map_err(|source| bad_id(topic, source))
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Next => f.write_str("$next"),
            Self::Id(id) => f.write_str(id.as_str()),
        }
    }
}

/// A device's request to AWS IoT Jobs over MQTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRequest {
    /// `jobs/get`: the pending executions.
    GetPending,
    /// `jobs/start-next`: start the next pending execution.
    StartNext,
    /// `jobs/{jobId|$next}/get`: one execution.
    Describe(JobRef),
    /// `jobs/{jobId}/update`.
    Update(JobId),
}

/// AWS IoT's answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobReply {
    Accepted,
    Rejected,
}

/// What a topic under `$aws/things/{thing}/jobs/` is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobTopicKind {
    Request(JobRequest),
    Reply(JobRequest, JobReply),
    /// `jobs/notify`: the pending executions changed.
    Notify,
    /// `jobs/notify-next`: the next pending execution changed.
    NotifyNext,
}

/// A topic of the Jobs device API: `$aws/things/{thing}/jobs/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTopic {
    pub thing: DeviceId,
    pub kind: JobTopicKind,
}

fn bad_id(topic: &str, source: IdError) -> TopicError {
    TopicError::BadId {
        topic: topic.to_owned(),
        source,
    }
}

fn not_jobs(topic: &str) -> TopicError {
    TopicError::Unexpected {
        topic: topic.to_owned(),
        expected: "AWS IoT Jobs",
    }
}

impl JobTopic {
    pub fn new(thing: DeviceId, kind: JobTopicKind) -> Self {
        Self { thing, kind }
    }

    pub fn request(thing: &DeviceId, request: JobRequest) -> Self {
        Self::new(thing.clone(), JobTopicKind::Request(request))
    }

    /// The topic AWS IoT answers a request on.
    pub fn reply(&self, reply: JobReply) -> Option<Self> {
        match &self.kind {
            JobTopicKind::Request(request) => Some(Self::new(
                self.thing.clone(),
                JobTopicKind::Reply(request.clone(), reply),
            )),
            _ => None,
        }
    }

    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let levels: Vec<&str> = topic.split('/').collect();
        let ["$aws", "things", thing, "jobs", rest @ ..] = levels.as_slice() else {
            return Err(not_jobs(topic));
        };
        let thing = DeviceId::parse(*thing).map_err(|e| bad_id(topic, e))?;
        let (request, tail) = match rest {
            ["notify"] => return Ok(Self::new(thing, JobTopicKind::Notify)),
            ["notify-next"] => return Ok(Self::new(thing, JobTopicKind::NotifyNext)),
            ["get", tail @ ..] => (JobRequest::GetPending, tail),
            ["start-next", tail @ ..] => (JobRequest::StartNext, tail),
            [job, "get", tail @ ..] => (JobRequest::Describe(JobRef::parse(topic, job)?), tail),
            [job, "update", tail @ ..] => match JobRef::parse(topic, job)? {
                JobRef::Id(id) => (JobRequest::Update(id), tail),
                // AWS IoT has no update of `$next`: the device names the job it ran.
                JobRef::Next => return Err(not_jobs(topic)),
            },
            _ => return Err(not_jobs(topic)),
        };
        let kind = match tail {
            [] => JobTopicKind::Request(request),
            ["accepted"] => JobTopicKind::Reply(request, JobReply::Accepted),
            ["rejected"] => JobTopicKind::Reply(request, JobReply::Rejected),
            _ => return Err(not_jobs(topic)),
        };
        Ok(Self::new(thing, kind))
    }

    /// The filters of every request a device may make (what AWS IoT listens to).
    pub fn request_filters() -> [&'static str; 4] {
        [
            "$aws/things/+/jobs/get",
            "$aws/things/+/jobs/start-next",
            "$aws/things/+/jobs/+/get",
            "$aws/things/+/jobs/+/update",
        ]
    }
}

impl fmt::Display for JobTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$aws/things/{}/jobs/", self.thing)?;
        let (request, reply) = match &self.kind {
            JobTopicKind::Notify => return f.write_str("notify"),
            JobTopicKind::NotifyNext => return f.write_str("notify-next"),
            JobTopicKind::Request(request) => (request, None),
            JobTopicKind::Reply(request, reply) => (request, Some(*reply)),
        };
        match request {
            JobRequest::GetPending => f.write_str("get")?,
            JobRequest::StartNext => f.write_str("start-next")?,
            JobRequest::Describe(job) => write!(f, "{job}/get")?,
            JobRequest::Update(job) => write!(f, "{job}/update")?,
        }
        match reply {
            None => Ok(()),
            Some(JobReply::Accepted) => f.write_str("/accepted"),
            Some(JobReply::Rejected) => f.write_str("/rejected"),
        }
    }
}

/// What a job event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEventKind {
    /// `$aws/events/job/{jobId}/{operation}`.
    Job,
    /// `$aws/events/jobExecution/{jobId}/{operation}`.
    Execution,
}

/// A Jobs event topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEventTopic {
    pub kind: JobEventKind,
    pub job: JobId,
    pub operation: String,
}

impl JobEventTopic {
    /// The operations of job events.
    pub const JOB_OPERATIONS: [&'static str; 5] = [
        "completed",
        "canceled",
        "deleted",
        "cancellation_in_progress",
        "deletion_in_progress",
    ];
    /// The operations of job-execution events.
    pub const EXECUTION_OPERATIONS: [&'static str; 7] = [
        "succeeded",
        "failed",
        "rejected",
        "canceled",
        "timed_out",
        "removed",
        "deleted",
    ];

    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let unexpected = || TopicError::Unexpected {
            topic: topic.to_owned(),
            expected: "Jobs event",
        };
        let levels: Vec<&str> = topic.split('/').collect();
        let ["$aws", "events", kind, job, operation] = levels.as_slice() else {
            return Err(unexpected());
        };
        let (kind, known): (_, &[&str]) = match *kind {
            "job" => (JobEventKind::Job, &Self::JOB_OPERATIONS),
            "jobExecution" => (JobEventKind::Execution, &Self::EXECUTION_OPERATIONS),
            _ => return Err(unexpected()),
        };
        if !known.contains(operation) {
            return Err(unexpected());
        }
        let job = JobId::parse(*job).map_err(|e| bad_id(topic, e))?;
        Ok(Self {
            kind,
            job,
            operation: (*operation).to_owned(),
        })
    }
}

impl fmt::Display for JobEventTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            JobEventKind::Job => "job",
            JobEventKind::Execution => "jobExecution",
        };
        write!(f, "$aws/events/{kind}/{}/{}", self.job, self.operation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thing() -> DeviceId {
        DeviceId::parse("pump-1").unwrap()
    }

    #[test]
    fn device_topics_round_trip() {
        let job = JobId::parse("fw-7").unwrap();
        let topics = [
            (
                "$aws/things/pump-1/jobs/get",
                JobTopicKind::Request(JobRequest::GetPending),
            ),
            (
                "$aws/things/pump-1/jobs/start-next/accepted",
                JobTopicKind::Reply(JobRequest::StartNext, JobReply::Accepted),
            ),
            (
                "$aws/things/pump-1/jobs/$next/get/rejected",
                JobTopicKind::Reply(JobRequest::Describe(JobRef::Next), JobReply::Rejected),
            ),
            (
                "$aws/things/pump-1/jobs/fw-7/update",
                JobTopicKind::Request(JobRequest::Update(job.clone())),
            ),
            (
                "$aws/things/pump-1/jobs/fw-7/get",
                JobTopicKind::Request(JobRequest::Describe(JobRef::Id(job))),
            ),
            ("$aws/things/pump-1/jobs/notify", JobTopicKind::Notify),
            (
                "$aws/things/pump-1/jobs/notify-next",
                JobTopicKind::NotifyNext,
            ),
        ];
        for (text, kind) in topics {
            let parsed = JobTopic::parse(text).unwrap();
            assert_eq!(parsed, JobTopic::new(thing(), kind), "{text}");
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn malformed_device_topics_are_refused() {
        for text in [
            "$aws/things/pump-1/jobs",
            "$aws/things/pump-1/jobs/$next/update",
            "$aws/things/pump-1/jobs/fw-7/delete",
            "$aws/things/pump+1/jobs/get",
            "$aws/things/pump-1/jobs/get/maybe",
            "$aws/things/pump-1/jobs/a.b/get",
            "$aws/things/pump-1/shadow/get",
        ] {
            assert!(JobTopic::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn replies_follow_requests() {
        let request = JobTopic::request(&thing(), JobRequest::StartNext);
        assert_eq!(
            request.reply(JobReply::Rejected).unwrap().to_string(),
            "$aws/things/pump-1/jobs/start-next/rejected"
        );
        assert_eq!(
            JobTopic::new(thing(), JobTopicKind::Notify).reply(JobReply::Accepted),
            None
        );
        for filter in JobTopic::request_filters() {
            let topic = filter.replace('+', "x");
            assert!(JobTopic::parse(&topic).is_ok(), "{topic}");
        }
    }

    #[test]
    fn event_topics_round_trip() {
        for text in [
            "$aws/events/job/fw-7/completed",
            "$aws/events/jobExecution/fw-7/timed_out",
        ] {
            assert_eq!(JobEventTopic::parse(text).unwrap().to_string(), text);
        }
        for text in [
            "$aws/events/job/fw-7/succeeded",
            "$aws/events/jobExecution/fw-7/completed",
            "$aws/events/jobs/fw-7/completed",
            "$aws/events/job/fw 7/completed",
        ] {
            assert!(JobEventTopic::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn devices_move_only_pending_executions() {
        use JobExecutionStatus::*;
        for from in [Queued, InProgress] {
            for to in [InProgress, Succeeded, Failed, Rejected] {
                assert_eq!(check_device_update(from, to), Ok(()), "{from} -> {to}");
            }
            for to in [Queued, TimedOut, Canceled, Removed] {
                assert_eq!(
                    check_device_update(from, to).unwrap_err().code(),
                    "InvalidRequest"
                );
            }
        }
        for from in [Succeeded, Failed, Rejected, TimedOut, Canceled, Removed] {
            assert_eq!(
                check_device_update(from, Succeeded).unwrap_err().code(),
                "InvalidStateTransition"
            );
        }
    }

    #[test]
    fn statuses_rank_and_name_their_events() {
        use JobExecutionStatus::*;
        assert!(Queued.rank() < InProgress.rank());
        assert!(InProgress.rank() < TimedOut.rank());
        for status in JobExecutionStatus::ALL {
            assert_eq!(JobExecutionStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.event_operation().is_some(), status.is_terminal());
        }
    }
}

/// Why a Jobs event cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobEventError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("the event's {0} is missing or malformed")]
    Field(&'static str),
}

/// A job or job-execution event as AWS IoT publishes it (`docs/aws-iot-reference.md` §3.5).
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub topic: JobEventTopic,
    pub event_id: String,
    /// `timestamp`, epoch seconds, in milliseconds.
    pub at_ms: i64,
    /// The job's or the execution's status, as the event names it.
    pub status: String,
    /// The device of an execution event (its `thingArn`).
    pub thing: Option<DeviceId>,
    pub status_details: Option<std::collections::BTreeMap<String, String>>,
    pub comment: Option<String>,
    pub reason_code: Option<String>,
}

impl JobEvent {
    /// Reads an event from the topic it came on and its fields.
    pub fn parse(
        topic: &str,
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, JobEventError> {
        use serde_json::Value;
        let topic = JobEventTopic::parse(topic)?;
        let text = |name: &'static str| -> Result<Option<String>, JobEventError> {
            match fields.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(JobEventError::Field(name)),
            }
        };
        let event_id = text("eventId")?
            .filter(|id| (1..=128).contains(&id.len()) && !id.contains('#'))
            .ok_or(JobEventError::Field("eventId"))?;
        let at_ms = fields
            .get("timestamp")
            .and_then(Value::as_i64)
            .and_then(|s| s.checked_mul(1000))
            .filter(|ms| *ms >= 0)
            .ok_or(JobEventError::Field("timestamp"))?;
        if fields.get("jobId").and_then(Value::as_str) != Some(topic.job.as_str()) {
            return Err(JobEventError::Field("jobId"));
        }
        let status = text("status")?.ok_or(JobEventError::Field("status"))?;
        let thing = match topic.kind {
            JobEventKind::Job => {
                JobStatus::parse(&status).ok_or(JobEventError::Field("status"))?;
                None
            }
            JobEventKind::Execution => {
                JobExecutionStatus::parse(&status).ok_or(JobEventError::Field("status"))?;
                let arn = text("thingArn")?.ok_or(JobEventError::Field("thingArn"))?;
                let name = arn
                    .split_once(":thing/")
                    .map(|(_, name)| name)
                    .ok_or(JobEventError::Field("thingArn"))?;
                Some(DeviceId::parse(name).map_err(|_| JobEventError::Field("thingArn"))?)
            }
        };
        // A flat map of strings, or the control plane's `{"detailsMap": {...}}`; any other shape
        // is read as absent (ingest then asks AWS IoT), never a reason to drop the event.
        let status_details = match fields.get("statusDetails") {
            Some(Value::Object(map)) => {
                let inner = map
                    .get("detailsMap")
                    .and_then(Value::as_object)
                    .unwrap_or(map);
                inner
                    .iter()
                    .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect::<Option<std::collections::BTreeMap<_, _>>>()
            }
            _ => None,
        };
        Ok(Self {
            topic,
            event_id,
            at_ms,
            status,
            thing,
            status_details,
            comment: text("comment")?,
            reason_code: text("reasonCode")?,
        })
    }
}

#[cfg(test)]
mod event_tests {
    use serde_json::json;

    use super::*;

    fn fields(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn execution_and_job_events_are_read() {
        let event = JobEvent::parse(
            "$aws/events/jobExecution/fw-7/succeeded",
            &fields(
                json!({"eventType": "JOB_EXECUTION", "eventId": "e-1", "timestamp": 1_700_000_000,
                "operation": "succeeded", "jobId": "fw-7", "status": "SUCCEEDED",
                "thingArn": "arn:aws:iot:us-east-1:1:thing/pump-1", "statusDetails": {"v": "2"}}),
            ),
        )
        .unwrap();
        assert_eq!(event.thing.unwrap().as_str(), "pump-1");
        assert_eq!(event.at_ms, 1_700_000_000_000);
        assert_eq!(event.status_details.unwrap()["v"], "2");
        let job = JobEvent::parse(
            "$aws/events/job/fw-7/canceled",
            &fields(
                json!({"eventId": "e-2", "timestamp": 1, "jobId": "fw-7", "status": "CANCELED",
                "comment": "stop", "reasonCode": "$ABORTED"}),
            ),
        )
        .unwrap();
        assert_eq!(
            (job.thing, job.reason_code.as_deref()),
            (None, Some("$ABORTED"))
        );
    }

    #[test]
    fn malformed_events_are_refused() {
        let good = json!({"eventId": "e", "timestamp": 1, "jobId": "j", "status": "FAILED",
            "thingArn": "arn:aws:iot:r:1:thing/d"});
        let topic = "$aws/events/jobExecution/j/failed";
        assert!(JobEvent::parse(topic, &fields(good.clone())).is_ok());
        for (name, value) in [
            ("eventId", json!(null)),
            ("timestamp", json!("soon")),
            ("jobId", json!("other")),
            ("status", json!("DONE")),
            ("thingArn", json!("arn:aws:iot:r:1:thinggroup/d")),
        ] {
            let mut bad = good.clone();
            bad[name] = value;
            assert!(JobEvent::parse(topic, &fields(bad)).is_err(), "{name}");
        }
        assert!(
            JobEvent::parse("$aws/events/jobExecution/j/finished", &fields(good.clone())).is_err()
        );
        // Details of another shape are read as absent, not a reason to drop the event; the
        // control plane's `detailsMap` wrapper is read through.
        let mut odd = good.clone();
        odd["statusDetails"] = json!({"k": 1});
        assert_eq!(
            JobEvent::parse(topic, &fields(odd)).unwrap().status_details,
            None
        );
        let mut wrapped = good;
        wrapped["statusDetails"] = json!({"detailsMap": {"k": "v"}});
        let details = JobEvent::parse(topic, &fields(wrapped))
            .unwrap()
            .status_details;
        assert_eq!(details.unwrap()["k"], "v");
    }
}
