//! The rule engine delivering to a stub Lambda Invoke endpoint.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tether_local_iot::link::{Link, Outgoing};
use tether_local_iot::rules::rules_from_template;
use tether_local_iot::{Config, LocalIot};
use tokio::sync::mpsc;

/// The ingest function and its `IoTRule` event on `tether/replies/+/+` (the same template as
/// the unit tests of `rules_from_template`).
const TEMPLATE: &str = include_str!("fixtures/ingest-template.yaml");

#[derive(Clone)]
struct Stub {
    calls: mpsc::UnboundedSender<(String, Value)>,
    failures_left: Arc<AtomicUsize>,
}

/// A Lambda Invoke API that records calls and fails the first `failures` of them (alternating
/// an HTTP 500 and a function error, the two ways an invoke fails).
async fn stub(
    failures: usize,
) -> (
    String,
    mpsc::UnboundedReceiver<(String, Value)>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Stub {
        calls: tx,
        failures_left: Arc::new(AtomicUsize::new(failures)),
    };
    let app = Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(
                |State(stub): State<Stub>, Path(name): Path<String>, body: String| async move {
                    let _ = stub
                        .calls
                        .send((name, serde_json::from_str(&body).unwrap()));
                    let left = stub.failures_left.load(Ordering::SeqCst);
                    if left == 0 {
                        return (StatusCode::OK, HeaderMap::new(), "null");
                    }
                    stub.failures_left.store(left - 1, Ordering::SeqCst);
                    if left % 2 == 0 {
                        (StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new(), "boom")
                    } else {
                        let mut headers = HeaderMap::new();
                        headers.insert("X-Amz-Function-Error", "Unhandled".parse().unwrap());
                        (StatusCode::OK, headers, r#"{"errorType":"StoreError"}"#)
                    }
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, rx, server)
}

async fn emulator(lambda_endpoint: String, retries: u32) -> LocalIot {
    LocalIot::start(Config {
        rules: rules_from_template(TEMPLATE).unwrap(),
        lambda_endpoint,
        rule_retries: retries,
        rule_backoff: Duration::from_millis(20),
        ..Config::default()
    })
    .await
    .unwrap()
}

async fn reply(iot: &LocalIot, payload: &[u8]) {
    let (device, _) = Link::connect_as(iot.mqtt_addr(), "dev-1", &[])
        .await
        .unwrap();
    device
        .publish(Outgoing {
            topic: "tether/replies/dev-1/r-42".into(),
            payload: payload.to_vec().into(),
            qos: 1,
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn next_call(calls: &mut mpsc::UnboundedReceiver<(String, Value)>) -> (String, Value) {
    tokio::time::timeout(Duration::from_secs(10), calls.recv())
        .await
        .expect("an invoke within 10 s")
        .unwrap()
}

#[tokio::test]
async fn a_rule_invokes_its_function_with_the_selected_fields() {
    let (url, mut calls, server) = stub(0).await;
    let iot = emulator(url, 2).await;

    reply(&iot, br#"{"status":"SUCCEEDED","result":{"on":true}}"#).await;

    let (function, event) = next_call(&mut calls).await;
    assert_eq!(function, "ingest");
    assert_eq!(event["status"], "SUCCEEDED");
    assert_eq!(event["result"], json!({"on": true}));
    assert_eq!(event["deviceId"], "dev-1");
    assert_eq!(event["requestId"], "r-42");
    assert!(event["receivedAt"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(iot.dead_letters().is_empty());
    iot.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn failed_deliveries_are_retried() {
    let (url, mut calls, server) = stub(2).await;
    let iot = emulator(url, 2).await;

    reply(&iot, br#"{"status":"FAILED"}"#).await;

    for _ in 0..3 {
        let (_, event) = next_call(&mut calls).await;
        assert_eq!(
            event["status"], "FAILED",
            "every attempt carries the same event"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(calls.try_recv().is_err(), "no attempt after a success");
    assert!(iot.dead_letters().is_empty());
    iot.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn what_cannot_be_delivered_is_dead_lettered_visibly() {
    let (url, mut calls, server) = stub(usize::MAX).await;
    let dir = std::env::temp_dir().join(format!("local-iot-dlq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dead-letters.jsonl");
    let iot = LocalIot::start(Config {
        rules: rules_from_template(TEMPLATE).unwrap(),
        lambda_endpoint: url,
        rule_retries: 1,
        rule_backoff: Duration::from_millis(10),
        dead_letter_file: Some(file.clone()),
        ..Config::default()
    })
    .await
    .unwrap();

    reply(&iot, br#"{"status":"SUCCEEDED"}"#).await;
    reply(&iot, b"not json at all").await;
    next_call(&mut calls).await;
    next_call(&mut calls).await;
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = iot.dead_letters();
        if letters.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(letters.len(), 2, "{letters:?}");
    let delivery = letters
        .iter()
        .find(|l| l["attempts"] == 2)
        .expect("the undeliverable event");
    assert_eq!(delivery["function"], "ingest");
    assert_eq!(delivery["event"]["status"], "SUCCEEDED");
    let unparsable = letters
        .iter()
        .find(|l| l["attempts"] == 0)
        .expect("the non-JSON payload");
    assert!(unparsable["error"].as_str().unwrap().contains("JSON"));
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count(), 2);
    iot.shutdown().await;
    server.abort();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_replay_delivers_dead_letters_again_and_keeps_what_fails_again() {
    // Two attempts fail (the first delivery and its retry), then the first replay fails too.
    let (url, mut calls, server) = stub(3).await;
    let iot = emulator(url, 1).await;

    reply(&iot, br#"{"status":"SUCCEEDED","result":{"n":7}}"#).await;
    next_call(&mut calls).await;
    next_call(&mut calls).await;
    for _ in 0..100 {
        if !iot.dead_letters().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(iot.dead_letters().len(), 1);

    let first = iot.replay_dead_letters().await;
    let (_, again) = next_call(&mut calls).await;
    let still = iot.dead_letters();
    let second = iot.replay_dead_letters().await;
    let (function, delivered) = next_call(&mut calls).await;
    let third = iot.replay_dead_letters().await;

    // As the deployed queue feeds it back: an SQS message holding Lambda's failure record.
    let failed_event = |batch: &Value| -> Value {
        assert_eq!(batch["Records"][0]["eventSource"], "aws:sqs");
        let body: Value =
            serde_json::from_str(batch["Records"][0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["requestContext"]["condition"], "RetriesExhausted");
        body["requestPayload"].clone()
    };
    assert_eq!((first.delivered, first.failed), (0, 1));
    assert_eq!(
        failed_event(&again)["result"],
        json!({"n": 7}),
        "the same event again"
    );
    assert_eq!(still.len(), 1, "a failed replay keeps the event: {still:?}");
    assert_eq!((second.delivered, second.failed), (1, 0));
    assert_eq!(function, "ingest");
    assert_eq!(failed_event(&delivered)["result"], json!({"n": 7}));
    assert!(iot.dead_letters().is_empty());
    assert_eq!((third.delivered, third.failed), (0, 0), "nothing left");
    assert!(calls.try_recv().is_err());
    iot.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn rules_deliver_again_after_a_broker_restart() {
    let (url, mut calls, server) = stub(0).await;
    let iot = emulator(url, 2).await;

    iot.restart_broker(Duration::from_millis(500))
        .await
        .unwrap();
    // The rule's own connection comes back and subscribes again: publish until it hears.
    let mut delivered = None;
    for _ in 0..50 {
        reply(&iot, br#"{"status":"SUCCEEDED"}"#).await;
        if let Ok(Some(call)) = tokio::time::timeout(Duration::from_millis(200), calls.recv()).await
        {
            delivered = Some(call);
            break;
        }
    }

    let (function, event) = delivered.expect("a rule delivery after the restart");
    assert_eq!(function, "ingest");
    assert_eq!(event["requestId"], "r-42");
    iot.shutdown().await;
    server.abort();
}

#[test]
fn the_projects_template_routes_replies_presence_execution_and_job_events_to_ingest() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
        .unwrap();

    let rules = rules_from_template(&text).unwrap();

    let summary: Vec<(&str, &str, &str)> = rules
        .iter()
        .map(|r| (r.name.as_str(), r.function.as_str(), r.filter.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "ExecutionEventsRule",
                "ingest",
                "$aws/events/commandExecution/+/#"
            ),
            ("JobEventsRule", "ingest", "$aws/events/job/+/+"),
            (
                "JobExecutionEventsRule",
                "ingest",
                "$aws/events/jobExecution/+/+"
            ),
            ("PresenceRule", "ingest", "$aws/events/presence/+/+"),
            ("RepliesRule", "ingest", "tether/replies/+/+/#"),
        ]
    );
}
