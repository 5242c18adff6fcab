//! `ingest`: what the IoT topic rules deliver, into DynamoDB; and `redrive`: the dead-letter
//! queue fed back through the same code.
//!
//! Every rule selects `topic() AS topic`, which tells the kinds apart:
//! - `{prefix}/replies/{deviceId}/{requestId}`: a direct-invocation reply. The rule selects
//!   the device's message as `encode(*, 'base64') AS payload` and the rule's own
//!   `timestamp() AS receivedAt`: what a device sends never shares a namespace with the fields
//!   Tether decides by, so no payload can name another topic, time or event kind;
//! - `$aws/events/presence/{connected|disconnected}/{clientId}`: a presence event;
//! - `$aws/events/commandExecution/{commandId}/{status}`: an AWS IoT Commands execution event;
//!   on a final status the result is fetched with GetCommandExecution(includeResult), since
//!   the event does not carry it, and written with the status in one write.
//!
//! - `$aws/events/job/{jobId}/{operation}` and `$aws/events/jobExecution/{jobId}/{operation}`:
//!   AWS IoT Jobs events, kept in the job's history (`tether_store::jobs`) under the API's job
//!   id; events of jobs outside `JOB_ID_PREFIX` are acknowledged and not kept. An execution
//!   event without `statusDetails` gets them from DescribeJobExecution.
//!
//! Presence, execution and job events are written by AWS IoT on reserved topics that no device may
//! publish to, so their fields are read as they come.
//!
//! Writes are idempotent and order-safe (see `tether_store::records`). Only infrastructure
//! failures are errors (returned to Lambda, which retries the event and, after its retries,
//! the dead-letter queue keeps it). What a device got wrong is a fact, not a failure: a
//! malformed reply is kept in its invocation's timeline as `INVALID_REPLY` and acknowledged;
//! a reply topic whose ids break Tether's rules, a presence event for a client that is not a
//! Tether device and an event dated far in the future are acknowledged as rejected with the
//! reason (retrying cannot mend them). An event on a topic this function does not know is an
//! error, so a misrouted rule shows up in the dead-letter queue instead of vanishing.
//!
//! The dead-letter queue enters through its own function (`redrive`, [`redrive`]): an SQS
//! batch is never read from a rule event, so no device message can pose as one.

use std::collections::BTreeMap;
use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use base64::Engine as _;
use serde_json::{json, Value};
use tether_adapters::commands::CommandsGateway;
use tether_adapters::http::error_chain;
use tether_adapters::iot::GatewayError;
use tether_domain::clock::{excerpt, now_ms, plausible};
use tether_domain::jobs::{JobEvent, JobEventTopic};
use tether_domain::reply::DeviceReply;
use tether_domain::topics::{
    target_from_arn, ExecutionEventTopic, Inbox, InvokeTopics, Presence, PresenceTopic, ReplyTopic,
    TopicError,
};
use tether_domain::{
    CommandScope, DeviceId, ExecutionId, ExecutionStatus, InvocationStatus, JobId, JobScope, Phase,
    RequestId, Source, StatusReason,
};
use tether_store::{
    Outcome, PresenceEvent, RecordKey, RecordMeta, StatusChange, Store, StoreError, INVALID_REPLY,
};

/// Characters of outside text (topics, device messages) a log line keeps.
const LOG_EXCERPT: usize = 200;

/// Why an event could not be ingested. Returned to Lambda, which retries it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the event has no `topic` field: is the rule selecting `topic() AS topic`?")]
    NoTopic,
    #[error("no handler for events on {0:?}")]
    UnknownTopic(String),
    #[error("a reply event without a base64 `payload`: the reply rule must select `encode(*, 'base64') AS payload`")]
    NoPayload,
    #[error("writing to DynamoDB failed")]
    Store(#[from] StoreError),
    #[error("reading the execution result from AWS IoT failed")]
    Iot(#[from] GatewayError),
}

impl From<IngestError> for lambda_runtime::Diagnostic {
    /// The error as Lambda reports it (and as the dead-letter queue keeps it), with its causes.
    fn from(err: IngestError) -> Self {
        let error_type = match &err {
            IngestError::NoTopic | IngestError::UnknownTopic(_) | IngestError::NoPayload => {
                "UnknownEvent"
            }
            IngestError::Store(e) if e.is_transient() => "StoreUnavailable",
            IngestError::Store(_) => "StoreError",
            IngestError::Iot(e) if e.transient => "IotUnavailable",
            IngestError::Iot(_) => "IotError",
        };
        let message = excerpt(&error_chain(&err), 1024);
        tracing::error!(error_type, error = %message, "event not ingested");
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: message,
        }
    }
}

/// What ingest writes.
pub trait Ports: Sync {
    fn apply_reply(
        &self,
        id: &RequestId,
        device: &DeviceId,
        change: &StatusChange,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send;
    /// Keeps a malformed reply in its invocation's timeline, if that invocation exists.
    fn reject_reply(
        &self,
        id: &RequestId,
        device: &DeviceId,
        change: &StatusChange,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn record_presence(
        &self,
        event: &PresenceEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn apply_execution(
        &self,
        id: &ExecutionId,
        change: &StatusChange,
        meta: &RecordMeta,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send;
    /// The execution's result from AWS IoT (GetCommandExecution with includeResult).
    fn fetch_result(
        &self,
        id: &ExecutionId,
        target_arn: &str,
    ) -> impl Future<Output = Result<Option<Value>, GatewayError>> + Send;
    fn store_result(
        &self,
        id: &ExecutionId,
        result: &Value,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn topics(&self) -> &InvokeTopics;
    /// Where Tether's commands live in AWS IoT: execution events of other commands are not
    /// Tether's to record.
    fn command_scope(&self) -> &CommandScope;
    /// Records a job or job-execution event under the API's job id; whether it was new.
    fn record_job_event(
        &self,
        job: &JobId,
        event: &JobEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Where Tether's jobs live in AWS IoT: events of other jobs are not Tether's to record.
    fn job_scope(&self) -> &JobScope;
    /// The device's `statusDetails` of a job execution from AWS IoT (DescribeJobExecution), for
    /// an event that came without them.
    fn job_details(
        &self,
        aws_job_id: &str,
        thing: &DeviceId,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, GatewayError>> + Send;
}

/// The real ports.
pub struct Deps {
    pub store: Store,
    pub commands: CommandsGateway,
    pub topics: InvokeTopics,
    pub jobs: JobScope,
}

impl Deps {
    /// The ports of a deployed function, from its environment (see `tether_adapters::config`).
    pub async fn from_env() -> Result<Self, tether_adapters::config::ConfigError> {
        let config = tether_adapters::config::Config::from_env()?;
        let sdk = tether_adapters::aws::sdk_config().await;
        let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table)
            .with_retention(config.retention);
        let commands = CommandsGateway::new(
            aws_sdk_iot::Client::new(&sdk),
            aws_sdk_iotjobsdataplane::Client::new(&sdk),
        )
        .with_scope(config.commands);
        Ok(Self {
            store,
            commands,
            topics: config.topics,
            jobs: config.jobs,
        })
    }
}

impl Ports for Deps {
    async fn apply_reply(
        &self,
        id: &RequestId,
        device: &DeviceId,
        change: &StatusChange,
    ) -> Result<Outcome, StoreError> {
        self.store.apply_reply(id, device, change).await
    }

    async fn reject_reply(
        &self,
        id: &RequestId,
        device: &DeviceId,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        self.store.reject_reply(id, device, change).await
    }

    async fn record_presence(&self, event: &PresenceEvent) -> Result<bool, StoreError> {
        self.store.record_presence(event).await
    }

    async fn apply_execution(
        &self,
        id: &ExecutionId,
        change: &StatusChange,
        meta: &RecordMeta,
    ) -> Result<Outcome, StoreError> {
        self.store
            .apply(&RecordKey::Execution(id.clone()), change, Some(meta))
            .await
    }

    async fn fetch_result(
        &self,
        id: &ExecutionId,
        target_arn: &str,
    ) -> Result<Option<Value>, GatewayError> {
        self.commands.result(id.as_str(), target_arn).await
    }

    async fn store_result(&self, id: &ExecutionId, result: &Value) -> Result<bool, StoreError> {
        self.store.set_execution_result(id, result).await
    }

    fn topics(&self) -> &InvokeTopics {
        &self.topics
    }

    fn command_scope(&self) -> &CommandScope {
        &self.commands.scope
    }

    async fn record_job_event(&self, job: &JobId, event: &JobEvent) -> Result<bool, StoreError> {
        self.store.record_job_event(job, event).await
    }

    fn job_scope(&self) -> &JobScope {
        &self.jobs
    }

    async fn job_details(
        &self,
        aws_job_id: &str,
        thing: &DeviceId,
    ) -> Result<Option<BTreeMap<String, String>>, GatewayError> {
        tether_adapters::jobs::execution_details(&self.commands.iot, aws_job_id, thing).await
    }
}

/// Handles one rule event; answers a short summary of what was done.
pub async fn handle(ports: &impl Ports, event: Value) -> Result<Value, IngestError> {
    // `topic` is the one field every rule event has.
    let event: RuleEvent = serde_json::from_value(event).map_err(|_| IngestError::NoTopic)?;
    ingest_event(ports, &event).await
}

pub use tether_domain::rule_event::{dead_letter_event, DeadLetterError, RuleEvent};

/// The `redrive` function: ingests each dead letter of an SQS batch and answers the ones that
/// failed again (`batchItemFailures`), which SQS keeps for a later attempt (and, past the
/// queue's maximum receive count, moves to the parking queue). Nothing is dropped.
pub async fn redrive(ports: &impl Ports, batch: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in batch.records {
        let id = message.message_id.unwrap_or_default();
        let outcome = match dead_letter_event(message.body.as_deref().unwrap_or_default()) {
            Ok(event) => ingest_event(ports, &event)
                .await
                .map(|_| ())
                .map_err(|e| error_chain(&e)),
            Err(problem) => Err(problem.to_string()),
        };
        match outcome {
            Ok(()) => tracing::info!(message_id = %id, "dead letter redriven"),
            Err(problem) => {
                tracing::warn!(message_id = %id, error = %excerpt(&problem, LOG_EXCERPT), "dead letter not redriven; it stays in the queue");
                response.add_failure(id);
            }
        }
    }
    response
}

/// What is answered for device input that is acknowledged without a write.
fn rejected(kind: &str, code: &str, topic: &str) -> Value {
    tracing::warn!(kind, code, topic = %excerpt(topic, LOG_EXCERPT), "event rejected and acknowledged");
    json!({ "kind": kind, "applied": false, "rejected": code })
}

/// An event's time, if Tether may order by it (see [`plausible`]).
fn event_time(at: Option<i64>) -> Result<i64, &'static str> {
    let now = now_ms();
    match at {
        None => Ok(now),
        Some(at) if plausible(at, now) => Ok(at),
        Some(_) => Err("IMPLAUSIBLE_TIMESTAMP"),
    }
}

#[tracing::instrument(skip_all, fields(topic))]
async fn ingest_event(ports: &impl Ports, event: &RuleEvent) -> Result<Value, IngestError> {
    let topic = event.topic.as_str();
    tracing::Span::current().record("topic", excerpt(topic, LOG_EXCERPT).as_str());
    match ports.topics().parse_reply(topic) {
        Ok(reply) => return ingest_reply(ports, &reply, event).await,
        Err(TopicError::BadId { .. }) => return Ok(rejected("reply", "INVALID_TOPIC_ID", topic)),
        Err(_) => {}
    }
    match PresenceTopic::parse(topic) {
        // The `invoke` instances' inboxes are clients of the broker, not devices.
        Ok(presence) if presence.client.as_str().starts_with(Inbox::CLIENT_PREFIX) => {
            return Ok(rejected("presence", "NOT_A_DEVICE", topic))
        }
        Ok(presence) => return ingest_presence(ports, &presence, event).await,
        // Other clients of the account (not Tether devices) connect too.
        Err(TopicError::BadId { .. }) => return Ok(rejected("presence", "NOT_A_DEVICE_ID", topic)),
        Err(_) => {}
    }
    match ExecutionEventTopic::parse(topic) {
        Ok(execution) => return ingest_execution(ports, &execution, event).await,
        Err(TopicError::BadId { .. }) => {
            return Ok(rejected("execution", "NOT_A_COMMAND_ID", topic))
        }
        Err(_) => {}
    }
    match JobEventTopic::parse(topic) {
        Ok(_) => return ingest_job_event(ports, event).await,
        Err(TopicError::BadId { .. }) => return Ok(rejected("job", "NOT_A_JOB_ID", topic)),
        Err(_) => {}
    }
    Err(IngestError::UnknownTopic(excerpt(topic, LOG_EXCERPT)))
}

/// A job or job-execution event: kept in the job's history (idempotent by event id; reads
/// sort by time). Events of jobs outside Tether's scope are acknowledged and not kept.
async fn ingest_job_event(ports: &impl Ports, event: &RuleEvent) -> Result<Value, IngestError> {
    let mut parsed = match JobEvent::parse(&event.topic, &event.fields) {
        Ok(parsed) => parsed,
        Err(problem) => {
            tracing::warn!(error = %problem, "malformed job event");
            return Ok(rejected("job", "MALFORMED_EVENT", &event.topic));
        }
    };
    let Some(job) = ports.job_scope().api_id(parsed.topic.job.as_str()) else {
        return Ok(rejected("job", "NOT_A_TETHER_JOB", &event.topic));
    };
    if event_time(Some(parsed.at_ms)).is_err() {
        return Ok(rejected("job", "IMPLAUSIBLE_TIMESTAMP", &event.topic));
    }
    if let (None, Some(thing)) = (&parsed.status_details, &parsed.thing) {
        // The device's last word, when the event does not carry it.
        parsed.status_details = ports.job_details(parsed.topic.job.as_str(), thing).await?;
    }
    let new_event = ports.record_job_event(&job, &parsed).await?;
    tracing::info!(job = %job, operation = %parsed.topic.operation, status = %parsed.status, device = ?parsed.thing.as_ref().map(|d| d.as_str()), new_event, "job event");
    Ok(json!({ "kind": "job", "jobId": job, "newEvent": new_event }))
}

async fn ingest_reply(
    ports: &impl Ports,
    topic: &ReplyTopic,
    event: &RuleEvent,
) -> Result<Value, IngestError> {
    let Ok(at) = event_time(event.received_at) else {
        return Ok(rejected("reply", "IMPLAUSIBLE_TIMESTAMP", &event.topic));
    };
    let bytes = event
        .payload
        .as_deref()
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .ok_or(IngestError::NoPayload)?;
    match DeviceReply::parse(&bytes) {
        Ok(reply) => {
            let change =
                StatusChange::new(InvocationStatus::from(reply.status), Source::Device, at)
                    .with_result(reply.recorded_result())
                    .with_reason(reply.status_reason);
            let outcome = ports
                .apply_reply(&topic.request_id, &topic.device, &change)
                .await?;
            tracing::info!(request_id = %topic.request_id, device = %topic.device, status = change.status, applied = outcome.applied, "reply");
            Ok(
                json!({ "kind": "reply", "requestId": topic.request_id, "applied": outcome.applied, "newEvent": outcome.new_event }),
            )
        }
        Err(problem) => {
            let description = excerpt(&problem.to_string(), 1024);
            tracing::warn!(request_id = %topic.request_id, device = %topic.device, error = %excerpt(&description, LOG_EXCERPT), "malformed reply");
            let change = StatusChange::rejected_reply(
                at,
                StatusReason::new(INVALID_REPLY, Some(description)),
            );
            let new_event = ports
                .reject_reply(&topic.request_id, &topic.device, &change)
                .await?;
            Ok(
                json!({ "kind": "reply", "requestId": topic.request_id, "applied": false, "newEvent": new_event, "rejected": problem.code() }),
            )
        }
    }
}

async fn ingest_presence(
    ports: &impl Ports,
    topic: &PresenceTopic,
    event: &RuleEvent,
) -> Result<Value, IngestError> {
    let Ok(at_ms) = event_time(event.time("timestamp")) else {
        return Ok(rejected("presence", "IMPLAUSIBLE_TIMESTAMP", &event.topic));
    };
    let text = |name: &str| event.text(name).map(str::to_owned);
    let presence = PresenceEvent {
        device: topic.client.clone(),
        presence: topic.presence,
        at_ms,
        session: text("sessionIdentifier"),
        disconnect_reason: match topic.presence {
            Presence::Disconnected => text("disconnectReason"),
            Presence::Connected => None,
        },
    };
    let newest = ports.record_presence(&presence).await?;
    tracing::info!(device = %topic.client, presence = ?topic.presence, newest, "presence");
    Ok(json!({ "kind": "presence", "deviceId": topic.client, "newest": newest }))
}

async fn ingest_execution(
    ports: &impl Ports,
    topic: &ExecutionEventTopic,
    event: &RuleEvent,
) -> Result<Value, IngestError> {
    let (Some(id), Some(target_arn)) = (
        event
            .text("executionId")
            .and_then(|id| ExecutionId::parse(id).ok()),
        event.text("targetArn"),
    ) else {
        tracing::warn!(topic = %topic, "execution event without a valid executionId or targetArn; ignored");
        return Ok(
            json!({ "kind": "execution", "ignored": "executionId or targetArn missing or invalid" }),
        );
    };
    let Some((target_kind, target)) = target_from_arn(target_arn) else {
        tracing::warn!(execution = %id, target_arn = %excerpt(target_arn, LOG_EXCERPT), "execution event for a target Tether cannot name; ignored");
        return Ok(
            json!({ "kind": "execution", "executionId": id, "ignored": "unsupported targetArn" }),
        );
    };
    let Ok(at) = event_time(event.time("timestamp")) else {
        return Ok(rejected("execution", "IMPLAUSIBLE_TIMESTAMP", &event.topic));
    };
    let Some(command) = ports.command_scope().api_id(topic.command.as_str()) else {
        tracing::info!(execution = %id, "an execution of a command outside Tether's scope; ignored");
        return Ok(
            json!({ "kind": "execution", "executionId": id, "ignored": "command outside COMMAND_ID_PREFIX" }),
        );
    };
    let status = event
        .text("status")
        .and_then(ExecutionStatus::parse)
        .unwrap_or(topic.status);
    let reason: Option<StatusReason> = event
        .fields
        .get("statusReason")
        .and_then(|r| serde_json::from_value(r.clone()).ok());
    let source = match status {
        ExecutionStatus::Created => Source::Cloud,
        ExecutionStatus::TimedOut => Source::of_timeout(reason.as_ref()),
        _ => Source::Device,
    };
    let mut change = StatusChange::new(status, source, at).with_reason(reason);
    // A final status is written together with its result, so nobody reads a SUCCEEDED record
    // whose result is still on its way.
    let result = match change.phase {
        Phase::Terminal => ports.fetch_result(&id, target_arn).await?,
        _ => None,
    };
    change = change.with_result(result.clone());
    let meta = RecordMeta::Execution {
        command,
        target,
        target_kind,
        parameters: None,
    };
    let outcome = ports.apply_execution(&id, &change, &meta).await?;
    let result_stored = match (&result, outcome.applied) {
        (Some(_), true) => true,
        // The record was final already (a duplicate, or a report that won first): the result
        // still belongs on it.
        (Some(result), false) => ports.store_result(&id, result).await?,
        (None, _) => false,
    };
    tracing::info!(execution = %id, status = change.status, applied = outcome.applied, result_stored, "execution event");
    Ok(
        json!({ "kind": "execution", "executionId": id, "applied": outcome.applied, "resultStored": result_stored }),
    )
}

#[cfg(test)]
mod tests;
