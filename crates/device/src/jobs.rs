//! AWS IoT Jobs on the device (`docs/aws-iot-reference.md` §3): what a job execution is, the
//! topics a device subscribes to, and the agent (`Agent`, crate-private) that takes jobs over
//! MQTT.
//!
//! ## The flow over MQTT
//!
//! A device subscribes to `$aws/things/{thing}/jobs/notify-next` and to the answers to its own
//! requests (`jobs/start-next/accepted|rejected`, `jobs/+/update/accepted|rejected`; AWS IoT
//! would deliver those to the requester anyway). Every time it is connected and subscribed
//! (again) it publishes `start-next` with a `clientToken`, so jobs queued while it was offline
//! are picked up; it asks again on a `notify-next` that names an execution while it is idle,
//! and after each job. A `start-next/accepted` with an `execution` starts it (QUEUED →
//! IN_PROGRESS on the cloud side) and the device runs it by its behaviour, publishing
//! `jobs/{jobId}/update` with `status`, `statusDetails`, `expectedVersion` (the execution's
//! `versionNumber`, plus one for each accepted update), `executionNumber` and a `clientToken`,
//! one update at a time, each after the previous one was accepted. One job at a time.
//!
//! The device lets go of an execution it has not finished (it *abandons* it) when the cloud has
//! ended it — a `notify-next` naming another job or none, a refused update — or when an answer
//! does not come within [`crate::config::JobsConfig::reply_timeout`]; then it asks `start-next`
//! again, which hands the same execution out again if it is still pending.
//!
//! ## Which behaviour
//!
//! A job document's top-level `"operation"` string picks the behaviour, as a method name does
//! for invocations (`--behaviour upgrade=fail:LOW_BATTERY`); without one the `*` behaviour
//! applies. What each behaviour does with a job ([`crate::answer::job`]):
//!
//! | behaviour | job updates |
//! |---|---|
//! | `echo` | SUCCEEDED `{"progress": "100%"}` at once |
//! | `delay:…` | the same after the pause |
//! | `progress:MS` | IN_PROGRESS `{"progress": "50%"}` at once, SUCCEEDED `{"progress": "100%"}` MS later |
//! | `fail:CODE:DESCRIPTION` | FAILED `{"reasonCode": CODE, "reasonDescription": DESCRIPTION}` |
//! | `reject:CODE:DESCRIPTION` | REJECTED, with the same `statusDetails` |
//! | `never` | none: the execution stays IN_PROGRESS (`start-next` moved it there) until the cloud times it out or cancels it; the device then lets it go |
//! | `twice` | SUCCEEDED twice; the cloud refuses the second (`InvalidStateTransition`) |
//! | `late:MARGIN` | SUCCEEDED once the execution's timeout has passed (`approximateSecondsBeforeTimedOut` + 1 s + MARGIN; 1 s + MARGIN without a timeout), even if the cloud has ended it meanwhile: the cloud refuses it |
//! | `disconnect:OFFLINE` | no update: drops the connection, back OFFLINE ms later; when `start-next` hands it the same execution again, SUCCEEDED `{"progress": "100%", "resumed": "true"}` (a device that reboots to apply an update) |
//!
//! Over HTTPS (`device/jobs.rs`) the same plans run through StartNextPendingJobExecution and
//! UpdateJobExecution, polled.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tether_domain::jobs::{JobExecutionStatus, JobReply, JobRequest, JobTopic, JobTopicKind};
use tether_domain::{DeviceId, JobId};
use tokio::time::Instant;

use crate::answer::{self, JobPlan, JobStep, Request};
use crate::behaviour::Behaviours;
use crate::report::{Counters, Kind, Received, Recorder};

/// The job document member whose string value picks the behaviour, as a method name does.
pub const OPERATION: &str = "operation";

/// How long the agent waits before asking again after a refused `start-next`.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// A job execution as the device API hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct JobExecution {
    pub job_id: JobId,
    pub status: Option<JobExecutionStatus>,
    /// `versionNumber`: what the next update's `expectedVersion` is.
    pub version: i64,
    pub execution_number: Option<i64>,
    /// The job document (`null` when absent; a string when it was not JSON).
    pub document: Value,
    /// `approximateSecondsBeforeTimedOut`.
    pub seconds_before_timeout: Option<i64>,
}

impl JobExecution {
    /// An `execution` of the MQTT device API, where the job document is a JSON object.
    pub fn from_mqtt(value: &Value) -> Option<Self> {
        let job_id = JobId::parse(value.get("jobId")?.as_str()?).ok()?;
        Some(Self {
            job_id,
            status: value
                .get("status")
                .and_then(Value::as_str)
                .and_then(JobExecutionStatus::parse),
            version: value.get("versionNumber")?.as_i64()?,
            execution_number: value.get("executionNumber").and_then(Value::as_i64),
            document: value.get("jobDocument").cloned().unwrap_or(Value::Null),
            seconds_before_timeout: value
                .get("approximateSecondsBeforeTimedOut")
                .and_then(Value::as_i64),
        })
    }

    /// The execution in the MQTT shape (for the received log of the HTTPS transport).
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "jobId": self.job_id.as_str(),
            "versionNumber": self.version,
            "jobDocument": self.document,
        });
        if let Some(status) = self.status {
            out["status"] = json!(status.as_str());
        }
        if let Some(n) = self.execution_number {
            out["executionNumber"] = json!(n);
        }
        if let Some(s) = self.seconds_before_timeout {
            out["approximateSecondsBeforeTimedOut"] = json!(s);
        }
        json!({ "execution": out })
    }

    /// The document's `"operation"` string, which picks the behaviour.
    pub fn operation(&self) -> Option<&str> {
        self.document.get(OPERATION)?.as_str()
    }

    /// The execution as the plans read a request: taken on at `now`, with the seconds left
    /// before the cloud times it out as its message expiry.
    pub fn request(&self, now: Instant) -> Request {
        Request {
            payload: Bytes::new(),
            received_at: now,
            message_expiry: self
                .seconds_before_timeout
                .and_then(|s| u32::try_from(s).ok()),
        }
    }

    /// Which run of which job this is (a retry has the next execution number).
    pub fn key(&self) -> (JobId, Option<i64>) {
        (self.job_id.clone(), self.execution_number)
    }
}

/// What a device does with `execution`: the behaviour that applies (as text) and its plan.
/// `resumed`: the device dropped its connection for this very execution before.
pub fn plan(
    behaviours: &Behaviours,
    execution: &JobExecution,
    resumed: bool,
    now: Instant,
) -> (String, JobPlan) {
    let behaviour = behaviours.for_method(execution.operation());
    let plan = answer::job(behaviour, &execution.request(now), resumed);
    let text = if resumed {
        format!("{behaviour} (resumed)")
    } else {
        behaviour.to_string()
    };
    (text, plan)
}

/// `topic` with its job level (`$aws/things/{thing}/jobs/{jobId}/...`) made the `+` wildcard.
fn any_job(topic: &JobTopic) -> String {
    let text = topic.to_string();
    let mut levels: Vec<&str> = text.split('/').collect();
    if let Some(level) = levels.get_mut(4) {
        *level = "+";
    }
    levels.join("/")
}

/// The device's Jobs subscriptions over MQTT: `notify-next`, and the accepted / rejected
/// answers to its `start-next` and update requests.
pub fn filters(thing: &DeviceId) -> Vec<String> {
    let start_next = JobTopic::request(thing, JobRequest::StartNext);
    // Any job's update answers: the job level becomes a wildcard.
    let update = JobTopic::request(thing, JobRequest::Update(JobId::random()));
    let mut out = vec![JobTopic::new(thing.clone(), JobTopicKind::NotifyNext).to_string()];
    for reply in [JobReply::Accepted, JobReply::Rejected] {
        out.extend(start_next.reply(reply).map(|t| t.to_string()));
        out.extend(update.reply(reply).map(|t| any_job(&t)));
    }
    out
}

/// The body of an update request.
pub fn update_body(
    status: JobExecutionStatus,
    details: &std::collections::BTreeMap<String, String>,
    expected_version: i64,
    execution_number: Option<i64>,
    token: &str,
) -> Value {
    let mut body = json!({
        "status": status.as_str(),
        "expectedVersion": expected_version,
        "clientToken": token,
    });
    if !details.is_empty() {
        body["statusDetails"] = json!(details);
    }
    if let Some(n) = execution_number {
        body["executionNumber"] = json!(n);
    }
    body
}

/// What the agent asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Publish (QoS 1). `update`: the job and status of an update, for the sent log and the
    /// counters; `None` for `start-next`.
    Publish {
        topic: String,
        payload: Bytes,
        update: Option<(JobId, JobExecutionStatus)>,
    },
    /// Drop the connection and stay offline this long.
    Drop(Duration),
}

/// A request waiting for its answer.
#[derive(Debug)]
struct Pending {
    token: String,
    deadline: Instant,
}

/// The execution the device is working on.
#[derive(Debug)]
struct Running {
    execution: JobExecution,
    /// The `expectedVersion` of the next update.
    version: i64,
    steps: VecDeque<JobStep>,
    persist: bool,
    /// A pause of the plan ends then.
    wake_at: Option<Instant>,
    /// An update in flight, with the status it reports.
    waiting: Option<(Pending, JobExecutionStatus)>,
    /// Its final update was accepted.
    finished: bool,
    /// The cloud said it had ended the execution while an update was in flight: the update's
    /// answer decides.
    ended: bool,
}

/// Client tokens unique to one agent: a random prefix and a counter.
#[derive(Debug)]
struct Tokens {
    prefix: String,
    next: u64,
}

impl Tokens {
    fn new() -> Self {
        Self {
            prefix: format!("{:08x}", fastrand::u32(..)),
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        self.next += 1;
        format!("{}-{}", self.prefix, self.next)
    }
}

/// One device's Jobs client over MQTT, as a state machine: the driver feeds it what happens
/// (connected, a message, time passing) and carries out the [`Effect`]s it returns. It counts
/// and logs what it receives itself; the driver counts what it publishes.
pub(crate) struct Agent {
    thing: DeviceId,
    behaviours: Arc<Behaviours>,
    recorder: Recorder,
    reply_timeout: Duration,
    tokens: Tokens,
    /// A `start-next` in flight.
    asking: Option<Pending>,
    /// A `notify-next` named a job while `start-next` was in flight: ask again if its answer is
    /// empty.
    again: bool,
    /// Ask again then (after a refused `start-next`).
    retry_at: Option<Instant>,
    current: Option<Running>,
    /// Executions the device dropped its connection for (`disconnect`): the next time it gets
    /// one of them, it finishes it.
    dropped: HashSet<(JobId, Option<i64>)>,
}

fn token_of(body: &Value) -> Option<&str> {
    body.get("clientToken").and_then(Value::as_str)
}

impl Agent {
    pub(crate) fn new(
        thing: DeviceId,
        behaviours: Arc<Behaviours>,
        recorder: Recorder,
        reply_timeout: Duration,
    ) -> Self {
        Self {
            thing,
            behaviours,
            recorder,
            reply_timeout,
            tokens: Tokens::new(),
            asking: None,
            again: false,
            retry_at: None,
            current: None,
            dropped: HashSet::new(),
        }
    }

    /// When [`Agent::tick`] has something to do.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let current = self.current.as_ref();
        [
            self.asking.as_ref().map(|a| a.deadline),
            self.retry_at,
            current.and_then(|c| c.wake_at),
            current.and_then(|c| c.waiting.as_ref().map(|(w, _)| w.deadline)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The device is connected and subscribed (again): ask for the next pending job, unless
    /// it is busy with a `late` job that must not be interrupted.
    pub(crate) fn connected(&mut self, now: Instant) -> Vec<Effect> {
        if self.current.as_ref().is_some_and(|c| c.persist) {
            return Vec::new();
        }
        self.ask(now)
    }

    /// Time passed: a pause ended, or an answer did not come in time.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        let ask_lost = self.asking.as_ref().is_some_and(|a| a.deadline <= now);
        if ask_lost {
            tracing::info!(device = %self.thing, "no answer to start-next in time; asking again");
        }
        if ask_lost || self.retry_at.is_some_and(|at| at <= now) {
            out.extend(self.ask(now));
        }
        let (update_lost, woke) = match &self.current {
            Some(c) => (
                c.waiting.as_ref().is_some_and(|(w, _)| w.deadline <= now),
                c.wake_at.is_some_and(|at| at <= now),
            ),
            None => (false, false),
        };
        if update_lost {
            self.abandon("no answer to its update in time");
            out.extend(self.ask(now));
        } else if woke {
            if let Some(c) = self.current.as_mut() {
                c.wake_at = None;
            }
            out.extend(self.advance(now));
        }
        out
    }

    /// A message on one of the device's Jobs topics.
    pub(crate) fn message(&mut self, topic: &str, payload: &Bytes, now: Instant) -> Vec<Effect> {
        let parsed = match JobTopic::parse(topic) {
            Ok(parsed) if parsed.thing == self.thing => parsed,
            _ => {
                self.recorder
                    .count(&self.thing, |c| c.connection.ignored += 1);
                return Vec::new();
            }
        };
        let body: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        match parsed.kind {
            JobTopicKind::NotifyNext => self.notified(topic, payload, &body, now),
            JobTopicKind::Reply(JobRequest::StartNext, JobReply::Accepted) => {
                self.started(topic, payload, &body, now)
            }
            JobTopicKind::Reply(JobRequest::Update(job), JobReply::Accepted) => {
                self.updated(&job, topic, payload, &body, now)
            }
            JobTopicKind::Reply(request, JobReply::Rejected) => {
                self.refused(&request, topic, payload, &body, now)
            }
            _ => {
                tracing::debug!(device = %self.thing, %topic, "ignoring a Jobs message");
                self.recorder
                    .count(&self.thing, |c| c.connection.ignored += 1);
                Vec::new()
            }
        }
    }

    fn log(
        &self,
        kind: Kind,
        (topic, payload): (&str, &Bytes),
        id: String,
        change: impl FnOnce(&mut Counters),
    ) {
        self.recorder.receive(
            Received {
                device: self.thing.clone(),
                kind,
                topic: topic.to_owned(),
                method: None,
                id,
                behaviour: None,
                payload: payload.clone(),
                response_topic: None,
                correlation_data: None,
                message_expiry: None,
                content_type: None,
                at: std::time::Instant::now(),
            },
            change,
        );
    }

    /// `notify-next`: the head of the pending executions changed.
    fn notified(
        &mut self,
        topic: &str,
        payload: &Bytes,
        body: &Value,
        now: Instant,
    ) -> Vec<Effect> {
        let next = body
            .get("execution")
            .and_then(JobExecution::from_mqtt)
            .map(|e| e.job_id);
        let id = next.as_ref().map(JobId::to_string).unwrap_or_default();
        self.log(Kind::JobNotify, (topic, payload), id, |c| {
            c.jobs.notifications += 1;
        });
        if let Some(c) = self.current.as_mut() {
            // Its own job is the head of the list while it is pending: another head, or none,
            // means the cloud ended it.
            if c.persist || next.as_ref() == Some(&c.execution.job_id) {
                return Vec::new();
            }
            if c.waiting.is_some() {
                c.ended = true;
                return Vec::new();
            }
            self.abandon("the cloud ended it (no longer its next pending job)");
            return match next {
                Some(_) => self.ask(now),
                None => Vec::new(),
            };
        }
        match next {
            Some(_) if self.asking.is_some() => {
                self.again = true;
                Vec::new()
            }
            Some(_) => self.ask(now),
            None => Vec::new(),
        }
    }

    /// `start-next/accepted`: an execution to run, or nothing pending.
    fn started(&mut self, topic: &str, payload: &Bytes, body: &Value, now: Instant) -> Vec<Effect> {
        let ours = self
            .asking
            .as_ref()
            .is_some_and(|a| Some(a.token.as_str()) == token_of(body));
        if ours {
            self.asking = None;
        }
        let Some(execution) = body.get("execution").and_then(JobExecution::from_mqtt) else {
            if !ours {
                return Vec::new();
            }
            self.recorder
                .count(&self.thing, |c| c.jobs.nothing_pending += 1);
            if let Some(c) = self.current.as_mut() {
                if c.waiting.is_some() {
                    c.ended = true;
                } else if !c.persist {
                    self.abandon("nothing is pending any more");
                }
            }
            if std::mem::take(&mut self.again) && self.current.is_none() {
                return self.ask(now);
            }
            return Vec::new();
        };
        if ours {
            self.again = false;
        }
        match &self.current {
            Some(c) if c.execution.key() == execution.key() => Vec::new(),
            Some(c) => {
                if !ours || c.persist {
                    return Vec::new();
                }
                self.abandon("the cloud handed out another job");
                self.take_on(execution, topic, payload, now)
            }
            // An answer to an earlier request still hands out an execution the cloud started.
            None => self.take_on(execution, topic, payload, now),
        }
    }

    fn take_on(
        &mut self,
        execution: JobExecution,
        topic: &str,
        payload: &Bytes,
        now: Instant,
    ) -> Vec<Effect> {
        let resumed = self.dropped.remove(&execution.key());
        let (behaviour, plan) = plan(&self.behaviours, &execution, resumed, now);
        tracing::debug!(device = %self.thing, job = %execution.job_id, %behaviour, "job execution");
        let unanswered = !plan.answers();
        let operation = execution.operation().map(str::to_owned);
        self.recorder.receive(
            Received {
                device: self.thing.clone(),
                kind: Kind::Job,
                topic: topic.to_owned(),
                method: operation,
                id: execution.job_id.to_string(),
                behaviour: Some(behaviour),
                payload: payload.clone(),
                response_topic: None,
                correlation_data: None,
                message_expiry: None,
                content_type: None,
                at: std::time::Instant::now(),
            },
            |c| {
                c.jobs.received += 1;
                c.jobs.unanswered += u64::from(unanswered);
            },
        );
        self.current = Some(Running {
            version: execution.version,
            execution,
            steps: plan.steps.into(),
            persist: plan.persist,
            wake_at: None,
            waiting: None,
            finished: false,
            ended: false,
        });
        self.advance(now)
    }

    /// Runs the current plan up to its next pause, update or end.
    fn advance(&mut self, now: Instant) -> Vec<Effect> {
        loop {
            let Some(c) = self.current.as_mut() else {
                return Vec::new();
            };
            if c.waiting.is_some() || c.wake_at.is_some() {
                return Vec::new();
            }
            match c.steps.pop_front() {
                Some(JobStep::Sleep(pause)) => c.wake_at = Some(now + pause),
                Some(JobStep::SleepUntil(at)) => c.wake_at = (at > now).then_some(at),
                Some(JobStep::Update(status, details)) => {
                    let token = self.tokens.next();
                    let job = c.execution.job_id.clone();
                    let body = update_body(
                        status,
                        &details,
                        c.version,
                        c.execution.execution_number,
                        &token,
                    );
                    let deadline = now + self.reply_timeout;
                    c.waiting = Some((Pending { token, deadline }, status));
                    let topic = JobTopic::request(&self.thing, JobRequest::Update(job.clone()));
                    return vec![Effect::Publish {
                        topic: topic.to_string(),
                        payload: Bytes::from(body.to_string()),
                        update: Some((job, status)),
                    }];
                }
                Some(JobStep::Drop(offline)) => {
                    self.dropped.insert(c.execution.key());
                    self.abandon("dropping the connection on purpose");
                    return vec![Effect::Drop(offline)];
                }
                None if c.finished => {
                    self.current = None;
                    return self.ask(now);
                }
                // The behaviour never finishes it: it stays IN_PROGRESS until the cloud ends it.
                None => return Vec::new(),
            }
        }
    }

    /// `jobs/{jobId}/update/accepted`.
    fn updated(
        &mut self,
        job: &JobId,
        topic: &str,
        payload: &Bytes,
        body: &Value,
        now: Instant,
    ) -> Vec<Effect> {
        self.log(Kind::JobAccepted, (topic, payload), job.to_string(), |c| {
            c.jobs.accepted += 1;
        });
        let Some(c) = self.current.as_mut() else {
            return Vec::new();
        };
        let answers_it = c.execution.job_id == *job
            && c.waiting
                .as_ref()
                .is_some_and(|(w, _)| Some(w.token.as_str()) == token_of(body));
        if !answers_it {
            return Vec::new();
        }
        let Some((_, status)) = c.waiting.take() else {
            return Vec::new();
        };
        c.version += 1;
        if status.is_terminal() && !c.finished {
            c.finished = true;
            self.recorder.count(&self.thing, |c| c.jobs.finished += 1);
        }
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.ended && !c.finished)
        {
            self.abandon("the cloud ended it");
            return self.ask(now);
        }
        self.advance(now)
    }

    /// A `/rejected` answer: a refused `start-next` is asked again a little later; a refused
    /// update ends the device's work on that execution.
    fn refused(
        &mut self,
        request: &JobRequest,
        topic: &str,
        payload: &Bytes,
        body: &Value,
        now: Instant,
    ) -> Vec<Effect> {
        let code = body
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let id = match request {
            JobRequest::Update(job) => job.to_string(),
            _ => "$next".to_owned(),
        };
        tracing::info!(device = %self.thing, %topic, %code, "the cloud refused a Jobs request");
        self.log(Kind::JobRejected, (topic, payload), id, |c| {
            *c.jobs.rejected.entry(code.clone()).or_default() += 1;
        });
        let token = token_of(body);
        match request {
            JobRequest::StartNext => {
                if self
                    .asking
                    .as_ref()
                    .is_some_and(|a| Some(a.token.as_str()) == token)
                {
                    self.asking = None;
                    self.retry_at = Some(now + ASK_AGAIN_AFTER);
                }
                Vec::new()
            }
            JobRequest::Update(job) => {
                let answers_current = self.current.as_ref().is_some_and(|c| {
                    c.execution.job_id == *job
                        && c.waiting
                            .as_ref()
                            .is_some_and(|(w, _)| Some(w.token.as_str()) == token)
                });
                if !answers_current {
                    return Vec::new();
                }
                self.abandon(&format!("the cloud refused its update ({code})"));
                self.ask(now)
            }
            JobRequest::GetPending | JobRequest::Describe(_) => Vec::new(),
        }
    }

    /// Lets go of the current execution; counted as abandoned unless it was finished.
    fn abandon(&mut self, why: &str) {
        if let Some(c) = self.current.take() {
            if !c.finished {
                tracing::info!(device = %self.thing, job = %c.execution.job_id, why, "letting go of a job execution");
                self.recorder.count(&self.thing, |c| c.jobs.abandoned += 1);
            }
        }
    }

    /// Publishes `start-next` with a fresh client token.
    fn ask(&mut self, now: Instant) -> Vec<Effect> {
        let token = self.tokens.next();
        let payload = Bytes::from(json!({ "clientToken": token }).to_string());
        self.asking = Some(Pending {
            token,
            deadline: now + self.reply_timeout,
        });
        self.retry_at = None;
        self.again = false;
        vec![Effect::Publish {
            topic: JobTopic::request(&self.thing, JobRequest::StartNext).to_string(),
            payload,
            update: None,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::behaviour::Behaviour;

    const THING: &str = "pump-1";
    const BASE: &str = "$aws/things/pump-1/jobs";

    fn thing() -> DeviceId {
        DeviceId::parse(THING).unwrap()
    }

    fn agent(rules: &[&str]) -> (Agent, Recorder) {
        let mut behaviours = Behaviours::default();
        behaviours.apply_rules(rules.iter().copied()).unwrap();
        let recorder = Recorder::new(&[thing()], 100);
        let agent = Agent::new(
            thing(),
            Arc::new(behaviours),
            recorder.clone(),
            Duration::from_secs(10),
        );
        (agent, recorder)
    }

    /// The published messages as (topic, body); drops as ("DROP", ms).
    fn published(effects: &[Effect]) -> Vec<(String, Value)> {
        effects
            .iter()
            .map(|e| match e {
                Effect::Publish { topic, payload, .. } => {
                    (topic.clone(), serde_json::from_slice(payload).unwrap())
                }
                Effect::Drop(d) => ("DROP".to_owned(), json!(d.as_millis() as u64)),
            })
            .collect()
    }

    fn token(effects: &[Effect]) -> String {
        published(effects)[0].1["clientToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn send(agent: &mut Agent, topic: String, body: Value, now: Instant) -> Vec<Effect> {
        agent.message(&topic, &Bytes::from(body.to_string()), now)
    }

    fn execution(job: &str, version: i64, document: Value) -> Value {
        json!({"jobId": job, "status": "IN_PROGRESS", "versionNumber": version,
               "executionNumber": 1, "jobDocument": document})
    }

    /// Connects, and answers the first start-next with `job`'s execution.
    fn start(agent: &mut Agent, job: &str, document: Value, now: Instant) -> Vec<Effect> {
        let ask = agent.connected(now);
        send(
            agent,
            format!("{BASE}/start-next/accepted"),
            json!({"clientToken": token(&ask), "execution": execution(job, 2, document)}),
            now,
        )
    }

    #[test]
    fn the_filters_are_notify_next_and_the_answers_to_its_requests() {
        assert_eq!(
            filters(&thing()),
            [
                format!("{BASE}/notify-next"),
                format!("{BASE}/start-next/accepted"),
                format!("{BASE}/+/update/accepted"),
                format!("{BASE}/start-next/rejected"),
                format!("{BASE}/+/update/rejected"),
            ]
        );
    }

    #[test]
    fn connecting_asks_start_next_and_an_execution_runs_to_succeeded() {
        let (mut agent, recorder) = agent(&["upgrade=progress:100"]);
        let now = Instant::now();

        let ask = agent.connected(now);
        let progress = send(
            &mut agent,
            format!("{BASE}/start-next/accepted"),
            json!({"clientToken": token(&ask), "execution": execution("fw-1", 2, json!({"operation": "upgrade"}))}),
            now,
        );
        let paused = send(
            &mut agent,
            format!("{BASE}/fw-1/update/accepted"),
            json!({"clientToken": token(&progress)}),
            now,
        );
        let early = agent.tick(now + Duration::from_millis(50));
        let wake = agent.next_wake();
        let done = agent.tick(now + Duration::from_millis(100));
        let next = send(
            &mut agent,
            format!("{BASE}/fw-1/update/accepted"),
            json!({"clientToken": token(&done)}),
            now,
        );

        assert_eq!(published(&ask)[0].0, format!("{BASE}/start-next"));
        let [(topic, first)] = published(&progress).try_into().unwrap();
        assert_eq!(topic, format!("{BASE}/fw-1/update"));
        assert_eq!(first["status"], "IN_PROGRESS");
        assert_eq!(first["statusDetails"], json!({"progress": "50%"}));
        assert_eq!(first["expectedVersion"], 2);
        assert_eq!(first["executionNumber"], 1);
        assert!(paused.is_empty() && early.is_empty());
        assert_eq!(wake, Some(now + Duration::from_millis(100)));
        let [(_, last)] = published(&done).try_into().unwrap();
        assert_eq!(last["status"], "SUCCEEDED");
        assert_eq!(last["expectedVersion"], 3, "one more per accepted update");
        assert_eq!(published(&next)[0].0, format!("{BASE}/start-next"));
        let jobs = recorder.summary().total.jobs;
        assert_eq!((jobs.received, jobs.finished, jobs.accepted), (1, 1, 2));
        let taken = recorder
            .received()
            .into_iter()
            .find(|r| r.kind == Kind::Job)
            .unwrap();
        assert_eq!(taken.method.as_deref(), Some("upgrade"));
        assert_eq!(taken.behaviour.as_deref(), Some("progress:100"));
    }

    #[test]
    fn notify_next_asks_only_when_idle_and_a_job_is_named() {
        let (mut agent, _) = agent(&[]);
        let now = Instant::now();
        let ask = agent.connected(now);
        send(
            &mut agent,
            format!("{BASE}/start-next/accepted"),
            json!({"clientToken": token(&ask)}),
            now,
        );

        let empty = send(&mut agent, format!("{BASE}/notify-next"), json!({}), now);
        let named = send(
            &mut agent,
            format!("{BASE}/notify-next"),
            json!({"execution": execution("fw-2", 1, json!({}))}),
            now,
        );
        let while_asking = send(
            &mut agent,
            format!("{BASE}/notify-next"),
            json!({"execution": execution("fw-3", 1, json!({}))}),
            now,
        );
        let nothing = send(
            &mut agent,
            format!("{BASE}/start-next/accepted"),
            json!({"clientToken": token(&named)}),
            now,
        );

        assert!(empty.is_empty());
        assert_eq!(published(&named)[0].0, format!("{BASE}/start-next"));
        assert!(while_asking.is_empty());
        assert_eq!(
            published(&nothing)[0].0,
            format!("{BASE}/start-next"),
            "a job was named while asking: ask again"
        );
    }

    #[test]
    fn a_hanging_job_is_let_go_when_notify_next_names_another_and_that_one_runs() {
        let (mut agent, recorder) = agent(&["wait=never"]);
        let now = Instant::now();

        let hang = start(&mut agent, "slow", json!({"operation": "wait"}), now);
        let reconnected = agent.connected(now);
        let same = send(
            &mut agent,
            format!("{BASE}/start-next/accepted"),
            json!({"clientToken": token(&reconnected), "execution": execution("slow", 2, json!({"operation": "wait"}))}),
            now,
        );
        let next = send(
            &mut agent,
            format!("{BASE}/notify-next"),
            json!({"execution": execution("fw-9", 1, json!({}))}),
            now,
        );
        let ran = send(
            &mut agent,
            format!("{BASE}/start-next/accepted"),
            json!({"clientToken": token(&next), "execution": execution("fw-9", 2, json!({}))}),
            now,
        );

        assert!(hang.is_empty(), "never sends no update");
        assert!(same.is_empty(), "the same execution keeps running");
        assert_eq!(published(&ran)[0].1["status"], "SUCCEEDED");
        let jobs = recorder.summary().total.jobs;
        assert_eq!((jobs.received, jobs.unanswered, jobs.abandoned), (2, 1, 1));
    }

    #[test]
    fn a_refused_update_abandons_the_job_and_a_lost_answer_asks_again() {
        let (mut agent, recorder) = agent(&["*=progress:1000"]);
        let now = Instant::now();

        let update = start(&mut agent, "fw-1", json!({}), now);
        let after_refusal = send(
            &mut agent,
            format!("{BASE}/fw-1/update/rejected"),
            json!({"clientToken": token(&update), "code": "InvalidStateTransition"}),
            now,
        );
        let again = send(
            &mut agent,
            format!("{BASE}/start-next/accepted"),
            json!({"clientToken": token(&after_refusal), "execution": execution("fw-2", 2, json!({}))}),
            now,
        );
        let lost = agent.tick(now + Duration::from_secs(10));

        assert_eq!(published(&after_refusal)[0].0, format!("{BASE}/start-next"));
        assert_eq!(published(&again)[0].0, format!("{BASE}/fw-2/update"));
        assert_eq!(published(&lost)[0].0, format!("{BASE}/start-next"));
        let jobs = recorder.summary().total.jobs;
        assert_eq!(jobs.abandoned, 2);
        assert_eq!(jobs.rejected.get("InvalidStateTransition"), Some(&1));
    }

    #[test]
    fn a_final_update_answered_after_notify_next_still_finishes_the_job() {
        let (mut agent, recorder) = agent(&[]);
        let now = Instant::now();

        let update = start(&mut agent, "fw-1", json!({}), now);
        let notified = send(&mut agent, format!("{BASE}/notify-next"), json!({}), now);
        let accepted = send(
            &mut agent,
            format!("{BASE}/fw-1/update/accepted"),
            json!({"clientToken": token(&update)}),
            now,
        );

        assert!(notified.is_empty());
        assert_eq!(published(&accepted)[0].0, format!("{BASE}/start-next"));
        let jobs = recorder.summary().total.jobs;
        assert_eq!((jobs.finished, jobs.abandoned), (1, 0));
    }

    #[test]
    fn disconnect_drops_the_connection_then_finishes_the_job_when_handed_it_again() {
        let (mut agent, recorder) = agent(&["reboot=disconnect:300"]);
        let now = Instant::now();

        let dropped = start(&mut agent, "fw-1", json!({"operation": "reboot"}), now);
        let resumed = start(&mut agent, "fw-1", json!({"operation": "reboot"}), now);

        assert_eq!(dropped, [Effect::Drop(Duration::from_millis(300))]);
        assert_eq!(
            published(&resumed)[0].1["statusDetails"],
            json!({"progress": "100%", "resumed": "true"})
        );
        let behaviours: Vec<Option<String>> = recorder
            .received()
            .into_iter()
            .filter(|r| r.kind == Kind::Job)
            .map(|r| r.behaviour)
            .collect();
        assert_eq!(
            behaviours,
            [
                Some("disconnect:300".to_owned()),
                Some("disconnect:300 (resumed)".to_owned())
            ]
        );
    }

    #[test]
    fn a_refused_start_next_is_asked_again_a_second_later() {
        let (mut agent, recorder) = agent(&[]);
        let now = Instant::now();

        let ask = agent.connected(now);
        let refused = send(
            &mut agent,
            format!("{BASE}/start-next/rejected"),
            json!({"clientToken": token(&ask), "code": "RequestThrottled"}),
            now,
        );
        let wake = agent.next_wake();
        let again = agent.tick(now + ASK_AGAIN_AFTER);

        assert!(refused.is_empty());
        assert_eq!(wake, Some(now + ASK_AGAIN_AFTER));
        assert_eq!(published(&again)[0].0, format!("{BASE}/start-next"));
        assert_eq!(
            recorder
                .summary()
                .total
                .jobs
                .rejected
                .get("RequestThrottled"),
            Some(&1)
        );
    }

    #[test]
    fn messages_for_another_thing_are_ignored() {
        let (mut agent, recorder) = agent(&[]);

        let effects = send(
            &mut agent,
            "$aws/things/other/jobs/notify-next".into(),
            json!({"execution": execution("x", 1, json!({}))}),
            Instant::now(),
        );

        assert!(effects.is_empty());
        assert_eq!(recorder.summary().total.connection.ignored, 1);
    }

    #[test]
    fn the_operation_picks_the_behaviour() {
        let behaviours = Behaviours::default()
            .with("upgrade", Behaviour::Never)
            .unwrap();
        let upgrade =
            JobExecution::from_mqtt(&execution("a", 1, json!({"operation": "upgrade"}))).unwrap();
        let other = JobExecution::from_mqtt(&execution("b", 1, json!({"operation": 7}))).unwrap();

        let (text, plan) = plan(&behaviours, &upgrade, false, Instant::now());
        let (default, _) = super::plan(&behaviours, &other, false, Instant::now());

        assert_eq!(text, "never");
        assert!(plan.steps.is_empty());
        assert_eq!(default, "echo");
    }
}
