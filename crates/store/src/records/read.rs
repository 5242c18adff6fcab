//! Reads: a record with its timeline, records alone, and the per-device and per-command
//! listings.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use tether_domain::api::{ExecutionRecord, InvocationRecord, ListQuery, Page, TimelineEntry};
use tether_domain::clock::{now_ms, rfc3339};
use tether_domain::status::{is_overdue, Lifecycle, NO_RESPONSE_FROM_DEVICE};
use tether_domain::{ExecutionId, ExecutionStatus, InvocationStatus, RequestId, StatusReason};

use super::{ListBy, RecordKey, Store};
use crate::error::{FailureKind, StoreError};
use crate::item::{s, Item, Reader};
use crate::keys::{command_partition, device_executions, EXECUTION_PREFIX, RECORD_SK};
use crate::schema::{
    attr, BY_COMMAND, BY_COMMAND_PK, BY_COMMAND_SK, BY_DEVICE, BY_DEVICE_PK, BY_DEVICE_SK, PK, SK,
};
use crate::token;

/// Pages of one record's history one read returns at most (DynamoDB pages are up to 1 MB: two
/// keep an answer well inside Lambda's 6 MB response limit, a thousand-odd events or more).
pub const MAX_TIMELINE_PAGES: usize = 2;
/// Index queries one list call makes at most while a status filter skips items.
const MAX_LIST_ROUNDS: usize = 10;

impl Store {
    /// The record item of partition `pk` alone, strongly consistent (only `projection`'s
    /// attributes, when given).
    pub(super) async fn record_item(
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
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Dynamo {
                        operation: "BatchGetItem",
                        kind: FailureKind::Rejected,
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
                    kind: FailureKind::Throttled,
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
                device_executions(device),
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
            .map(|t| token::decode(t, index_pk, index_sk, &partition, EXECUTION_PREFIX))
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
                    .expression_attribute_names("#status", attr::STATUS)
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

fn timeline_from(events: &[Item]) -> Result<Vec<TimelineEntry>, StoreError> {
    events
        .iter()
        .map(|item| {
            let r = Reader::new(item);
            Ok(TimelineEntry {
                status: r.s(attr::STATUS)?.to_owned(),
                at: rfc3339(r.n(attr::AT)?),
                source: r.s(attr::SOURCE)?.to_owned(),
                status_reason: r.opt_reason(attr::STATUS_REASON)?,
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
        execution_id: r.s(attr::ID)?.to_owned(),
        command_id: r.s(attr::COMMAND_ID)?.to_owned(),
        target: r.s(attr::TARGET)?.to_owned(),
        status: r.parsed(attr::STATUS, ExecutionStatus::parse)?,
        status_reason: r.opt_reason(attr::STATUS_REASON)?,
        result: r.opt_json(attr::RESULT)?,
        parameters: r.opt_json(attr::PARAMETERS)?,
        created_at: rfc3339(r.n(attr::CREATED_AT)?),
        updated_at: rfc3339(r.n(attr::UPDATED_AT)?),
        completed_at: r.opt_n(attr::COMPLETED_AT)?.map(rfc3339),
        timeline,
        timeline_truncated: false,
    })
}

fn invocation_from(
    item: &Item,
    timeline: Option<Vec<TimelineEntry>>,
) -> Result<InvocationRecord, StoreError> {
    let r = Reader::new(item);
    let mut record = InvocationRecord {
        request_id: r.s(attr::ID)?.to_owned(),
        device_id: r.s(attr::DEVICE_ID)?.to_owned(),
        method: r.s(attr::METHOD)?.to_owned(),
        status: r.parsed(attr::STATUS, InvocationStatus::parse)?,
        result: r.opt_json(attr::RESULT)?,
        status_reason: r.opt_reason(attr::STATUS_REASON)?,
        created_at: rfc3339(r.n(attr::CREATED_AT)?),
        completed_at: r.opt_n(attr::COMPLETED_AT)?.map(rfc3339),
        timeline,
        timeline_truncated: false,
    };
    if let Some(deadline) = r.opt_n(attr::DEADLINE_AT)? {
        if is_overdue(record.status, deadline, now_ms()) {
            // Read as the timeout `invoke` would have written; a late reply still replaces it.
            record.status = InvocationStatus::TimedOut;
            record.status_reason = Some(StatusReason::new(
                NO_RESPONSE_FROM_DEVICE,
                Some("the deadline passed with no answer recorded".into()),
            ));
            record.completed_at = Some(rfc3339(deadline));
        }
    }
    Ok(record)
}
