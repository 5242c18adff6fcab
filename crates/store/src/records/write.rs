//! Writes: status changes (in the two steps `records` describes), replies, new invocations and
//! execution results. The record's conditional update itself is in `update`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use serde_json::Value;
use tether_domain::status::Precedence;
use tether_domain::{
    DeviceId, ExecutionId, InvocationStatus, MethodName, Phase, RequestId, Source, StatusReason,
};

use super::update::Written;
use super::{Begin, Outcome, RecordKey, RecordMeta, StatusChange, Store};
use crate::error::{is_condition_failure, is_transaction_condition_failure, StoreError};
use crate::item::{n, reason_value, s, Item, Reader};
use crate::keys::{device_partition, index_sort_key, RECORD_SK};
use crate::schema::{attr, BY_COMMAND_SK, BY_DEVICE_PK, BY_DEVICE_SK, PK, SK, TTL_ATTRIBUTE};

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

impl Store {
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
            .record_item(&pk, Some(attr::DEVICE_ID))
            .await?
            .and_then(|item| {
                item.get(attr::DEVICE_ID)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
            });
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

    /// Keeps in an invocation's timeline that the device acknowledged its request (PUBACK of a
    /// direct message); returns whether the entry is new. The record does not change.
    pub async fn note_delivered(&self, id: &RequestId, at_ms: i64) -> Result<bool, StoreError> {
        let pk = RecordKey::Invocation(id.clone()).pk();
        self.put_event(&pk, &StatusChange::delivered(at_ms)).await
    }

    /// Whether an invocation's timeline says its request was delivered: the device's PUBACK
    /// (`DELIVERED`) or the device's own word that it is working on it (`IN_PROGRESS`).
    pub async fn was_delivered(&self, id: &RequestId) -> Result<bool, StoreError> {
        Ok(self
            .invocation(id)
            .await?
            .and_then(|record| record.timeline)
            .is_some_and(|timeline| {
                timeline
                    .iter()
                    .any(|e| e.status == super::DELIVERED || e.status == "IN_PROGRESS")
            }))
    }

    /// Records a device's reply to an invocation: like [`Store::apply`] without `meta`, and the
    /// record changes only if it belongs to `device`, so one device cannot answer for another.
    /// The record is written first, so that a reply from a device that does not own the
    /// invocation is known before its timeline entry is written: it is kept as rejected
    /// (`INVALID_REPLY`, `WRONG_DEVICE`), never as an answer. A retry after a failed timeline
    /// write finds the record already showing the change and writes the same entry.
    ///
    /// The same reply comes twice: to the waiting `invoke` instance and through the reply rule
    /// to `ingest`, each with its own time. Whichever writes first records it; the other is
    /// outranked, finds the same report (phase and fingerprint) in the record's precedence, and
    /// writes its timeline entry under the first writer's time: the same item, so there is one
    /// entry, written by whichever put lands first (even if the first writer's failed).
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
            // Outranked by the same report, recorded by the other path with its own time: the
            // entry goes under that time, where the other path's is (or will be).
            Written::Refused {
                precedence: Some(stored),
                ..
            } => match same_report_at(stored, change) {
                Some(at_ms) => {
                    let mut same = change.clone();
                    same.at_ms = at_ms;
                    self.put_event(&pk, &same).await?
                }
                None => self.put_event(&pk, change).await?,
            },
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
        let change = StatusChange::new(InvocationStatus::Pending, Source::Cloud, at_ms);
        let record = Put::builder()
            .table_name(&self.table)
            .item(PK, s(&pk))
            .item(SK, s(RECORD_SK))
            .item(attr::KIND, s(key.kind()))
            .item(attr::ID, s(id.as_str()))
            .item(attr::DEVICE_ID, s(device.as_str()))
            .item(attr::METHOD, s(method.as_str()))
            .item(attr::REQUEST_HASH, s(request_hash))
            .item(attr::STATUS, s(change.status))
            .item(attr::SOURCE, s(change.source.as_str()))
            .item(attr::PRECEDENCE, s(change.precedence().as_str()))
            .item(attr::CREATED_AT, n(at_ms))
            .item(attr::UPDATED_AT, n(at_ms))
            .item(attr::DEADLINE_AT, n(deadline_ms))
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
            .set_item(Some(self.event_item(&pk, &change)))
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
                    request_hash: reader.opt_s(attr::REQUEST_HASH)?.map(str::to_owned),
                    device: reader.opt_s(attr::DEVICE_ID)?.map(str::to_owned),
                })
            }
            Err(err) => Err(StoreError::dynamo("TransactWriteItems", err)),
        }
    }

    /// A timeline entry's item.
    fn event_item(&self, pk: &str, change: &StatusChange) -> Item {
        let mut item = HashMap::from([
            (PK.to_owned(), s(pk)),
            (SK.to_owned(), s(change.event_sk())),
            (attr::KIND.to_owned(), s("event")),
            (attr::STATUS.to_owned(), s(change.status)),
            (attr::SOURCE.to_owned(), s(change.source.as_str())),
            (attr::AT.to_owned(), n(change.at_ms)),
            (TTL_ATTRIBUTE.to_owned(), self.expires_at(change.at_ms)),
        ]);
        if let Some(reason) = &change.reason {
            item.insert(attr::STATUS_REASON.to_owned(), reason_value(reason));
        }
        item
    }

    /// Writes a timeline entry; returns whether it is new.
    async fn put_event(&self, pk: &str, change: &StatusChange) -> Result<bool, StoreError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.event_item(pk, change)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(StoreError::dynamo("PutItem", err)),
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
            .expression_attribute_names("#createdAt", attr::CREATED_AT)
            .expression_attribute_names("#g1sk", BY_DEVICE_SK)
            .expression_attribute_values(":at", n(change.at_ms))
            .expression_attribute_values(":gsk", s(sort.clone()));
        if let RecordMeta::Execution { parameters, .. } = meta {
            sets.push("#g2sk = :gsk");
            request = request.expression_attribute_names("#g2sk", BY_COMMAND_SK);
            if let Some(parameters) = parameters {
                sets.push("#parameters = :parameters");
                request = request
                    .expression_attribute_names("#parameters", attr::PARAMETERS)
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
            .expression_attribute_names("#result", attr::RESULT)
            .expression_attribute_names("#prec", attr::PRECEDENCE)
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
}

/// The time of the change a record holds, if it is `change` itself (same phase and content) —
/// read from the record's precedence, `{phase}:{at_ms}:{fingerprint}`.
fn same_report_at(stored: &str, change: &StatusChange) -> Option<i64> {
    let mut parts = stored.splitn(3, ':');
    let (phase, at, fingerprint) = (parts.next()?, parts.next()?, parts.next()?);
    let ours = change.precedence();
    let mut our_parts = ours.as_str().splitn(3, ':');
    let (our_phase, _, our_fingerprint) = (our_parts.next()?, our_parts.next()?, our_parts.next()?);
    (phase == our_phase && fingerprint == our_fingerprint)
        .then(|| at.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use tether_domain::{InvocationStatus, Source, StatusReason};

    use super::*;

    #[test]
    fn the_same_report_is_found_in_a_precedence_whatever_its_time() {
        let answer = |at| {
            StatusChange::new(InvocationStatus::Succeeded, Source::Device, at)
                .with_result(Some(serde_json::json!({"on": true})))
        };
        let stored = answer(1_200).precedence();
        assert_eq!(same_report_at(stored.as_str(), &answer(1_150)), Some(1_200));
        // Another result, another status, another phase: not the same report.
        let other = StatusChange::new(InvocationStatus::Succeeded, Source::Device, 1_150);
        assert_eq!(same_report_at(stored.as_str(), &other), None);
        let failed = StatusChange::new(InvocationStatus::Failed, Source::Device, 1_150)
            .with_reason(Some(StatusReason::new("X", None)));
        assert_eq!(same_report_at(stored.as_str(), &failed), None);
        let progress = StatusChange::new(InvocationStatus::InProgress, Source::Device, 1_150);
        assert_eq!(same_report_at(stored.as_str(), &progress), None);
        assert_eq!(same_report_at("garbage", &answer(1)), None);
    }
}
