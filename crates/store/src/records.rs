//! Execution and invocation records and their timelines.
//!
//! Items (one table, see `schema`):
//! - record: `pk = EXEC#{executionId}` or `INV#{requestId}`, `sk = RECORD`;
//! - timeline entry: same `pk`, `sk = EVENT#{at_ms, 15 digits}#{fingerprint}`, so a record and
//!   its history come back from one query, oldest event first;
//! - index keys on the record: `gsi1pk = DEVICE#{deviceId}#EXEC|INV` and
//!   `gsi2pk = COMMAND#{commandId}`, both sorted by `{createdAt}#{id}`.
//!
//! Writing a status change is two idempotent steps. First the timeline entry, with
//! `attribute_not_exists`: a duplicate event writes nothing. Then the record, with a condition
//! that lets the change through only when its [`Precedence`] is higher than the stored one and
//! the stored one is not terminal. A retry after a failure between the steps finds the entry
//! already there and completes the record, so nothing is half-written for long and nothing is
//! written twice.

use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde_json::Value;
use tether_domain::api::{ExecutionRecord, InvocationRecord, ListQuery, Page, TimelineEntry};
use tether_domain::clock::{now_ms, rfc3339};
use tether_domain::status::{fingerprint, Lifecycle, Precedence, NO_RESPONSE_FROM_DEVICE};
use tether_domain::topics::TargetKind;
use tether_domain::{
    CommandId, DeviceId, ExecutionId, MethodName, Phase, RequestId, Source, StatusReason,
};

use crate::error::StoreError;
use crate::item::{n, reason_value, s, Item, Reader};
use crate::schema::{
    BY_COMMAND, BY_COMMAND_PK, BY_COMMAND_SK, BY_DEVICE, BY_DEVICE_PK, BY_DEVICE_SK, PK, SK,
    TTL_ATTRIBUTE,
};
use crate::token;

pub(crate) const RECORD_SK: &str = "RECORD";
const EVENT_PREFIX: &str = "EVENT#";
/// Pages of one record's history one read returns at most (DynamoDB pages are up to 1 MB: two
/// keep an answer well inside Lambda's 6 MB response limit, a thousand-odd events or more).
pub const MAX_TIMELINE_PAGES: usize = 2;
/// Index queries one list call makes at most while a status filter skips items.
const MAX_LIST_ROUNDS: usize = 10;

/// Which record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Execution(ExecutionId),
    Invocation(RequestId),
}

impl RecordKey {
    fn pk(&self) -> String {
        match self {
            RecordKey::Execution(id) => format!("EXEC#{id}"),
            RecordKey::Invocation(id) => format!("INV#{id}"),
        }
    }

    fn id(&self) -> &str {
        match self {
            RecordKey::Execution(id) => id.as_str(),
            RecordKey::Invocation(id) => id.as_str(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            RecordKey::Execution(_) => "execution",
            RecordKey::Invocation(_) => "invocation",
        }
    }
}

/// What a record is about. Given with a change, it lets the change create the record when it
/// is not there yet (an execution event can arrive before the start call has written it).
#[derive(Debug, Clone, PartialEq)]
pub enum RecordMeta {
    Execution {
        command: CommandId,
        target: DeviceId,
        target_kind: TargetKind,
        parameters: Option<Value>,
    },
    Invocation {
        device: DeviceId,
        method: MethodName,
    },
}

/// One status event.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub status: &'static str,
    pub phase: Phase,
    pub source: Source,
    pub at_ms: i64,
    pub reason: Option<StatusReason>,
    /// The device's result (direct invocation replies carry it).
    pub result: Option<Value>,
}

/// The timeline status of a device message that may not change the record.
pub const INVALID_REPLY: &str = "INVALID_REPLY";

impl StatusChange {
    /// A device message kept in the timeline as rejected, with why: it never changes a record.
    pub fn rejected_reply(at_ms: i64, reason: StatusReason) -> Self {
        Self {
            status: INVALID_REPLY,
            phase: Phase::InProgress, // timeline only: never compared
            source: Source::Device,
            at_ms,
            reason: Some(reason),
            result: None,
        }
    }

    pub fn new<S: Lifecycle>(status: S, source: Source, at_ms: i64) -> Self {
        Self {
            status: status.as_str(),
            phase: status.phase(source),
            source,
            at_ms,
            reason: None,
            result: None,
        }
    }

    pub fn with_reason(mut self, reason: Option<StatusReason>) -> Self {
        self.reason = reason;
        self
    }

    pub fn with_result(mut self, result: Option<Value>) -> Self {
        self.result = result;
        self
    }

    fn fingerprint(&self) -> u64 {
        let (code, description) = match &self.reason {
            Some(r) => (
                r.reason_code.as_str(),
                r.reason_description.as_deref().unwrap_or(""),
            ),
            None => ("", ""),
        };
        let result = self
            .result
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
        fingerprint(&[
            self.status,
            self.source.as_str(),
            code,
            description,
            &result,
        ])
    }

    pub fn precedence(&self) -> Precedence {
        Precedence::new(self.phase, self.at_ms, self.fingerprint())
    }

    /// The timeline entry's key. A record is created once, but its creation can be reported
    /// twice with different clocks (the start call, then AWS IoT's CREATED event): creation
    /// entries are keyed without their time, so the second report is a duplicate, and they
    /// sort first.
    fn event_sk(&self) -> String {
        let at = if self.phase == Phase::Created {
            0
        } else {
            self.at_ms.max(0)
        };
        format!("{EVENT_PREFIX}{at:015}#{:016x}", self.fingerprint())
    }
}

/// What writing a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The event was not in the timeline before.
    pub new_event: bool,
    /// The record now shows this change.
    pub applied: bool,
}

/// What a conditional record update did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Written {
    Applied,
    /// The condition failed. With a device guard, `found` says whether the record exists and
    /// `owner` is its device (`None`: no record, or no device on it).
    Refused {
        found: bool,
        owner: Option<String>,
    },
}

/// What [`Store::begin_invocation`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// A new PENDING record was written.
    Created,
    /// The id was taken; its request fingerprint and device, as stored.
    Existing {
        request_hash: Option<String>,
        device: Option<String>,
    },
}

/// Per-device or per-command listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListBy {
    Device(DeviceId),
    Command(CommandId),
}

/// The DynamoDB store.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
    retention: Duration,
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    err: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// A transaction cancelled because a condition failed (and nothing else went wrong).
fn is_transaction_condition_failure(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
) -> bool {
    match err.as_service_error() {
        Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e)) => {
            let reasons = e.cancellation_reasons();
            reasons.is_empty() || reasons.iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
        }
        _ => false,
    }
}

/// The timeline entry for a reply from a device that does not own the invocation.
fn wrong_device(device: &DeviceId, at_ms: i64) -> StatusChange {
    let reason = StatusReason::new(
        "WRONG_DEVICE",
        Some(format!(
            "{device} answered a request sent to another device"
        )),
    );
    StatusChange::rejected_reply(at_ms, reason)
}

fn index_sort_key(created_ms: i64, id: &str) -> String {
    format!("{:015}#{id}", created_ms.max(0))
}

impl Store {
    /// Default retention of records and timelines.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            retention: Self::DEFAULT_RETENTION,
        }
    }

    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn expires_at(&self, at_ms: i64) -> AttributeValue {
        n(at_ms / 1000 + self.retention.as_secs() as i64)
    }

    /// Records a status change: the timeline entry always, the record when the change wins.
    /// Without `meta` the record must already exist (a reply for an unknown invocation is kept
    /// in the timeline and changes nothing else).
    #[tracing::instrument(skip(self, change, meta), fields(record = %key.pk(), status = change.status))]
    pub async fn apply(
        &self,
        key: &RecordKey,
        change: &StatusChange,
        meta: Option<&RecordMeta>,
    ) -> Result<Outcome, StoreError> {
        let pk = key.pk();
        let new_event = self.put_event(&pk, change).await?;
        let applied = self.update_record(key, &pk, change, meta, None).await? == Written::Applied;
        if !applied && change.phase == Phase::Created {
            if let Some(meta) = meta {
                self.backdate_creation(key, &pk, change, meta).await?;
            }
        }
        tracing::debug!(new_event, applied, "status change written");
        Ok(Outcome { new_event, applied })
    }

    /// Keeps a device message that may not change the invocation (a malformed reply) in its
    /// timeline, as rejected. Only an invocation that exists gets the entry, and a message from
    /// a device that does not own it is kept as `WRONG_DEVICE`: a device cannot grow the history
    /// of requests it was never sent, nor of ids that name nothing. Returns whether an entry is
    /// new.
    pub async fn reject_reply(
        &self,
        id: &RequestId,
        device: &DeviceId,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        let pk = RecordKey::Invocation(id.clone()).pk();
        let owner = self
            .record_item(&pk, Some("deviceId"))
            .await?
            .and_then(|item| item.get("deviceId").and_then(|v| v.as_s().ok()).cloned());
        match owner {
            None => {
                tracing::warn!(device = %device, "a rejected reply for an invocation that does not exist; dropped");
                Ok(false)
            }
            Some(owner) if owner != device.as_str() => {
                self.put_event(&pk, &wrong_device(device, change.at_ms))
                    .await
            }
            Some(_) => self.put_event(&pk, change).await,
        }
    }

    /// Records a device's reply to an invocation: like [`Store::apply`] without `meta`, and the
    /// record changes only if it belongs to `device`, so one device cannot answer for another.
    /// The record is written first, so that a reply from a device that does not own the
    /// invocation is known before its timeline entry is written: it is kept as rejected
    /// (`INVALID_REPLY`, `WRONG_DEVICE`), never as an answer. A retry after a failed timeline
    /// write finds the record already showing the change and writes the same entry.
    #[tracing::instrument(skip(self, change), fields(request_id = %id, status = change.status))]
    pub async fn apply_reply(
        &self,
        id: &RequestId,
        device: &DeviceId,
        change: &StatusChange,
    ) -> Result<Outcome, StoreError> {
        let key = RecordKey::Invocation(id.clone());
        let pk = key.pk();
        let written = self
            .update_record(&key, &pk, change, None, Some(device))
            .await?;
        let new_event = match &written {
            Written::Refused { found: false, .. } => {
                tracing::warn!(device = %device, "a reply for an invocation that does not exist; dropped");
                false
            }
            Written::Refused {
                owner: Some(owner), ..
            } if owner != device.as_str() => {
                tracing::warn!(device = %device, "a reply from a device that does not own the invocation");
                self.put_event(&pk, &wrong_device(device, change.at_ms))
                    .await?
            }
            _ => self.put_event(&pk, change).await?,
        };
        let applied = written == Written::Applied;
        tracing::debug!(new_event, applied, "reply written");
        Ok(Outcome { new_event, applied })
    }

    /// Creates a PENDING invocation and its first timeline entry in one transaction. When the
    /// id exists already (an idempotent retry), nothing is written and the stored request
    /// fingerprint is returned, so the caller can tell a retry from a conflicting reuse.
    pub async fn begin_invocation(
        &self,
        id: &RequestId,
        device: &DeviceId,
        method: &MethodName,
        request_hash: &str,
        at_ms: i64,
        deadline_ms: i64,
    ) -> Result<Begin, StoreError> {
        let key = RecordKey::Invocation(id.clone());
        let pk = key.pk();
        let change = StatusChange::new(
            tether_domain::InvocationStatus::Pending,
            Source::Cloud,
            at_ms,
        );
        let record = Put::builder()
            .table_name(&self.table)
            .item(PK, s(&pk))
            .item(SK, s(RECORD_SK))
            .item("kind", s(key.kind()))
            .item("id", s(id.as_str()))
            .item("deviceId", s(device.as_str()))
            .item("method", s(method.as_str()))
            .item("requestHash", s(request_hash))
            .item("status", s(change.status))
            .item("source", s(change.source.as_str()))
            .item("precedence", s(change.precedence().as_str()))
            .item("createdAt", n(at_ms))
            .item("updatedAt", n(at_ms))
            .item(DEADLINE, n(deadline_ms))
            .item(BY_DEVICE_PK, s(device_partition(device, &key)))
            .item(BY_DEVICE_SK, s(index_sort_key(at_ms, id.as_str())))
            .item(TTL_ATTRIBUTE, self.expires_at(at_ms))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(|e| StoreError::Corrupt {
                key: pk.clone(),
                problem: e.to_string(),
            })?;
        let event = Put::builder()
            .table_name(&self.table)
            .item(PK, s(&pk))
            .item(SK, s(change.event_sk()))
            .item("kind", s("event"))
            .item("status", s(change.status))
            .item("source", s(change.source.as_str()))
            .item("at", n(at_ms))
            .item(TTL_ATTRIBUTE, self.expires_at(at_ms))
            .build()
            .map_err(|e| StoreError::Corrupt {
                key: pk.clone(),
                problem: e.to_string(),
            })?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(record).build())
            .transact_items(TransactWriteItem::builder().put(event).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(Begin::Created),
            Err(err) if is_transaction_condition_failure(&err) => {
                let item = self.record_item(&pk, None).await?.unwrap_or_default();
                let reader = Reader::new(&item);
                Ok(Begin::Existing {
                    request_hash: reader.opt_s("requestHash")?.map(str::to_owned),
                    device: reader.opt_s("deviceId")?.map(str::to_owned),
                })
            }
            Err(err) => Err(StoreError::dynamo("TransactWriteItems", err)),
        }
    }

    async fn put_event(&self, pk: &str, change: &StatusChange) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(pk))
            .item(SK, s(change.event_sk()))
            .item("kind", s("event"))
            .item("status", s(change.status))
            .item("source", s(change.source.as_str()))
            .item("at", n(change.at_ms))
            .item(TTL_ATTRIBUTE, self.expires_at(change.at_ms))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK);
        if let Some(reason) = &change.reason {
            request = request.item("statusReason", reason_value(reason));
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(StoreError::dynamo("PutItem", err)),
        }
    }

    async fn update_record(
        &self,
        key: &RecordKey,
        pk: &str,
        change: &StatusChange,
        meta: Option<&RecordMeta>,
        device_guard: Option<&DeviceId>,
    ) -> Result<Written, StoreError> {
        let mut sets = vec![
            "#status = :status",
            "#source = :source",
            "#prec = :prec",
            "#updatedAt = :at",
            "#createdAt = if_not_exists(#createdAt, :at)",
            "#ttl = if_not_exists(#ttl, :ttl)",
            "#kind = :kind",
            "#id = :id",
        ];
        let mut removes = vec![];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(RECORD_SK))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#source", "source")
            .expression_attribute_names("#prec", "precedence")
            .expression_attribute_names("#updatedAt", "updatedAt")
            .expression_attribute_names("#createdAt", "createdAt")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#id", "id")
            .expression_attribute_names("#reason", "statusReason")
            .expression_attribute_values(":status", s(change.status))
            .expression_attribute_values(":source", s(change.source.as_str()))
            .expression_attribute_values(":prec", s(change.precedence().as_str()))
            .expression_attribute_values(":floor", s(Precedence::terminal_floor().as_str()))
            .expression_attribute_values(":at", n(change.at_ms))
            .expression_attribute_values(":ttl", self.expires_at(change.at_ms))
            .expression_attribute_values(":kind", s(key.kind()))
            .expression_attribute_values(":id", s(key.id()));
        match &change.reason {
            Some(reason) => {
                sets.push("#reason = :reason");
                request = request.expression_attribute_values(":reason", reason_value(reason));
            }
            None => removes.push("#reason"),
        }
        if let Some(result) = &change.result {
            sets.push("#result = :result");
            request = request
                .expression_attribute_names("#result", "result")
                .expression_attribute_values(":result", s(result.to_string()));
        }
        if change.phase.is_terminal() {
            sets.push("#completedAt = :at");
            request = request.expression_attribute_names("#completedAt", "completedAt");
        }
        let created_sort = index_sort_key(change.at_ms, key.id());
        match meta {
            Some(RecordMeta::Execution {
                command,
                target,
                target_kind,
                parameters,
            }) => {
                sets.extend([
                    "#commandId = if_not_exists(#commandId, :commandId)",
                    "#target = if_not_exists(#target, :target)",
                    "#targetKind = if_not_exists(#targetKind, :targetKind)",
                    "#g1pk = if_not_exists(#g1pk, :g1pk)",
                    "#g1sk = if_not_exists(#g1sk, :gsk)",
                    "#g2pk = if_not_exists(#g2pk, :g2pk)",
                    "#g2sk = if_not_exists(#g2sk, :gsk)",
                ]);
                request = request
                    .expression_attribute_names("#commandId", "commandId")
                    .expression_attribute_names("#target", "target")
                    .expression_attribute_names("#targetKind", "targetKind")
                    .expression_attribute_names("#g1pk", BY_DEVICE_PK)
                    .expression_attribute_names("#g1sk", BY_DEVICE_SK)
                    .expression_attribute_names("#g2pk", BY_COMMAND_PK)
                    .expression_attribute_names("#g2sk", BY_COMMAND_SK)
                    .expression_attribute_values(":commandId", s(command.as_str()))
                    .expression_attribute_values(":target", s(target.as_str()))
                    .expression_attribute_values(":targetKind", s(target_kind.arn_type()))
                    .expression_attribute_values(":g1pk", s(device_partition(target, key)))
                    .expression_attribute_values(":g2pk", s(command_partition(command)))
                    .expression_attribute_values(":gsk", s(created_sort));
                if let Some(parameters) = parameters {
                    sets.push("#parameters = if_not_exists(#parameters, :parameters)");
                    request = request
                        .expression_attribute_names("#parameters", "parameters")
                        .expression_attribute_values(":parameters", s(parameters.to_string()));
                }
            }
            Some(RecordMeta::Invocation { device, method }) => {
                sets.extend([
                    "#deviceId = if_not_exists(#deviceId, :deviceId)",
                    "#method = if_not_exists(#method, :method)",
                    "#g1pk = if_not_exists(#g1pk, :g1pk)",
                    "#g1sk = if_not_exists(#g1sk, :gsk)",
                ]);
                request = request
                    .expression_attribute_names("#deviceId", "deviceId")
                    .expression_attribute_names("#method", "method")
                    .expression_attribute_names("#g1pk", BY_DEVICE_PK)
                    .expression_attribute_names("#g1sk", BY_DEVICE_SK)
                    .expression_attribute_values(":deviceId", s(device.as_str()))
                    .expression_attribute_values(":method", s(method.as_str()))
                    .expression_attribute_values(":g1pk", s(device_partition(device, key)))
                    .expression_attribute_values(":gsk", s(created_sort));
            }
            None => {}
        }
        let wins = "(attribute_not_exists(#prec) OR (#prec < :prec AND #prec < :floor))";
        let mut condition = if meta.is_some() {
            wins.to_owned()
        } else {
            request = request.expression_attribute_names("#pk", PK);
            format!("attribute_exists(#pk) AND {wins}")
        };
        if let Some(device) = device_guard {
            condition.push_str(" AND #guardDevice = :guardDevice");
            request = request
                .expression_attribute_names("#guardDevice", "deviceId")
                .expression_attribute_values(":guardDevice", s(device.as_str()))
                // To tell a reply from another device apart from one that lost the race.
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        match request
            .update_expression(expression)
            .condition_expression(condition)
            .send()
            .await
        {
            Ok(_) => Ok(Written::Applied),
            Err(err) if is_condition_failure(&err) => {
                let stored = match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                        failed.item().filter(|item| !item.is_empty())
                    }
                    _ => None,
                };
                let owner = stored
                    .and_then(|item| item.get("deviceId"))
                    .and_then(|v| v.as_s().ok())
                    .cloned();
                Ok(Written::Refused {
                    found: stored.is_some(),
                    owner,
                })
            }
            Err(err) => Err(StoreError::dynamo("UpdateItem", err)),
        }
    }

    /// A creation event that lost to a later event (which arrived first) still fixes the
    /// record's creation time, its place in the listings and its parameters.
    async fn backdate_creation(
        &self,
        key: &RecordKey,
        pk: &str,
        change: &StatusChange,
        meta: &RecordMeta,
    ) -> Result<(), StoreError> {
        let sort = index_sort_key(change.at_ms, key.id());
        let mut sets = vec!["#createdAt = :at", "#g1sk = :gsk"];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(RECORD_SK))
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#createdAt", "createdAt")
            .expression_attribute_names("#g1sk", BY_DEVICE_SK)
            .expression_attribute_values(":at", n(change.at_ms))
            .expression_attribute_values(":gsk", s(sort.clone()));
        if let RecordMeta::Execution { parameters, .. } = meta {
            sets.push("#g2sk = :gsk");
            request = request.expression_attribute_names("#g2sk", BY_COMMAND_SK);
            if let Some(parameters) = parameters {
                sets.push("#parameters = :parameters");
                request = request
                    .expression_attribute_names("#parameters", "parameters")
                    .expression_attribute_values(":parameters", s(parameters.to_string()));
            }
        }
        let result = request
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression("attribute_exists(#pk) AND #createdAt >= :at")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(StoreError::dynamo("UpdateItem", err)),
        }
    }

    /// Stores the result of a terminal execution (fetched from AWS IoT after the final event).
    /// Only a terminal record takes a result; returns whether it was written.
    pub async fn set_execution_result(
        &self,
        id: &ExecutionId,
        result: &Value,
    ) -> Result<bool, StoreError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(RecordKey::Execution(id.clone()).pk()))
            .key(SK, s(RECORD_SK))
            .update_expression("SET #result = :result")
            .condition_expression("#prec >= :floor")
            .expression_attribute_names("#result", "result")
            .expression_attribute_names("#prec", "precedence")
            .expression_attribute_values(":result", s(result.to_string()))
            .expression_attribute_values(":floor", s(Precedence::terminal_floor().as_str()))
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(StoreError::dynamo("UpdateItem", err)),
        }
    }

    /// The record item of partition `pk` alone, strongly consistent (only `projection`'s
    /// attributes, when given).
    async fn record_item(
        &self,
        pk: &str,
        projection: Option<&str>,
    ) -> Result<Option<Item>, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .key(PK, s(pk))
            .key(SK, s(RECORD_SK))
            .set_projection_expression(projection.map(str::to_owned))
            .send()
            .await
            .map_err(|e| StoreError::dynamo("GetItem", e))?
            .item)
    }

    /// Reads a record and its timeline, strongly consistent: at most [`MAX_TIMELINE_PAGES`]
    /// pages of history, so that no answer outgrows what Lambda may return (6 MB). The record
    /// sorts after its events (`RECORD` > `EVENT#…`): when the history is cut, it is read on
    /// its own. Returns the record, the events and whether the history was cut.
    async fn read(&self, key: &RecordKey) -> Result<Option<(Item, Vec<Item>, bool)>, StoreError> {
        let mut record = None;
        let mut events = Vec::new();
        let mut start = None;
        let mut more = false;
        for page_number in 1..=MAX_TIMELINE_PAGES {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(key.pk()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::dynamo("Query", e))?;
            for item in page.items.unwrap_or_default() {
                match item.get(SK) {
                    Some(AttributeValue::S(sk)) if sk == RECORD_SK => record = Some(item),
                    _ => events.push(item),
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() && page_number < MAX_TIMELINE_PAGES => {
                    start = Some(key)
                }
                Some(key) if !key.is_empty() => more = true,
                _ => break,
            }
        }
        let truncated = more && record.is_none();
        if truncated {
            record = self.record_item(&key.pk(), None).await?;
        }
        Ok(record.map(|r| (r, events, truncated)))
    }

    /// One execution with its timeline.
    pub async fn execution(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, StoreError> {
        match self.read(&RecordKey::Execution(id.clone())).await? {
            Some((record, events, truncated)) => {
                let mut execution = execution_from(&record, Some(timeline_from(&events)?))?;
                execution.timeline_truncated = truncated;
                Ok(Some(execution))
            }
            None => Ok(None),
        }
    }

    /// One invocation with its timeline.
    pub async fn invocation(&self, id: &RequestId) -> Result<Option<InvocationRecord>, StoreError> {
        match self.read(&RecordKey::Invocation(id.clone())).await? {
            Some((record, events, truncated)) => {
                let mut invocation = invocation_from(&record, Some(timeline_from(&events)?))?;
                invocation.timeline_truncated = truncated;
                Ok(Some(invocation))
            }
            None => Ok(None),
        }
    }

    /// Execution records alone (no timelines), strongly consistent, in the order of `ids`
    /// (`None` where there is none yet): BatchGetItem, 100 keys a request, so a wait over
    /// many targets reads each record once per round and no history at all.
    pub async fn execution_records(
        &self,
        ids: &[ExecutionId],
    ) -> Result<Vec<Option<ExecutionRecord>>, StoreError> {
        use std::collections::HashMap;
        let mut found: HashMap<String, ExecutionRecord> = HashMap::new();
        for chunk in ids.chunks(100) {
            let keys = chunk
                .iter()
                .map(|id| {
                    HashMap::from([
                        (PK.to_owned(), s(RecordKey::Execution(id.clone()).pk())),
                        (SK.to_owned(), s(RECORD_SK)),
                    ])
                })
                .collect::<Vec<_>>();
            let mut pending = Some(
                aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Dynamo {
                        operation: "BatchGetItem",
                        kind: crate::error::FailureKind::Rejected,
                        source: Box::new(e),
                    })?,
            );
            // DynamoDB may leave keys unprocessed under load: ask again, a few times.
            for attempt in 0..5u32 {
                let Some(request) = pending.take() else { break };
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| StoreError::dynamo("BatchGetItem", e))?;
                for item in output
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let record = execution_from(&item, None)?;
                    found.insert(record.execution_id.clone(), record);
                }
                pending = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
            if pending.is_some() {
                return Err(StoreError::Dynamo {
                    operation: "BatchGetItem",
                    kind: crate::error::FailureKind::Throttled,
                    source: "keys left unprocessed after 5 attempts".into(),
                });
            }
        }
        Ok(ids.iter().map(|id| found.remove(id.as_str())).collect())
    }

    /// The record alone (no timeline), strongly consistent: one small read, for polling.
    pub async fn invocation_status(
        &self,
        id: &RequestId,
    ) -> Result<Option<InvocationRecord>, StoreError> {
        self.record_item(&RecordKey::Invocation(id.clone()).pk(), None)
            .await?
            .map(|item| invocation_from(&item, None))
            .transpose()
    }

    /// Executions of one device or one command, newest first, optionally of one status.
    pub async fn list_executions(
        &self,
        by: &ListBy,
        query: &ListQuery,
    ) -> Result<Page<ExecutionRecord>, StoreError> {
        let (index, index_pk, index_sk, partition) = match by {
            ListBy::Device(device) => (
                BY_DEVICE,
                BY_DEVICE_PK,
                BY_DEVICE_SK,
                format!("DEVICE#{device}#EXEC"),
            ),
            ListBy::Command(command) => (
                BY_COMMAND,
                BY_COMMAND_PK,
                BY_COMMAND_SK,
                command_partition(command),
            ),
        };
        let mut start = query
            .next_token
            .as_deref()
            .map(|t| token::decode(t, index_pk, index_sk, &partition, "EXEC#"))
            .transpose()?;
        let mut items = Vec::new();
        let limit = query.limit.max(1) as usize;
        for _ in 0..MAX_LIST_ROUNDS {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .scan_index_forward(false)
                .key_condition_expression("#ipk = :ipk")
                .expression_attribute_names("#ipk", index_pk)
                .expression_attribute_values(":ipk", s(&partition))
                .limit((limit - items.len()) as i32)
                .set_exclusive_start_key(start.take());
            if let Some(status) = query.status {
                request = request
                    .filter_expression("#status = :status")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", s(Lifecycle::as_str(status)));
            }
            let page = request
                .send()
                .await
                .map_err(|e| StoreError::dynamo("Query", e))?;
            for item in page.items.unwrap_or_default() {
                items.push(execution_from(&item, None)?);
            }
            start = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() || items.len() >= limit {
                break;
            }
        }
        let next_token = start.as_ref().map(token::encode).transpose()?;
        Ok(Page { items, next_token })
    }
}

fn device_partition(device: &DeviceId, key: &RecordKey) -> String {
    match key {
        RecordKey::Execution(_) => format!("DEVICE#{device}#EXEC"),
        RecordKey::Invocation(_) => format!("DEVICE#{device}#INV"),
    }
}

fn command_partition(command: &CommandId) -> String {
    format!("COMMAND#{command}")
}

fn timeline_from(events: &[Item]) -> Result<Vec<TimelineEntry>, StoreError> {
    events
        .iter()
        .map(|item| {
            let r = Reader::new(item);
            Ok(TimelineEntry {
                status: r.s("status")?.to_owned(),
                at: rfc3339(r.n("at")?),
                source: r.s("source")?.to_owned(),
                status_reason: r.opt_reason("statusReason")?,
            })
        })
        .collect()
}

fn execution_from(
    item: &Item,
    timeline: Option<Vec<TimelineEntry>>,
) -> Result<ExecutionRecord, StoreError> {
    let r = Reader::new(item);
    Ok(ExecutionRecord {
        execution_id: r.s("id")?.to_owned(),
        command_id: r.s("commandId")?.to_owned(),
        target: r.s("target")?.to_owned(),
        status: r.s("status")?.to_owned(),
        status_reason: r.opt_reason("statusReason")?,
        result: r.opt_json("result")?,
        parameters: r.opt_json("parameters")?,
        created_at: rfc3339(r.n("createdAt")?),
        updated_at: rfc3339(r.n("updatedAt")?),
        completed_at: r.opt_n("completedAt")?.map(rfc3339),
        timeline,
        timeline_truncated: false,
    })
}

/// The invocation record's attribute holding the caller's deadline (epoch ms).
const DEADLINE: &str = "deadlineAt";

fn invocation_from(
    item: &Item,
    timeline: Option<Vec<TimelineEntry>>,
) -> Result<InvocationRecord, StoreError> {
    let r = Reader::new(item);
    let mut record = InvocationRecord {
        request_id: r.s("id")?.to_owned(),
        device_id: r.s("deviceId")?.to_owned(),
        method: r.s("method")?.to_owned(),
        status: r.s("status")?.to_owned(),
        result: r.opt_json("result")?,
        status_reason: r.opt_reason("statusReason")?,
        created_at: rfc3339(r.n("createdAt")?),
        completed_at: r.opt_n("completedAt")?.map(rfc3339),
        timeline,
        timeline_truncated: false,
    };
    if let Some(deadline) = r.opt_n(DEADLINE)? {
        if tether_domain::status::is_overdue(&record.status, deadline, now_ms()) {
            // Read as the timeout `invoke` would have written; a late reply still replaces it.
            record.status = tether_domain::InvocationStatus::TimedOut
                .as_str()
                .to_owned();
            record.status_reason = Some(StatusReason::new(
                NO_RESPONSE_FROM_DEVICE,
                Some("the deadline passed with no answer recorded".into()),
            ));
            record.completed_at = Some(rfc3339(deadline));
        }
    }
    Ok(record)
}
