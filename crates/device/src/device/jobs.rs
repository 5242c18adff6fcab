//! The device's AWS IoT Jobs task: over MQTT it drives the [`Agent`] with what the connection
//! task hands it and publishes what the agent decides; over HTTPS it polls iot-jobs-data
//! (StartNextPendingJobExecution, then UpdateJobExecution for each update of the plan). Both
//! run the plans of [`crate::answer::job`] (see [`crate::jobs`] for which behaviour does what).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iotjobsdataplane::error::ProvideErrorMetadata;
use aws_sdk_iotjobsdataplane::types::JobExecutionStatus as SdkStatus;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::Value;
use tether_domain::jobs::JobExecutionStatus;
use tether_domain::JobId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Context, Control, JobsSetup};
use crate::answer::{JobStep, Reply, JSON};
use crate::jobs::{Agent, Effect, JobExecution};
use crate::report::{Kind, Received, Sent};

/// What the connection task tells the Jobs task (MQTT).
#[derive(Debug)]
pub(crate) enum JobInput {
    /// Connected and subscribed (again).
    Ready,
    /// A message on one of the device's Jobs topics.
    Message { topic: String, payload: Bytes },
}

/// Starts the device's Jobs task, if it takes jobs; it ends when the device is stopped.
pub(super) fn spawn(
    ctx: Arc<Context>,
    setup: JobsSetup,
    inputs: Option<mpsc::UnboundedReceiver<JobInput>>,
) {
    let mut stop = ctx.stop.clone();
    match (setup, inputs) {
        (JobsSetup::Mqtt { reply_timeout }, Some(inputs)) => {
            tokio::spawn(async move {
                tokio::select! {
                    _ = mqtt(&ctx, inputs, reply_timeout) => {}
                    _ = stop.changed() => {}
                }
            });
        }
        (
            JobsSetup::Https {
                client,
                poll_interval,
            },
            _,
        ) => {
            tokio::spawn(async move {
                tokio::select! {
                    _ = https(&ctx, &client, poll_interval) => {}
                    _ = stop.changed() => {}
                }
            });
        }
        _ => {}
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Jobs over MQTT: feeds the agent until the connection task is gone.
async fn mqtt(
    ctx: &Context,
    mut inputs: mpsc::UnboundedReceiver<JobInput>,
    reply_timeout: Duration,
) {
    let mut agent = Agent::new(
        ctx.id.clone(),
        ctx.behaviours.clone(),
        ctx.recorder.clone(),
        reply_timeout,
    );
    loop {
        let wake = agent.next_wake();
        let effects = tokio::select! {
            input = inputs.recv() => match input {
                Some(JobInput::Ready) => agent.connected(Instant::now()),
                Some(JobInput::Message { topic, payload }) => {
                    agent.message(&topic, &payload, Instant::now())
                }
                None => return,
            },
            _ = sleep_until(wake) => agent.tick(Instant::now()),
        };
        for effect in effects {
            apply(ctx, effect).await;
        }
    }
}

/// Publishes what the agent decided (QoS 1, through the outbox so an update enters the sent
/// log once the broker has it), or drops the connection.
async fn apply(ctx: &Context, effect: Effect) {
    let (topic, payload, update) = match effect {
        Effect::Drop(offline) => {
            let _ = ctx.control.send(Control::Drop(offline));
            return;
        }
        Effect::Publish {
            topic,
            payload,
            update,
        } => (topic, payload, update),
    };
    let status = update.as_ref().map(|(_, status)| status.as_str());
    let message = Reply {
        topic,
        payload,
        properties: PublishProperties {
            content_type: Some(JSON.to_owned()),
            ..Default::default()
        },
        status: status.unwrap_or("START_NEXT"),
    };
    let sent = update.map(|(job, status)| Sent {
        device: ctx.id.clone(),
        kind: Kind::Job,
        id: job.into_string(),
        status: status.as_str(),
        at: std::time::Instant::now(),
    });
    match ctx.outbox.publish(&ctx.client, &message, sent).await {
        Ok(()) => ctx.recorder.count(&ctx.id, |c| match status {
            Some(status) => *c.jobs.sent.entry(status.to_owned()).or_default() += 1,
            None => c.jobs.start_next += 1,
        }),
        Err(err) => {
            tracing::warn!(device = %ctx.id, error = %err, topic = %message.topic, "could not send a Jobs request");
            ctx.recorder
                .count(&ctx.id, |c| c.connection.publish_failures += 1);
        }
    }
}

/// An SDK error with its causes, for a log line (the error's own text is only its kind).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The error code of a failed iot-jobs-data call (`NoAnswer` when the service was not reached).
fn code_of(err: &impl ProvideErrorMetadata) -> String {
    err.code().unwrap_or("NoAnswer").to_owned()
}

/// An execution as iot-jobs-data returns it (the document is a JSON string).
fn execution_of(e: &aws_sdk_iotjobsdataplane::types::JobExecution) -> Option<JobExecution> {
    Some(JobExecution {
        job_id: JobId::parse(e.job_id()?).ok()?,
        status: e
            .status()
            .and_then(|s| JobExecutionStatus::parse(s.as_str())),
        version: e.version_number(),
        execution_number: e.execution_number(),
        document: e
            .job_document()
            .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned())))
            .unwrap_or(Value::Null),
        seconds_before_timeout: e.approximate_seconds_before_timed_out(),
    })
}

/// Jobs over HTTPS: asks for the next pending execution, runs it, and asks again at once; when
/// nothing is pending (or the call failed) it waits `interval` first.
async fn https(ctx: &Context, client: &aws_sdk_iotjobsdataplane::Client, interval: Duration) {
    let id = &ctx.id;
    let mut dropped = HashSet::new();
    // The first failure after a success is a warning (a wrong endpoint, region or credentials
    // shows at once); the repeats are debug.
    let mut failing = false;
    loop {
        ctx.recorder.count(id, |c| c.jobs.start_next += 1);
        let answer = client
            .start_next_pending_job_execution()
            .thing_name(id.as_str())
            .send()
            .await;
        if answer.is_ok() {
            failing = false;
        }
        match answer {
            Ok(out) => match out.execution().and_then(execution_of) {
                Some(execution) => {
                    run_https(ctx, client, execution, &mut dropped, interval).await;
                    continue;
                }
                None => ctx.recorder.count(id, |c| c.jobs.nothing_pending += 1),
            },
            Err(err) => {
                let code = code_of(&err);
                if std::mem::replace(&mut failing, true) {
                    tracing::debug!(device = %id, %code, error = %err, "StartNextPendingJobExecution failed");
                } else {
                    let error = error_chain(&err);
                    tracing::warn!(device = %id, %code, %error, "StartNextPendingJobExecution failed; asking again every poll interval");
                }
                ctx.recorder
                    .count(id, |c| *c.jobs.rejected.entry(code).or_default() += 1);
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Runs one execution's plan over HTTPS.
async fn run_https(
    ctx: &Context,
    client: &aws_sdk_iotjobsdataplane::Client,
    execution: JobExecution,
    dropped: &mut HashSet<(JobId, Option<i64>)>,
    interval: Duration,
) {
    let id = &ctx.id;
    let job = execution.job_id.clone();
    let resumed = dropped.remove(&execution.key());
    let (behaviour, plan) = crate::jobs::plan(&ctx.behaviours, &execution, resumed, Instant::now());
    tracing::debug!(device = %id, %job, %behaviour, "job execution (HTTPS)");
    let unanswered = !plan.answers();
    let path = format!("/things/{id}/jobs");
    ctx.recorder.receive(
        Received {
            device: id.clone(),
            kind: Kind::Job,
            topic: format!("PUT {path}/$next"),
            method: execution.operation().map(str::to_owned),
            id: job.to_string(),
            behaviour: Some(behaviour),
            payload: Bytes::from(execution.to_json().to_string()),
            response_topic: None,
            correlation_data: None,
            message_expiry: None,
            content_type: Some(JSON.to_owned()),
            at: std::time::Instant::now(),
        },
        |c| {
            c.jobs.received += 1;
            c.jobs.unanswered += u64::from(unanswered);
        },
    );
    let mut version = execution.version;
    let mut finished = false;
    for step in plan.steps {
        match step {
            JobStep::Sleep(pause) => tokio::time::sleep(pause).await,
            JobStep::SleepUntil(at) => tokio::time::sleep_until(at).await,
            JobStep::Drop(offline) => {
                dropped.insert(execution.key());
                let _ = ctx.control.send(Control::Drop(offline));
                ctx.recorder.count(id, |c| c.jobs.abandoned += 1);
                tokio::time::sleep(offline).await;
                return;
            }
            JobStep::Update(status, details) => {
                let outcome = update_https(ctx, client, &execution, version, status, details).await;
                match outcome {
                    Ok(()) => {
                        version += 1;
                        if status.is_terminal() && !finished {
                            finished = true;
                            ctx.recorder.count(id, |c| c.jobs.finished += 1);
                        }
                    }
                    Err(code) => {
                        ctx.recorder.receive(
                            Received {
                                device: id.clone(),
                                kind: Kind::JobRejected,
                                topic: format!("POST {path}/{job}"),
                                method: None,
                                id: job.to_string(),
                                behaviour: None,
                                payload: Bytes::from(code.clone()),
                                response_topic: None,
                                correlation_data: None,
                                message_expiry: None,
                                content_type: None,
                                at: std::time::Instant::now(),
                            },
                            |c| {
                                *c.jobs.rejected.entry(code).or_default() += 1;
                                c.jobs.abandoned += u64::from(!finished);
                            },
                        );
                        return;
                    }
                }
            }
        }
    }
    if !finished {
        wait_until_ended(ctx, client, &job, interval).await;
    }
}

/// UpdateJobExecution; the error code when it failed.
async fn update_https(
    ctx: &Context,
    client: &aws_sdk_iotjobsdataplane::Client,
    execution: &JobExecution,
    version: i64,
    status: JobExecutionStatus,
    details: BTreeMap<String, String>,
) -> Result<(), String> {
    let id = &ctx.id;
    ctx.recorder.count(id, |c| {
        *c.jobs.sent.entry(status.as_str().to_owned()).or_default() += 1;
    });
    let details = (!details.is_empty()).then(|| details.into_iter().collect());
    let result = client
        .update_job_execution()
        .thing_name(id.as_str())
        .job_id(execution.job_id.as_str())
        .status(SdkStatus::from(status.as_str()))
        .set_status_details(details)
        .expected_version(version)
        .set_execution_number(execution.execution_number)
        .send()
        .await;
    match result {
        Ok(_) => {
            ctx.recorder.count(id, |c| c.jobs.accepted += 1);
            ctx.recorder.send(Sent {
                device: id.clone(),
                kind: Kind::Job,
                id: execution.job_id.to_string(),
                status: status.as_str(),
                at: std::time::Instant::now(),
            });
            Ok(())
        }
        Err(err) => {
            let code = code_of(&err);
            tracing::info!(device = %id, job = %execution.job_id, %code, "UpdateJobExecution refused");
            Err(code)
        }
    }
}

/// An execution the behaviour does not finish: checks every `interval` until the cloud has
/// ended it (timed out, cancelled, deleted), then lets it go.
async fn wait_until_ended(
    ctx: &Context,
    client: &aws_sdk_iotjobsdataplane::Client,
    job: &JobId,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        let described = client
            .describe_job_execution()
            .thing_name(ctx.id.as_str())
            .job_id(job.as_str())
            .include_job_document(false)
            .send()
            .await;
        let ended = match &described {
            Ok(out) => out
                .execution()
                .and_then(|e| e.status())
                .is_none_or(|s| !matches!(s, SdkStatus::InProgress | SdkStatus::Queued)),
            Err(err) => matches!(
                err.code(),
                Some("TerminalStateException" | "ResourceNotFoundException")
            ),
        };
        if ended {
            tracing::info!(device = %ctx.id, %job, "the cloud ended a job execution the device did not finish");
            ctx.recorder.count(&ctx.id, |c| c.jobs.abandoned += 1);
            return;
        }
    }
}
