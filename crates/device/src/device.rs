//! One simulated device: an MQTT 5 connection whose client id is the thing name.
//!
//! The connection task polls the rumqttc event loop and never blocks on anything else: on every
//! CONNACK it subscribes again (clean start, so a reconnection starts without subscriptions; at
//! most 8 filters per SUBSCRIBE, AWS IoT's limit), the SUBACKs make the device ready, and each
//! request is recorded, turned into a plan by [`crate::answer`] and run in a task of its own, so
//! a slow behaviour never holds up the connection. A lost connection is retried with
//! [`Backoff`]; the `disconnect` behaviour drops the connection on purpose by discarding the
//! network half of the event loop. What happens to one message (recording it, planning the
//! answer) is in `receive`.
//!
//! AWS IoT Jobs run in a task of their own per device (`jobs`): over MQTT the connection task
//! hands it the messages on the device's Jobs topics and tells it when the device is ready (so
//! it asks for the next pending job on every connection), and the Jobs agent
//! ([`crate::jobs`]) decides what to publish; over HTTPS the task polls the iot-jobs-data API
//! instead.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubAck, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use tether_domain::topics::{CommandTopic, InvokeTopics, TargetKind};
use tether_domain::DeviceId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::jobs::JobInput;
use self::receive::receive;
use crate::answer::Step;
use crate::behaviour::Behaviours;
use crate::config::Backoff;
use crate::report::{Counters, Kind, Recorder, Sent};

mod jobs;
mod receive;

/// Requests the connection task queues before a sender waits.
const CHANNEL_CAPACITY: usize = 256;

/// How long a device may take to say goodbye (DISCONNECT) at shutdown.
const GOODBYE: Duration = Duration::from_secs(2);

/// The most filters AWS IoT Core accepts in one SUBSCRIBE.
const FILTERS_PER_SUBSCRIBE: usize = 8;

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

/// How one device takes AWS IoT Jobs.
#[derive(Clone)]
pub enum JobsSetup {
    Off,
    /// Over its MQTT connection; an answer not in within `reply_timeout` is given up on.
    Mqtt {
        reply_timeout: Duration,
    },
    /// Over HTTPS with this iot-jobs-data client, asking every `poll_interval` when idle.
    Https {
        client: aws_sdk_iotjobsdataplane::Client,
        poll_interval: Duration,
    },
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
    pub jobs: JobsSetup,
}

impl DeviceSetup {
    /// The device's subscriptions: its direct-invocation requests, its Commands requests in
    /// every format, the accepted / rejected acknowledgements of its responses, and with Jobs
    /// over MQTT `notify-next` and the answers to its Jobs requests.
    pub fn filters(&self) -> Vec<String> {
        let [accepted, rejected] = CommandTopic::ack_filters(self.target, &self.id);
        let mut filters = vec![
            self.topics.request_filter(&self.id),
            CommandTopic::request_filter(self.target, &self.id),
            accepted,
            rejected,
        ];
        if matches!(self.jobs, JobsSetup::Mqtt { .. }) {
            filters.extend(crate::jobs::filters(&self.id));
        }
        filters
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
    outbox: Outbox,
    /// The Jobs task's inbox, with Jobs over MQTT.
    jobs: Option<mpsc::UnboundedSender<JobInput>>,
}

/// Answers between the MQTT client and the broker's PUBACK. An answer enters the sent log only
/// once the broker has acknowledged it: with a clean start, a client drops what was not
/// acknowledged when its connection fails, so "handed to the client" is not "published".
/// Every QoS 1 publish of the device goes through it, so that packet ids pair with the right
/// entries; a publish that is not an answer (a Jobs `start-next`) has no entry to log.
#[derive(Default)]
struct Outbox {
    /// Queued in the client, in the order the client sends them (held while queueing, so the
    /// order is the client's).
    queued: std::sync::Mutex<std::collections::VecDeque<Option<Sent>>>,
    /// On the wire, by packet id.
    in_flight: std::sync::Mutex<std::collections::HashMap<u16, Option<Sent>>>,
}

/// How long an answer waits for room in the client's queue before it counts as not sent.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

impl Outbox {
    fn queue(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Option<Sent>>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `message` (QoS 1) in the client and `sent` here, in the same order.
    async fn publish(
        &self,
        client: &AsyncClient,
        message: &crate::answer::Reply,
        sent: Option<Sent>,
    ) -> Result<(), rumqttc::v5::ClientError> {
        let until = tokio::time::Instant::now() + QUEUE_WAIT;
        loop {
            let result = {
                let mut queued = self.queue();
                let result = client.try_publish_with_properties(
                    message.topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    message.payload.clone(),
                    message.properties.clone(),
                );
                if result.is_ok() {
                    queued.push_back(sent.clone());
                }
                result
            };
            match result {
                Err(_) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    /// The client wrote the next queued publish with packet id `pkid`.
    fn written(&self, pkid: u16) {
        if let Some(sent) = self.queue().pop_front() {
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pkid, sent);
        }
    }

    /// The broker acknowledged packet `pkid`: the answer it carried, if it was one.
    fn acknowledged(&self, pkid: u16) -> Option<Sent> {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pkid)
            .flatten()
    }

    /// The connection failed: what was not acknowledged is gone with it (clean start).
    fn lost(&self) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.queue().clear();
    }
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
    let (client, mut eventloop) = AsyncClient::new(setup.options.clone(), CHANNEL_CAPACITY);
    let (control_tx, mut control) = mpsc::unbounded_channel();
    let (jobs_tx, jobs_rx) = match setup.jobs {
        JobsSetup::Mqtt { .. } => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let filters = setup.filters();
    let ctx = Arc::new(Context {
        id: setup.id,
        topics: setup.topics,
        target: setup.target,
        behaviours: setup.behaviours,
        recorder: setup.recorder,
        client,
        control: control_tx,
        stop: stop.clone(),
        outbox: Outbox::default(),
        jobs: jobs_tx,
    });
    jobs::spawn(ctx.clone(), setup.jobs, jobs_rx);
    let mut connection = Connection {
        filters,
        backoff: setup.backoff,
        ctx,
        state,
        failures: 0,
        connected: false,
        subacks: 0,
        refused: Vec::new(),
    };
    loop {
        if *stop.borrow() {
            break;
        }
        // Only a stop or a deliberate drop interrupts a poll: cancelling one mid-connect would
        // throw the half-open connection away.
        let stopped = tokio::select! {
            _ = stop.changed() => true,
            Some(Control::Drop(offline)) = control.recv() => {
                connection.drop_on_purpose(offline, &mut eventloop, &mut stop).await
            }
            event = eventloop.poll() => connection.on_event(event, &mut stop).await,
        };
        if stopped {
            break;
        }
    }
    connection.goodbye(&mut eventloop).await;
    connection.state.send_replace(DeviceState::Stopped);
}

/// The connection task's state between two events.
struct Connection {
    ctx: Arc<Context>,
    filters: Vec<String>,
    backoff: Backoff,
    state: watch::Sender<DeviceState>,
    /// Failed connection attempts in a row, for the backoff.
    failures: u32,
    /// Connected since the last failure or drop: only then is a goodbye owed at shutdown.
    connected: bool,
    /// SUBACKs received since the last CONNACK (one per SUBSCRIBE of at most
    /// [`FILTERS_PER_SUBSCRIBE`] filters), and the filters they refused.
    subacks: usize,
    refused: Vec<String>,
}

impl Connection {
    /// The `disconnect` behaviour: drops the connection and stays offline for `offline`; true
    /// when asked to stop meanwhile.
    async fn drop_on_purpose(
        &mut self,
        offline: Duration,
        eventloop: &mut EventLoop,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let id = &self.ctx.id;
        tracing::info!(device = %id, offline_ms = offline.as_millis() as u64, "dropping the connection on purpose");
        eventloop.clean();
        self.ctx.outbox.lost();
        self.connected = false;
        self.state
            .send_replace(DeviceState::Offline("dropped on purpose".into()));
        self.ctx.recorder.count(id, |c| c.connection.dropped += 1);
        if pause_or_stop(offline, stop).await {
            return true;
        }
        self.state.send_replace(DeviceState::Connecting(None));
        false
    }

    /// Handles what the event loop reports; true when asked to stop while waiting to retry.
    async fn on_event(
        &mut self,
        event: Result<Event, ConnectionError>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let id = &self.ctx.id;
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => self.on_connack(),
            Ok(Event::Incoming(Packet::SubAck(ack))) => self.on_suback(&ack),
            Ok(Event::Incoming(Packet::Publish(publish))) => self.on_publish(publish),
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => self.ctx.outbox.written(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(sent) = self.ctx.outbox.acknowledged(ack.pkid) {
                    self.ctx.recorder.send(sent);
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(disconnect))) => {
                tracing::warn!(device = %id, reason = ?disconnect.reason_code, "the broker closed the connection");
            }
            Ok(_) => {}
            Err(err) => return self.on_error(&err, stop).await,
        }
        false
    }

    /// Connected: subscribes again (clean start, so the broker kept no subscriptions).
    fn on_connack(&mut self) {
        let id = &self.ctx.id;
        self.failures = 0;
        self.connected = true;
        self.subacks = 0;
        self.refused.clear();
        self.state.send_replace(DeviceState::Connecting(None));
        self.ctx.recorder.count(id, |c| c.connection.connects += 1);
        tracing::debug!(device = %id, "connected; subscribing");
        let subscriber = self.ctx.client.clone();
        let subscriptions: Vec<Vec<Filter>> = self
            .filters
            .chunks(FILTERS_PER_SUBSCRIBE)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|f| Filter::new(f.clone(), QoS::AtLeastOnce))
                    .collect()
            })
            .collect();
        // Not awaited here: the event loop must keep turning to send them.
        tokio::spawn(async move {
            for filters in subscriptions {
                if let Err(err) = subscriber.subscribe_many(filters).await {
                    tracing::warn!(error = %err, "could not queue the subscription");
                }
            }
        });
    }

    /// One SUBSCRIBE answered (they are answered in order); after the last one, ready unless
    /// the broker refused a filter.
    fn on_suback(&mut self, ack: &SubAck) {
        let id = &self.ctx.id;
        let Some(chunk) = self.filters.chunks(FILTERS_PER_SUBSCRIBE).nth(self.subacks) else {
            return;
        };
        self.subacks += 1;
        self.refused.extend(
            chunk
                .iter()
                .zip(&ack.return_codes)
                .filter(|(_, code)| !matches!(code, SubscribeReasonCode::Success(_)))
                .map(|(filter, code)| format!("{filter} ({code:?})")),
        );
        if self.subacks < self.filters.len().div_ceil(FILTERS_PER_SUBSCRIBE) {
            return;
        }
        if self.refused.is_empty() {
            tracing::debug!(device = %id, "subscribed; ready");
            self.state.send_replace(DeviceState::Ready);
            if let Some(jobs) = &self.ctx.jobs {
                let _ = jobs.send(JobInput::Ready);
            }
        } else {
            let reason = self.refused.join(", ");
            tracing::error!(device = %id, %reason, "subscription refused");
            self.state.send_replace(DeviceState::Refused(reason));
        }
    }

    /// A message: recorded, and if it is a request, answered in a task of its own.
    fn on_publish(&self, publish: Publish) {
        if let Some(plan) = receive(&self.ctx, publish) {
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                let mut stop = ctx.stop.clone();
                tokio::select! {
                    _ = execute(&ctx, plan) => {}
                    _ = stop.changed() => {}
                }
            });
        }
    }

    /// The connection failed: offline for the backoff's wait, then connecting again; true when
    /// asked to stop meanwhile.
    async fn on_error(&mut self, err: &ConnectionError, stop: &mut watch::Receiver<bool>) -> bool {
        let id = &self.ctx.id;
        self.connected = false;
        self.ctx.outbox.lost();
        self.ctx.recorder.count(id, |c| c.connection.errors += 1);
        let wait = self.backoff.wait(self.failures);
        self.failures = self.failures.saturating_add(1);
        tracing::warn!(device = %id, error = %err, retry_in_ms = wait.as_millis() as u64, "connection failed");
        let error = err.to_string();
        self.state.send_replace(DeviceState::Offline(error.clone()));
        if pause_or_stop(wait, stop).await {
            return true;
        }
        self.state
            .send_replace(DeviceState::Connecting(Some(error)));
        false
    }

    /// At shutdown, if connected: sends DISCONNECT and turns the loop until it is on the wire,
    /// so the broker sees a clean goodbye.
    async fn goodbye(&self, eventloop: &mut EventLoop) {
        if self.connected && self.ctx.client.try_disconnect().is_ok() {
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
    }
}

/// A plan with what the counters need to know about it.
struct Plan {
    kind: Kind,
    /// The request id (direct invocation) or the execution id (Commands).
    id: String,
    /// Direct invocation without a response topic: replies go to the topic built from the
    /// request topic.
    fallback: bool,
    steps: Vec<Step>,
}

fn count_sent(counters: &mut Counters, plan: (Kind, bool), status: &str) {
    let (kind, fallback) = plan;
    match kind {
        Kind::Invoke => {
            counters.invoke.fallback_topic += u64::from(fallback);
            *counters.invoke.sent.entry(status.to_owned()).or_default() += 1;
        }
        Kind::Job => *counters.jobs.sent.entry(status.to_owned()).or_default() += 1,
        _ => *counters.commands.sent.entry(status.to_owned()).or_default() += 1,
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
                let status = reply.status;
                let sent = Sent {
                    device: ctx.id.clone(),
                    kind: plan.kind,
                    id: plan.id.clone(),
                    status,
                    at: std::time::Instant::now(),
                };
                match ctx.outbox.publish(&ctx.client, &reply, Some(sent)).await {
                    Ok(()) => {
                        ctx.recorder
                            .count(&ctx.id, |c| count_sent(c, counted_as, status));
                    }
                    Err(err) => {
                        tracing::warn!(device = %ctx.id, error = %err, "could not send an answer");
                        ctx.recorder
                            .count(&ctx.id, |c| c.connection.publish_failures += 1);
                    }
                }
            }
        }
    }
}
