//! `ingest`: what the IoT topic rules deliver, into DynamoDB.
//!
//! Every rule selects `topic() AS topic`, which tells the kinds apart:
//! - `{prefix}/replies/{deviceId}/{requestId}`: a direct-invocation reply (the payload's fields,
//!   plus `receivedAt` from the rule's `timestamp()`);
//! - `$aws/events/presence/{connected|disconnected}/{clientId}`: a presence event;
//! - `$aws/events/commandExecution/{commandId}/{status}`: an AWS IoT Commands execution event;
//!   on a final status the result is fetched with GetCommandExecution(includeResult), since
//!   the event does not carry it.
//!
//! Writes are idempotent and order-safe (see `tether_store::records`). A store failure is
//! returned as an error, so Lambda retries the event and, after its retries, the dead-letter
//! queue keeps it. The dead-letter queue can be fed back (the `RedriveDeadLetters` template
//! parameter): its messages arrive as an SQS batch, each holding a failed event, and what fails
//! again is reported back so that it stays in the queue. A malformed device message is kept in the timeline as `INVALID_REPLY` and
//! acknowledged (retrying cannot mend it). An event this function does not know is an error,
//! so a misrouted rule shows up in the dead-letter queue instead of vanishing.

use std::future::Future;

use base64::Engine as _;

use serde_json::{json, Value};
use tether_adapters::commands::CommandsGateway;
use tether_adapters::iot::GatewayError;
use tether_domain::clock::now_ms;
use tether_domain::reply::DeviceReply;
use tether_domain::topics::{
    target_from_arn, ExecutionEventTopic, InvokeTopics, Presence, PresenceTopic, ReplyTopic,
};
use tether_domain::{
    DeviceId, ExecutionId, ExecutionStatus, InvocationStatus, Phase, RequestId, Source,
    StatusReason,
};
use tether_store::{
    Outcome, PresenceEvent, RecordKey, RecordMeta, StatusChange, Store, StoreError, INVALID_REPLY,
};

/// Why an event could not be ingested. Returned to Lambda, which retries it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the event has no `topic` field: is the rule selecting `topic() AS topic`?")]
    NoTopic,
    #[error("no handler for events on {0:?}")]
    UnknownTopic(String),
    #[error("writing to DynamoDB failed")]
    Store(#[from] StoreError),
    #[error("reading the execution result from AWS IoT failed")]
    Iot(#[from] GatewayError),
}

impl From<IngestError> for lambda_runtime::Diagnostic {
    /// The error as Lambda reports it (and as the dead-letter queue keeps it), with its causes.
    fn from(err: IngestError) -> Self {
        let error_type = match &err {
            IngestError::NoTopic | IngestError::UnknownTopic(_) => "UnknownEvent",
            IngestError::Store(e) if e.is_transient() => "StoreUnavailable",
            IngestError::Store(_) => "StoreError",
            IngestError::Iot(e) if e.transient => "IotUnavailable",
            IngestError::Iot(_) => "IotError",
        };
        let mut message = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(next) = cause {
            message.push_str(": ");
            message.push_str(&next.to_string());
            cause = next.source();
        }
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
    fn record_event(
        &self,
        key: &RecordKey,
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
}

/// The real ports.
pub struct Deps {
    pub store: Store,
    pub commands: CommandsGateway,
    pub topics: InvokeTopics,
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

    async fn record_event(
        &self,
        key: &RecordKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        self.store.record_event(key, change).await
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
}

/// Handles what Lambda delivers: one rule event, or a batch of dead letters to redrive.
pub async fn handle(ports: &impl Ports, event: Value) -> Result<Value, IngestError> {
    match event.get("Records").and_then(Value::as_array) {
        Some(records) => Ok(redrive(ports, records).await),
        None => ingest_event(ports, event).await,
    }
}

/// The failed event a dead-letter message holds: Lambda's record of an asynchronous invocation
/// that failed after its retries (the event is its `requestPayload`), or an IoT rule's error
/// action message (the device's original payload, base64, and the topic). The error action
/// does not keep the rule's other selected fields, so a reply redriven from it is timed by the
/// redrive rather than by its arrival.
pub fn dead_letter_event(body: &str) -> Result<Value, String> {
    let message: Value =
        serde_json::from_str(body).map_err(|e| format!("the message is not JSON: {e}"))?;
    if let Some(event) = message.get("requestPayload").filter(|e| e.is_object()) {
        return Ok(event.clone());
    }
    let (Some(topic), Some(payload)) = (
        message.get("topic").and_then(Value::as_str),
        message.get("base64OriginalPayload").and_then(Value::as_str),
    ) else {
        return Err("neither a Lambda failure record nor an IoT rule error message".into());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .map_err(|e| format!("base64OriginalPayload: {e}"))?;
    let mut event: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the original payload is not JSON: {e}"))?;
    let Some(fields) = event.as_object_mut() else {
        return Err("the original payload is not a JSON object".into());
    };
    fields.insert("topic".into(), json!(topic));
    Ok(event)
}

/// Ingests each dead letter of an SQS batch; answers the ones that failed again
/// (`batchItemFailures`), which SQS keeps for a later attempt. Nothing is dropped.
async fn redrive(ports: &impl Ports, records: &[Value]) -> Value {
    let mut failed = Vec::new();
    for record in records {
        let id = record["messageId"].as_str().unwrap_or_default();
        let outcome = match dead_letter_event(record["body"].as_str().unwrap_or_default()) {
            Ok(event) => ingest_event(ports, event)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(problem) => Err(problem),
        };
        match outcome {
            Ok(()) => tracing::info!(message_id = id, "dead letter redriven"),
            Err(problem) => {
                tracing::warn!(message_id = id, error = %problem, "dead letter not redriven; it stays in the queue");
                failed.push(json!({ "itemIdentifier": id }));
            }
        }
    }
    json!({ "batchItemFailures": failed })
}

/// Handles one rule event; answers a short summary of what was done.
#[tracing::instrument(skip_all, fields(topic))]
async fn ingest_event(ports: &impl Ports, event: Value) -> Result<Value, IngestError> {
    let topic = event
        .get("topic")
        .and_then(Value::as_str)
        .ok_or(IngestError::NoTopic)?
        .to_owned();
    tracing::Span::current().record("topic", topic.as_str());
    if let Ok(reply) = ports.topics().parse_reply(&topic) {
        return ingest_reply(ports, &reply, &event).await;
    }
    if let Ok(presence) = PresenceTopic::parse(&topic) {
        return ingest_presence(ports, &presence, &event).await;
    }
    if let Ok(execution) = ExecutionEventTopic::parse(&topic) {
        return ingest_execution(ports, &execution, &event).await;
    }
    Err(IngestError::UnknownTopic(topic))
}

/// A reason's description: at most 1024 characters, no control characters.
fn describe(problem: &str) -> String {
    problem
        .chars()
        .filter(|c| !c.is_control())
        .take(1024)
        .collect()
}

async fn ingest_reply(
    ports: &impl Ports,
    topic: &ReplyTopic,
    event: &Value,
) -> Result<Value, IngestError> {
    let at = event
        .get("receivedAt")
        .and_then(Value::as_i64)
        .unwrap_or_else(now_ms);
    let mut payload = event.clone();
    if let Some(fields) = payload.as_object_mut() {
        fields.remove("topic");
        fields.remove("receivedAt");
    }
    let bytes = serde_json::to_vec(&payload).unwrap_or_default();
    match DeviceReply::parse(&bytes) {
        Ok(reply) => {
            let change =
                StatusChange::new(InvocationStatus::from(reply.status), Source::Device, at)
                    .with_reason(reply.status_reason)
                    .with_result(reply.result);
            let outcome = ports
                .apply_reply(&topic.request_id, &topic.device, &change)
                .await?;
            tracing::info!(request_id = %topic.request_id, device = %topic.device, status = change.status, applied = outcome.applied, "reply");
            Ok(
                json!({ "kind": "reply", "requestId": topic.request_id, "applied": outcome.applied, "newEvent": outcome.new_event }),
            )
        }
        Err(problem) => {
            tracing::warn!(request_id = %topic.request_id, device = %topic.device, error = %problem, "malformed reply kept in the timeline");
            let change = StatusChange::rejected_reply(
                at,
                StatusReason::new(INVALID_REPLY, Some(describe(&problem.to_string()))),
            );
            let new_event = ports
                .record_event(&RecordKey::Invocation(topic.request_id.clone()), &change)
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
    event: &Value,
) -> Result<Value, IngestError> {
    let text = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_owned);
    let presence = PresenceEvent {
        device: topic.client.clone(),
        presence: topic.presence,
        at_ms: event
            .get("timestamp")
            .and_then(Value::as_i64)
            .unwrap_or_else(now_ms),
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
    event: &Value,
) -> Result<Value, IngestError> {
    let text = |name: &str| event.get(name).and_then(Value::as_str);
    let (Some(id), Some(target_arn)) = (
        text("executionId").and_then(|id| ExecutionId::parse(id).ok()),
        text("targetArn"),
    ) else {
        tracing::warn!(topic = %topic, "execution event without a valid executionId or targetArn; ignored");
        return Ok(
            json!({ "kind": "execution", "ignored": "executionId or targetArn missing or invalid" }),
        );
    };
    let Some((target_kind, target)) = target_from_arn(target_arn) else {
        tracing::warn!(execution = %id, target_arn, "execution event for a target Tether cannot name; ignored");
        return Ok(
            json!({ "kind": "execution", "executionId": id, "ignored": "unsupported targetArn" }),
        );
    };
    let status = text("status")
        .and_then(ExecutionStatus::parse)
        .unwrap_or(topic.status);
    let reason: Option<StatusReason> = event
        .get("statusReason")
        .and_then(|r| serde_json::from_value(r.clone()).ok());
    let source = match status {
        ExecutionStatus::Created => Source::Cloud,
        ExecutionStatus::TimedOut => Source::of_timeout(reason.as_ref()),
        _ => Source::Device,
    };
    let at = event
        .get("timestamp")
        .and_then(Value::as_i64)
        .unwrap_or_else(now_ms);
    let change = StatusChange::new(status, source, at).with_reason(reason);
    let meta = RecordMeta::Execution {
        command: topic.command.clone(),
        target,
        target_kind,
        parameters: None,
    };
    let outcome = ports.apply_execution(&id, &change, &meta).await?;
    let mut result_stored = false;
    if change.phase == Phase::Terminal {
        if let Some(result) = ports.fetch_result(&id, target_arn).await? {
            result_stored = ports.store_result(&id, &result).await?;
        }
    }
    tracing::info!(execution = %id, status = change.status, applied = outcome.applied, result_stored, "execution event");
    Ok(
        json!({ "kind": "execution", "executionId": id, "applied": outcome.applied, "resultStored": result_stored }),
    )
}

#[cfg(test)]
mod tests;
