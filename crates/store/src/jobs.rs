//! The history of AWS IoT Jobs, from the job and job-execution events `ingest` receives:
//! `pk = JOB#{jobId}` (the API's job id), with
//! - `sk = EVENT#{at_ms, 15 digits}#{eventId}`: one item per event. Written with
//!   `attribute_not_exists`, so an event delivered twice is kept once; read back sorted by
//!   time, so events that arrived out of order are shown in order.
//! - `sk = DEVICE#{deviceId}`: the latest execution status seen for a device, written only when
//!   the event outranks the stored one (status rank, then time, then content), so late and
//!   repeated events converge on the same answer whatever their order.
//!
//! The current status of a job and its executions is AWS IoT's (the `jobs` function reads it
//! there: AWS IoT announces no QUEUED or IN_PROGRESS event); this history adds what AWS IoT
//! does not keep: when each change happened and the device's `statusDetails` at the end.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use tether_domain::api::TimelineEntry;
use tether_domain::clock::rfc3339;
use tether_domain::jobs::{JobEvent, JobEventKind, JobExecutionStatus};
use tether_domain::status::fingerprint;
use tether_domain::{DeviceId, JobId};

use crate::error::{is_condition_failure, StoreError};
use crate::item::{n, s, Item, Reader};
use crate::records::Store;
use crate::schema::{attr, PK, SK, TTL_ATTRIBUTE};

const EVENT_PREFIX: &str = "EVENT#";
const DEVICE_PREFIX: &str = "DEVICE#";
const DETAILS: &str = "statusDetails";
const OPERATION: &str = "operation";

fn pk(job: &JobId) -> String {
    format!("JOB#{job}")
}

/// The order in which execution statuses replace each other: rank, time, content.
fn precedence(status: JobExecutionStatus, event: &JobEvent) -> String {
    let fp = fingerprint(&[status.as_str(), &event.event_id]);
    format!("{}:{:015}:{fp:016x}", status.rank(), event.at_ms.max(0))
}

/// A job's history as the API shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobHistory {
    /// The job's own events (completed, canceled, deleted), oldest first.
    pub job: Vec<TimelineEntry>,
    /// Each device's execution events, oldest first.
    pub devices: BTreeMap<DeviceId, Vec<TimelineEntry>>,
    /// The `statusDetails` of each device's latest execution event that carried some.
    pub details: BTreeMap<DeviceId, BTreeMap<String, String>>,
}

impl Store {
    /// Records a job or job-execution event under the API's `job` id; returns whether it was
    /// new (a repeated delivery writes nothing).
    pub async fn record_job_event(
        &self,
        job: &JobId,
        event: &JobEvent,
    ) -> Result<bool, StoreError> {
        let pk = pk(job);
        let mut item: Item = HashMap::from([
            (PK.to_owned(), s(&pk)),
            (
                SK.to_owned(),
                s(format!(
                    "{EVENT_PREFIX}{:015}#{}",
                    event.at_ms.max(0),
                    event.event_id
                )),
            ),
            (attr::STATUS.to_owned(), s(&event.status)),
            (OPERATION.to_owned(), s(&event.topic.operation)),
            (attr::AT.to_owned(), n(event.at_ms)),
            (TTL_ATTRIBUTE.to_owned(), self.expires_at(event.at_ms)),
        ]);
        if let Some(device) = &event.thing {
            item.insert(attr::DEVICE_ID.to_owned(), s(device.as_str()));
        }
        if let Some(details) = &event.status_details {
            item.insert(DETAILS.to_owned(), details_value(details));
        }
        for (name, value) in [
            ("comment", &event.comment),
            (attr::REASON_CODE, &event.reason_code),
        ] {
            if let Some(value) = value {
                item.insert(name.to_owned(), s(value));
            }
        }
        let put = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        let new = match put {
            Ok(_) => true,
            Err(err) if is_condition_failure(&err) => false,
            Err(err) => return Err(StoreError::dynamo("PutItem", err)),
        };
        if let (JobEventKind::Execution, Some(device)) = (event.topic.kind, &event.thing) {
            self.latest_execution_status(&pk, device, event).await?;
        }
        Ok(new)
    }

    /// Keeps the device's latest execution status if this event outranks the stored one.
    async fn latest_execution_status(
        &self,
        pk: &str,
        device: &DeviceId,
        event: &JobEvent,
    ) -> Result<(), StoreError> {
        let Some(status) = JobExecutionStatus::parse(&event.status) else {
            return Ok(());
        };
        let order = precedence(status, event);
        let mut request = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(pk))
            .key(SK, s(format!("{DEVICE_PREFIX}{device}")))
            .condition_expression("attribute_not_exists(#order) OR #order < :order")
            .expression_attribute_names("#order", attr::PRECEDENCE)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#at", attr::AT)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":order", s(&order))
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":at", n(event.at_ms))
            .expression_attribute_values(":ttl", self.expires_at(event.at_ms));
        let mut set = "SET #order = :order, #status = :status, #at = :at, #ttl = :ttl".to_owned();
        if let Some(details) = &event.status_details {
            set.push_str(", #details = :details");
            request = request
                .expression_attribute_names("#details", DETAILS)
                .expression_attribute_values(":details", details_value(details));
        }
        match request.update_expression(set).send().await {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(StoreError::dynamo("UpdateItem", err)),
        }
    }

    /// Everything recorded of a job, read in one query (paged through).
    pub async fn job_history(&self, job: &JobId) -> Result<JobHistory, StoreError> {
        let mut history = JobHistory::default();
        let mut start = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .consistent_read(true)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(pk(job)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::dynamo("Query", e))?;
            for item in page.items.unwrap_or_default() {
                read_item(&item, &mut history)?;
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(history);
            }
        }
    }
}

fn details_value(details: &BTreeMap<String, String>) -> AttributeValue {
    AttributeValue::M(details.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

fn details_of(item: &Item) -> Option<BTreeMap<String, String>> {
    let AttributeValue::M(map) = item.get(DETAILS)? else {
        return None;
    };
    Some(
        map.iter()
            .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone())))
            .collect(),
    )
}

fn read_item(item: &Item, history: &mut JobHistory) -> Result<(), StoreError> {
    let reader = Reader::new(item);
    let sk = reader.s(SK)?;
    if sk.starts_with(DEVICE_PREFIX) {
        if let (Some(device), Some(details)) = (
            sk.strip_prefix(DEVICE_PREFIX)
                .and_then(|d| DeviceId::parse(d).ok()),
            details_of(item),
        ) {
            history.details.insert(device, details);
        }
        return Ok(());
    }
    if !sk.starts_with(EVENT_PREFIX) {
        return Ok(());
    }
    let at = reader.n(attr::AT)?;
    let mut entry = TimelineEntry {
        status: reader.s(attr::STATUS)?.to_owned(),
        at: rfc3339(at),
        source: "cloud".into(),
        status_reason: None,
    };
    match reader.opt_s(attr::DEVICE_ID)? {
        Some(device) => {
            let device = DeviceId::parse(device).map_err(|e| StoreError::Corrupt {
                key: sk.to_owned(),
                problem: e.to_string(),
            })?;
            // A device's answer (SUCCEEDED, FAILED, REJECTED) came from the device.
            if JobExecutionStatus::parse(&entry.status).is_some_and(|s| s.device_may_set()) {
                entry.source = "device".into();
            }
            history.devices.entry(device).or_default().push(entry);
        }
        None => {
            if let Some(code) = reader.opt_s(attr::REASON_CODE)? {
                entry.status_reason = Some(tether_domain::StatusReason::new(
                    code,
                    reader.opt_s("comment")?.map(str::to_owned),
                ));
            }
            history.job.push(entry);
        }
    }
    Ok(())
}
