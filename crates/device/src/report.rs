//! What the fleet saw and did: counters per device, a bounded log of received messages, the
//! exit summary, and a change signal that lets tests wait for a count instead of sleeping.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tether_domain::DeviceId;
use tokio::sync::watch;

/// What a received message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// A direct-invocation request.
    Invoke,
    /// An AWS IoT Commands execution request.
    Command,
    /// The cloud accepted one of the device's Commands responses.
    Accepted,
    /// The cloud rejected one of the device's Commands responses.
    Rejected,
    /// An AWS IoT Jobs execution the device took on (a `start-next` answer with an
    /// `execution`, or StartNextPendingJobExecution over HTTPS).
    Job,
    /// A `jobs/notify-next` message: the head of the device's pending jobs changed.
    JobNotify,
    /// The cloud accepted one of the device's job execution updates.
    JobAccepted,
    /// The cloud refused one of the device's Jobs requests (`start-next` or an update).
    JobRejected,
}

/// One message a device received.
#[derive(Debug, Clone)]
pub struct Received {
    pub device: DeviceId,
    pub kind: Kind,
    pub topic: String,
    /// The method that picked the behaviour: the topic level of a direct invocation, the
    /// payload's `"method"` field of a Commands request, the job document's `"operation"`
    /// field of a job; `None` when the default applied or for acknowledgements.
    pub method: Option<String>,
    /// The request id (direct invocation), the execution id (Commands and acks) or the job id
    /// (Jobs; for `notify-next` the next job's, empty when nothing is pending; `$next` for a
    /// refused `start-next`).
    pub id: String,
    /// The behaviour applied, as text (`delay:200`); `None` for acknowledgements.
    pub behaviour: Option<String>,
    pub payload: Bytes,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    /// Seconds, as the broker delivered it.
    pub message_expiry: Option<u32>,
    pub content_type: Option<String>,
    pub at: Instant,
}

/// One answer a device sent (QoS 1, logged once the broker acknowledged it): a
/// direct-invocation reply, a Commands response or a job execution update (over HTTPS: once
/// the service accepted it), with the status it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub device: DeviceId,
    /// [`Kind::Invoke`], [`Kind::Command`] or [`Kind::Job`].
    pub kind: Kind,
    /// The request id (direct invocation), the execution id (Commands) or the job id (Jobs).
    pub id: String,
    pub status: &'static str,
    pub at: Instant,
}

/// Direct-invocation counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvokeCounters {
    pub received: u64,
    /// Replies sent, by status.
    pub sent: BTreeMap<String, u64>,
    /// Replies sent on `{prefix}/replies/{deviceId}/{requestId}` because the request had no
    /// response topic.
    pub fallback_topic: u64,
    /// Requests that will never be answered (`never`, `disconnect`).
    pub unanswered: u64,
}

/// AWS IoT Commands counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandCounters {
    pub received: u64,
    /// Responses sent, by status (IN_PROGRESS included).
    pub sent: BTreeMap<String, u64>,
    pub unanswered: u64,
    /// Acknowledgements on `.../response/accepted/json`.
    pub accepted: u64,
    /// Acknowledgements on `.../response/rejected/json`, by error code.
    pub rejected: BTreeMap<String, u64>,
}

/// AWS IoT Jobs counts. Every execution the device takes on ends in exactly one of
/// `finished` and `abandoned`, or is still running: `received` = `finished` + `abandoned` +
/// (0 or 1 running per device).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCounters {
    /// Executions taken on (a job handed out again, after a reconnection or a lost answer,
    /// counts again).
    pub received: u64,
    /// Updates sent, by status (IN_PROGRESS included).
    pub sent: BTreeMap<String, u64>,
    /// Executions whose final update (SUCCEEDED, FAILED, REJECTED) the cloud accepted.
    pub finished: u64,
    /// Executions the behaviour never finishes (`never`, `disconnect`), counted when taken on.
    pub unanswered: u64,
    /// Executions the device let go of unfinished: the cloud ended them (timed out,
    /// cancelled), refused an update, did not answer in time, or the device dropped its
    /// connection on purpose (`disconnect`).
    pub abandoned: u64,
    /// Updates the cloud accepted.
    pub accepted: u64,
    /// Refusals (`/rejected` answers or HTTPS errors), by error code.
    pub rejected: BTreeMap<String, u64>,
    /// `start-next` requests (MQTT) or StartNextPendingJobExecution calls (HTTPS).
    pub start_next: u64,
    /// `start-next` answers without an execution: nothing was pending.
    pub nothing_pending: u64,
    /// `notify-next` messages received.
    pub notifications: u64,
}

/// Connection counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionCounters {
    /// Successful connections (CONNACK), the first one included.
    pub connects: u64,
    /// Connections dropped on purpose (`disconnect`).
    pub dropped: u64,
    /// Failed connection attempts and lost connections.
    pub errors: u64,
    /// Answers that could not be queued for sending.
    pub publish_failures: u64,
    /// Messages on a topic the device does not understand.
    pub ignored: u64,
}

/// Everything counted for one device, or summed over a fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub invoke: InvokeCounters,
    pub commands: CommandCounters,
    pub jobs: JobCounters,
    pub connection: ConnectionCounters,
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, n) in from {
        *into.entry(key.clone()).or_default() += n;
    }
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.invoke.received += other.invoke.received;
        add_map(&mut self.invoke.sent, &other.invoke.sent);
        self.invoke.fallback_topic += other.invoke.fallback_topic;
        self.invoke.unanswered += other.invoke.unanswered;
        self.commands.received += other.commands.received;
        add_map(&mut self.commands.sent, &other.commands.sent);
        self.commands.unanswered += other.commands.unanswered;
        self.commands.accepted += other.commands.accepted;
        add_map(&mut self.commands.rejected, &other.commands.rejected);
        let (j, o) = (&mut self.jobs, &other.jobs);
        j.received += o.received;
        add_map(&mut j.sent, &o.sent);
        j.finished += o.finished;
        j.unanswered += o.unanswered;
        j.abandoned += o.abandoned;
        j.accepted += o.accepted;
        add_map(&mut j.rejected, &o.rejected);
        j.start_next += o.start_next;
        j.nothing_pending += o.nothing_pending;
        j.notifications += o.notifications;
        let (c, o) = (&mut self.connection, &other.connection);
        c.connects += o.connects;
        c.dropped += o.dropped;
        c.errors += o.errors;
        c.publish_failures += o.publish_failures;
        c.ignored += o.ignored;
    }

    /// Replies, responses or job updates sent with `status`, for one kind (the Jobs kinds all
    /// count job updates).
    pub fn sent(&self, kind: Kind, status: &str) -> u64 {
        let map = match kind {
            Kind::Invoke => &self.invoke.sent,
            Kind::Command | Kind::Accepted | Kind::Rejected => &self.commands.sent,
            Kind::Job | Kind::JobNotify | Kind::JobAccepted | Kind::JobRejected => &self.jobs.sent,
        };
        map.get(status).copied().unwrap_or(0)
    }
}

/// The fleet's counters: the sum, and each device's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub devices: usize,
    pub total: Counters,
    pub per_device: BTreeMap<String, Counters>,
}

fn statuses(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = map.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(" ({})", parts.join(", "))
}

/// The text summary printed on exit.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.total;
        let sum = |map: &BTreeMap<String, u64>| map.values().sum::<u64>();
        writeln!(
            f,
            "devices: {} (connections {}, dropped on purpose {}, connection errors {})",
            self.devices, t.connection.connects, t.connection.dropped, t.connection.errors
        )?;
        writeln!(
            f,
            "direct invoke: received {}, replies sent {}{}, on the fallback topic {}, unanswered {}",
            t.invoke.received,
            sum(&t.invoke.sent),
            statuses(&t.invoke.sent),
            t.invoke.fallback_topic,
            t.invoke.unanswered
        )?;
        writeln!(
            f,
            "commands: received {}, responses sent {}{}, unanswered {}",
            t.commands.received,
            sum(&t.commands.sent),
            statuses(&t.commands.sent),
            t.commands.unanswered
        )?;
        writeln!(
            f,
            "commands acks: accepted {}, rejected {}{}",
            t.commands.accepted,
            sum(&t.commands.rejected),
            statuses(&t.commands.rejected)
        )?;
        let j = &t.jobs;
        writeln!(
            f,
            "jobs: received {}, updates sent {}{}, finished {}, unanswered {}, abandoned {}",
            j.received,
            sum(&j.sent),
            statuses(&j.sent),
            j.finished,
            j.unanswered,
            j.abandoned
        )?;
        writeln!(
            f,
            "jobs answers: accepted {}, rejected {}{}, start-next {} (nothing pending {}), notify-next {}",
            j.accepted,
            sum(&j.rejected),
            statuses(&j.rejected),
            j.start_next,
            j.nothing_pending,
            j.notifications
        )?;
        write!(
            f,
            "other: publish failures {}, ignored messages {}",
            t.connection.publish_failures, t.connection.ignored
        )
    }
}

struct Inner {
    per_device: BTreeMap<DeviceId, Counters>,
    received: VecDeque<Received>,
    sent: VecDeque<Sent>,
    limit: usize,
}

/// Appends to a log that keeps the newest `limit` entries (none when `limit` is 0).
fn keep<T>(log: &mut VecDeque<T>, entry: T, limit: usize) {
    if limit == 0 {
        return;
    }
    if log.len() >= limit {
        log.pop_front();
    }
    log.push_back(entry);
}

/// Shared by every device of a fleet. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Recorder {
    pub fn new(devices: &[DeviceId], limit: usize) -> Self {
        let per_device = devices
            .iter()
            .map(|d| (d.clone(), Counters::default()))
            .collect();
        Self {
            inner: Arc::new(Mutex::new(Inner {
                per_device,
                received: VecDeque::new(),
                sent: VecDeque::new(),
                limit,
            })),
            changed: Arc::new(watch::Sender::new(0)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Counting cannot leave the data half-updated in a way that matters; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes one device's counters.
    pub fn count(&self, device: &DeviceId, change: impl FnOnce(&mut Counters)) {
        change(self.lock().per_device.entry(device.clone()).or_default());
        self.bump();
    }

    /// Logs a received message and counts it.
    pub fn receive(&self, message: Received, change: impl FnOnce(&mut Counters)) {
        {
            let mut inner = self.lock();
            change(inner.per_device.entry(message.device.clone()).or_default());
            let limit = inner.limit;
            keep(&mut inner.received, message, limit);
        }
        self.bump();
    }

    /// Logs an answer the broker acknowledged (the counters count answers when they are sent).
    pub fn send(&self, message: Sent) {
        {
            let mut inner = self.lock();
            let limit = inner.limit;
            keep(&mut inner.sent, message, limit);
        }
        self.bump();
    }

    pub fn summary(&self) -> Summary {
        let inner = self.lock();
        let mut total = Counters::default();
        for counters in inner.per_device.values() {
            total.add(counters);
        }
        Summary {
            devices: inner.per_device.len(),
            total,
            per_device: inner
                .per_device
                .iter()
                .map(|(d, c)| (d.to_string(), c.clone()))
                .collect(),
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.iter().cloned().collect()
    }

    /// The answers sent, oldest first (the newest `limit` of them).
    pub fn sent(&self) -> Vec<Sent> {
        self.lock().sent.iter().cloned().collect()
    }

    /// Changes whenever anything is counted.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    fn received(device: &str, id: &str) -> Received {
        Received {
            device: dev(device),
            kind: Kind::Invoke,
            topic: format!("tether/devices/{device}/invoke/m/{id}"),
            method: Some("m".into()),
            id: id.into(),
            behaviour: Some("echo".into()),
            payload: Bytes::new(),
            response_topic: None,
            correlation_data: None,
            message_expiry: None,
            content_type: None,
            at: Instant::now(),
        }
    }

    #[test]
    fn the_summary_adds_up_every_device() {
        let recorder = Recorder::new(&[dev("a"), dev("b")], 10);

        recorder.count(&dev("a"), |c| {
            *c.invoke.sent.entry("SUCCEEDED".into()).or_default() += 2
        });
        recorder.count(&dev("b"), |c| {
            *c.invoke.sent.entry("SUCCEEDED".into()).or_default() += 1;
            *c.commands
                .rejected
                .entry("TerminalStateReached".into())
                .or_default() += 1;
            c.connection.connects += 1;
        });
        for device in ["a", "b"] {
            recorder.count(&dev(device), |c| {
                c.jobs.received += 1;
                c.jobs.finished += 1;
                *c.jobs.sent.entry("SUCCEEDED".into()).or_default() += 1;
            });
        }
        let summary = recorder.summary();

        assert_eq!(summary.devices, 2);
        assert_eq!(summary.total.sent(Kind::Job, "SUCCEEDED"), 2);
        assert_eq!(summary.total.jobs.finished, 2);
        assert_eq!(summary.total.sent(Kind::Invoke, "SUCCEEDED"), 3);
        assert_eq!(summary.total.commands.rejected["TerminalStateReached"], 1);
        assert_eq!(summary.per_device["a"].sent(Kind::Invoke, "SUCCEEDED"), 2);
        let text = summary.to_string();
        assert!(text.contains("replies sent 3 (SUCCEEDED 3)"), "{text}");
        assert!(
            text.contains("rejected 1 (TerminalStateReached 1)"),
            "{text}"
        );
        assert!(
            text.contains("jobs: received 2, updates sent 2 (SUCCEEDED 2), finished 2"),
            "{text}"
        );
    }

    #[test]
    fn the_received_log_keeps_the_newest_messages_up_to_its_limit() {
        let recorder = Recorder::new(&[dev("a")], 2);

        for id in ["r1", "r2", "r3"] {
            recorder.receive(received("a", id), |c| c.invoke.received += 1);
        }

        let ids: Vec<String> = recorder.received().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["r2", "r3"]);
        assert_eq!(recorder.summary().total.invoke.received, 3);
    }

    #[test]
    fn the_sent_log_keeps_the_newest_answers_with_their_ids_and_counts_them() {
        let recorder = Recorder::new(&[dev("a")], 2);

        for (id, status) in [("r1", "SUCCEEDED"), ("r2", "FAILED"), ("e3", "IN_PROGRESS")] {
            let sent = Sent {
                device: dev("a"),
                kind: Kind::Invoke,
                id: id.into(),
                status,
                at: Instant::now(),
            };
            recorder.count(&dev("a"), |c| {
                *c.invoke.sent.entry(status.into()).or_default() += 1
            });
            recorder.send(sent);
        }

        let sent: Vec<(String, &str)> = recorder
            .sent()
            .into_iter()
            .map(|s| (s.id, s.status))
            .collect();
        assert_eq!(
            sent,
            [("r2".into(), "FAILED"), ("e3".into(), "IN_PROGRESS")]
        );
        assert_eq!(recorder.summary().total.sent(Kind::Invoke, "SUCCEEDED"), 1);
    }

    #[test]
    fn every_count_signals_a_change() {
        let recorder = Recorder::new(&[dev("a")], 0);
        let mut changes = recorder.changes();
        changes.mark_unchanged();

        recorder.count(&dev("a"), |c| c.connection.connects += 1);

        assert!(changes.has_changed().unwrap());
    }
}
