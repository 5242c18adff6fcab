//! The emulator's own MQTT 5 connections to its broker.
//!
//! AWS IoT Core moves messages between its services and devices inside the service; the
//! emulator does the same through ordinary MQTT 5 client connections to the embedded broker:
//! one to publish (the Publish API, Commands requests, events), and one per consumer (the
//! Commands response handler, each topic rule) with its own filters, so no message is seen
//! twice by one consumer.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, oneshot};

/// Client ids of the emulator's own connections start with this; presence events skip them.
pub const INTERNAL_CLIENT_PREFIX: &str = "local-iot-internal-";

/// A message received from the broker.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub properties: PublishProperties,
}

/// A message to publish.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub properties: PublishProperties,
}

/// One MQTT connection of the emulator.
#[derive(Clone)]
pub struct Link {
    client: AsyncClient,
}

impl Link {
    /// Connects as `{INTERNAL_CLIENT_PREFIX}{name}`, subscribes to `filters` (QoS 1) and returns
    /// once the broker has acknowledged the connection and every subscription. Messages on the
    /// filters arrive on the returned receiver.
    pub async fn connect(
        addr: SocketAddr,
        name: &str,
        filters: &[String],
    ) -> anyhow::Result<(Link, mpsc::UnboundedReceiver<Message>)> {
        Self::connect_as(addr, &format!("{INTERNAL_CLIENT_PREFIX}{name}"), filters).await
    }

    /// Like [`Link::connect`] with a client id of the caller's choosing (tests use it to play
    /// devices and observers).
    pub async fn connect_as(
        addr: SocketAddr,
        client_id: &str,
        filters: &[String],
    ) -> anyhow::Result<(Link, mpsc::UnboundedReceiver<Message>)> {
        let name = client_id.to_owned();
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_start(true);
        options.set_max_packet_size(Some(256 * 1024));
        // rumqttc sizes its in-flight table by this bound (65,535 entries by default).
        options.set_outgoing_inflight_upper_limit(1024);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let filters = filters.to_vec();
        let subscriber = client.clone();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut pending_subacks = 0usize;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Clean start: subscribe again on every (re)connection.
                        pending_subacks = filters.len();
                        for filter in &filters {
                            if subscriber
                                .subscribe(filter.clone(), QoS::AtLeastOnce)
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        if pending_subacks == 0 {
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        pending_subacks = pending_subacks.saturating_sub(1);
                        if pending_subacks == 0 {
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let message = Message {
                            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                            payload: publish.payload,
                            qos: publish.qos,
                            properties: publish.properties.unwrap_or_default(),
                        };
                        if tx.send(message).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::Disconnect(_))) => {
                        tracing::warn!(link = %name, "broker disconnected an internal link");
                    }
                    // Our own DISCONNECT: the link is closed for good, no reconnection.
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(rumqttc::v5::ConnectionError::RequestsDone) => return,
                    Err(err) => {
                        tracing::debug!(link = %name, error = %err, "internal link error; reconnecting");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        // A consumer whose receiver is gone has no one to reconnect for; a
                        // publishing link (no filters) lives until it is closed.
                        if !filters.is_empty() && tx.is_closed() && ready.is_none() {
                            return;
                        }
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| anyhow::anyhow!("internal MQTT link did not come up within 10 s"))?
            .map_err(|_| anyhow::anyhow!("internal MQTT link stopped before it came up"))?;
        Ok((Link { client }, rx))
    }

    /// A link that is never connected: whatever it publishes fails and is logged. It lets a
    /// service's request handling run without a broker (the fuzz targets use it).
    pub fn detached() -> Link {
        let mut options =
            MqttOptions::new(format!("{INTERNAL_CLIENT_PREFIX}detached"), "127.0.0.1", 1);
        options.set_outgoing_inflight_upper_limit(1);
        // Dropping the event loop closes the request channel: nothing is ever sent.
        let (client, _eventloop) = AsyncClient::new(options, 1);
        Link { client }
    }

    /// Publishes a message. QoS 2 is not offered by AWS IoT Core; anything above 1 is sent at 1.
    pub async fn publish(&self, message: Outgoing) -> anyhow::Result<()> {
        let qos = if message.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        self.client
            .publish_with_properties(
                message.topic,
                qos,
                message.retain,
                message.payload,
                message.properties,
            )
            .await?;
        Ok(())
    }

    /// Publishes messages in order; one that cannot be published is logged and skipped (the
    /// emulator's services publish what a change implies after the change is made).
    pub async fn publish_all(&self, messages: Vec<Outgoing>) {
        for message in messages {
            tracing::debug!(topic = %message.topic, "publish");
            if let Err(err) = self.publish(message).await {
                tracing::warn!(error = %err, "could not publish");
            }
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.client.disconnect().await;
    }
}
