//! The embedded MQTT 5 broker (rmqtt), listening on 127.0.0.1.
//!
//! rmqtt serves MQTT 3.1.1 and 5 on one listener and, unlike rumqttd, accepts subscriptions
//! to `$aws/...` filters. Its connect and disconnect hooks feed [`ConnEvent`]s to the presence
//! tracker. As in AWS IoT Core, devices may not publish on the reserved event topics
//! (`$aws/events/...`): only the emulator's own connections write there, and a device's
//! publish is refused (MQTT 5: PUBACK "not authorized").
//!
//! Requests to AWS IoT Jobs (`$aws/things/{thing}/jobs/...`) are handed to the Jobs service with
//! the id of the client that sent them ([`JobsRequest`]), and [`Direct`] delivers the answer to
//! that client alone, as AWS IoT does (its Jobs answers do not pass through the broker).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::codec::v5::PublishProperties as CodecProperties;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::{CodecPublish, From as Sender, Id, Publish, PublishAclResult, QoS, Reason};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use tether_domain::clock::now_ms;
use tether_domain::jobs::JobTopic;
use tether_domain::topics::filter_matches;

/// A client came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    Connected {
        client_id: String,
        at_ms: i64,
        session: String,
        ip: Option<String>,
    },
    Disconnected {
        client_id: String,
        at_ms: i64,
        reason: &'static str,
        client_initiated: bool,
    },
}

/// The running broker. Dropping it stops it.
#[derive(Debug)]
pub struct Broker {
    addr: SocketAddr,
    /// MQTT over WebSocket (path `/mqtt`), if asked for.
    ws_addr: Option<SocketAddr>,
    scx: ServerContext,
    /// Direct messages waiting for their PUBACK.
    acks: AckWaiters,
    /// The task accepting connections (each connection runs in a task of its own).
    listener: Mutex<JoinHandle<()>>,
}

impl Broker {
    /// Binds `127.0.0.1:{port}` (0 picks a free port), and `127.0.0.1:{ws_port}` for MQTT over
    /// WebSocket if given, and starts serving.
    pub async fn start(
        port: u16,
        ws_port: Option<u16>,
        events: mpsc::UnboundedSender<ConnEvent>,
        jobs: mpsc::UnboundedSender<JobsRequest>,
    ) -> anyhow::Result<Self> {
        let scx = ServerContext::new().build().await;
        let register = scx.extends.hook_mgr().register();
        register
            .add(
                Type::ClientConnected,
                Box::new(PresenceHook {
                    events: events.clone(),
                }),
            )
            .await;
        register
            .add(Type::ClientDisconnected, Box::new(PresenceHook { events }))
            .await;
        register
            .add(Type::MessagePublishCheckAcl, Box::new(ReservedTopics))
            .await;
        register
            .add(Type::MessagePublish, Box::new(JobsRequests { jobs }))
            .await;
        register
            .add(Type::ClientSubscribe, Box::new(InnerDollarLevels))
            .await;
        register
            .add(Type::ClientUnsubscribe, Box::new(InnerDollarLevels))
            .await;
        let acks = AckWaiters::default();
        register
            .add(
                Type::MessageAcked,
                Box::new(DirectAcks {
                    waiters: acks.clone(),
                }),
            )
            .await;
        register.start().await;

        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let (addr, ws_addr, task) = listen(&scx, local(port), ws_port.map(local))?;
        tracing::info!(%addr, ?ws_addr, "MQTT broker listening");
        Ok(Self {
            addr,
            ws_addr,
            scx,
            acks,
            listener: Mutex::new(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where MQTT over WebSocket is served (`ws://{addr}/mqtt`), if it is.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// Delivery straight to one client.
    pub fn direct(&self) -> Direct {
        Direct {
            scx: self.scx.clone(),
            acks: self.acks.clone(),
        }
    }

    /// Stops accepting connections, drops every client (but those whose id starts with
    /// `keep_prefix`), waits `downtime`, and listens again on the same address.
    pub async fn outage(
        &self,
        keep_prefix: Option<&str>,
        downtime: Duration,
    ) -> anyhow::Result<()> {
        let accepting = std::mem::replace(
            &mut *self.listener.lock().unwrap_or_else(|e| e.into_inner()),
            tokio::spawn(async {}),
        );
        accepting.abort();
        let _ = accepting.await;
        let entries: Vec<_> = self.scx.extends.shared().await.iter().collect();
        let mut dropped = 0;
        for mut entry in entries {
            if keep_prefix.is_some_and(|keep| entry.id().client_id.starts_with(keep)) {
                continue;
            }
            if let Err(err) = entry.kick(true, true, true).await {
                tracing::warn!(client = %entry.id().client_id, error = %err, "could not drop a client");
            }
            dropped += 1;
        }
        tracing::warn!(
            dropped,
            ?downtime,
            "MQTT outage: clients dropped, connections refused"
        );
        tokio::time::sleep(downtime).await;
        let (_, _, task) = listen(&self.scx, self.addr, self.ws_addr)?;
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = task;
        tracing::info!(addr = %self.addr, "MQTT broker listening again");
        Ok(())
    }
}

const LISTENER_ID: u16 = 1;
const WS_LISTENER_ID: u16 = 2;

/// Binds `addr` (and `ws_addr` for MQTT over WebSocket) and serves MQTT on them with the
/// broker's context.
fn listen(
    scx: &ServerContext,
    addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
) -> anyhow::Result<(SocketAddr, Option<SocketAddr>, JoinHandle<()>)> {
    let listener = settings("mqtt", addr).bind()?.tcp()?;
    let addr = listener.local_addr()?;
    // The context keeps each listener's settings by id; listening again replaces them.
    scx.listen_cfgs.remove(&LISTENER_ID);
    let mut server = MqttServer::new(scx.clone()).listener_by_id(listener, LISTENER_ID);
    let mut bound_ws = None;
    if let Some(ws_addr) = ws_addr {
        let ws = settings("mqtt-ws", ws_addr).bind()?.ws()?;
        bound_ws = Some(ws.local_addr()?);
        scx.listen_cfgs.remove(&WS_LISTENER_ID);
        server = server.listener_by_id(ws, WS_LISTENER_ID);
    }
    let server = server.build();
    let task = tokio::spawn(async move {
        if let Err(err) = server.run().await {
            tracing::error!(error = %err, "MQTT broker stopped");
        }
    });
    Ok((addr, bound_ws, task))
}

/// A listener's settings, as AWS IoT Core behaves.
fn settings(name: &str, addr: SocketAddr) -> Builder {
    Builder::new()
        .name(name)
        .laddr(addr)
        // Listening again after an outage must not wait for the old connections' TIME_WAIT.
        .reuseaddr(Some(true))
        // AWS IoT Core allows 128 KiB messages; leave room for the topic and properties.
        .max_packet_size(256 * 1024)
        // Small packets go out at once: with Nagle's algorithm a reply that follows a
        // PUBACK waits for the peer's delayed ACK (~40 ms on Linux).
        .nodelay(true)
        .allow_anonymous(true)
        // A message without a message expiry is delivered without one, as AWS IoT Core does
        // (rmqtt would otherwise give it 5 minutes, which a device reads as its deadline).
        .message_expiry_interval(Duration::ZERO)
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort();
    }
}

struct PresenceHook {
    events: mpsc::UnboundedSender<ConnEvent>,
}

/// The AWS IoT `disconnectReason` for an rmqtt reason.
fn disconnect_reason(reason: &Reason) -> (&'static str, bool) {
    match reason {
        Reason::ConnectDisconnect(_) => ("CLIENT_INITIATED_DISCONNECT", true),
        Reason::ConnectKeepaliveTimeout => ("MQTT_KEEP_ALIVE_TIMEOUT", false),
        Reason::ConnectKicked(false) => ("DUPLICATE_CLIENTID", false),
        Reason::ConnectKicked(true) => ("SERVER_INITIATED_DISCONNECT", false),
        Reason::ProtocolError(_) | Reason::MqttError(_) => ("MQTT_PROTOCOL_ERROR", false),
        Reason::Reasons(all) => all
            .first()
            .map(disconnect_reason)
            .unwrap_or(("CONNECTION_LOST", false)),
        _ => ("CONNECTION_LOST", false),
    }
}

#[async_trait]
impl Handler for PresenceHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let event = match param {
            Parameter::ClientConnected(session) => Some(ConnEvent::Connected {
                client_id: session.id.client_id.to_string(),
                at_ms: now_ms(),
                session: format!("{}-{}", session.id.client_id, session.id.create_time),
                ip: session.id.remote_addr.map(|a| a.ip().to_string()),
            }),
            Parameter::ClientDisconnected(session, reason) => {
                let (reason, client_initiated) = disconnect_reason(reason);
                Some(ConnEvent::Disconnected {
                    client_id: session.id.client_id.to_string(),
                    at_ms: now_ms(),
                    reason,
                    client_initiated,
                })
            }
            _ => None,
        };
        if let Some(event) = event {
            let _ = self.events.send(event);
        }
        (true, acc)
    }
}

/// Refuses publishes on AWS IoT's reserved event topics from anyone but the emulator.
struct ReservedTopics;

/// Topics only AWS IoT itself publishes on.
const RESERVED_EVENTS: &str = "$aws/events/";

#[async_trait]
impl Handler for ReservedTopics {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::MessagePublishCheckAcl(session, publish) = param {
            let topic: &str = &publish.inner.topic;
            let client: &str = &session.id.client_id;
            if topic.starts_with(RESERVED_EVENTS)
                && !client.starts_with(crate::link::INTERNAL_CLIENT_PREFIX)
            {
                tracing::warn!(
                    client = %tether_domain::clock::excerpt(client, 128),
                    topic = %tether_domain::clock::excerpt(topic, 200),
                    "a device's publish on a reserved event topic refused"
                );
                let refused = PublishAclResult::rejected(false, Some("reserved topic".into()));
                return (false, Some(HookResult::PublishAclResult(refused)));
            }
        }
        (true, acc)
    }
}

/// Whether a topic has a level that starts with `$` after the first (`.../jobs/$next/get/accepted`).
/// MQTT gives `$` a meaning only at the start of a topic, and AWS IoT's Jobs topics use such
/// levels, but rmqtt refuses them: it cannot route them, and refuses a subscription to them.
pub fn has_inner_dollar_level(topic: &str) -> bool {
    topic.split('/').skip(1).any(|level| level.starts_with('$'))
}

/// `$` at the start of a later level written as `%24`, which rmqtt accepts.
fn escape_inner_dollar_levels(filter: &str) -> Option<String> {
    if !has_inner_dollar_level(filter) {
        return None;
    }
    let mut levels = filter.split('/');
    let first = levels.next().unwrap_or_default().to_owned();
    let rest = levels.map(|level| match level.strip_prefix('$') {
        Some(tail) => format!("%24{tail}"),
        None => level.to_owned(),
    });
    Some(
        std::iter::once(first)
            .chain(rest)
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// Lets a client subscribe (and unsubscribe) to a filter with a `$` level after the first, as
/// AWS IoT's Jobs clients do (`$aws/things/{thing}/jobs/$next/get/+`): rmqtt would refuse it
/// (SUBACK 0x80), so the filter is stored escaped. Messages on such topics cannot be routed by
/// rmqtt either: AWS IoT's answers on them go to the requester directly ([`Direct`]).
struct InnerDollarLevels;

#[async_trait]
impl Handler for InnerDollarLevels {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let filter: &str = match param {
            Parameter::ClientSubscribe(_, subscribe) => &subscribe.topic_filter,
            Parameter::ClientUnsubscribe(_, unsubscribe) => &unsubscribe.topic_filter,
            _ => return (true, acc),
        };
        match escape_inner_dollar_levels(filter) {
            Some(escaped) => (true, Some(HookResult::TopicFilter(Some(escaped.into())))),
            None => (true, acc),
        }
    }
}

/// A device's publish on a Jobs request topic, and who sent it.
#[derive(Debug, Clone)]
pub struct JobsRequest {
    pub client_id: String,
    pub topic: String,
    pub payload: bytes::Bytes,
}

/// Hands every publish on a Jobs request topic to the Jobs service.
struct JobsRequests {
    jobs: mpsc::UnboundedSender<JobsRequest>,
}

#[async_trait]
impl Handler for JobsRequests {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::MessagePublish(Some(session), _, publish) = param {
            let topic: &str = &publish.inner.topic;
            if topic.starts_with("$aws/things/")
                && JobTopic::request_filters()
                    .iter()
                    .any(|filter| filter_matches(filter, topic))
            {
                let _ = self.jobs.send(JobsRequest {
                    client_id: session.id.client_id.to_string(),
                    topic: topic.to_owned(),
                    payload: publish.inner.payload.clone(),
                });
            }
        }
        (true, acc)
    }
}

/// The sender id of a direct message at QoS 1 is this prefix and the number of its waiter, so
/// the PUBACK hook knows whom to tell.
const DIRECT_SENDER: &str = "local-iot-direct-";

/// Direct messages waiting for their PUBACK, by number.
#[derive(Clone, Default)]
struct AckWaiters {
    next: Arc<AtomicU64>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>,
}

impl AckWaiters {
    fn add(&self) -> (u64, oneshot::Receiver<()>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n, tx);
        (n, rx)
    }

    fn acked(&self, n: u64) {
        let waiter = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&n);
        if let Some(waiter) = waiter {
            let _ = waiter.send(());
        }
    }

    fn forget(&self, n: u64) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&n);
    }
}

/// Tells a direct message's sender that the client acknowledged it.
struct DirectAcks {
    waiters: AckWaiters,
}

#[async_trait]
impl Handler for DirectAcks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::MessageAcked(_, from, _) = param {
            let sender: &str = &from.id.client_id;
            if let Some(n) = sender
                .strip_prefix(DIRECT_SENDER)
                .and_then(|n| n.parse().ok())
            {
                self.waiters.acked(n);
            }
        }
        (true, acc)
    }
}

/// A message for one client (iot-data SendDirectMessage).
#[derive(Debug, Clone)]
pub struct DirectMessage {
    pub topic: String,
    pub payload: bytes::Bytes,
    /// QoS 1, and the PUBACK awaited; else QoS 0.
    pub confirm: bool,
    pub properties: rumqttc::v5::mqttbytes::v5::PublishProperties,
}

/// What sending a direct message did.
#[derive(Debug)]
pub enum DirectSent {
    /// Handed to the client's connection at QoS 0.
    Sent,
    /// Handed over at QoS 1: the receiver fires on the client's PUBACK.
    AwaitingAck(DirectAck),
}

/// The PUBACK of one direct message, awaited; dropping it forgets the message.
#[derive(Debug)]
pub struct DirectAck {
    n: u64,
    rx: Option<oneshot::Receiver<()>>,
    waiters: Option<AckWaiters>,
}

impl std::fmt::Debug for AckWaiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckWaiters")
    }
}

impl DirectAck {
    /// Whether the client acknowledged the message within `timeout`.
    pub async fn within(mut self, timeout: Duration) -> bool {
        match self.rx.take() {
            Some(rx) => matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(()))),
            None => false,
        }
    }
}

impl Drop for DirectAck {
    fn drop(&mut self) {
        if let Some(waiters) = self.waiters.take() {
            waiters.forget(self.n);
        }
    }
}

/// The MQTT 5 properties of a direct message as the broker's codec writes them.
fn codec_properties(p: &rumqttc::v5::mqttbytes::v5::PublishProperties) -> CodecProperties {
    CodecProperties {
        topic_alias: None,
        correlation_data: p.correlation_data.clone(),
        message_expiry_interval: p
            .message_expiry_interval
            .and_then(std::num::NonZeroU32::new),
        content_type: p.content_type.as_deref().map(Into::into),
        user_properties: p
            .user_properties
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect(),
        is_utf8_payload: p.payload_format_indicator == Some(1),
        response_topic: p.response_topic.as_deref().map(Into::into),
        subscription_ids: Vec::new(),
    }
}

/// A PUBLISH the broker hands to one client's session.
fn direct_packet(
    topic: &str,
    payload: bytes::Bytes,
    qos: QoS,
    properties: CodecProperties,
) -> Publish {
    Publish {
        inner: Box::new(CodecPublish {
            dup: false,
            retain: false,
            qos,
            topic: topic.into(),
            packet_id: None,
            payload,
            properties: Some(properties),
        }),
        target_clientid: None,
        delay_interval: None,
        create_time: Some(now_ms()),
    }
}

/// Delivers a message to one client, outside the subscriptions.
#[derive(Clone)]
pub struct Direct {
    scx: ServerContext,
    acks: AckWaiters,
}

impl Direct {
    /// SendDirectMessage: `message` to the connected client `client_id`, not through the
    /// topic routing (no subscription needed, no rule sees it, nothing retained); `None` when
    /// the client is not connected.
    pub async fn send(&self, client_id: &str, message: DirectMessage) -> Option<DirectSent> {
        let shared = self.scx.extends.shared().await;
        let entry = shared.iter().find(|e| &*e.id().client_id == client_id)?;
        if !entry.is_connected().await {
            return None;
        }
        let (sender, sent) = if message.confirm {
            let (n, rx) = self.acks.add();
            let id = Id::new(
                self.scx.node.id,
                0,
                None,
                None,
                format!("{DIRECT_SENDER}{n}").into(),
                None,
            );
            let ack = DirectAck {
                n,
                rx: Some(rx),
                waiters: Some(self.acks.clone()),
            };
            (Sender::from_custom(id), DirectSent::AwaitingAck(ack))
        } else {
            (Sender::from_system(entry.id().clone()), DirectSent::Sent)
        };
        let qos = if message.confirm {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let properties = codec_properties(&message.properties);
        let publish = direct_packet(&message.topic, message.payload, qos, properties);
        entry.publish(sender, publish).await.ok()?;
        Some(sent)
    }

    /// Delivers `payload` on `topic` (QoS 1) to `client_id` alone, outside the routing (whether
    /// it subscribed or not, and whatever the topic's levels); returns whether the client was
    /// there to take it.
    pub async fn to_client(&self, client_id: &str, topic: &str, payload: bytes::Bytes) -> bool {
        let shared = self.scx.extends.shared().await;
        let Some(entry) = shared.iter().find(|e| &*e.id().client_id == client_id) else {
            return false;
        };
        let publish = direct_packet(topic, payload, QoS::AtLeastOnce, CodecProperties::default());
        let from = Sender::from_system(entry.id().clone());
        entry.publish(from, publish).await.is_ok()
    }
}
