//! How executions and jobs move on by themselves: rollout, the in-progress and step timers,
//! retries, abort thresholds, job completion, and the `notify` / `notify-next` messages and
//! `$aws/events/...` events each change implies.
//!
//! Every change is made under the state lock and collects the messages it implies in a
//! [`Changes`]; they are published after the lock is released.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use tether_domain::clock::now_ms;
use tether_domain::jobs::{
    JobEventKind, JobEventTopic, JobExecutionStatus, JobStatus, JobTopic, JobTopicKind,
};
use tether_domain::{DeviceId, JobId};

use super::state::{Execution, Job, Jobs, State};
use super::{execution_mqtt, summary_mqtt};
use crate::link::Outgoing;

/// The messages a change implies, and the things whose pending executions may have changed.
#[derive(Default)]
pub(super) struct Changes {
    pub(super) messages: Vec<Outgoing>,
    pub(super) things: BTreeSet<DeviceId>,
    /// Timers to start: (when, job, thing, execution number).
    pub(super) timers: Vec<(i64, JobId, DeviceId, i64)>,
}

fn message(topic: String, payload: Value) -> Outgoing {
    Outgoing {
        topic,
        payload: payload.to_string().into(),
        qos: 1,
        ..Default::default()
    }
}

/// Seconds since the epoch, as the Jobs device API and events write times.
pub(super) fn epoch_s(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// `jobProcessDetails`: how many of the job's executions are in each status.
pub(super) fn process_details(state: &State, job: &Job) -> Value {
    let mut counts = [0u64; 8];
    for e in state.executions_of(job) {
        counts[JobExecutionStatus::ALL
            .iter()
            .position(|s| *s == e.status)
            .expect("every status is in ALL")] += 1;
    }
    let [queued, in_progress, succeeded, failed, rejected, timed_out, canceled, removed] = counts;
    json!({
        "processingTargets": job.unrolled.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "numberOfQueuedThings": queued,
        "numberOfInProgressThings": in_progress,
        "numberOfSucceededThings": succeeded,
        "numberOfFailedThings": failed,
        "numberOfRejectedThings": rejected,
        "numberOfTimedOutThings": timed_out,
        "numberOfCanceledThings": canceled,
        "numberOfRemovedThings": removed,
    })
}

impl Jobs {
    /// `$aws/events/jobExecution/{jobId}/{operation}`.
    pub(super) fn execution_event(&self, e: &Execution, operation: &str, now: i64) -> Outgoing {
        let topic = JobEventTopic {
            kind: JobEventKind::Execution,
            job: e.job.clone(),
            operation: operation.to_owned(),
        };
        let mut payload = json!({
            "eventType": "JOB_EXECUTION",
            "eventId": uuid_like(),
            "timestamp": epoch_s(now),
            "operation": operation,
            "jobId": e.job,
            "thingArn": self.account.arn(&format!("thing/{}", e.thing)),
            "status": e.status.as_str(),
        });
        if !e.status_details.is_empty() {
            payload["statusDetails"] = json!(e.status_details);
        }
        message(topic.to_string(), payload)
    }

    /// `$aws/events/job/{jobId}/{operation}`.
    pub(super) fn job_event(
        &self,
        state: &State,
        job: &Job,
        operation: &str,
        now: i64,
    ) -> Outgoing {
        let topic = JobEventTopic {
            kind: JobEventKind::Job,
            job: job.id.clone(),
            operation: operation.to_owned(),
        };
        let mut payload = json!({
            "eventType": "JOB",
            "eventId": uuid_like(),
            "timestamp": epoch_s(now),
            "operation": operation,
            "jobId": job.id,
            "status": job.status.as_str(),
            "targetSelection": "SNAPSHOT",
            "targets": job.targets,
            "createdAt": epoch_s(job.created_at),
            "lastUpdatedAt": epoch_s(job.last_updated_at),
            "jobProcessDetails": process_details(state, job),
        });
        if let Some(description) = &job.description {
            payload["description"] = json!(description);
        }
        if let Some(at) = job.completed_at {
            payload["completedAt"] = json!(epoch_s(at));
        }
        if job.status == JobStatus::Canceled {
            payload["forceCanceled"] = json!(job.force_canceled);
            if let Some(comment) = &job.comment {
                payload["comment"] = json!(comment);
            }
            if let Some(code) = &job.reason_code {
                payload["reasonCode"] = json!(code);
            }
        }
        message(topic.to_string(), payload)
    }

    /// Creates the execution of `job` on `thing` (QUEUED): its `attempt` is the execution
    /// number and the retry attempt (1 and 0 for a first run).
    pub(super) fn queue(
        &self,
        state: &mut State,
        (thing, job): (&DeviceId, &JobId),
        (number, retry_attempt): (i64, u32),
        now: i64,
        changes: &mut Changes,
    ) {
        state.seq += 1;
        let execution = Execution {
            job: job.clone(),
            thing: thing.clone(),
            status: JobExecutionStatus::Queued,
            status_details: Default::default(),
            force_canceled: false,
            queued_at: now,
            started_at: None,
            last_updated_at: now,
            version: 1,
            number,
            retry_attempt,
            in_progress_deadline: None,
            step_deadline: None,
            seq: state.seq,
        };
        state
            .executions
            .insert((thing.clone(), job.clone()), execution);
        changes.things.insert(thing.clone());
    }

    /// Moves an execution to a terminal status and follows what that implies: its event, a
    /// retry, the job's abort criteria, the job's completion.
    pub(super) fn finish(
        &self,
        state: &mut State,
        key: &(DeviceId, JobId),
        status: JobExecutionStatus,
        now: i64,
        changes: &mut Changes,
    ) {
        let Some(e) = state.executions.get_mut(key) else {
            return;
        };
        e.status = status;
        e.last_updated_at = now;
        e.version += 1;
        e.in_progress_deadline = None;
        e.step_deadline = None;
        let e = e.clone();
        if let Some(operation) = status.event_operation() {
            changes
                .messages
                .push(self.execution_event(&e, operation, now));
        }
        changes.things.insert(e.thing.clone());
        let Some(job) = state.jobs.get(&e.job) else {
            return;
        };
        if job.status == JobStatus::InProgress {
            let retries = job
                .retry
                .iter()
                .filter(|c| c.failure_type.counts(status))
                .map(|c| c.retries)
                .max();
            if retries.is_some_and(|n| e.retry_attempt < n) {
                self.queue(
                    state,
                    (&e.thing, &e.job),
                    (e.number + 1, e.retry_attempt + 1),
                    now,
                    changes,
                );
                return;
            }
            if let Some(comment) = self.abort_reason(state, job) {
                let job_id = job.id.clone();
                self.cancel_job(
                    state,
                    &job_id,
                    false,
                    Some("$ABORTED".into()),
                    Some(comment),
                    now,
                    changes,
                );
                return;
            }
        }
        self.complete_if_done(state, &e.job, now, changes);
    }

    /// Why the job's abort criteria stop it now, if they do.
    fn abort_reason(&self, state: &State, job: &Job) -> Option<String> {
        let finished: Vec<JobExecutionStatus> = state
            .executions_of(job)
            .map(|e| e.status)
            .filter(|s| s.is_terminal())
            .collect();
        let executed = finished.len() as u64;
        job.abort.iter().find_map(|c| {
            let failures = finished.iter().filter(|s| c.failure_type.counts(**s)).count() as f64;
            (executed >= c.min_executed.max(1)
                && failures * 100.0 / executed as f64 >= c.threshold_percentage)
                .then(|| {
                    format!(
                        "aborted: {failures} of {executed} executions failed, at or over the {}% threshold",
                        c.threshold_percentage
                    )
                })
        })
    }

    /// A job whose executions are all finished and all created is COMPLETED.
    pub(super) fn complete_if_done(
        &self,
        state: &mut State,
        job_id: &JobId,
        now: i64,
        changes: &mut Changes,
    ) {
        let Some(job) = state.jobs.get(job_id) else {
            return;
        };
        let done = job.status == JobStatus::InProgress
            && job.unrolled.is_empty()
            && state.executions_of(job).all(|e| e.status.is_terminal());
        if !done {
            return;
        }
        let job = state.jobs.get_mut(job_id).expect("looked up above");
        job.status = JobStatus::Completed;
        job.completed_at = Some(now);
        job.last_updated_at = now;
        let job = job.clone();
        changes
            .messages
            .push(self.job_event(state, &job, "completed", now));
    }

    /// CancelJob: the job is CANCELED, its QUEUED executions (and, with `force`, its
    /// IN_PROGRESS ones) are CANCELED, and the rollout stops.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cancel_job(
        &self,
        state: &mut State,
        job_id: &JobId,
        force: bool,
        reason_code: Option<String>,
        comment: Option<String>,
        now: i64,
        changes: &mut Changes,
    ) {
        let Some(job) = state.jobs.get_mut(job_id) else {
            return;
        };
        job.status = JobStatus::Canceled;
        job.force_canceled = force;
        // A second, forced cancellation keeps the first one's reason unless it gives its own.
        if reason_code.is_some() {
            job.reason_code = reason_code;
        }
        if comment.is_some() {
            job.comment = comment;
        }
        job.unrolled.clear();
        job.last_updated_at = now;
        job.completed_at = Some(now);
        let things = job.things.clone();
        for thing in things {
            let key = (thing, job_id.clone());
            let cancel = state.executions.get(&key).is_some_and(|e| {
                e.status == JobExecutionStatus::Queued
                    || (force && e.status == JobExecutionStatus::InProgress)
            });
            if cancel {
                if let Some(e) = state.executions.get_mut(&key) {
                    e.force_canceled = e.status == JobExecutionStatus::InProgress;
                }
                self.finish(state, &key, JobExecutionStatus::Canceled, now, changes);
            }
        }
        let job = state.jobs.get(job_id).expect("looked up above").clone();
        changes
            .messages
            .push(self.job_event(state, &job, "canceled", now));
    }

    /// The `notify` and `notify-next` messages for each changed thing whose pending executions
    /// differ from what it was last told.
    pub(super) fn notifications(&self, state: &mut State, changes: &mut Changes, now: i64) {
        let things = std::mem::take(&mut changes.things);
        for thing in things {
            let pending = state.pending(&thing);
            let current = super::state::Notified {
                pending: {
                    let mut jobs: Vec<JobId> = pending.iter().map(|e| e.job.clone()).collect();
                    jobs.sort();
                    jobs
                },
                next: pending.first().map(|e| e.job.clone()),
            };
            let next_message = pending.first().map(|e| {
                let doc = state.jobs.get(&e.job).map(|j| j.document.clone());
                execution_mqtt(e, doc.as_ref(), now)
            });
            let (in_progress, queued): (Vec<&Execution>, Vec<&Execution>) = pending
                .iter()
                .copied()
                .partition(|e| e.status == JobExecutionStatus::InProgress);
            // Only the statuses that have executions are listed (`{}` when none is left).
            let mut jobs = serde_json::Map::new();
            for (status, list) in [("IN_PROGRESS", &in_progress), ("QUEUED", &queued)] {
                if !list.is_empty() {
                    jobs.insert(
                        status.into(),
                        list.iter().map(|e| summary_mqtt(e)).collect(),
                    );
                }
            }
            let notify = json!({ "timestamp": epoch_s(now), "jobs": jobs });
            let before = state.notified.get(&thing).cloned().unwrap_or_default();
            if before.pending != current.pending {
                changes.messages.push(message(
                    JobTopic::new(thing.clone(), JobTopicKind::Notify).to_string(),
                    notify,
                ));
            }
            if before.next != current.next {
                let mut payload = json!({ "timestamp": epoch_s(now) });
                if let Some(execution) = next_message {
                    payload["execution"] = execution;
                }
                changes.messages.push(message(
                    JobTopic::new(thing.clone(), JobTopicKind::NotifyNext).to_string(),
                    payload,
                ));
            }
            state.notified.insert(thing, current);
        }
    }

    /// Applies a change under the lock, then publishes what it implies and starts its timers.
    pub(super) async fn change<T>(
        &self,
        apply: impl FnOnce(&mut State, i64, &mut Changes) -> T,
    ) -> T {
        let now = now_ms();
        let mut changes = Changes::default();
        let out = {
            let mut state = self.lock();
            let out = apply(&mut state, now, &mut changes);
            self.notifications(&mut state, &mut changes, now);
            out
        };
        for (at, job, thing, number) in std::mem::take(&mut changes.timers) {
            self.start_timer(at, job, thing, number);
        }
        self.publish_all(changes.messages).await;
        out
    }

    /// When the deadline passes, an execution still IN_PROGRESS whose timer it was becomes
    /// TIMED_OUT.
    fn start_timer(&self, at: i64, job: JobId, thing: DeviceId, number: i64) {
        let this = self.clone();
        tokio::spawn(async move {
            let wait = (at - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            this.change(|state, now, changes| {
                let key = (thing, job);
                let expired = state.executions.get(&key).is_some_and(|e| {
                    e.number == number
                        && e.status == JobExecutionStatus::InProgress
                        && [e.in_progress_deadline, e.step_deadline]
                            .into_iter()
                            .flatten()
                            .any(|d| d <= now)
                });
                if expired {
                    tracing::debug!(job = %key.1, thing = %key.0, "job execution timed out");
                    this.finish(state, &key, JobExecutionStatus::TimedOut, now, changes);
                }
            })
            .await;
        });
    }

    /// Creates a job's executions: all at once, or `maximumPerMinute` of them a minute, evenly
    /// spaced.
    pub(super) fn roll_out(&self, job_id: JobId) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let wait = this
                    .change(|state, now, changes| {
                        let job = state.jobs.get_mut(&job_id)?;
                        if job.status != JobStatus::InProgress {
                            return None;
                        }
                        let rate = job.rollout_per_minute;
                        let batch = if rate.is_some() {
                            1
                        } else {
                            job.unrolled.len()
                        };
                        let things: Vec<DeviceId> = job.unrolled.drain(..batch).collect();
                        let more = !job.unrolled.is_empty();
                        for thing in &things {
                            this.queue(state, (thing, &job_id), (1, 0), now, changes);
                        }
                        this.complete_if_done(state, &job_id, now, changes);
                        more.then(|| rate.map(|r| this.minute.div_f64(f64::from(r.max(1)))))
                            .flatten()
                    })
                    .await;
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return,
                }
            }
        });
    }
}

/// A random id in the shape of AWS's event ids.
fn uuid_like() -> String {
    tether_domain::JobId::random().into_string()
}
