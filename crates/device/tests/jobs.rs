//! AWS IoT Jobs on the emulator, created and checked with the real SDK (`aws-sdk-iot`): devices
//! take jobs over MQTT (notify-next → start-next → run → update) or over HTTPS
//! (`aws-sdk-iotjobsdataplane`), with the behaviour the job document's `"operation"` picks.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_iot::types::{JobExecution, JobExecutionStatus, JobStatus, TimeoutConfig};
use common::{device, fleet, WAIT};
use serde_json::{json, Value};
use tether_device::{Behaviours, Fleet, FleetConfig, JobsTransport, Kind};
use tether_local_iot::{Config, LocalIot};
use tether_testkit::iot::{sdk_config, thing_arn, Clients};

/// The emulator with a Jobs minute of `minute`, and SDK clients for it.
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

/// CreateJob on `things`, optionally with an in-progress timeout in (Jobs) minutes.
async fn create_job(
    c: &Clients,
    id: &str,
    things: &[&str],
    document: Value,
    in_progress_timeout: Option<i64>,
) {
    c.iot
        .create_job()
        .job_id(id)
        .set_targets(Some(things.iter().map(|t| thing_arn(t)).collect()))
        .document(document.to_string())
        .set_timeout_config(in_progress_timeout.map(|minutes| {
            TimeoutConfig::builder()
                .in_progress_timeout_in_minutes(minutes)
                .build()
        }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateJob {id}: {e:?}"));
}

/// DescribeJobExecution (control plane).
async fn execution(c: &Clients, job: &str, thing: &str) -> JobExecution {
    c.iot
        .describe_job_execution()
        .job_id(job)
        .thing_name(thing)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeJobExecution {job} on {thing}: {e:?}"))
        .execution
        .unwrap()
}

fn details(e: &JobExecution) -> BTreeMap<String, String> {
    e.status_details()
        .and_then(|d| d.details_map())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Polls DescribeJobExecution until `check` holds; fails after the wait with what it last saw.
async fn until_execution(
    c: &Clients,
    job: &str,
    thing: &str,
    what: &str,
    check: impl Fn(&JobExecution) -> bool,
) -> JobExecution {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let e = execution(c, job, thing).await;
        if check(&e) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{job} on {thing}: {what}; last seen {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_status(
    c: &Clients,
    job: &str,
    thing: &str,
    status: JobExecutionStatus,
) -> JobExecution {
    until_execution(c, job, thing, &format!("expected {status:?}"), |e| {
        e.status() == Some(&status)
    })
    .await
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The (job, status) of every update the fleet sent, in order.
fn updates(fleet: &Fleet) -> Vec<(String, &'static str)> {
    fleet
        .sent()
        .into_iter()
        .filter(|s| s.kind == Kind::Job)
        .map(|s| (s.id, s.status))
        .collect()
}

#[tokio::test]
async fn three_devices_one_connected_after_the_job_was_created_all_succeed() {
    let (iot, c) = start(Duration::from_secs(60)).await;
    let rules = ["upgrade=progress:100"];
    let early = fleet(&iot, &["pump-1", "pump-2"], &rules).await;

    create_job(
        &c,
        "fw-1",
        &["pump-1", "pump-2", "pump-3"],
        json!({"operation": "upgrade", "to": "1.2"}),
        None,
    )
    .await;
    let first = until_status(&c, "fw-1", "pump-1", JobExecutionStatus::Succeeded).await;
    let second = until_status(&c, "fw-1", "pump-2", JobExecutionStatus::Succeeded).await;
    let offline = execution(&c, "fw-1", "pump-3").await;
    let late = fleet(&iot, &["pump-3"], &rules).await;
    let third = until_status(&c, "fw-1", "pump-3", JobExecutionStatus::Succeeded).await;
    let early_summary = early
        .wait_until(WAIT, |s| s.total.jobs.accepted == 4)
        .await
        .unwrap();
    let late_summary = late
        .wait_until(WAIT, |s| s.total.jobs.accepted == 2)
        .await
        .unwrap();

    assert_eq!(offline.status(), Some(&JobExecutionStatus::Queued));
    for e in [&first, &second, &third] {
        assert_eq!(details(e), map(&[("progress", "100%")]), "{e:?}");
    }
    let job = c
        .iot
        .describe_job()
        .job_id("fw-1")
        .send()
        .await
        .unwrap()
        .job
        .unwrap();
    assert_eq!(job.status(), Some(&JobStatus::Completed));
    let jobs = &early_summary.total.jobs;
    assert_eq!((jobs.received, jobs.finished, jobs.abandoned), (2, 2, 0));
    assert_eq!(early_summary.total.sent(Kind::Job, "IN_PROGRESS"), 2);
    assert_eq!(early_summary.total.sent(Kind::Job, "SUCCEEDED"), 2);
    let fw1 = |status| ("fw-1".to_owned(), status);
    assert_eq!(
        updates(&late),
        [fw1("IN_PROGRESS"), fw1("SUCCEEDED")],
        "what the late device sent, once the broker had it"
    );
    assert_eq!(late_summary.total.jobs.finished, 1);
    let taken = late
        .received()
        .into_iter()
        .find(|r| r.kind == Kind::Job)
        .unwrap();
    assert_eq!(
        taken.topic, "$aws/things/pump-3/jobs/start-next/accepted",
        "a device that was offline picks the job up by asking when it connects"
    );
    assert_eq!(taken.id, "fw-1");
    assert_eq!(taken.method.as_deref(), Some("upgrade"));
    assert_eq!(taken.behaviour.as_deref(), Some("progress:100"));
    early.shutdown().await;
    late.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn fail_and_reject_end_failed_and_rejected_with_the_reason_in_the_status_details() {
    let (iot, c) = start(Duration::from_secs(60)).await;
    let devices = fleet(
        &iot,
        &["car-1"],
        &[
            "update=fail:LOW_BATTERY:battery below 10%",
            "lock=reject:ENGINE_ON",
            "honk=twice",
        ],
    )
    .await;

    create_job(
        &c,
        "fail-1",
        &["car-1"],
        json!({"operation": "update"}),
        None,
    )
    .await;
    create_job(
        &c,
        "reject-1",
        &["car-1"],
        json!({"operation": "lock"}),
        None,
    )
    .await;
    create_job(
        &c,
        "twice-1",
        &["car-1"],
        json!({"operation": "honk"}),
        None,
    )
    .await;
    let failed = until_status(&c, "fail-1", "car-1", JobExecutionStatus::Failed).await;
    let rejected = until_status(&c, "reject-1", "car-1", JobExecutionStatus::Rejected).await;
    let twice = until_status(&c, "twice-1", "car-1", JobExecutionStatus::Succeeded).await;
    let summary = devices
        .wait_until(WAIT, |s| {
            s.total.jobs.rejected.get("InvalidStateTransition") == Some(&1)
        })
        .await
        .unwrap();

    assert_eq!(
        details(&failed),
        map(&[
            ("reasonCode", "LOW_BATTERY"),
            ("reasonDescription", "battery below 10%")
        ])
    );
    assert_eq!(details(&rejected), map(&[("reasonCode", "ENGINE_ON")]));
    assert_eq!(details(&twice), map(&[("progress", "100%")]));
    let jobs = &summary.total.jobs;
    assert_eq!((jobs.received, jobs.finished, jobs.abandoned), (3, 3, 0));
    assert_eq!(summary.total.sent(Kind::Job, "FAILED"), 1);
    assert_eq!(summary.total.sent(Kind::Job, "REJECTED"), 1);
    assert_eq!(
        summary.total.sent(Kind::Job, "SUCCEEDED"),
        2,
        "twice sends its second SUCCEEDED, which the cloud refuses"
    );
    let methods: Vec<Option<String>> = devices
        .received()
        .into_iter()
        .filter(|r| r.kind == Kind::Job)
        .map(|r| r.method)
        .collect();
    assert_eq!(
        methods,
        [
            Some("update".to_owned()),
            Some("lock".to_owned()),
            Some("honk".to_owned())
        ]
    );
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn a_hanging_job_times_out_and_the_device_then_takes_the_next_one() {
    // A Jobs minute of 500 ms: the in-progress timeout of 1 minute runs out half a second
    // after the device started the execution.
    let (iot, c) = start(Duration::from_millis(500)).await;
    let devices = fleet(&iot, &["valve-1"], &["wait=never"]).await;

    create_job(
        &c,
        "stuck",
        &["valve-1"],
        json!({"operation": "wait"}),
        Some(1),
    )
    .await;
    let timed_out = until_status(&c, "stuck", "valve-1", JobExecutionStatus::TimedOut).await;
    let let_go = devices
        .wait_until(WAIT, |s| s.total.jobs.abandoned == 1)
        .await
        .unwrap();
    create_job(
        &c,
        "after",
        &["valve-1"],
        json!({"operation": "other"}),
        None,
    )
    .await;
    until_status(&c, "after", "valve-1", JobExecutionStatus::Succeeded).await;
    let summary = devices
        .wait_until(WAIT, |s| s.total.jobs.finished == 1)
        .await
        .unwrap();

    assert!(timed_out.started_at().is_some(), "{timed_out:?}");
    assert!(details(&timed_out).is_empty(), "never sends no update");
    let jobs = &let_go.total.jobs;
    assert_eq!((jobs.received, jobs.unanswered, jobs.finished), (1, 1, 0));
    assert!(jobs.sent.is_empty(), "{jobs:?}");
    assert_eq!(summary.total.jobs.received, 2);
    assert_eq!(updates(&devices), [("after".to_owned(), "SUCCEEDED")]);
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn a_job_cancelled_with_force_while_in_progress_is_let_go_and_the_next_job_runs() {
    let (iot, c) = start(Duration::from_secs(60)).await;
    let devices = fleet(&iot, &["gate-1"], &["slow=progress:60000"]).await;

    create_job(
        &c,
        "slow-1",
        &["gate-1"],
        json!({"operation": "slow"}),
        None,
    )
    .await;
    let reported = until_execution(&c, "slow-1", "gate-1", "progress reported", |e| {
        details(e) == map(&[("progress", "50%")])
    })
    .await;
    c.iot
        .cancel_job()
        .job_id("slow-1")
        .force(true)
        .send()
        .await
        .unwrap();
    let canceled = until_status(&c, "slow-1", "gate-1", JobExecutionStatus::Canceled).await;
    devices
        .wait_until(WAIT, |s| s.total.jobs.abandoned == 1)
        .await
        .unwrap();
    create_job(
        &c,
        "next-1",
        &["gate-1"],
        json!({"operation": "open"}),
        None,
    )
    .await;
    let next = until_status(&c, "next-1", "gate-1", JobExecutionStatus::Succeeded).await;
    let summary = devices
        .wait_until(WAIT, |s| s.total.jobs.finished == 1)
        .await
        .unwrap();

    assert_eq!(reported.status(), Some(&JobExecutionStatus::InProgress));
    assert_eq!(canceled.force_canceled(), Some(true));
    assert_eq!(details(&next), map(&[("progress", "100%")]));
    let jobs = &summary.total.jobs;
    assert_eq!((jobs.received, jobs.finished, jobs.abandoned), (2, 1, 1));
    assert_eq!(summary.total.connection.connects, 1, "no reconnection");
    assert_eq!(
        updates(&devices),
        [
            ("slow-1".to_owned(), "IN_PROGRESS"),
            ("next-1".to_owned(), "SUCCEEDED")
        ]
    );
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn disconnect_drops_the_connection_and_finishes_the_job_when_it_gets_it_again() {
    let (iot, c) = start(Duration::from_secs(60)).await;
    let devices = fleet(&iot, &["cam-1"], &["reboot=disconnect:300"]).await;

    create_job(&c, "fw-r", &["cam-1"], json!({"operation": "reboot"}), None).await;
    let done = until_status(&c, "fw-r", "cam-1", JobExecutionStatus::Succeeded).await;
    let summary = devices
        .wait_until(WAIT, |s| s.total.jobs.finished == 1)
        .await
        .unwrap();

    assert_eq!(
        details(&done),
        map(&[("progress", "100%"), ("resumed", "true")])
    );
    assert_eq!(summary.total.connection.dropped, 1);
    let jobs = &summary.total.jobs;
    assert_eq!((jobs.received, jobs.abandoned), (2, 1));
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn over_https_a_device_polls_runs_jobs_and_reports_them() {
    let (iot, c) = start(Duration::from_secs(60)).await;
    let mut behaviours = Behaviours::default();
    behaviours
        .apply_rules(["upgrade=progress:100", "wipe=fail:DISK_FULL:no room left"])
        .unwrap();
    let mut config =
        FleetConfig::local(iot.mqtt_addr(), vec![device("meter-1")]).with_behaviours(behaviours);
    config.jobs.transport = JobsTransport::Https;
    config.jobs.sdk = Some(sdk_config(&iot.endpoint_url()).await);
    config.jobs.poll_interval = Duration::from_millis(100);
    let devices = Fleet::start(config).await.unwrap();

    create_job(
        &c,
        "fw-h",
        &["meter-1"],
        json!({"operation": "upgrade"}),
        None,
    )
    .await;
    create_job(
        &c,
        "wipe-h",
        &["meter-1"],
        json!({"operation": "wipe"}),
        None,
    )
    .await;
    let upgraded = until_status(&c, "fw-h", "meter-1", JobExecutionStatus::Succeeded).await;
    let wiped = until_status(&c, "wipe-h", "meter-1", JobExecutionStatus::Failed).await;
    let summary = devices
        .wait_until(WAIT, |s| s.total.jobs.finished == 2)
        .await
        .unwrap();

    assert_eq!(details(&upgraded), map(&[("progress", "100%")]));
    assert_eq!(
        details(&wiped),
        map(&[
            ("reasonCode", "DISK_FULL"),
            ("reasonDescription", "no room left")
        ])
    );
    let jobs = &summary.total.jobs;
    assert_eq!((jobs.received, jobs.accepted, jobs.abandoned), (2, 3, 0));
    assert_eq!(jobs.notifications, 0, "no MQTT for jobs");
    assert_eq!(
        updates(&devices),
        [
            ("fw-h".to_owned(), "IN_PROGRESS"),
            ("fw-h".to_owned(), "SUCCEEDED"),
            ("wipe-h".to_owned(), "FAILED")
        ]
    );
    let taken = devices
        .received()
        .into_iter()
        .find(|r| r.kind == Kind::Job)
        .unwrap();
    assert_eq!(taken.topic, "PUT /things/meter-1/jobs/$next");
    assert_eq!(taken.method.as_deref(), Some("upgrade"));
    devices.shutdown().await;
    iot.shutdown().await;
}
