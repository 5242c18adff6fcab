//! Shared test helpers: the local AWS IoT Core emulator, fleets on it, MQTT 5 observers and
//! requesters, and waits bounded by timeouts.

#![allow(clippy::unwrap_used, dead_code)] // a failed unwrap is a failed test; not every test file uses every helper

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::Value;
use tether_device::config::numbered;
use tether_device::{Behaviours, Fleet, FleetConfig};
use tether_domain::DeviceId;
use tether_local_iot::link::{Link, Message, Outgoing};
use tether_local_iot::{Config, LocalIot};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long any awaited event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn emulator() -> LocalIot {
    LocalIot::start(Config::default()).await.unwrap()
}

pub fn device(id: &str) -> DeviceId {
    DeviceId::parse(id).unwrap()
}

/// `ids` on the emulator, answering by `rules` (`METHOD=BEHAVIOUR`), connected and subscribed.
pub async fn fleet(iot: &LocalIot, ids: &[&str], rules: &[&str]) -> Fleet {
    let mut behaviours = Behaviours::default();
    behaviours.apply_rules(rules.iter().copied()).unwrap();
    let devices = ids.iter().map(|id| device(id)).collect();
    Fleet::start(FleetConfig::local(iot.mqtt_addr(), devices).with_behaviours(behaviours))
        .await
        .unwrap()
}

/// `count` devices `{prefix}1..` on the emulator.
pub async fn numbered_fleet(iot: &LocalIot, prefix: &str, count: usize, rules: &[&str]) -> Fleet {
    let mut behaviours = Behaviours::default();
    behaviours.apply_rules(rules.iter().copied()).unwrap();
    let mut config = FleetConfig::local(iot.mqtt_addr(), numbered(prefix, count).unwrap())
        .with_behaviours(behaviours);
    config.ready_timeout = Duration::from_secs(60);
    Fleet::start(config).await.unwrap()
}

/// An MQTT 5 client (subscribed once this returns) that watches `filters`.
pub async fn observer(
    iot: &LocalIot,
    client_id: &str,
    filters: &[&str],
) -> (Link, UnboundedReceiver<Message>) {
    let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
    Link::connect_as(iot.mqtt_addr(), client_id, &filters)
        .await
        .unwrap()
}

pub async fn next(rx: &mut UnboundedReceiver<Message>) -> Message {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message within the wait")
        .expect("the observer is connected")
}

pub fn json(message: &Message) -> Value {
    serde_json::from_slice(&message.payload).unwrap()
}

/// Asserts that nothing arrives within `bound` (used only for "sends nothing" checks, never to
/// wait for readiness).
pub async fn nothing_within(rx: &mut UnboundedReceiver<Message>, bound: Duration) {
    if let Ok(Some(message)) = tokio::time::timeout(bound, rx.recv()).await {
        panic!(
            "expected nothing, got {} {}",
            message.topic,
            String::from_utf8_lossy(&message.payload)
        );
    }
}

/// A direct-invocation request as `invoke` publishes it (QoS 1, content type, and optionally a
/// response topic, correlation data and message expiry).
pub struct Invoke<'a> {
    pub device: &'a str,
    pub method: &'a str,
    pub request_id: &'a str,
    pub payload: Value,
    pub response_topic: Option<String>,
    pub correlation: Option<&'a str>,
    pub expiry: Option<u32>,
}

impl<'a> Invoke<'a> {
    /// With the MQTT 5 properties Tether sends: response topic = the standard reply topic,
    /// correlation data = the request id, 10 s expiry.
    pub fn new(device: &'a str, method: &'a str, request_id: &'a str, payload: Value) -> Self {
        Self {
            device,
            method,
            request_id,
            payload,
            response_topic: Some(format!("tether/replies/{device}/{request_id}")),
            correlation: Some(request_id),
            expiry: Some(10),
        }
    }

    pub fn topic(&self) -> String {
        format!(
            "tether/devices/{}/invoke/{}/{}",
            self.device, self.method, self.request_id
        )
    }

    pub async fn send(&self, link: &Link) {
        link.publish(Outgoing {
            topic: self.topic(),
            payload: self.payload.to_string().into(),
            qos: 1,
            retain: false,
            properties: PublishProperties {
                response_topic: self.response_topic.clone(),
                correlation_data: self
                    .correlation
                    .map(|c| Bytes::copy_from_slice(c.as_bytes())),
                message_expiry_interval: self.expiry,
                content_type: Some("application/json".into()),
                ..Default::default()
            },
        })
        .await
        .unwrap();
    }
}
