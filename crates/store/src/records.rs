//! Execution and invocation records and their timelines.
//!
//! A record and its timeline share a partition (the keys are in `keys`): one query returns a
//! record with its history, oldest event first.
//!
//! Writing a status change is two idempotent steps. First the timeline entry, with
//! `attribute_not_exists`: a duplicate event writes nothing. Then the record, with a condition
//! that lets the change through only when its [`Precedence`] is higher than the stored one and
//! the stored one is not terminal. A retry after a failure between the steps finds the entry
//! already there and completes the record, so nothing is half-written for long and nothing is
//! written twice.
//!
//! Layout: the types here; the writes in `write`, the record's conditional update among them in
//! `update`; the reads and listings in `read`.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde_json::Value;
use tether_domain::status::{fingerprint, Lifecycle, Precedence};
use tether_domain::topics::TargetKind;
use tether_domain::{CommandId, DeviceId, MethodName, Phase, Source, StatusReason};

use crate::item::n;
use crate::keys::event_sort_key;

mod read;
mod update;
mod write;

pub use crate::keys::RecordKey;
pub use read::MAX_TIMELINE_PAGES;

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
/// The timeline status of a direct invocation's request that the device's MQTT client
/// acknowledged (PUBACK): it never changes the record.
pub const DELIVERED: &str = "DELIVERED";

/// The partition and sort key [`Store::warm_up`] reads: no record, timeline entry or presence
/// item has it (their keys start with a kind and `#`).
const WARM_UP_KEY: &str = "warm-up";

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

    /// The device's client acknowledged the request, as AWS IoT confirmed at `at_ms`: timeline
    /// only. Its source is the cloud: AWS IoT reports the PUBACK; the device says nothing.
    pub fn delivered(at_ms: i64) -> Self {
        Self {
            status: DELIVERED,
            phase: Phase::InProgress, // timeline only: never compared
            source: Source::Cloud,
            at_ms,
            reason: None,
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

    /// The timeline entry's sort key (see [`event_sort_key`]).
    fn event_sk(&self) -> String {
        event_sort_key(self.phase, self.at_ms, self.fingerprint())
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

    /// Opens the client's connection to DynamoDB before the first request needs it (during a
    /// function's init): one eventually consistent GetItem of a key no item has, whose answer
    /// does not matter. Half a read unit.
    pub async fn warm_up(&self) -> Result<(), crate::StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key(crate::schema::PK, AttributeValue::S(WARM_UP_KEY.to_owned()))
            .key(crate::schema::SK, AttributeValue::S(WARM_UP_KEY.to_owned()))
            .projection_expression("#pk")
            .expression_attribute_names("#pk", crate::schema::PK)
            .send()
            .await
            .map_err(|e| crate::StoreError::dynamo("GetItem", e))?;
        Ok(())
    }

    pub(crate) fn expires_at(&self, at_ms: i64) -> AttributeValue {
        n(at_ms / 1000 + self.retention.as_secs() as i64)
    }
}
