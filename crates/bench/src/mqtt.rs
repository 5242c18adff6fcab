//! A plain MQTT 5 client for the hop and baseline measurements: connect, subscribe, publish
//! with a response topic, and wait for the publish that answers it.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

const WAIT: Duration = Duration::from_secs(10);

/// `mqtt://host:port` as host and port.
pub fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.strip_prefix("mqtt://").unwrap_or(url);
    let (host, port) = rest.rsplit_once(':').context("host:port")?;
    Ok((host.to_owned(), port.parse().context("port")?))
}

/// A connected client whose event loop the caller drives through [`Client::next_publish`].
pub struct Client {
    pub client: AsyncClient,
    events: EventLoop,
}

impl Client {
    /// Connects and waits for the broker's ConnAck.
    pub async fn connect(url: &str, id: &str) -> anyhow::Result<Self> {
        let (host, port) = host_port(url)?;
        let mut options = MqttOptions::new(id, host, port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_outgoing_inflight_upper_limit(100);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        let (client, mut events) = AsyncClient::new(options, 64);
        tokio::time::timeout(WAIT, async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => bail!("connecting {id}: {e}"),
                }
            }
        })
        .await
        .context("ConnAck")??;
        Ok(Self { client, events })
    }

    /// Subscribes and waits for the SubAck.
    pub async fn subscribe(&mut self, filter: &str) -> anyhow::Result<()> {
        self.client
            .subscribe(filter.to_owned(), QoS::AtLeastOnce)
            .await?;
        tokio::time::timeout(WAIT, async {
            loop {
                match self.events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => bail!("subscribing: {e}"),
                }
            }
        })
        .await
        .context("SubAck")?
    }

    /// Publishes a request (QoS 1) whose answer goes to `response_topic`.
    pub async fn request(
        &self,
        topic: &str,
        response_topic: &str,
        correlation: &str,
        payload: &'static [u8],
    ) -> anyhow::Result<()> {
        let properties = PublishProperties {
            response_topic: Some(response_topic.to_owned()),
            correlation_data: Some(Bytes::copy_from_slice(correlation.as_bytes())),
            message_expiry_interval: Some(10),
            content_type: Some("application/json".into()),
            ..PublishProperties::default()
        };
        self.client
            .publish_with_properties(
                topic.to_owned(),
                QoS::AtLeastOnce,
                false,
                payload,
                properties,
            )
            .await?;
        Ok(())
    }

    /// Drives the event loop until a publish arrives on `topic`.
    pub async fn next_publish(&mut self, topic: &str) -> anyhow::Result<Bytes> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic.as_bytes() => {
                        return Ok(p.payload)
                    }
                    Ok(_) => {}
                    Err(e) => bail!("waiting for {topic}: {e}"),
                }
            }
        })
        .await
        .with_context(|| format!("no answer on {topic}"))?
    }

    /// Sends DISCONNECT and drives the loop until it is written.
    pub async fn disconnect(mut self) {
        if self.client.disconnect().await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    match self.events.poll().await {
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
    }
}
