//! The emulator driven by the real Rust SDK clients and real MQTT 5 clients.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use aws_sdk_iot::primitives::Blob;
use aws_sdk_iot::types::CommandExecutionStatus;
use serde_json::{json, Value};
use tether_local_iot::link::{Link, Message, Outgoing};
use tether_local_iot::{Config, LocalIot};
use tether_testkit::iot::{thing_arn, Clients};
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(10);

async fn start(config: Config) -> LocalIot {
    LocalIot::start(config).await.unwrap()
}

async fn mqtt(
    iot: &LocalIot,
    client_id: &str,
    filters: &[&str],
) -> (Link, UnboundedReceiver<Message>) {
    let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
    Link::connect_as(iot.mqtt_addr(), client_id, &filters)
        .await
        .unwrap()
}

async fn next(rx: &mut UnboundedReceiver<Message>) -> Message {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message within 10 s")
        .expect("link open")
}

async fn next_json(rx: &mut UnboundedReceiver<Message>) -> (String, Value) {
    let message = next(rx).await;
    let value = serde_json::from_slice(&message.payload).unwrap();
    (message.topic, value)
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

async fn device(iot: &LocalIot, thing: &str) -> (Link, UnboundedReceiver<Message>) {
    let base = format!("$aws/commands/things/{thing}/executions/+");
    mqtt(
        iot,
        thing,
        &[
            &format!("{base}/request/#"),
            &format!("{base}/response/accepted/json"),
            &format!("{base}/response/rejected/json"),
        ],
    )
    .await
}

fn response_topic(thing: &str, execution: &str) -> String {
    format!("$aws/commands/things/{thing}/executions/{execution}/response/json")
}

#[tokio::test]
async fn execution_runs_created_in_progress_succeeded_with_events_and_result() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let (_events_link, mut events) =
        mqtt(&iot, "observer", &["$aws/events/commandExecution/+/#"]).await;
    let (car, mut inbox) = device(&iot, "car-1").await;
    let arn = c
        .create_json_command("unlock", json!({"door": "front"}))
        .await;

    let execution = c.start_execution(&arn, "car-1", 30).await;

    let request = next(&mut inbox).await;
    assert_eq!(
        request.topic,
        format!("$aws/commands/things/car-1/executions/{execution}/request/json")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&request.payload).unwrap(),
        json!({"door": "front"})
    );
    assert_eq!(
        request.properties.content_type.as_deref(),
        Some("application/json")
    );
    let expiry = request.properties.message_expiry_interval.unwrap();
    assert!(
        (28..=30).contains(&expiry),
        "message expiry is the time left: {expiry}"
    );

    publish(
        &car,
        response_topic("car-1", &execution),
        json!({"status": "IN_PROGRESS"}),
    )
    .await;
    let (topic, ack) = next_json(&mut inbox).await;
    assert!(topic.ends_with("/response/accepted/json"), "{topic}");
    assert_eq!(ack, json!({"executionId": execution}));
    publish(
        &car,
        response_topic("car-1", &execution),
        json!({"status": "SUCCEEDED", "statusReason": {"reasonCode": "DONE"}, "result": {"unlocked": {"b": true}, "note": {"s": "ok"}}}),
    )
    .await;
    assert!(next(&mut inbox)
        .await
        .topic
        .ends_with("/response/accepted/json"));

    let got = c
        .iot
        .get_command_execution()
        .execution_id(&execution)
        .target_arn(thing_arn("car-1"))
        .include_result(true)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), Some(&CommandExecutionStatus::Succeeded));
    assert_eq!(got.status_reason().unwrap().reason_code(), "DONE");
    let result = got.result().unwrap();
    assert_eq!(result["unlocked"].b(), Some(true));
    assert_eq!(result["note"].s(), Some("ok"));
    assert!(got.completed_at().is_some() && got.started_at().is_some());

    let mut seen = Vec::new();
    for _ in 0..3 {
        let (topic, event) = next_json(&mut events).await;
        assert_eq!(event["eventType"], "COMMAND_EXECUTION");
        assert_eq!(event["executionId"], execution.as_str());
        assert_eq!(event["targetArn"], thing_arn("car-1"));
        assert!(
            event["timestamp"].as_i64().unwrap() > 1_700_000_000_000,
            "milliseconds"
        );
        seen.push(topic);
    }
    assert_eq!(
        seen,
        ["CREATED", "IN_PROGRESS", "SUCCEEDED"]
            .map(|s| format!("$aws/events/commandExecution/unlock/{s}"))
    );
    iot.shutdown().await;
}

#[tokio::test]
async fn reports_after_a_terminal_status_are_rejected() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let (car, mut inbox) = device(&iot, "car-2").await;
    let arn = c.create_json_command("honk", json!({})).await;
    let execution = c.start_execution(&arn, "car-2", 30).await;
    next(&mut inbox).await;

    publish(&car, response_topic("car-2", &execution), json!({"status": "REJECTED", "statusReason": {"reasonCode": "ENGINE_ON", "reasonDescription": "stop the engine first"}})).await;
    assert!(next(&mut inbox).await.topic.ends_with("/accepted/json"));
    publish(
        &car,
        response_topic("car-2", &execution),
        json!({"status": "SUCCEEDED"}),
    )
    .await;
    let (topic, rejection) = next_json(&mut inbox).await;
    publish(
        &car,
        response_topic("car-2", &execution),
        json!({"status": "SUCCEEDED", "result": {"x": "bare"}}),
    )
    .await;
    let (_, invalid) = next_json(&mut inbox).await;
    publish(
        &car,
        response_topic("car-2", "no-such-execution"),
        json!({"status": "SUCCEEDED"}),
    )
    .await;
    let (_, unknown) = next_json(&mut inbox).await;

    assert!(topic.ends_with("/response/rejected/json"), "{topic}");
    assert_eq!(rejection["error"], "TerminalStateReached");
    assert_eq!(rejection["executionId"], execution.as_str());
    assert_eq!(invalid["error"], "InvalidRequest");
    assert_eq!(unknown["error"], "ResourceNotFound");
    let got = c
        .iot
        .get_command_execution()
        .execution_id(&execution)
        .target_arn(thing_arn("car-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), Some(&CommandExecutionStatus::Rejected));
    assert_eq!(
        got.status_reason().unwrap().reason_description(),
        Some("stop the engine first")
    );
    iot.shutdown().await;
}

#[tokio::test]
async fn cloud_timeout_is_replaced_by_a_late_device_report() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let (_events_link, mut events) = mqtt(
        &iot,
        "observer-2",
        &["$aws/events/commandExecution/+/TIMED_OUT"],
    )
    .await;
    let (car, mut inbox) = device(&iot, "car-3").await;
    let arn = c.create_json_command("locate", json!({})).await;
    let execution = c.start_execution(&arn, "car-3", 1).await;
    next(&mut inbox).await;

    let (_, timeout_event) = next_json(&mut events).await;
    let timed_out = c
        .iot
        .get_command_execution()
        .execution_id(&execution)
        .target_arn(thing_arn("car-3"))
        .send()
        .await
        .unwrap();
    publish(
        &car,
        response_topic("car-3", &execution),
        json!({"status": "SUCCEEDED"}),
    )
    .await;
    let (ack_topic, _) = next_json(&mut inbox).await;
    let late = c
        .iot
        .get_command_execution()
        .execution_id(&execution)
        .target_arn(thing_arn("car-3"))
        .send()
        .await
        .unwrap();

    assert_eq!(
        timeout_event["statusReason"]["reasonCode"],
        "$NO_RESPONSE_FROM_DEVICE"
    );
    assert_eq!(timed_out.status(), Some(&CommandExecutionStatus::TimedOut));
    assert_eq!(
        timed_out.status_reason().unwrap().reason_code(),
        "$NO_RESPONSE_FROM_DEVICE"
    );
    assert!(
        timed_out.completed_at().is_none(),
        "a cloud timeout does not complete the execution"
    );
    assert!(ack_topic.ends_with("/accepted/json"));
    assert_eq!(late.status(), Some(&CommandExecutionStatus::Succeeded));
    assert!(late.completed_at().is_some());
    iot.shutdown().await;
}

#[tokio::test]
async fn start_is_idempotent_per_client_token() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let arn = c.create_json_command("wipe", json!({})).await;
    let start = |timeout: i64| {
        c.jobs
            .start_command_execution()
            .command_arn(&arn)
            .target_arn(thing_arn("car-4"))
            .execution_timeout_seconds(timeout)
            .client_token("retry-1")
            .send()
    };

    let first = start(60).await.unwrap();
    let again = start(60).await.unwrap();
    let different = start(61).await.unwrap_err();

    assert_eq!(first.execution_id(), again.execution_id());
    assert_eq!(
        aws_sdk_iotjobsdataplane::error::ProvideErrorMetadata::code(&different),
        Some("ConflictException")
    );
    assert!(different.into_service_error().is_conflict_exception());
    iot.shutdown().await;
}

#[tokio::test]
async fn payload_templates_render_parameters_and_defaults() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let (_car, mut inbox) = device(&iot, "lamp-1").await;
    let template = json!({
        "brightness": "${aws:iot:commandexecution::parameter:brightness}",
        "color": "${aws:iot:commandexecution::parameter:color}",
        "note": "for ${aws:iot:commandexecution::executionTimeoutSec}s",
    });
    let parameter = |name: &str| aws_sdk_iot::types::CommandParameter::builder().name(name);
    c.iot
        .create_command()
        .command_id("set-light")
        .payload_template(template.to_string())
        .preprocessor(
            aws_sdk_iot::types::CommandPreprocessor::builder()
                .aws_json_substitution(
                    aws_sdk_iot::types::AwsJsonSubstitutionCommandPreprocessorConfig::builder()
                        .output_format(aws_sdk_iot::types::OutputFormat::Json)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .mandatory_parameters(parameter("brightness").build().unwrap())
        .mandatory_parameters(
            parameter("color")
                .default_value(
                    aws_sdk_iot::types::CommandParameterValue::builder()
                        .s("warm")
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let arn = c
        .iot
        .get_command()
        .command_id("set-light")
        .send()
        .await
        .unwrap()
        .command_arn()
        .unwrap()
        .to_owned();

    let missing = c
        .jobs
        .start_command_execution()
        .command_arn(&arn)
        .target_arn(thing_arn("lamp-1"))
        .send()
        .await
        .unwrap_err();
    c.jobs
        .start_command_execution()
        .command_arn(&arn)
        .target_arn(thing_arn("lamp-1"))
        .execution_timeout_seconds(20)
        .parameters(
            "brightness",
            aws_sdk_iotjobsdataplane::types::CommandParameterValue::builder()
                .i(80)
                .build(),
        )
        .send()
        .await
        .unwrap();

    assert!(missing.into_service_error().is_validation_exception());
    let request = next(&mut inbox).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&request.payload).unwrap(),
        json!({"brightness": 80, "color": "warm", "note": "for 20s"})
    );
    iot.shutdown().await;
}

#[tokio::test]
async fn deprecated_commands_start_nothing_and_deletion_follows_the_grace_period() {
    let iot = start(Config {
        deletion_grace: Duration::ZERO,
        ..Config::default()
    })
    .await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let arn = c.create_json_command("old", json!({})).await;
    c.create_json_command("fresh", json!({})).await;

    let updated = c
        .iot
        .update_command()
        .command_id("old")
        .deprecated(true)
        .display_name("Old")
        .send()
        .await
        .unwrap();
    let refused = c
        .jobs
        .start_command_execution()
        .command_arn(&arn)
        .target_arn(thing_arn("t"))
        .send()
        .await
        .unwrap_err();
    let fresh_delete = c
        .iot
        .delete_command()
        .command_id("fresh")
        .send()
        .await
        .unwrap();
    let old_delete = c
        .iot
        .delete_command()
        .command_id("old")
        .send()
        .await
        .unwrap();
    let listed = c.iot.list_commands().send().await.unwrap();
    let pending = c
        .iot
        .get_command()
        .command_id("fresh")
        .send()
        .await
        .unwrap();
    let gone = c
        .iot
        .get_command()
        .command_id("old")
        .send()
        .await
        .unwrap_err();

    assert_eq!(updated.deprecated(), Some(true));
    assert!(refused.into_service_error().is_validation_exception());
    assert_eq!(
        fresh_delete.status_code(),
        202,
        "not deprecated: deletion is scheduled"
    );
    assert_eq!(
        old_delete.status_code(),
        204,
        "deprecated past the grace period: deleted"
    );
    assert!(
        listed.commands().is_empty(),
        "pending deletion is not listed"
    );
    assert_eq!(pending.pending_deletion(), Some(true));
    assert!(gone.into_service_error().is_resource_not_found_exception());
    iot.shutdown().await;
}

#[tokio::test]
async fn list_commands_paginates() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    for i in 0..5 {
        c.create_json_command(&format!("cmd-{i}"), json!({})).await;
    }
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .iot
            .list_commands()
            .max_results(2)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        ids.extend(
            page.commands()
                .iter()
                .map(|s| s.command_id().unwrap().to_owned()),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(ids, ["cmd-0", "cmd-1", "cmd-2", "cmd-3", "cmd-4"]);
    iot.shutdown().await;
}

#[tokio::test]
async fn publish_keeps_every_mqtt5_property() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let (_sub, mut inbox) = mqtt(&iot, "dev-9", &["tether/devices/dev-9/invoke/+/+"]).await;

    c.data
        .publish()
        .topic("tether/devices/dev-9/invoke/reboot/r-1")
        .qos(1)
        .payload(aws_sdk_iotdataplane::primitives::Blob::new(
            r#"{"delay":5}"#,
        ))
        .content_type("application/json")
        .response_topic("tether/replies/dev-9/r-1")
        .correlation_data("cjE=")
        .message_expiry(7)
        .payload_format_indicator(aws_sdk_iotdataplane::types::PayloadFormatIndicator::Utf8Data)
        .user_properties(r#"[{"traceId":"abc"}]"#)
        .send()
        .await
        .unwrap();

    let message = next(&mut inbox).await;
    assert_eq!(message.topic, "tether/devices/dev-9/invoke/reboot/r-1");
    assert_eq!(&message.payload[..], br#"{"delay":5}"#);
    let p = message.properties;
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        p.response_topic.as_deref(),
        Some("tether/replies/dev-9/r-1")
    );
    assert_eq!(p.correlation_data.as_deref(), Some(&b"r1"[..]));
    assert!(matches!(p.message_expiry_interval, Some(6..=7)));
    assert_eq!(p.payload_format_indicator, Some(1));
    assert_eq!(
        p.user_properties,
        vec![("traceId".to_owned(), "abc".to_owned())]
    );
    iot.shutdown().await;
}

#[tokio::test]
async fn presence_events_and_get_connection_follow_clients() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let (_observer, mut presence) = mqtt(&iot, "observer-3", &["$aws/events/presence/+/+"]).await;
    let never = c
        .data
        .get_connection()
        .client_id("ghost")
        .send()
        .await
        .unwrap_err();

    let (device, _) = mqtt(&iot, "sensor-1", &[]).await;
    let (topic, connected) = next_json(&mut presence).await;
    let online = c
        .data
        .get_connection()
        .client_id("sensor-1")
        .send()
        .await
        .unwrap();
    device.close().await;
    let (gone_topic, disconnected) = next_json(&mut presence).await;
    let offline = c
        .data
        .get_connection()
        .client_id("sensor-1")
        .send()
        .await
        .unwrap();

    assert!(never.into_service_error().is_resource_not_found_exception());
    assert_eq!(topic, "$aws/events/presence/connected/sensor-1");
    assert_eq!(connected["clientId"], "sensor-1");
    assert_eq!(connected["eventType"], "connected");
    assert!(connected["sessionIdentifier"].is_string());
    assert!(online.connected());
    assert_eq!(gone_topic, "$aws/events/presence/disconnected/sensor-1");
    assert_eq!(
        disconnected["disconnectReason"],
        "CLIENT_INITIATED_DISCONNECT"
    );
    assert_eq!(disconnected["clientInitiatedDisconnect"], true);
    assert!(!offline.connected());
    assert_eq!(
        offline.disconnect_reason(),
        Some("CLIENT_INITIATED_DISCONNECT")
    );
    iot.shutdown().await;
}

/// Publishes on `topic` (iot-data Publish must answer every time) until `inbox` hears a
/// message, for up to about 10 s: after a reconnection, a device subscribes again only once it
/// has its CONNACK.
async fn publish_until_heard(
    c: &Clients,
    topic: &str,
    inbox: &mut UnboundedReceiver<Message>,
) -> Option<Message> {
    for n in 0..50 {
        let published = c
            .data
            .publish()
            .topic(topic)
            .payload(Blob::new(format!("{{\"n\":{n}}}")))
            .send()
            .await;
        assert!(published.is_ok(), "Publish answers during the reconnection");
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await
        {
            return Some(message);
        }
    }
    None
}

#[tokio::test]
async fn an_outage_drops_devices_refuses_them_and_lets_them_back() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    // An internal link, like the rules' connections: it stays up through the outage.
    let (_observer, mut presence) = Link::connect(
        iot.mqtt_addr(),
        "observer",
        &["$aws/events/presence/+/+".to_owned()],
    )
    .await
    .unwrap();
    let (_device, mut inbox) = mqtt(&iot, "sensor-2", &["cmd/sensor-2"]).await;
    let (first, _) = next_json(&mut presence).await;

    let addr = iot.mqtt_addr();
    let during = async {
        let (topic, gone) = next_json(&mut presence).await;
        let refused = tokio::net::TcpStream::connect(addr).await.is_err();
        let status = c
            .data
            .get_connection()
            .client_id("sensor-2")
            .send()
            .await
            .unwrap();
        (topic, gone, refused, status.connected())
    };
    let (outage, (gone_topic, gone, refused, connected_during)) =
        tokio::join!(iot.outage(Duration::from_millis(1500)), during);
    outage.unwrap();
    let (back_topic, _) = next_json(&mut presence).await;
    // The device subscribes again after its CONNACK; publish until it hears.
    let heard = publish_until_heard(&c, "cmd/sensor-2", &mut inbox).await;

    assert_eq!(first, "$aws/events/presence/connected/sensor-2");
    assert_eq!(gone_topic, "$aws/events/presence/disconnected/sensor-2");
    assert_eq!(gone["disconnectReason"], "SERVER_INITIATED_DISCONNECT");
    assert_eq!(gone["clientInitiatedDisconnect"], false);
    assert!(refused, "connections are refused during the outage");
    assert!(!connected_during);
    assert_eq!(back_topic, "$aws/events/presence/connected/sensor-2");
    assert!(heard.is_some(), "the device is reachable again");
    iot.shutdown().await;
}

#[tokio::test]
async fn after_a_broker_restart_publish_reaches_devices_again() {
    let iot = start(Config::default()).await;
    let c = Clients::new(&iot.endpoint_url()).await;
    let (_device, mut inbox) = mqtt(&iot, "sensor-3", &["cmd/sensor-3"]).await;

    iot.restart_broker(Duration::from_millis(500))
        .await
        .unwrap();
    // Both the device and the emulator's publisher reconnect; publish until the device hears.
    let heard = publish_until_heard(&c, "cmd/sensor-3", &mut inbox).await;

    assert!(heard.is_some(), "the publisher and the device came back");
    iot.shutdown().await;
}

/// As in AWS IoT Core, a device cannot publish on the reserved event topics: a forged presence
/// or execution event never reaches a subscriber (or a rule), while the emulator's own events
/// still do.
#[tokio::test]
async fn devices_cannot_publish_on_the_reserved_event_topics() {
    let iot = start(Config::default()).await;
    let (_observer, mut events) = mqtt(&iot, "observer-4", &["$aws/events/#"]).await;
    let (rogue, _) = mqtt(&iot, "rogue-4", &[]).await;
    let (own_topic, _) = next_json(&mut events).await;

    for topic in [
        "$aws/events/presence/disconnected/victim-4",
        "$aws/events/commandExecution/unlock/SUCCEEDED",
    ] {
        // Refused by the broker (MQTT 5: PUBACK "not authorized"); what the client library
        // makes of that does not matter here, only that nobody receives it.
        let _ = rogue
            .publish(Outgoing {
                topic: topic.into(),
                payload: br#"{"forged":true}"#.to_vec().into(),
                qos: 1,
                ..Default::default()
            })
            .await;
    }
    let (victim, _) = mqtt(&iot, "victim-4", &[]).await;
    let (next_topic, _) = next_json(&mut events).await;
    let mut later = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(300), events.recv()).await
    {
        later.push(message.topic);
    }

    assert_eq!(own_topic, "$aws/events/presence/connected/rogue-4");
    assert_eq!(
        next_topic, "$aws/events/presence/connected/victim-4",
        "the forged events were never delivered; the emulator's own next one was"
    );
    assert!(later.is_empty(), "nothing else arrived: {later:?}");
    victim.close().await;
    rogue.close().await;
}
