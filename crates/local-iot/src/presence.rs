//! Who is connected: presence events on `$aws/events/presence/{connected|disconnected}/{clientId}`
//! and the table behind iot-data `GetConnection`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::mpsc;

use crate::broker::ConnEvent;
use crate::link::{Link, Outgoing, INTERNAL_CLIENT_PREFIX};

/// What is known of one client's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub connected: bool,
    pub connected_since: Option<i64>,
    pub disconnected_since: Option<i64>,
    pub disconnect_reason: Option<String>,
}

/// The connection table, shared with the HTTP handlers.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    table: Arc<Mutex<HashMap<String, Connection>>>,
}

impl Connections {
    pub fn get(&self, client_id: &str) -> Option<Connection> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(client_id)
            .cloned()
    }

    fn apply(&self, event: &ConnEvent) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            ConnEvent::Connected {
                client_id, at_ms, ..
            } => {
                let entry = table.entry(client_id.clone()).or_insert(Connection {
                    connected: false,
                    connected_since: None,
                    disconnected_since: None,
                    disconnect_reason: None,
                });
                entry.connected = true;
                entry.connected_since = Some(*at_ms);
                entry.disconnect_reason = None;
            }
            ConnEvent::Disconnected {
                client_id,
                at_ms,
                reason,
                ..
            } => {
                if let Some(entry) = table.get_mut(client_id) {
                    entry.connected = false;
                    entry.disconnected_since = Some(*at_ms);
                    entry.disconnect_reason = Some((*reason).to_owned());
                }
            }
        }
    }
}

/// Can this client id stand in a topic level? (AWS client ids may hold any character; one with
/// a topic metacharacter cannot be named in a presence topic.)
fn topic_safe(client_id: &str) -> bool {
    !client_id.is_empty() && !client_id.contains(['/', '+', '#', '\0'])
}

/// The documented presence payload.
pub fn presence_payload(event: &ConnEvent) -> serde_json::Value {
    match event {
        ConnEvent::Connected {
            client_id,
            at_ms,
            session,
            ip,
        } => json!({
            "clientId": client_id,
            "timestamp": at_ms,
            "eventType": "connected",
            "sessionIdentifier": session,
            "principalIdentifier": "local-iot",
            "ipAddress": ip,
            "versionNumber": 0,
        }),
        ConnEvent::Disconnected {
            client_id,
            at_ms,
            reason,
            client_initiated,
        } => json!({
            "clientId": client_id,
            "timestamp": at_ms,
            "eventType": "disconnected",
            "sessionIdentifier": null,
            "principalIdentifier": "local-iot",
            "clientInitiatedDisconnect": client_initiated,
            "disconnectReason": reason,
            "versionNumber": 0,
        }),
    }
}

/// Applies connection events to the table and publishes their presence events, in order.
pub async fn run(
    mut events: mpsc::UnboundedReceiver<ConnEvent>,
    connections: Connections,
    publisher: Link,
) {
    while let Some(event) = events.recv().await {
        let (client_id, kind) = match &event {
            ConnEvent::Connected { client_id, .. } => (client_id, "connected"),
            ConnEvent::Disconnected { client_id, .. } => (client_id, "disconnected"),
        };
        if client_id.starts_with(INTERNAL_CLIENT_PREFIX) {
            continue;
        }
        connections.apply(&event);
        tracing::debug!(client_id = %client_id, kind, "presence");
        if !topic_safe(client_id) {
            continue;
        }
        let message = Outgoing {
            topic: format!("$aws/events/presence/{kind}/{client_id}"),
            payload: presence_payload(&event).to_string().into(),
            qos: 1,
            ..Default::default()
        };
        if let Err(err) = publisher.publish(message).await {
            tracing::warn!(error = %err, "could not publish a presence event");
        }
    }
}
