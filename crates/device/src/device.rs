//! One simulated device: an MQTT 5 connection whose client id is the thing name.
//!
//! The connection task polls the rumqttc event loop and never blocks on anything else: on every
//! CONNACK it subscribes again (clean start, so a reconnection starts without subscriptions), a
//! SUBACK makes the device ready, and each request is recorded, turned into a plan by
//! [`crate::answer`] and run in a task of its own, so a slow behaviour never holds up the
//! connection. A lost connection is retried with [`Backoff`]; the `disconnect` behaviour drops
//! the connection on purpose by discarding the network half of the event loop.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::Value;
use tether_domain::topics::{
    CommandAction, CommandTopic, InvokeTopics, ResponseFormat, TargetKind,
};
use tether_domain::DeviceId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::answer::{self, ReplyTo, Request, Step};
use crate::behaviour::Behaviours;
use crate::config::Backoff;
use crate::report::{Counters, Kind, Received, Recorder};

/// Requests the connection task queues before a sender waits.
const CHANNEL_CAPACITY: usize = 256;

/// How long a device may take to say goodbye (DISCONNECT) at shutdown.
const GOODBYE: Duration = Duration::from_secs(2);

/// Where a device stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// Connecting, or connected and waiting for the SUBACK; with the error that ended the last
    /// attempt, if one failed.
    Connecting(Option<String>),
    /// Connected and subscribed: requests reach it.
    Ready,
    /// Between connections, with the last error.
    Offline(String),
    /// The broker refused a subscription (on AWS IoT: the device policy does not allow it).
    Refused(String),
    /// Shut down.
    Stopped,
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceState::Connecting(None) => f.write_str("connecting (no CONNACK and SUBACK yet)"),
            DeviceState::Connecting(Some(error)) => write!(f, "reconnecting after: {error}"),
            DeviceState::Ready => f.write_str("ready"),
            DeviceState::Offline(error) => write!(f, "offline: {error}"),
            DeviceState::Refused(reason) => write!(f, "subscription refused: {reason}"),
            DeviceState::Stopped => f.write_str("stopped"),
        }
    }
}

/// Everything one device needs.
pub struct DeviceSetup {
    pub id: DeviceId,
    pub options: MqttOptions,
    pub topics: InvokeTopics,
    pub target: TargetKind,
    pub behaviours: Arc<Behaviours>,
    pub recorder: Recorder,
    pub backoff: Backoff,
}

impl DeviceSetup {
    /// The device's subscriptions: its direct-invocation requests, its Commands requests in
    /// every format, and the accepted / rejected acknowledgements of its responses.
    pub fn filters(&self) -> Vec<String> {
        let [accepted, rejected] = CommandTopic::ack_filters(self.target, &self.id);
        vec![
            self.topics.request_filter(&self.id),
            CommandTopic::request_filter(self.target, &self.id),
            accepted,
            rejected,
        ]
    }
}

enum Control {
    /// Drop the connection and stay offline this long.
    Drop(Duration),
}

/// What the answering tasks share.
struct Context {
    id: DeviceId,
    topics: InvokeTopics,
    target: TargetKind,
    behaviours: Arc<Behaviours>,
    recorder: Recorder,
    client: AsyncClient,
    control: mpsc::UnboundedSender<Control>,
    stop: watch::Receiver<bool>,
}

/// Starts a device; it runs until `stop` turns true (or its sender is dropped).
pub fn spawn(
    setup: DeviceSetup,
    stop: watch::Receiver<bool>,
) -> (watch::Receiver<DeviceState>, JoinHandle<()>) {
    let (state, state_rx) = watch::channel(DeviceState::Connecting(None));
    let task = tokio::spawn(run(setup, state, stop));
    (state_rx, task)
}

/// Sleeps, unless asked to stop first; true when asked to stop.
async fn pause_or_stop(wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

async fn run(
    setup: DeviceSetup,
    state: watch::Sender<DeviceState>,
    mut stop: watch::Receiver<bool>,
) {
    let filters = setup.filters();
    let (client, mut eventloop) = AsyncClient::new(setup.options.clone(), CHANNEL_CAPACITY);
    let (control_tx, mut control) = mpsc::unbounded_channel();
    let ctx = Arc::new(Context {
        id: setup.id.clone(),
        topics: setup.topics,
        target: setup.target,
        behaviours: setup.behaviours,
        recorder: setup.recorder,
        client: client.clone(),
        control: control_tx,
        stop: stop.clone(),
    });
    let id = &ctx.id;
    let mut failures: u32 = 0;
    let mut connected = false;
    loop {
        if *stop.borrow() {
            break;
        }
        // Only a stop or a deliberate drop interrupts a poll: cancelling one mid-connect would
        // throw the half-open connection away.
        tokio::select! {
            _ = stop.changed() => break,
            Some(Control::Drop(offline)) = control.recv() => {
                tracing::info!(device = %id, offline_ms = offline.as_millis() as u64, "dropping the connection on purpose");
                eventloop.clean();
                connected = false;
                state.send_replace(DeviceState::Offline("dropped on purpose".into()));
                ctx.recorder.count(id, |c| c.connection.dropped += 1);
                if pause_or_stop(offline, &mut stop).await {
                    break;
                }
                state.send_replace(DeviceState::Connecting(None));
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    connected = true;
                    state.send_replace(DeviceState::Connecting(None));
                    ctx.recorder.count(id, |c| c.connection.connects += 1);
                    tracing::debug!(device = %id, "connected; subscribing");
                    let subscriber = client.clone();
                    let filters: Vec<Filter> = filters
                        .iter()
                        .map(|f| Filter::new(f.clone(), QoS::AtLeastOnce))
                        .collect();
                    // Not awaited here: the event loop must keep turning to send it.
                    tokio::spawn(async move {
                        if let Err(err) = subscriber.subscribe_many(filters).await {
                            tracing::warn!(error = %err, "could not queue the subscription");
                        }
                    });
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused: Vec<String> = filters
                        .iter()
                        .zip(&ack.return_codes)
                        .filter(|(_, code)| !matches!(code, SubscribeReasonCode::Success(_)))
                        .map(|(filter, code)| format!("{filter} ({code:?})"))
                        .collect();
                    if refused.is_empty() {
                        tracing::debug!(device = %id, "subscribed; ready");
                        state.send_replace(DeviceState::Ready);
                    } else {
                        let reason = refused.join(", ");
                        tracing::error!(device = %id, %reason, "subscription refused");
                        state.send_replace(DeviceState::Refused(reason));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if let Some(plan) = receive(&ctx, publish) {
                        let ctx = ctx.clone();
                        tokio::spawn(async move {
                            let mut stop = ctx.stop.clone();
                            tokio::select! {
                                _ = execute(&ctx, plan) => {}
                                _ = stop.changed() => {}
                            }
                        });
                    }
                }
                Ok(Event::Incoming(Packet::Disconnect(disconnect))) => {
                    tracing::warn!(device = %id, reason = ?disconnect.reason_code, "the broker closed the connection");
                }
                Ok(_) => {}
                Err(err) => {
                    connected = false;
                    ctx.recorder.count(id, |c| c.connection.errors += 1);
                    let wait = setup.backoff.wait(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(device = %id, error = %err, retry_in_ms = wait.as_millis() as u64, "connection failed");
                    let error = err.to_string();
                    state.send_replace(DeviceState::Offline(error.clone()));
                    if pause_or_stop(wait, &mut stop).await {
                        break;
                    }
                    state.send_replace(DeviceState::Connecting(Some(error)));
                }
            }
        }
    }
    if connected && client.try_disconnect().is_ok() {
        // Turn the loop until the DISCONNECT is on the wire, so the broker sees a clean goodbye.
        let _ = tokio::time::timeout(GOODBYE, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    state.send_replace(DeviceState::Stopped);
}

/// What a request needs from its MQTT 5 properties.
fn request_of(publish: &Publish) -> Request {
    Request {
        payload: publish.payload.clone(),
        received_at: Instant::now(),
        message_expiry: publish
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval),
    }
}

fn received(ctx: &Context, publish: &Publish, topic: &str, kind: Kind, id: String) -> Received {
    let properties = publish.properties.clone().unwrap_or_default();
    Received {
        device: ctx.id.clone(),
        kind,
        topic: topic.to_owned(),
        method: None,
        id,
        behaviour: None,
        payload: publish.payload.clone(),
        response_topic: properties.response_topic,
        correlation_data: properties.correlation_data,
        message_expiry: properties.message_expiry_interval,
        content_type: properties.content_type,
        at: std::time::Instant::now(),
    }
}

/// Records a message and returns the plan that answers it, if it is a request.
fn receive(ctx: &Context, publish: Publish) -> Option<Plan> {
    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
    let id = &ctx.id;

    if let Ok(request) = ctx.topics.parse_request(&topic) {
        if request.device != *id {
            ctx.recorder.count(id, |c| c.connection.ignored += 1);
            return None;
        }
        let method = request.method.as_str();
        let behaviour = ctx.behaviours.for_method(Some(method));
        let properties = publish.properties.clone().unwrap_or_default();
        let reply_to = ReplyTo::of(&ctx.topics, id, &request.request_id, &properties);
        let steps = answer::invoke(behaviour, &request_of(&publish), &reply_to);
        tracing::debug!(device = %id, method, request_id = %request.request_id, %behaviour, "direct invocation");
        let mut log = received(
            ctx,
            &publish,
            &topic,
            Kind::Invoke,
            request.request_id.into_string(),
        );
        log.method = Some(method.to_owned());
        log.behaviour = Some(behaviour.to_string());
        let unanswered = !answer::answers(&steps);
        ctx.recorder.receive(log, |c| {
            c.invoke.received += 1;
            c.invoke.unanswered += u64::from(unanswered);
        });
        return Some(Plan {
            kind: Kind::Invoke,
            fallback: reply_to.fallback,
            steps,
        });
    }

    let command = match CommandTopic::parse(&topic) {
        Ok(command) if command.device == *id && command.kind == ctx.target => command,
        _ => {
            tracing::debug!(device = %id, %topic, "ignoring a message on an unexpected topic");
            ctx.recorder.count(id, |c| c.connection.ignored += 1);
            return None;
        }
    };
    let execution = command.execution.to_string();
    match command.action {
        CommandAction::Request(_) => {
            let method = answer::command_method(&publish.payload);
            let behaviour = ctx.behaviours.for_method(method.as_deref());
            let response = command
                .with_action(CommandAction::Response(ResponseFormat::Json))
                .to_string();
            let steps = answer::command(behaviour, &request_of(&publish), &response);
            tracing::debug!(device = %id, %execution, method = method.as_deref().unwrap_or("*"), %behaviour, "command execution");
            let mut log = received(ctx, &publish, &topic, Kind::Command, execution);
            log.method = method;
            log.behaviour = Some(behaviour.to_string());
            let unanswered = !answer::answers(&steps);
            ctx.recorder.receive(log, |c| {
                c.commands.received += 1;
                c.commands.unanswered += u64::from(unanswered);
            });
            Some(Plan {
                kind: Kind::Command,
                fallback: false,
                steps,
            })
        }
        CommandAction::Accepted => {
            let log = received(ctx, &publish, &topic, Kind::Accepted, execution);
            ctx.recorder.receive(log, |c| c.commands.accepted += 1);
            None
        }
        CommandAction::Rejected => {
            let code = serde_json::from_slice::<Value>(&publish.payload)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            tracing::info!(device = %id, %execution, error = %code, "the cloud rejected a response");
            let log = received(ctx, &publish, &topic, Kind::Rejected, execution);
            ctx.recorder.receive(log, |c| {
                *c.commands.rejected.entry(code).or_default() += 1;
            });
            None
        }
        CommandAction::Response(_) => {
            ctx.recorder.count(id, |c| c.connection.ignored += 1);
            None
        }
    }
}

/// A plan with what the counters need to know about it.
struct Plan {
    kind: Kind,
    /// Direct invocation without a response topic: replies go to the topic built from the
    /// request topic.
    fallback: bool,
    steps: Vec<Step>,
}

fn count_sent(counters: &mut Counters, plan: (Kind, bool), status: &str) {
    let (kind, fallback) = plan;
    if kind == Kind::Invoke {
        counters.invoke.fallback_topic += u64::from(fallback);
        *counters.invoke.sent.entry(status.to_owned()).or_default() += 1;
    } else {
        *counters.commands.sent.entry(status.to_owned()).or_default() += 1;
    }
}

/// Runs a plan: waits, publishes (QoS 1), or asks the connection task to drop the connection.
async fn execute(ctx: &Context, plan: Plan) {
    let counted_as = (plan.kind, plan.fallback);
    for step in plan.steps {
        match step {
            Step::Sleep(wait) => tokio::time::sleep(wait).await,
            Step::SleepUntil(at) => tokio::time::sleep_until(at).await,
            Step::Drop(offline) => {
                let _ = ctx.control.send(Control::Drop(offline));
            }
            Step::Send(reply) => {
                let outcome = ctx
                    .client
                    .publish_with_properties(
                        reply.topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        reply.payload,
                        reply.properties,
                    )
                    .await;
                match outcome {
                    Ok(()) => ctx
                        .recorder
                        .count(&ctx.id, |c| count_sent(c, counted_as, reply.status)),
                    Err(err) => {
                        tracing::warn!(device = %ctx.id, topic = %reply.topic, error = %err, "could not send an answer");
                        ctx.recorder
                            .count(&ctx.id, |c| c.connection.publish_failures += 1);
                    }
                }
            }
        }
    }
}
