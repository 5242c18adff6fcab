//! Device connectivity from presence events: `pk = DEVICE#{deviceId}`, `sk = CONNECTIVITY`.
//!
//! Presence events can arrive late or twice; the newest one (by the broker's timestamp) wins,
//! compared in a conditional write like status changes. The item expires like a record
//! (`RetentionDays` after its newest event), so a device that is gone stops being listed and
//! no single event decides a device's state for good.

use aws_sdk_dynamodb::types::AttributeValue;
use tether_domain::api::DeviceConnectivity;
use tether_domain::clock::rfc3339;
use tether_domain::status::fingerprint;
use tether_domain::topics::Presence;
use tether_domain::DeviceId;

use crate::error::StoreError;
use crate::item::{n, s, Reader};
use crate::records::Store;
use crate::schema::{attr, PK, SK, TTL_ATTRIBUTE};

const CONNECTIVITY_SK: &str = "CONNECTIVITY";

/// One presence event, as the rule delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    pub device: DeviceId,
    pub presence: Presence,
    pub at_ms: i64,
    pub session: Option<String>,
    pub disconnect_reason: Option<String>,
}

impl PresenceEvent {
    /// Newest wins; two different events in the same millisecond are ordered by content, so
    /// every arrival order ends the same.
    fn order(&self) -> String {
        let kind = match self.presence {
            Presence::Connected => "connected",
            Presence::Disconnected => "disconnected",
        };
        let fp = fingerprint(&[
            kind,
            self.session.as_deref().unwrap_or(""),
            self.disconnect_reason.as_deref().unwrap_or(""),
        ]);
        format!("{:015}:{fp:016x}", self.at_ms.max(0))
    }
}

fn pk(device: &DeviceId) -> String {
    format!("DEVICE#{device}")
}

impl Store {
    /// Records a presence event; returns whether it is now the device's newest.
    pub async fn record_presence(&self, event: &PresenceEvent) -> Result<bool, StoreError> {
        let connected = event.presence == Presence::Connected;
        let mut request = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(pk(&event.device)))
            .key(SK, s(CONNECTIVITY_SK))
            .condition_expression("attribute_not_exists(#order) OR #order < :order")
            .expression_attribute_names("#order", attr::PRESENCE_ORDER)
            .expression_attribute_names("#connected", attr::CONNECTED)
            .expression_attribute_names("#since", attr::SINCE)
            .expression_attribute_names("#device", attr::DEVICE_ID)
            .expression_attribute_names("#reason", attr::DISCONNECT_REASON)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":ttl", self.expires_at(event.at_ms))
            .expression_attribute_values(":order", s(event.order()))
            .expression_attribute_values(":connected", AttributeValue::Bool(connected))
            .expression_attribute_values(":at", n(event.at_ms))
            .expression_attribute_values(":device", s(event.device.as_str()));
        let mut expression =
            "SET #order = :order, #connected = :connected, #since = :at, #device = :device, #ttl = :ttl"
                .to_owned();
        match (&event.disconnect_reason, connected) {
            (Some(reason), false) => {
                expression.push_str(", #reason = :reason");
                request = request.expression_attribute_values(":reason", s(reason));
            }
            _ => expression.push_str(" REMOVE #reason"),
        }
        match request.update_expression(expression).send().await {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(StoreError::dynamo("UpdateItem", err)),
        }
    }

    /// What Tether knows of a device's connection; `None` when it has never been seen.
    pub async fn connectivity(
        &self,
        device: &DeviceId,
    ) -> Result<Option<DeviceConnectivity>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .consistent_read(true)
            .key(PK, s(pk(device)))
            .key(SK, s(CONNECTIVITY_SK))
            .send()
            .await
            .map_err(|e| StoreError::dynamo("GetItem", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let r = Reader::new(&item);
        let since = r.n(attr::SINCE)?;
        Ok(Some(DeviceConnectivity {
            device_id: device.to_string(),
            connected: r.opt_bool(attr::CONNECTED)?.unwrap_or(false),
            since: Some(rfc3339(since)),
            last_seen: Some(rfc3339(since)),
            disconnect_reason: r.opt_s(attr::DISCONNECT_REASON)?.map(str::to_owned),
        }))
    }
}
