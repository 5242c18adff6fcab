//! AWS IoT Commands through the emulator's real StartCommandExecution: the device reads the
//! execution id from the topic and the deadline from the message expiry, answers on
//! `.../response/json` in the device format, and records the accepted / rejected acks.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use aws_sdk_iot::types::CommandExecutionStatus;
use common::{emulator, fleet, json, next, nothing_within, observer, WAIT};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::json;
use tether_device::Kind;
use tether_testkit::iot::Clients;

fn responses(thing: &str) -> String {
    format!("$aws/commands/things/{thing}/executions/+/response/json")
}

#[tokio::test]
async fn progress_reports_in_progress_then_succeeded_and_both_are_accepted() {
    let iot = emulator().await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let devices = fleet(&iot, &["car-1"], &["*=progress:100"]).await;
    let (_watch, mut sent) = observer(&iot, "watch-1", &[&responses("car-1")]).await;
    let arn = c
        .create_json_command("unlock", json!({"door": "front"}))
        .await;

    let id = c.start_execution(&arn, "car-1", 30).await;
    let first = next(&mut sent).await;
    let second = next(&mut sent).await;
    let summary = devices
        .wait_until(WAIT, |s| s.total.commands.accepted == 2)
        .await
        .unwrap();
    let got = c.execution("car-1", &id).await;

    let response_topic = format!("$aws/commands/things/car-1/executions/{id}/response/json");
    assert_eq!(first.topic, response_topic);
    assert_eq!(json(&first), json!({"status": "IN_PROGRESS"}));
    assert_eq!(first.qos, QoS::AtLeastOnce);
    assert_eq!(second.topic, response_topic);
    assert_eq!(
        json(&second),
        json!({"status": "SUCCEEDED", "result": {"payload": {"s": r#"{"door":"front"}"#}}})
    );
    assert_eq!(summary.total.sent(Kind::Command, "IN_PROGRESS"), 1);
    assert_eq!(summary.total.sent(Kind::Command, "SUCCEEDED"), 1);
    assert!(summary.total.commands.rejected.is_empty());
    assert_eq!(got.status(), Some(&CommandExecutionStatus::Succeeded));
    assert_eq!(
        got.result().unwrap()["payload"].s(),
        Some(r#"{"door":"front"}"#)
    );
    let received = devices.received();
    let request = received.iter().find(|r| r.kind == Kind::Command).unwrap();
    assert_eq!(request.id, id);
    assert_eq!(
        request.method, None,
        "no method in the payload: the * behaviour"
    );
    assert!(
        matches!(request.message_expiry, Some(28..=30)),
        "{:?}",
        request.message_expiry
    );
    let acks: Vec<&str> = received
        .iter()
        .filter(|r| r.kind == Kind::Accepted)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(acks, [id.as_str(), id.as_str()]);
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn the_payload_method_picks_the_behaviour_and_failures_carry_their_reason() {
    let iot = emulator().await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let devices = fleet(
        &iot,
        &["car-2"],
        &["update=fail:LOW_BATTERY:below 10%", "lock=reject:ENGINE_ON"],
    )
    .await;
    let (_watch, mut sent) = observer(&iot, "watch-2", &[&responses("car-2")]).await;
    let update = c
        .create_json_command("update", json!({"method": "update", "v": 2}))
        .await;
    let lock = c
        .create_json_command("lock", json!({"method": "lock"}))
        .await;

    let failed_id = c.start_execution(&update, "car-2", 30).await;
    let failed = next(&mut sent).await;
    let rejected_id = c.start_execution(&lock, "car-2", 30).await;
    let rejected = next(&mut sent).await;
    devices
        .wait_until(WAIT, |s| s.total.commands.accepted == 2)
        .await
        .unwrap();
    let failed_record = c.execution("car-2", &failed_id).await;
    let rejected_record = c.execution("car-2", &rejected_id).await;

    assert!(failed.topic.contains(&failed_id));
    assert_eq!(
        json(&failed),
        json!({"status": "FAILED", "statusReason": {"reasonCode": "LOW_BATTERY", "reasonDescription": "below 10%"}})
    );
    assert!(rejected.topic.contains(&rejected_id));
    assert_eq!(
        json(&rejected),
        json!({"status": "REJECTED", "statusReason": {"reasonCode": "ENGINE_ON"}})
    );
    assert_eq!(
        failed_record.status(),
        Some(&CommandExecutionStatus::Failed)
    );
    assert_eq!(
        failed_record.status_reason().unwrap().reason_code(),
        "LOW_BATTERY"
    );
    assert_eq!(
        rejected_record.status(),
        Some(&CommandExecutionStatus::Rejected)
    );
    let methods: Vec<Option<String>> = devices
        .received()
        .into_iter()
        .filter(|r| r.kind == Kind::Command)
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, [Some("update".into()), Some("lock".into())]);
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn twice_answers_twice_and_the_second_answer_is_rejected_as_terminal() {
    let iot = emulator().await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let devices = fleet(&iot, &["car-3"], &["*=twice"]).await;
    let (_watch, mut sent) = observer(&iot, "watch-3", &[&responses("car-3")]).await;
    let arn = c.create_json_command("honk", json!({})).await;

    c.start_execution(&arn, "car-3", 30).await;
    let first = next(&mut sent).await;
    let second = next(&mut sent).await;
    let summary = devices
        .wait_until(WAIT, |s| {
            s.total.commands.accepted + s.total.commands.rejected.values().sum::<u64>() == 2
        })
        .await
        .unwrap();

    assert_eq!(json(&first)["status"], "SUCCEEDED");
    assert_eq!(json(&second)["status"], "SUCCEEDED");
    nothing_within(&mut sent, Duration::from_millis(700)).await;
    assert_eq!(summary.total.commands.accepted, 1);
    assert_eq!(
        summary.total.commands.rejected.get("TerminalStateReached"),
        Some(&1)
    );
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn late_answers_after_the_cloud_timed_out_and_still_completes_the_execution() {
    let iot = emulator().await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let devices = fleet(&iot, &["car-4"], &["*=late"]).await;
    let (_watch, mut events) = observer(
        &iot,
        "watch-4",
        &["$aws/events/commandExecution/locate/#", &responses("car-4")],
    )
    .await;
    let arn = c.create_json_command("locate", json!({})).await;

    let started = Instant::now();
    let id = c.start_execution(&arn, "car-4", 1).await;
    let mut seen = Vec::new();
    let mut answered_after = None;
    while seen.len() < 4 {
        let message = next(&mut events).await;
        if message.topic.ends_with("/response/json") {
            answered_after = Some(started.elapsed());
        }
        seen.push(message.topic);
    }
    let got = c.execution("car-4", &id).await;

    assert_eq!(
        seen,
        [
            "$aws/events/commandExecution/locate/CREATED".to_owned(),
            "$aws/events/commandExecution/locate/TIMED_OUT".to_owned(),
            format!("$aws/commands/things/car-4/executions/{id}/response/json"),
            "$aws/events/commandExecution/locate/SUCCEEDED".to_owned(),
        ]
    );
    let answered_after = answered_after.unwrap();
    assert!(
        answered_after >= Duration::from_secs(1),
        "answered {answered_after:?} after the start, before the 1 s deadline"
    );
    assert_eq!(got.status(), Some(&CommandExecutionStatus::Succeeded));
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn never_leaves_the_execution_to_the_cloud_timeout() {
    let iot = emulator().await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let devices = fleet(&iot, &["car-5"], &["*=never"]).await;
    let (_watch, mut watched) = observer(
        &iot,
        "watch-5",
        &[
            "$aws/events/commandExecution/ping/TIMED_OUT",
            &responses("car-5"),
        ],
    )
    .await;
    let arn = c.create_json_command("ping", json!({})).await;

    c.start_execution(&arn, "car-5", 1).await;
    let timed_out = next(&mut watched).await;

    assert!(
        timed_out.topic.ends_with("/TIMED_OUT"),
        "{}",
        timed_out.topic
    );
    assert_eq!(
        json(&timed_out)["statusReason"]["reasonCode"],
        "$NO_RESPONSE_FROM_DEVICE"
    );
    nothing_within(&mut watched, Duration::from_millis(700)).await;
    let summary = devices.summary();
    assert_eq!(summary.total.commands.received, 1);
    assert_eq!(summary.total.commands.unanswered, 1);
    devices.shutdown().await;
    iot.shutdown().await;
}
