//! Direct invocation against the real broker of the local emulator: each behaviour sends exactly
//! the messages it should, on the right topics, with the right MQTT 5 properties.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{emulator, fleet, json, next, nothing_within, observer, Invoke, WAIT};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::json;
use tether_device::Kind;

/// Long enough for a wrongly sent extra message to show up on loopback.
const QUIET: Duration = Duration::from_millis(700);

#[tokio::test]
async fn echo_replies_on_the_response_topic_with_the_correlation_data_at_qos_1_as_json() {
    let iot = emulator().await;
    let devices = fleet(&iot, &["dev-1"], &["*=echo"]).await;
    let (app, mut replies) = observer(&iot, "app-1", &["app/inbox/#"]).await;
    let request = Invoke {
        response_topic: Some("app/inbox/r-1".into()),
        correlation: Some("corr-1"),
        ..Invoke::new("dev-1", "getStatus", "r-1", json!({"verbose": true}))
    };

    request.send(&app).await;
    let reply = next(&mut replies).await;

    assert_eq!(reply.topic, "app/inbox/r-1");
    assert_eq!(
        json(&reply),
        json!({"status": "SUCCEEDED", "result": {"verbose": true}})
    );
    assert_eq!(
        reply.properties.correlation_data.as_deref(),
        Some(&b"corr-1"[..])
    );
    assert_eq!(
        reply.properties.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(reply.qos, QoS::AtLeastOnce);
    let received = devices.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].kind, Kind::Invoke);
    assert_eq!(received[0].method.as_deref(), Some("getStatus"));
    assert_eq!(received[0].id, "r-1");
    assert_eq!(received[0].response_topic.as_deref(), Some("app/inbox/r-1"));
    assert!(matches!(received[0].message_expiry, Some(9..=10)));
    nothing_within(&mut replies, QUIET).await;
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn without_a_response_topic_the_reply_goes_to_the_topic_built_from_the_request() {
    let iot = emulator().await;
    let devices = fleet(&iot, &["dev-1"], &[]).await;
    let (app, mut replies) = observer(&iot, "app-1", &["tether/replies/dev-1/+"]).await;
    let request = Invoke {
        response_topic: None,
        correlation: None,
        expiry: None,
        ..Invoke::new("dev-1", "reboot", "r-2", json!({}))
    };

    request.send(&app).await;
    let reply = next(&mut replies).await;

    assert_eq!(reply.topic, "tether/replies/dev-1/r-2");
    assert_eq!(json(&reply), json!({"status": "SUCCEEDED", "result": {}}));
    assert_eq!(reply.properties.correlation_data, None);
    let summary = devices
        .wait_until(WAIT, |s| s.total.invoke.fallback_topic == 1)
        .await
        .unwrap();
    assert_eq!(summary.total.sent(Kind::Invoke, "SUCCEEDED"), 1);
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn each_method_gets_its_behaviour_and_fail_and_reject_carry_their_reason() {
    let iot = emulator().await;
    let devices = fleet(
        &iot,
        &["dev-1"],
        &[
            "update=fail:LOW_BATTERY:battery below 10%",
            "lock=reject:BUSY",
            "*=echo",
        ],
    )
    .await;
    let (app, mut replies) = observer(&iot, "app-1", &["tether/replies/dev-1/+"]).await;

    Invoke::new("dev-1", "update", "r-fail", json!({}))
        .send(&app)
        .await;
    let failed = next(&mut replies).await;
    Invoke::new("dev-1", "lock", "r-reject", json!({}))
        .send(&app)
        .await;
    let rejected = next(&mut replies).await;
    Invoke::new("dev-1", "other", "r-echo", json!(7))
        .send(&app)
        .await;
    let echoed = next(&mut replies).await;

    assert_eq!(failed.topic, "tether/replies/dev-1/r-fail");
    assert_eq!(
        json(&failed),
        json!({"status": "FAILED", "statusReason": {"reasonCode": "LOW_BATTERY", "reasonDescription": "battery below 10%"}})
    );
    assert_eq!(
        failed.properties.correlation_data.as_deref(),
        Some(&b"r-fail"[..])
    );
    assert_eq!(
        json(&rejected),
        json!({"status": "REJECTED", "statusReason": {"reasonCode": "BUSY"}})
    );
    assert_eq!(json(&echoed), json!({"status": "SUCCEEDED", "result": 7}));
    let behaviours: Vec<Option<String>> = devices
        .received()
        .into_iter()
        .map(|r| r.behaviour)
        .collect();
    assert_eq!(
        behaviours,
        [
            Some("fail:LOW_BATTERY:battery below 10%".to_owned()),
            Some("reject:BUSY".to_owned()),
            Some("echo".to_owned())
        ]
    );
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn delay_answers_once_and_progress_reports_then_answers_no_sooner_than_their_pause() {
    let iot = emulator().await;
    let devices = fleet(
        &iot,
        &["dev-1"],
        &[
            "slow=delay:300",
            "work=progress:300",
            "range=delay:100..150",
        ],
    )
    .await;
    let (app, mut replies) = observer(&iot, "app-1", &["tether/replies/dev-1/+"]).await;

    let started = Instant::now();
    Invoke::new("dev-1", "slow", "r-slow", json!({}))
        .send(&app)
        .await;
    let slow = next(&mut replies).await;
    let slow_after = started.elapsed();
    let started = Instant::now();
    Invoke::new("dev-1", "work", "r-work", json!({}))
        .send(&app)
        .await;
    let progress = next(&mut replies).await;
    let progress_after = started.elapsed();
    let work = next(&mut replies).await;
    let work_after = started.elapsed();
    let started = Instant::now();
    Invoke::new("dev-1", "range", "r-range", json!({}))
        .send(&app)
        .await;
    let ranged = next(&mut replies).await;
    let range_after = started.elapsed();

    assert!(slow_after >= Duration::from_millis(300), "{slow_after:?}");
    assert_eq!(json(&slow)["status"], "SUCCEEDED");
    // Progress at once, with its details as the reason; the answer after the pause.
    assert!(
        progress_after < Duration::from_millis(300),
        "{progress_after:?}"
    );
    assert_eq!(json(&progress)["status"], "IN_PROGRESS");
    assert_eq!(json(&progress)["statusReason"]["reasonDescription"], "50%");
    assert!(work_after >= Duration::from_millis(300), "{work_after:?}");
    assert_eq!(json(&work)["status"], "SUCCEEDED");
    assert!(range_after >= Duration::from_millis(100), "{range_after:?}");
    assert_eq!(ranged.topic, "tether/replies/dev-1/r-range");
    nothing_within(&mut replies, QUIET).await;
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn twice_sends_exactly_two_replies() {
    let iot = emulator().await;
    let devices = fleet(&iot, &["dev-1"], &["*=twice"]).await;
    let (app, mut replies) = observer(&iot, "app-1", &["tether/replies/dev-1/+"]).await;

    Invoke::new("dev-1", "ping", "r-3", json!({"n": 1}))
        .send(&app)
        .await;
    let first = next(&mut replies).await;
    let second = next(&mut replies).await;

    for reply in [&first, &second] {
        assert_eq!(reply.topic, "tether/replies/dev-1/r-3");
        assert_eq!(
            json(reply),
            json!({"status": "SUCCEEDED", "result": {"n": 1}})
        );
        assert_eq!(
            reply.properties.correlation_data.as_deref(),
            Some(&b"r-3"[..])
        );
    }
    nothing_within(&mut replies, QUIET).await;
    assert_eq!(devices.summary().total.sent(Kind::Invoke, "SUCCEEDED"), 2);
    // The sent log holds what the broker acknowledged (PUBACK), with the request's id.
    let acknowledged: Vec<(String, &str)> = devices
        .sent()
        .into_iter()
        .map(|s| (s.id, s.status))
        .collect();
    assert_eq!(
        acknowledged,
        [
            ("r-3".to_owned(), "SUCCEEDED"),
            ("r-3".to_owned(), "SUCCEEDED")
        ]
    );
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn never_receives_the_request_and_sends_nothing() {
    let iot = emulator().await;
    let devices = fleet(&iot, &["dev-1"], &["*=never"]).await;
    let (app, mut replies) = observer(&iot, "app-1", &["tether/replies/dev-1/+"]).await;

    Invoke::new("dev-1", "ping", "r-4", json!({}))
        .send(&app)
        .await;
    let summary = devices
        .wait_until(WAIT, |s| s.total.invoke.received == 1)
        .await
        .unwrap();

    assert_eq!(summary.total.invoke.unanswered, 1);
    nothing_within(&mut replies, Duration::from_secs(1)).await;
    assert!(devices.summary().total.invoke.sent.is_empty());
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn late_answers_only_after_the_message_expiry_has_passed() {
    let iot = emulator().await;
    let devices = fleet(&iot, &["dev-1"], &["*=late"]).await;
    let (app, mut replies) = observer(&iot, "app-1", &["tether/replies/dev-1/+"]).await;
    let request = Invoke {
        expiry: Some(1),
        ..Invoke::new("dev-1", "ping", "r-5", json!({}))
    };

    let sent = Instant::now();
    request.send(&app).await;
    let reply = next(&mut replies).await;
    let after = sent.elapsed();

    assert!(
        after >= Duration::from_secs(1),
        "the reply came {after:?} after the request, before its 1 s expiry"
    );
    assert_eq!(reply.topic, "tether/replies/dev-1/r-5");
    assert_eq!(json(&reply)["status"], "SUCCEEDED");
    assert_eq!(
        reply.properties.correlation_data.as_deref(),
        Some(&b"r-5"[..])
    );
    devices.shutdown().await;
    iot.shutdown().await;
}

/// iot-data SendDirectMessage (what `invoke` sends by default): no subscription is involved and
/// no message expiry travels; each behaviour still answers on the response topic.
#[tokio::test]
async fn direct_messages_are_answered_like_published_requests() {
    use aws_sdk_iotdataplane::primitives::Blob;
    let iot = emulator().await;
    let devices = fleet(&iot, &["dev-1"], &["*=echo", "late=late:100"]).await;
    let (_app, mut replies) = observer(&iot, "app-1", &["app/inbox/#"]).await;
    let config = tether_testkit::iot::sdk_config(&iot.endpoint_url()).await;
    let data = aws_sdk_iotdataplane::Client::new(&config);
    for (method, id) in [("ping", "d-1"), ("late", "d-2")] {
        data.send_direct_message()
            .client_id("dev-1")
            .topic(format!("tether/devices/dev-1/invoke/{method}/{id}"))
            .response_topic(format!("app/inbox/{id}"))
            .correlation_data("ZC0x")
            .payload(Blob::new(r#"{"n":1}"#))
            .confirmation(true)
            .timeout(2)
            .send()
            .await
            .unwrap();
        // No expiry travels with a direct message (local-iot once added rmqtt's 5 minutes,
        // which `late` waited out).
        assert_eq!(
            devices.received().last().map(|r| r.message_expiry),
            Some(None)
        );
        let reply = next(&mut replies).await;
        assert_eq!(reply.topic, format!("app/inbox/{id}"));
        assert_eq!(json(&reply)["status"], "SUCCEEDED");
    }
    devices.shutdown().await;
    iot.shutdown().await;
}
