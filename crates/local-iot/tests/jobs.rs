//! AWS IoT Jobs on the emulator, driven by the real SDK clients (`aws-sdk-iot` for the control
//! plane, `aws-sdk-iotjobsdataplane` for the device's HTTPS API) and by real MQTT 5 clients for
//! the device topics.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use aws_sdk_iot::types::{
    AbortAction, AbortConfig, AbortCriteria, JobExecutionFailureType, JobExecutionStatus,
    JobExecutionsRetryConfig, JobExecutionsRolloutConfig, JobStatus, RetryCriteria,
    RetryableFailureType, TimeoutConfig,
};
use aws_sdk_iotjobsdataplane::types::JobExecutionStatus as DeviceStatus;
use serde_json::{json, Value};
use tether_local_iot::link::{Link, Message, Outgoing};
use tether_local_iot::{Config, LocalIot};
use tether_testkit::iot::{thing_arn, Clients};
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(10);

/// The emulator with a Jobs minute of `minute`.
async fn start(minute: Duration) -> (LocalIot, Clients) {
    let iot = LocalIot::start(Config {
        jobs_minute: minute,
        ..Config::default()
    })
    .await
    .unwrap();
    let clients = Clients::new(&iot.endpoint_url()).await;
    (iot, clients)
}

async fn mqtt(
    iot: &LocalIot,
    client_id: &str,
    filters: &[String],
) -> (Link, UnboundedReceiver<Message>) {
    Link::connect_as(iot.mqtt_addr(), client_id, filters)
        .await
        .unwrap()
}

async fn next_json(rx: &mut UnboundedReceiver<Message>) -> (String, Value) {
    let message = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message within 10 s")
        .expect("link open");
    (
        message.topic,
        serde_json::from_slice(&message.payload).unwrap(),
    )
}

/// The next message on `topic`, skipping others.
async fn next_on(rx: &mut UnboundedReceiver<Message>, topic: &str) -> Value {
    loop {
        let (t, v) = next_json(rx).await;
        if t == topic {
            return v;
        }
    }
}

async fn publish(link: &Link, topic: String, payload: Value) {
    link.publish(Outgoing {
        topic,
        payload: payload.to_string().into(),
        qos: 1,
        ..Default::default()
    })
    .await
    .unwrap();
}

/// A device's MQTT request, and the answer it gets (accepted or rejected).
async fn request(
    link: &Link,
    rx: &mut UnboundedReceiver<Message>,
    topic: String,
    payload: Value,
) -> (String, Value) {
    publish(link, topic.clone(), payload).await;
    loop {
        let (t, v) = next_json(rx).await;
        if t == format!("{topic}/accepted") {
            return ("accepted".into(), v);
        }
        if t == format!("{topic}/rejected") {
            return ("rejected".into(), v);
        }
    }
}

async fn create_job(clients: &Clients, id: &str, things: &[&str], document: Value) {
    clients
        .iot
        .create_job()
        .job_id(id)
        .set_targets(Some(things.iter().map(|t| thing_arn(t)).collect()))
        .document(document.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateJob {id}: {e:?}"));
}

async fn job(clients: &Clients, id: &str) -> aws_sdk_iot::types::Job {
    clients
        .iot
        .describe_job()
        .job_id(id)
        .send()
        .await
        .unwrap()
        .job
        .unwrap()
}

async fn execution_status(clients: &Clients, id: &str, thing: &str) -> JobExecutionStatus {
    clients
        .iot
        .describe_job_execution()
        .job_id(id)
        .thing_name(thing)
        .send()
        .await
        .unwrap()
        .execution
        .unwrap()
        .status
        .unwrap()
}

/// Waits until `check` holds for the job, or fails after 10 s.
async fn until_job(
    clients: &Clients,
    id: &str,
    what: &str,
    check: impl Fn(&aws_sdk_iot::types::Job) -> bool,
) -> aws_sdk_iot::types::Job {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let j = job(clients, id).await;
        if check(&j) {
            return j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: job is {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn error_code<E: aws_sdk_iot::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_control_plane_creates_describes_lists_and_refuses_bad_jobs() {
    let (_iot, clients) = start(Duration::from_secs(60)).await;
    create_job(
        &clients,
        "fw-1",
        &["pump-1", "pump-2", "pump-3"],
        json!({"op": "upgrade", "to": "1.2"}),
    )
    .await;

    let j = until_job(&clients, "fw-1", "all queued", |j| {
        j.job_process_details()
            .and_then(|d| d.number_of_queued_things())
            == Some(3)
    })
    .await;
    assert_eq!(j.status(), Some(&JobStatus::InProgress));
    assert_eq!(j.targets().len(), 3);
    let document = clients
        .iot
        .get_job_document()
        .job_id("fw-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(document.document().unwrap()).unwrap(),
        json!({"op": "upgrade", "to": "1.2"})
    );

    let listed = clients.iot.list_jobs().send().await.unwrap();
    assert_eq!(listed.jobs().len(), 1);
    let per_job = clients
        .iot
        .list_job_executions_for_job()
        .job_id("fw-1")
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(per_job.execution_summaries().len(), 2);
    let rest = clients
        .iot
        .list_job_executions_for_job()
        .job_id("fw-1")
        .next_token(per_job.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.execution_summaries().len(), 1);
    let per_thing = clients
        .iot
        .list_job_executions_for_thing()
        .thing_name("pump-2")
        .send()
        .await
        .unwrap();
    assert_eq!(per_thing.execution_summaries()[0].job_id(), Some("fw-1"));
    assert_eq!(
        execution_status(&clients, "fw-1", "pump-2").await,
        JobExecutionStatus::Queued
    );

    // The same id again, and bad requests: refused, nothing created.
    let again = clients
        .iot
        .create_job()
        .job_id("fw-1")
        .targets(thing_arn("pump-1"))
        .document("{}")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&again), "ResourceAlreadyExistsException");
    let bad: [(&str, Vec<String>, String); 4] = [
        ("no-targets", vec![], "{}".into()),
        (
            "group",
            vec!["arn:aws:iot:us-east-1:000000000000:thinggroup/all".into()],
            "{}".into(),
        ),
        ("array-doc", vec![thing_arn("pump-1")], "[1]".into()),
        (
            "big-doc",
            vec![thing_arn("pump-1")],
            json!({"x": "y".repeat(33 * 1024)}).to_string(),
        ),
    ];
    for (id, targets, document) in bad {
        let err = clients
            .iot
            .create_job()
            .job_id(id)
            .set_targets(Some(targets))
            .document(document)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&err), "InvalidRequestException", "{id}");
    }
    assert_eq!(
        clients.iot.list_jobs().send().await.unwrap().jobs().len(),
        1
    );
    let missing = clients
        .iot
        .describe_job()
        .job_id("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&missing), "ResourceNotFoundException");
}

#[tokio::test]
async fn a_device_runs_a_job_over_mqtt_without_subscribing_to_the_answers() {
    let (iot, clients) = start(Duration::from_secs(60)).await;
    let (_observer, mut events) = mqtt(&iot, "observer", &["$aws/events/#".into()]).await;
    // Subscribed only to notify-next: the answers to its requests come to it anyway.
    let (device, mut rx) = mqtt(
        &iot,
        "pump-1",
        &["$aws/things/pump-1/jobs/notify-next".into()],
    )
    .await;
    // Another client listening to the thing's whole Jobs space: it gets notifications, never
    // the answers to pump-1's requests (they do not pass through the broker in AWS IoT).
    let (_spy, mut spy_rx) = mqtt(&iot, "spy", &["$aws/things/pump-1/jobs/#".into()]).await;
    // The device's own receiver also carries its answers; a second connection watches
    // notify-next alone.
    let (_watch, mut next_rx) = mqtt(
        &iot,
        "watcher",
        &["$aws/things/pump-1/jobs/notify-next".into()],
    )
    .await;

    create_job(&clients, "fw-2", &["pump-1"], json!({"op": "upgrade"})).await;
    let notified = next_on(&mut rx, "$aws/things/pump-1/jobs/notify-next").await;
    assert_eq!(notified["execution"]["jobId"], "fw-2");
    assert_eq!(
        notified["execution"]["jobDocument"],
        json!({"op": "upgrade"})
    );

    let base = "$aws/things/pump-1/jobs";
    let (answer, pending) = request(
        &device,
        &mut rx,
        format!("{base}/get"),
        json!({"clientToken": "t-1"}),
    )
    .await;
    assert_eq!(answer, "accepted");
    assert_eq!(pending["clientToken"], "t-1");
    assert_eq!(pending["queuedJobs"][0]["jobId"], "fw-2");

    let (answer, started) = request(
        &device,
        &mut rx,
        format!("{base}/start-next"),
        json!({"clientToken": "t-2", "statusDetails": {"step": "download"}}),
    )
    .await;
    assert_eq!(answer, "accepted");
    let execution = &started["execution"];
    assert_eq!(execution["status"], "IN_PROGRESS");
    assert_eq!(execution["jobDocument"], json!({"op": "upgrade"}));
    assert!(
        execution["startedAt"].is_i64(),
        "epoch seconds: {execution}"
    );
    let version = execution["versionNumber"].as_i64().unwrap();

    // A stale version is refused with the current state.
    let (answer, refused) = request(
        &device,
        &mut rx,
        format!("{base}/fw-2/update"),
        json!({"status": "SUCCEEDED", "expectedVersion": version - 1, "clientToken": "t-3"}),
    )
    .await;
    assert_eq!(answer, "rejected");
    assert_eq!(refused["code"], "VersionMismatch");
    assert_eq!(refused["executionState"]["versionNumber"], version);
    assert_eq!(refused["clientToken"], "t-3");

    let (answer, bad) = request(
        &device,
        &mut rx,
        format!("{base}/fw-2/update"),
        json!({"status": "CANCELED"}),
    )
    .await;
    assert_eq!(
        (answer.as_str(), bad["code"].as_str()),
        ("rejected", Some("InvalidRequest"))
    );

    let (answer, updated) = request(
        &device,
        &mut rx,
        format!("{base}/fw-2/update"),
        json!({"status": "SUCCEEDED", "expectedVersion": version, "statusDetails": {"version": "1.2"},
               "includeJobExecutionState": true}),
    )
    .await;
    assert_eq!(answer, "accepted");
    assert_eq!(updated["executionState"]["status"], "SUCCEEDED");

    let (answer, late) = request(
        &device,
        &mut rx,
        format!("{base}/fw-2/update"),
        json!({"status": "FAILED"}),
    )
    .await;
    assert_eq!(
        (answer.as_str(), late["code"].as_str()),
        ("rejected", Some("InvalidStateTransition"))
    );

    // Nothing is pending any more: notify-next says so.
    let first = next_on(&mut next_rx, "$aws/things/pump-1/jobs/notify-next").await;
    assert_eq!(first["execution"]["jobId"], "fw-2");
    let empty = next_on(&mut next_rx, "$aws/things/pump-1/jobs/notify-next").await;
    assert!(empty.get("execution").is_none(), "{empty}");

    let succeeded = next_on(&mut events, "$aws/events/jobExecution/fw-2/succeeded").await;
    assert_eq!(succeeded["eventType"], "JOB_EXECUTION");
    assert_eq!(succeeded["status"], "SUCCEEDED");
    assert_eq!(succeeded["thingArn"], thing_arn("pump-1"));
    assert_eq!(succeeded["statusDetails"], json!({"version": "1.2"}));
    let completed = next_on(&mut events, "$aws/events/job/fw-2/completed").await;
    assert_eq!(completed["status"], "COMPLETED");
    assert_eq!(completed["jobProcessDetails"]["numberOfSucceededThings"], 1);
    assert_eq!(
        job(&clients, "fw-2").await.status(),
        Some(&JobStatus::Completed)
    );

    let (answer, malformed) = {
        publish_raw(&device, format!("{base}/get"), b"not json").await;
        let v = next_on(&mut rx, &format!("{base}/get/rejected")).await;
        ("rejected", v)
    };
    assert_eq!(
        (answer, malformed["code"].as_str()),
        ("rejected", Some("InvalidJson"))
    );
    let mut spied = Vec::new();
    while let Ok(message) = spy_rx.try_recv() {
        spied.push(message.topic);
    }
    assert!(
        spied.iter().any(|t| t.ends_with("/notify-next")),
        "the spy hears notifications: {spied:?}"
    );
    assert!(
        !spied
            .iter()
            .any(|t| t.ends_with("/accepted") || t.ends_with("/rejected")),
        "answers reach the requester alone: {spied:?}"
    );
}

async fn publish_raw(link: &Link, topic: String, payload: &'static [u8]) {
    link.publish(Outgoing {
        topic,
        payload: payload.into(),
        qos: 1,
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_device_runs_a_job_over_https() {
    let (_iot, clients) = start(Duration::from_secs(60)).await;
    create_job(&clients, "fw-3", &["pump-9"], json!({"op": "reboot"})).await;
    until_job(&clients, "fw-3", "queued", |j| {
        j.job_process_details()
            .and_then(|d| d.number_of_queued_things())
            == Some(1)
    })
    .await;

    let pending = clients
        .jobs
        .get_pending_job_executions()
        .thing_name("pump-9")
        .send()
        .await
        .unwrap();
    assert_eq!(pending.queued_jobs()[0].job_id(), Some("fw-3"));
    let started = clients
        .jobs
        .start_next_pending_job_execution()
        .thing_name("pump-9")
        .status_details("step", "rebooting")
        .send()
        .await
        .unwrap();
    let execution = started.execution().unwrap();
    assert_eq!(execution.status(), Some(&DeviceStatus::InProgress));
    let document: Value = serde_json::from_str(execution.job_document().unwrap()).unwrap();
    assert_eq!(document, json!({"op": "reboot"}));

    let described = clients
        .jobs
        .describe_job_execution()
        .thing_name("pump-9")
        .job_id("$next")
        .send()
        .await
        .unwrap();
    assert_eq!(described.execution().unwrap().job_id(), Some("fw-3"));

    let stale = clients
        .jobs
        .update_job_execution()
        .thing_name("pump-9")
        .job_id("fw-3")
        .status(DeviceStatus::Succeeded)
        .expected_version(99)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_iotjobsdataplane::error::ProvideErrorMetadata::code(&stale),
        Some("ConflictException")
    );
    let updated = clients
        .jobs
        .update_job_execution()
        .thing_name("pump-9")
        .job_id("fw-3")
        .status(DeviceStatus::Failed)
        .status_details("reason", "disk full")
        .include_job_execution_state(true)
        .include_job_document(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        updated.execution_state().unwrap().status(),
        Some(&DeviceStatus::Failed)
    );
    assert!(updated.job_document().unwrap().contains("reboot"));
    let finished = clients
        .jobs
        .describe_job_execution()
        .thing_name("pump-9")
        .job_id("fw-3")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_iotjobsdataplane::error::ProvideErrorMetadata::code(&finished),
        Some("TerminalStateException")
    );
    assert_eq!(
        execution_status(&clients, "fw-3", "pump-9").await,
        JobExecutionStatus::Failed
    );
}

#[tokio::test]
async fn in_progress_and_step_timeouts_time_executions_out() {
    // A Jobs minute of 300 ms.
    let (iot, clients) = start(Duration::from_millis(300)).await;
    let (_observer, mut events) =
        mqtt(&iot, "observer", &["$aws/events/jobExecution/#".into()]).await;
    clients
        .iot
        .create_job()
        .job_id("slow")
        .targets(thing_arn("a"))
        .targets(thing_arn("b"))
        .document("{}")
        .timeout_config(
            TimeoutConfig::builder()
                .in_progress_timeout_in_minutes(1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    until_job(&clients, "slow", "queued", |j| {
        j.job_process_details()
            .and_then(|d| d.number_of_queued_things())
            == Some(2)
    })
    .await;
    for thing in ["a", "b"] {
        let mut start = clients
            .jobs
            .start_next_pending_job_execution()
            .thing_name(thing);
        if thing == "b" {
            // b's step timer (1 minute) is stopped again by its next update: only the job's
            // in-progress timer is left.
            start = start.step_timeout_in_minutes(1);
        }
        start.send().await.unwrap();
    }
    clients
        .jobs
        .update_job_execution()
        .thing_name("b")
        .job_id("slow")
        .status(DeviceStatus::InProgress)
        .step_timeout_in_minutes(-1)
        .send()
        .await
        .unwrap();
    for _ in 0..2 {
        let timed_out = next_on(&mut events, "$aws/events/jobExecution/slow/timed_out").await;
        assert_eq!(timed_out["status"], "TIMED_OUT");
    }
    let j = until_job(&clients, "slow", "completed", |j| {
        j.status() == Some(&JobStatus::Completed)
    })
    .await;
    assert_eq!(
        j.job_process_details()
            .unwrap()
            .number_of_timed_out_things(),
        Some(2)
    );
}

#[tokio::test]
async fn rollout_creates_executions_at_the_configured_rate() {
    // A Jobs minute of 1 s and 4 executions a minute: one every 250 ms.
    let (_iot, clients) = start(Duration::from_secs(1)).await;
    let started = tokio::time::Instant::now();
    clients
        .iot
        .create_job()
        .job_id("slowly")
        .set_targets(Some(["r1", "r2", "r3", "r4"].map(thing_arn).to_vec()))
        .document("{}")
        .job_executions_rollout_config(
            JobExecutionsRolloutConfig::builder()
                .maximum_per_minute(4)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let first = job(&clients, "slowly").await;
    let details = first.job_process_details().unwrap();
    assert!(details.processing_targets().len() >= 2, "{details:?}");
    until_job(&clients, "slowly", "all created", |j| {
        j.job_process_details()
            .is_some_and(|d| d.processing_targets().is_empty())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_abort_threshold_cancels_the_rest_and_retries_queue_again() {
    let (_iot, clients) = start(Duration::from_secs(60)).await;
    let things = ["x1", "x2", "x3", "x4"];
    clients
        .iot
        .create_job()
        .job_id("risky")
        .set_targets(Some(things.map(thing_arn).to_vec()))
        .document("{}")
        .abort_config(
            AbortConfig::builder()
                .criteria_list(
                    AbortCriteria::builder()
                        .failure_type(JobExecutionFailureType::Failed)
                        .action(AbortAction::Cancel)
                        .threshold_percentage(50.0)
                        .min_number_of_executed_things(2)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    until_job(&clients, "risky", "queued", |j| {
        j.job_process_details()
            .and_then(|d| d.number_of_queued_things())
            == Some(4)
    })
    .await;
    for thing in ["x1", "x2"] {
        clients
            .jobs
            .update_job_execution()
            .thing_name(thing)
            .job_id("risky")
            .status(DeviceStatus::Failed)
            .send()
            .await
            .unwrap();
    }
    let j = job(&clients, "risky").await;
    assert_eq!(j.status(), Some(&JobStatus::Canceled));
    assert_eq!(j.reason_code(), Some("$ABORTED"));
    assert_eq!(
        j.job_process_details().unwrap().number_of_canceled_things(),
        Some(2)
    );
    assert_eq!(
        execution_status(&clients, "risky", "x4").await,
        JobExecutionStatus::Canceled
    );

    clients
        .iot
        .create_job()
        .job_id("again")
        .targets(thing_arn("y1"))
        .document("{}")
        .job_executions_retry_config(
            JobExecutionsRetryConfig::builder()
                .criteria_list(
                    RetryCriteria::builder()
                        .failure_type(RetryableFailureType::Failed)
                        .number_of_retries(1)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    for expected_number in [1, 2] {
        let started = loop {
            let s = clients
                .jobs
                .start_next_pending_job_execution()
                .thing_name("y1")
                .send()
                .await
                .unwrap();
            if let Some(e) = s.execution {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(started.execution_number(), Some(expected_number));
        clients
            .jobs
            .update_job_execution()
            .thing_name("y1")
            .job_id("again")
            .status(DeviceStatus::Failed)
            .send()
            .await
            .unwrap();
    }
    let j = job(&clients, "again").await;
    assert_eq!(j.status(), Some(&JobStatus::Completed));
    assert_eq!(
        j.job_process_details().unwrap().number_of_failed_things(),
        Some(1)
    );
}

#[tokio::test]
async fn cancelling_needs_force_for_running_executions_and_notifies_devices() {
    let (iot, clients) = start(Duration::from_secs(60)).await;
    let (_device, mut rx) = mqtt(
        &iot,
        "c1",
        &[
            "$aws/things/c1/jobs/notify-next".into(),
            "$aws/things/c1/jobs/notify".into(),
        ],
    )
    .await;
    create_job(&clients, "stop-me", &["c1", "c2"], json!({"op": "wait"})).await;
    // notify comes first, then notify-next.
    assert_eq!(
        next_on(&mut rx, "$aws/things/c1/jobs/notify").await["jobs"]["QUEUED"][0]["jobId"],
        "stop-me"
    );
    assert_eq!(
        next_on(&mut rx, "$aws/things/c1/jobs/notify-next").await["execution"]["jobId"],
        "stop-me"
    );

    // c2 starts; c1 stays queued.
    until_job(&clients, "stop-me", "queued", |j| {
        j.job_process_details()
            .and_then(|d| d.number_of_queued_things())
            == Some(2)
    })
    .await;
    clients
        .jobs
        .start_next_pending_job_execution()
        .thing_name("c2")
        .send()
        .await
        .unwrap();
    let refused = clients
        .iot
        .cancel_job_execution()
        .job_id("stop-me")
        .thing_name("c2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "InvalidStateTransitionException");

    clients
        .iot
        .cancel_job()
        .job_id("stop-me")
        .comment("wrong firmware")
        .send()
        .await
        .unwrap();
    assert_eq!(
        execution_status(&clients, "stop-me", "c1").await,
        JobExecutionStatus::Canceled
    );
    assert_eq!(
        execution_status(&clients, "stop-me", "c2").await,
        JobExecutionStatus::InProgress
    );
    let emptied = next_on(&mut rx, "$aws/things/c1/jobs/notify-next").await;
    assert!(emptied.get("execution").is_none(), "{emptied}");

    clients
        .iot
        .cancel_job()
        .job_id("stop-me")
        .force(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        execution_status(&clients, "stop-me", "c2").await,
        JobExecutionStatus::Canceled
    );
    let j = job(&clients, "stop-me").await;
    assert_eq!(
        (j.status(), j.force_canceled(), j.comment()),
        (
            Some(&JobStatus::Canceled),
            Some(true),
            Some("wrong firmware")
        )
    );

    clients
        .iot
        .delete_job()
        .job_id("stop-me")
        .send()
        .await
        .unwrap();
    let gone = clients
        .iot
        .describe_job()
        .job_id("stop-me")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&gone), "ResourceNotFoundException");
}

/// AWS IoT's Jobs clients subscribe to `$aws/things/{thing}/jobs/$next/get/+`: a `$` level after
/// the first, which MQTT allows and rmqtt refuses (found with the AWS IoT Device SDK's
/// IotJobsClientV2). The subscription is granted, and the `$next` answer reaches the requester
/// once, even when a wildcard of its own also covers it.
#[tokio::test]
async fn next_subscriptions_are_granted_and_next_answers_arrive_once() {
    use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let (iot, clients) = start(Duration::from_secs(60)).await;
    create_job(&clients, "nx-1", &["n1"], json!({"op": "x"})).await;
    let options = MqttOptions::new("n1", "127.0.0.1", iot.mqtt_addr().port());
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let poller = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(packet) = event {
                let _ = tx.send(packet);
            }
        }
    });
    for filter in ["$aws/things/n1/jobs/$next/get/+", "$aws/things/n1/jobs/#"] {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        loop {
            let packet = tokio::time::timeout(WAIT, rx.recv())
                .await
                .expect("a packet within 10 s")
                .expect("connection open");
            if let Packet::SubAck(ack) = packet {
                assert_eq!(
                    ack.return_codes,
                    [SubscribeReasonCode::Success(QoS::AtLeastOnce)],
                    "{filter}"
                );
                break;
            }
        }
    }
    client
        .publish(
            "$aws/things/n1/jobs/$next/get",
            QoS::AtLeastOnce,
            false,
            r#"{"clientToken":"c-1"}"#,
        )
        .await
        .unwrap();
    let mut answers = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(packet)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let Packet::Publish(publish) = packet {
            answers.push((
                String::from_utf8_lossy(&publish.topic).into_owned(),
                publish.payload,
            ));
        }
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].0, "$aws/things/n1/jobs/$next/get/accepted");
    let body: Value = serde_json::from_slice(&answers[0].1).unwrap();
    assert_eq!(
        (
            body["clientToken"].as_str(),
            body["execution"]["jobId"].as_str()
        ),
        (Some("c-1"), Some("nx-1"))
    );
    poller.abort();
}
